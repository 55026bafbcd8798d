"""Block gain-shape RVQ vs lapped (MDCT) gain-shape RVQ vs the shipped EQcodec, k = 1..8.

    python benchmarks/codec_lapped_benchmark.py [--subset] [--iters 16] [--out-dir DIR]

Both classical coders are fitted in this run with the SAME budget: the same
non-overlapping 1-s frames of the same training traces (one vector per second
of training data), the same codebooks (8 x 1024) and the same k-means
iterations. Only the transform differs: the block coder (codec.baselines) codes
each 1-s frame on its own; the lapped coder (codec.lapped) codes MDCT frames
(80-sample sine window, hop 40) whose overlap-add hides the frame edges.

Training data (never the evaluation stations):
  - nc-events training split (codec.data.nc_events_split);
  - public-recordings, split by station: IU.ANMO (4 channel-days) and TA.109C
    (1 day), `--broadband-hours` 1-h pieces of each day (the loudest hour of
    the day and seeded random others); Rutford stations ST01-ST08 (1 h x 3);
    the Iceland folders; seisio's top-level files; rsudp.
    Held out by station: US.OXF, II.KAPI (all days: the README asks for a split
    by station and names KAPI day 007 as evaluation), Rutford ST09 and ST10.
Evaluation:
  - held-out nc-events (each trace, about 90 s);
  - US.OXF day 110 (40 Hz) and II.KAPI day 007 (20 Hz -> 40 Hz), prepared with
    codec.preprocess.contiguous_traces / trace_to_codec_input (gapped channels
    are split at the gaps), cut into `--piece-minutes` pieces;
  - Rutford ST09 / ST10 (1 h x 3 components, 100 Hz -> 40 Hz), same pieces.
Budget: by default the training frames are the non-overlapping seconds of the
training traces (about 231,000) and k-means runs 16 iterations per stage
(about 2 min per coder at 1 thread, 5 min in all); `--offsets 5 --max-vectors
1000000` also uses frames starting at 5 offsets within each second (a seeded
random 1 M of them, the same count for both coders; 7 min per coder, 15 min in all).
Per coder and k: bits/s, median over traces / pieces of the SNR and of the
segmental SNR (codec.metrics), and the frame-edge ratio

    edge ratio = RMS of y[40 j] - y[40 j - 1] over 1-s frame boundaries j
                 / RMS of y[i] - y[i - 1] inside frames

of the decoded output (1 = no step at frame edges; the originals' own value is
given beside it), and the same ratio of the coding error x - y.

Speed: encode (8 codebooks) + decode (k = 8) of one channel-day of 40 Hz data
(US.OXF's longest piece tiled to 86,400 s) by the lapped coder, 1 thread, in a
fresh process, with the peak resident memory during coding.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

SHARED = Path("/work/shared/data")
NC_EVENTS = SHARED / "nc-events"
PUBLIC = SHARED / "public-recordings"
OUT_DIR = REPO / "benchmarks" / "results" / "codec_lapped"
RATE = 40.0
FRAME = 40

#: Stations never trained on (public-recordings README: evaluation split, by station).
HELD_OUT_STATIONS = ("OXF", "KAPI", "ST09", "ST10")
TRAIN_DAYS = ["IU.ANMO.00.BH1.2010.058.M", "IU.ANMO.00.BH2.2010.058.M", "IU.ANMO.00.BHZ.2010.058.M",
              "IU.ANMO.00.BHZ.2013.006", "TA.109C..BHE.2016.249.M"]
EVAL_DAYS = ["US.OXF..BHZ.2002.110.M", "II.KAPI.00.BHZ.2013.007.M"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- data
def prepared_traces(path: Path) -> list[tuple[str, np.ndarray]]:
    """(label, 40 Hz float64 samples) of every channel of a file, via the project's preparation.

    contiguous_traces joins touching pieces; a channel with gaps is kept as its
    separate contiguous pieces (each prepared on its own). Unusable traces are skipped.
    """
    from codec.preprocess import InputError, contiguous_traces, read_stream, trace_to_codec_input

    stream = read_stream(path)
    try:
        traces = contiguous_traces(stream, str(path))
    except InputError:  # gaps: code the contiguous pieces separately
        stream = stream.copy()
        stream.merge(method=-1)
        traces = list(stream.split()) if any(np.ma.isMaskedArray(tr.data) for tr in stream) else list(stream)
    out = []
    for trace in traces:
        try:
            out.append((f"{path.name}:{trace.id}:{trace.stats.starttime}", trace_to_codec_input(trace)))
        except InputError as err:
            warnings.warn(f"skipping {path}: {err}")
    return out


def station_of(path: Path) -> str:
    name = path.name
    for station in HELD_OUT_STATIONS:
        if f".{station}." in name or f"_{station}_" in name or f"_{station}." in name:
            return station
    return ""


def cut(x: np.ndarray, samples: int, min_samples: int = 0) -> list[np.ndarray]:
    """Consecutive pieces of `samples` (the last one kept if it holds at least min_samples)."""
    pieces = [x[i : i + samples] for i in range(0, len(x), samples)]
    return [p for p in pieces if len(p) >= max(min_samples, FRAME)]


def broadband_hours(x: np.ndarray, hours: int, seed: int) -> list[np.ndarray]:
    """`hours` 1-h pieces of a day: the loudest hour (largest |x - median|) and seeded random others."""
    pieces = cut(x, int(3600 * RATE), min_samples=int(600 * RATE))
    if len(pieces) <= hours:
        return pieces
    loudest = int(np.argmax([np.abs(p - np.median(p)).max() for p in pieces]))
    rng = np.random.default_rng(seed)
    others = [i for i in rng.permutation(len(pieces)) if i != loudest][: hours - 1]
    return [pieces[i] for i in sorted([loudest, *others])]


def training_traces(subset: bool, hours: int, seed: int = 0) -> tuple[list[np.ndarray], dict]:
    """The training traces (40 Hz arrays) and a description of them."""
    from codec.data import load_traces, nc_events_split

    train_files, _ = nc_events_split(NC_EVENTS)
    groups: dict[str, list[np.ndarray]] = {"nc-events train": [x for _, x in load_traces(train_files)]}
    days = []
    for i, name in enumerate(TRAIN_DAYS[:2] + TRAIN_DAYS[3:4] if subset else TRAIN_DAYS):
        for _, x in prepared_traces(PUBLIC / "ispaq" / name):
            days += broadband_hours(x, hours, seed + i)
    groups["broadband days (IU.ANMO, TA.109C)"] = days
    rutford = sorted((PUBLIC / "quakemigrate" / "Icequake_Rutford").rglob("*.m"))
    rutford = [p for p in rutford if not station_of(p)]
    if subset:
        rutford = [p for p in rutford if "_Z" in p.name]
    groups["Rutford ST01-ST08"] = [x for p in rutford for _, x in prepared_traces(p)]
    other = sorted(p for folder in ("Icequake_Iceland", "benchmarks") for p in
                   (PUBLIC / "quakemigrate" / folder).rglob("*") if p.is_file())
    other += sorted(p for p in (PUBLIC / "seisio").iterdir() if p.is_file())
    other += sorted(p for p in (PUBLIC / "rsudp").iterdir() if p.is_file())
    rest = []
    for p in other:
        if station_of(p):
            continue
        try:
            rest += [x for _, x in prepared_traces(p)]
        except Exception as err:  # odd formats
            warnings.warn(f"skipping {p}: {err}")
    groups["Iceland, seisio, rsudp"] = rest
    traces = [x for g in groups.values() for x in g]
    description = {name: {"traces": len(g), "hours": round(sum(map(len, g)) / RATE / 3600, 3)}
                   for name, g in groups.items()}
    return traces, description


def evaluation_corpora(piece_minutes: float, subset: bool) -> dict[str, list[np.ndarray]]:
    from codec.data import load_traces, nc_events_split

    _, held_out = nc_events_split(NC_EVENTS)
    corpora = {"nc-events held-out": [x for _, x in load_traces(held_out)]}
    samples = int(piece_minutes * 60 * RATE)
    for name in EVAL_DAYS:
        pieces = [p for _, x in prepared_traces(PUBLIC / "ispaq" / name) for p in cut(x, samples, samples // 2)]
        if subset:
            pieces = pieces[:: max(1, len(pieces) // 24)]
        corpora[name.split("..")[0].split(".00")[0] + " day " + name.split(".")[-2]] = pieces
    rutford = [p for p in sorted((PUBLIC / "quakemigrate" / "Icequake_Rutford").rglob("*.m")) if station_of(p)]
    corpora["Rutford ST09+ST10"] = [p for f in rutford for _, x in prepared_traces(f)
                                    for p in cut(x, samples, samples // 2)]
    return corpora


# ---------------------------------------------------------------------- fitting
def block_vectors(traces) -> torch.Tensor:
    """Unit-RMS shapes of the non-overlapping 1-s frames (as codec.baselines codes them), silent frames left out."""
    import torch

    from codec.baselines import gain_shape_frames

    out = []
    for x in traces:
        shapes, gain, _, _ = gain_shape_frames(torch.as_tensor(np.asarray(x, dtype=np.float64))[None])
        keep = shapes[0].pow(2).sum(-1) > 0
        out.append(shapes[0][keep])
    return torch.cat(out)


def fit_coders(traces, args, description: dict):
    """Fit the block and the lapped coder on the same traces, vectors per second and k-means budget."""
    import torch

    from codec.baselines import GainShapeRVQ
    from codec.lapped import GainQuantizer, LappedGainShapeRVQ, fit_residual_codebooks

    settings = {"num_codebooks": 8, "codebook_size": args.codebook_size, "iters": args.iters, "seed": 0,
                "broadband_hours": args.broadband_hours, "subset": args.subset, "max_vectors": args.max_vectors,
                "offsets": args.offsets}
    paths = {"block": args.out_dir / "block_gain_shape_rvq.safetensors",
             "lapped": args.out_dir / "lapped_gain_shape_rvq.safetensors"}
    if args.reuse and all(p.is_file() for p in paths.values()):
        block, lapped = GainShapeRVQ.load(paths["block"]), LappedGainShapeRVQ.load(paths["lapped"])
        if all(c.fit_info.get("settings") == settings for c in (block, lapped)):
            log("reusing fitted coders from " + str(args.out_dir))
            return block, lapped
    quantizer = GainQuantizer()
    # Frames at `offsets` evenly spaced starting samples (1: the non-overlapping frames of each trace);
    # both coders see the same shifted copies of the same traces, one vector per shift per second.
    shifts = sorted({round(i * FRAME / args.offsets) for i in range(args.offsets)})
    vectors = {"block": torch.cat([block_vectors([x[s:] for x in traces]) for s in shifts]),
               "lapped": torch.cat([LappedGainShapeRVQ.training_vectors([x[s:] for x in traces], quantizer)
                                    for s in shifts])}
    count = min(len(v) for v in vectors.values())
    if args.max_vectors:
        count = min(count, args.max_vectors)
    coders = {}
    for name, v in vectors.items():
        picks = torch.randperm(len(v), generator=torch.Generator().manual_seed(0))[:count]
        log(f"{name}: fitting 8 x {args.codebook_size} on {count} of {len(v)} frames, {args.iters} iterations")
        start = time.time()
        books, stage_snr = fit_residual_codebooks(v[picks].contiguous(), 8, args.codebook_size, args.iters, seed=0,
                                                  log=log)
        info = {"settings": settings, "training_vectors": count, "training_data": description,
                "training_shape_snr_db": [round(s, 3) for s in stage_snr],
                "fit_seconds": round(time.time() - start, 1)}
        coders[name] = (GainShapeRVQ(books, info) if name == "block"
                        else LappedGainShapeRVQ(books, quantizer, info)).eval()
        coders[name].save(paths[name])
        log(f"{name}: fitted in {time.time() - start:.0f} s -> {paths[name]}")
    return coders["block"], coders["lapped"]


# ---------------------------------------------------------------------- evaluation
def evaluate(coders: dict, traces: list[np.ndarray], levels) -> dict:
    """Per coder and k: median SNR, median segmental SNR, median frame-edge ratio of the output and of the error."""
    from codec.metrics import frame_edge_ratio
    from codec.metrics import segmental_snr_db, snr_db

    result = {"original_edge_ratio": float(np.nanmedian([frame_edge_ratio(x) for x in traces])), "coders": {}}
    for name, coder in coders.items():
        start = time.time()
        per_k = {k: [] for k in levels}
        for x in traces:
            encoded = coder.encode(x)
            for k in levels:
                y = coder.decode(encoded, k)[0].cpu().numpy()
                per_k[k].append((snr_db(x, y), segmental_snr_db(x, y), frame_edge_ratio(y), frame_edge_ratio(x - y)))
        rows = []
        for k in levels:
            a = np.array(per_k[k], dtype=np.float64)
            rows.append({"k": k, "bits_per_second": coder_bits(coder)[k - 1],
                         "snr_db": float(np.nanmedian(a[:, 0])), "segsnr_db": float(np.nanmedian(a[:, 1])),
                         "edge_ratio": float(np.nanmedian(a[:, 2])), "error_edge_ratio": float(np.nanmedian(a[:, 3]))})
        result["coders"][name] = {"rows": rows, "seconds": round(time.time() - start, 1)}
        log(f"  {name}: {time.time() - start:.0f} s")
    return result


def coder_bits(coder) -> list[float]:
    return list(getattr(coder, "config", coder).bits_per_second)  # EQCodec keeps it in its config


# ---------------------------------------------------------------------- speed
def memory_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def speed_worker(args) -> int:
    """Fresh process, 1 thread: encode + decode (k = 8) of a channel-day; prints one JSON line."""
    import torch

    torch.set_num_threads(1)
    if args.worker == "lapped":
        from codec.lapped import LappedGainShapeRVQ

        coder = LappedGainShapeRVQ.load(args.out_dir / "lapped_gain_shape_rvq.safetensors")
    else:
        from codec.baselines import GainShapeRVQ

        coder = GainShapeRVQ.load(args.out_dir / "block_gain_shape_rvq.safetensors")
    samples = np.resize(np.load(args.tile), int(86400 * RATE))
    coder.decode(coder.encode(samples[:24000]), 8)  # warm-up
    before = memory_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # restart VmHWM from the current RSS
    start = time.perf_counter()
    encoded = coder.encode(samples)
    mid = time.perf_counter()
    coder.decode(encoded, 8)
    stop = time.perf_counter()
    print(json.dumps({"coder": args.worker, "threads": 1, "seconds_of_data": 86400,
                      "encode_s": mid - start, "decode_s": stop - mid, "total_s": stop - start,
                      "realtime_factor": 86400 / (stop - start), "rss_before_mb": before,
                      "peak_rss_mb": memory_mb("VmHWM"), "growth_mb": memory_mb("VmHWM") - before,
                      "input_mb": samples.nbytes / 2**20}))
    return 0


def speed(args, tile: np.ndarray) -> list[dict]:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tile.npy"
        np.save(path, tile)
        for coder in ("lapped", "block"):
            command = [sys.executable, __file__, "--worker", coder, "--tile", str(path), "--out-dir", str(args.out_dir)]
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
            if done.returncode != 0:
                raise RuntimeError(f"speed worker failed:\n{done.stderr}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            log(f"speed {coder}: {runs[-1]['total_s']:.2f} s per channel-day")
    return runs


# ---------------------------------------------------------------------- report
NAMES = {"block": "block", "lapped": "lapped", "eqcodec": "EQcodec"}


def markdown(report: dict) -> str:
    lines = []
    for corpus, result in report["corpora"].items():
        coders = list(result["coders"])
        lines += [f"### {corpus}: {result['pieces']} traces/pieces, {result['hours']:.1f} h "
                  f"(originals' frame-edge ratio {result['original_edge_ratio']:.3f})", "",
                  "| k | bits/s | " + " | ".join(f"SNR {NAMES[c]}" for c in coders) + " | "
                  + " | ".join(f"segSNR {NAMES[c]}" for c in coders) + " | "
                  + " | ".join(f"edge {NAMES[c]}" for c in coders) + " | "
                  + " | ".join(f"err-edge {NAMES[c]}" for c in coders) + " |",
                  "|" + "---|" * (2 + 4 * len(coders))]
        for i, row in enumerate(result["coders"][coders[0]]["rows"]):
            cells = [str(row["k"]), f"{row['bits_per_second']:g}"]
            for metric, fmt in (("snr_db", "{:.2f}"), ("segsnr_db", "{:.2f}"), ("edge_ratio", "{:.3f}"),
                                ("error_edge_ratio", "{:.2f}")):
                cells += [fmt.format(result["coders"][c]["rows"][i][metric]) for c in coders]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["SNR, segSNR: median over traces/pieces (dB, codec.metrics). edge: frame-edge ratio of the decoded "
              "output (RMS of differences across 1-s frame boundaries / inside frames; compare with the "
              "originals'); err-edge: the same ratio of the coding error x - y. All coders: 10 k + 8 bits/s.", ""]
    for run in report.get("speed", []):
        lines.append(f"speed ({run['coder']}, 1 thread, one channel-day at 40 Hz): encode {run['encode_s']:.2f} s + "
                     f"decode {run['decode_s']:.2f} s = {run['total_s']:.2f} s, {run['realtime_factor']:,.0f}x real "
                     f"time; peak RSS {run['peak_rss_mb']:.0f} MB ({run['growth_mb']:+.0f} MB over the "
                     f"{run['rss_before_mb']:.0f} MB before; input {run['input_mb']:.0f} MB)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", action="store_true", help="fewer training days and evaluation pieces (quick)")
    parser.add_argument("--iters", type=int, default=16, help="k-means iterations per stage (default: %(default)s)")
    parser.add_argument("--codebook-size", type=int, default=1024)
    parser.add_argument("--max-vectors", type=int, default=0, help="cap on training frames (0: all)")
    parser.add_argument("--offsets", type=int, default=1,
                        help="training frames start at this many evenly spaced offsets within each second "
                             "(default 1: non-overlapping frames)")
    parser.add_argument("--broadband-hours", type=int, default=4, help="1-h pieces per training day (default: 4)")
    parser.add_argument("--piece-minutes", type=float, default=10.0)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--reuse", action="store_true", help="reuse coders fitted with the same settings")
    parser.add_argument("--skip-eqcodec", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--worker", choices=["lapped", "block"], help=argparse.SUPPRESS)
    parser.add_argument("--tile", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.worker:
        return speed_worker(args)
    import torch

    torch.set_num_threads(1)
    started = time.time()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    traces, description = training_traces(args.subset, args.broadband_hours)
    log(f"training data: {description}")
    block, lapped = fit_coders(traces, args, description)
    del traces
    coders = {"block": block, "lapped": lapped}
    if not args.skip_eqcodec:
        from codec import EQCodec

        coders["eqcodec"] = EQCodec.from_pretrained()
    corpora = evaluation_corpora(args.piece_minutes, args.subset)
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "fit": {name: c.fit_info for name, c in (("block", block), ("lapped", lapped))},
              "gain_quantizer": {"step_db": lapped.quantizer.step_db, "headroom_db": lapped.quantizer.headroom_db,
                                 "reference_level": lapped.quantizer.reference_level,
                                 "floor_db": lapped.quantizer.floor_db},
              "corpora": {}}
    if "eqcodec" in coders:
        report["eqcodec_identity"] = coders["eqcodec"].identity()
    for name, pieces in corpora.items():
        log(f"evaluating {name}: {len(pieces)} pieces")
        result = evaluate(coders, pieces, range(1, 9))
        result.update(pieces=len(pieces), hours=sum(map(len, pieces)) / RATE / 3600)
        report["corpora"][name] = result
    if not args.skip_speed:
        oxf = [x for _, x in prepared_traces(PUBLIC / "ispaq" / EVAL_DAYS[0])]
        report["speed"] = speed(args, max(oxf, key=len))
    report["runtime_s"] = round(time.time() - started, 1)
    text = markdown(report)
    print(text)
    name = "results_subset" if args.subset else "results"
    (args.out_dir / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / f"{name}.md").write_text(text + "\n")
    log(f"wrote {args.out_dir / (name + '.json')} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
