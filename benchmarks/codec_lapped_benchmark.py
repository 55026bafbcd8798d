"""EQcodec v2 (shipped) vs v1 vs the block and lapped classical coders, k = 1..8, with Steim2 and the Gaussian reference.

    python benchmarks/codec_lapped_benchmark.py [--subset] [--iters 16] [--out-dir DIR]
        [--coders v2,block,lapped,eqcodec] [--corpora nc-events,OXF,KAPI,Rutford] [--beam-widths 1,4]
        [--offsets N] [--flip] [--max-vectors N] [--gain-step DB] [--reuse] [--reference results.json]

Coders: "v2" is the shipped default (codec.load_codec(), codec/pretrained: the lapped
coder fitted at full budget, see its model card); "eqcodec" is EQcodec v1
(codec/pretrained_v1); "block" and "lapped" are the classical coders fitted here.
Beside them, per corpus: the Gaussian rate-distortion reference at the same
rates (benchmarks/codec_rate_distortion.py: an ideal coder of a Gaussian
process with each trace's spectrum, median over traces) and Steim2's bits/s
(lossless, on the 40 Hz samples rounded to integers; median over traces).

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
    codec.preprocess.contiguous_pieces / trace_to_codec_input (gapped channels
    are split at the gaps), cut into `--piece-minutes` pieces;
  - Rutford ST09 / ST10 (1 h x 3 components, 100 Hz -> 40 Hz), same pieces.
Budget: by default the training frames are the non-overlapping seconds of the
training traces (about 231,000) and k-means runs 16 iterations per stage
(about 2 min per coder at 1 thread, 5 min in all); `--offsets 5 --max-vectors
1000000` also uses frames starting at 5 offsets within each second (a seeded
random 1 M of them, the same count for both coders; 7 min per coder, 15 min in all).
`--flip` adds every training frame's polarity-flipped copy to the pool the
`--max-vectors` are drawn from (as codec.baselines.training_shapes does for
the v1 baseline); k-means costs about 5 s per iteration per stage per 1.5 M
vectors at 1 thread, so 1.5 M vectors x 20 iterations x 8 stages is about 14 min per coder.
Selection: `--coders` fits / evaluates only the named coders (a classical coder
is fitted only if selected; `--reuse` loads it from --out-dir if its settings
match), `--corpora` evaluates only the corpora whose names contain one of the
given words (case-insensitive; "none": fit only).
Search: `--beam-widths 1,4` encodes with each residual-VQ beam width (lapped:
LappedGainShapeRVQ.encode(beam_width=B); EQcodec: EQCodec.encode(beam_width=B);
the block coder has greedy search only and is reported once), columns
"lapped b4" etc. `--reference RESULTS.json` (an earlier run, e.g. the
small-budget results.json) adds a table of the issue's targets: the margin of
each lapped column's SNR over max(EQcodec b1, the reference's lapped) + 1 dB.
Per coder and k: bits/s, median over traces / pieces of the SNR and of the
segmental SNR (codec.metrics), and the frame-edge ratio

    edge ratio = RMS of y[40 j] - y[40 j - 1] over 1-s frame boundaries j
                 / RMS of y[i] - y[i - 1] inside frames

of the decoded output (1 = no step at frame edges; the originals' own value is
given beside it), and the same ratio of the coding error x - y.

Speed: encode (8 codebooks) + decode (k = 8) of one channel-day of 40 Hz data
(US.OXF's longest piece tiled to 86,400 s) by each selected classical coder
(the lapped coder at every beam width), 1 thread, in a fresh process, with the
peak resident memory during coding.
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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

SHARED = REPO.parent / "shared" / "data"
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

    contiguous_pieces joins touching pieces; a channel with gaps is kept as its
    separate contiguous pieces (each prepared on its own). Unusable traces are skipped.
    """
    from codec.preprocess import InputError, contiguous_pieces, read_stream, trace_to_codec_input

    traces = contiguous_pieces(read_stream(path), str(path))  # gaps: each gap-free piece on its own
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
    """{name: pieces (40 Hz arrays)}; SOURCE_RATES gets the rate of the corpora recorded below 40 Hz."""
    import obspy

    from codec.data import load_traces, nc_events_split

    _, held_out = nc_events_split(NC_EVENTS)
    corpora = {"nc-events held-out": [x for _, x in load_traces(held_out)]}
    samples = int(piece_minutes * 60 * RATE)
    for name in EVAL_DAYS:
        pieces = [p for _, x in prepared_traces(PUBLIC / "ispaq" / name) for p in cut(x, samples, samples // 2)]
        if subset:
            pieces = pieces[:: max(1, len(pieces) // 24)]
        label = name.split("..")[0].split(".00")[0] + " day " + name.split(".")[-2]
        corpora[label] = pieces
        rate = min(tr.stats.sampling_rate for tr in obspy.read(str(PUBLIC / "ispaq" / name), headonly=True))
        if rate < RATE:
            SOURCE_RATES[label] = float(rate)
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


#: Corpora recorded below 40 Hz: their source rate, given to every coder's decoder (EncodedWaveform.source_rate:
#: nothing decoded above the source's Nyquist).
SOURCE_RATES: dict[str, float] = {}

CLASSICAL = ("block", "lapped")
CODER_FILES = {"block": "block_gain_shape_rvq.safetensors", "lapped": "lapped_gain_shape_rvq.safetensors"}


def fit_settings(args) -> dict:
    settings = {"num_codebooks": 8, "codebook_size": args.codebook_size, "iters": args.iters, "seed": 0,
                "broadband_hours": args.broadband_hours, "subset": args.subset, "max_vectors": args.max_vectors,
                "offsets": args.offsets}
    # only recorded when not the defaults, so coders fitted before these options existed still match
    if args.flip:
        settings["flip"] = True
    if args.gain_step != 0.75:
        settings["gain_step_db"] = args.gain_step
    return settings


def reusable_coders(args, names) -> dict:
    """The selected classical coders in --out-dir fitted with this run's settings (with --reuse)."""
    from codec.baselines import GainShapeRVQ
    from codec.lapped import LappedGainShapeRVQ

    found = {}
    for name in names:
        path = args.out_dir / CODER_FILES[name]
        if args.reuse and path.is_file():
            coder = (GainShapeRVQ if name == "block" else LappedGainShapeRVQ).load(path)
            if coder.fit_info.get("settings") == fit_settings(args):
                log(f"reusing the fitted {name} coder {path}")
                found[name] = coder
    return found


def fit_coders(traces, args, description: dict, names=CLASSICAL) -> dict:
    """Fit the named classical coders on the same traces, vectors per second and k-means budget: {name: coder}."""
    import torch

    from codec.baselines import GainShapeRVQ
    from codec.lapped import GainQuantizer, LappedGainShapeRVQ, fit_residual_codebooks

    settings = fit_settings(args)
    paths = {name: args.out_dir / CODER_FILES[name] for name in names}
    quantizer = GainQuantizer(step_db=args.gain_step)
    # Frames at `offsets` evenly spaced starting samples (1: the non-overlapping frames of each trace);
    # both coders see the same shifted copies of the same traces, one vector per shift per second.
    shifts = sorted({round(i * FRAME / args.offsets) for i in range(args.offsets)})
    vectors = {}
    for name in names:
        start = time.time()
        if name == "block":
            vectors[name] = torch.cat([block_vectors([x[s:] for x in traces]) for s in shifts])
        else:
            vectors[name] = torch.cat([LappedGainShapeRVQ.training_vectors([x[s:] for x in traces], quantizer)
                                       for s in shifts])
        log(f"{name}: {len(vectors[name])} training frames at {len(shifts)} offsets in {time.time() - start:.0f} s")
    pool = min(len(v) for v in vectors.values()) * (2 if args.flip else 1)  # --flip: each frame and its negative
    count = min(pool, args.max_vectors) if args.max_vectors else pool
    coders = {}
    for name, v in vectors.items():
        picks = torch.randperm(len(v) * (2 if args.flip else 1), generator=torch.Generator().manual_seed(0))[:count]
        chosen = v[picks % len(v)]
        if args.flip:
            flip = picks >= len(v)
            chosen[flip] = -chosen[flip]
        log(f"{name}: fitting 8 x {args.codebook_size} on {count} of {len(v)} frames"
            f"{' (x2 polarities)' if args.flip else ''}, {args.iters} iterations")
        start = time.time()
        books, stage_snr = fit_residual_codebooks(chosen.contiguous(), 8, args.codebook_size, args.iters, seed=0,
                                                  log=log)
        del chosen
        info = {"settings": settings, "training_vectors": count, "training_data": description,
                "training_shape_snr_db": [round(s, 3) for s in stage_snr],
                "fit_seconds": round(time.time() - start, 1)}
        coders[name] = (GainShapeRVQ(books, info) if name == "block"
                        else LappedGainShapeRVQ(books, quantizer, info)).eval()
        coders[name].save(paths[name])
        log(f"{name}: fitted in {time.time() - start:.0f} s -> {paths[name]}")
    return coders


# ---------------------------------------------------------------------- evaluation
def evaluate(coders: dict, traces: list[np.ndarray], levels, source_rate: float | None = None) -> dict:
    """Per coder and k: median SNR, median segmental SNR, median frame-edge ratio of the output and of the error.

    coders: {label: (coder, beam width)}; width 1 calls encode(x) (greedy search). source_rate: the traces'
    rate before resampling to 40 Hz, told to every decoder (None: 40 Hz or more).
    """
    from benchmarks.codec_rate_distortion import trace_bounds
    from codec.baselines import steim2_bits_per_second, steim2_integers
    from codec.metrics import frame_edge_ratio
    from codec.metrics import segmental_snr_db, snr_db

    rates = 0.25 * np.asarray(list(levels), dtype=np.float64)  # 10 k bits/s on 40 samples/s
    result = {"original_edge_ratio": float(np.nanmedian([frame_edge_ratio(x) for x in traces])),
              "gaussian_rd_snr_db": np.median([trace_bounds(x, rates) for x in traces], axis=0).tolist(),
              "steim2_bits_per_second": float(np.median([steim2_bits_per_second(steim2_integers(x))
                                                         for x in traces])),
              "coders": {}}
    for name, (coder, beam) in coders.items():
        start = time.time()
        per_k = {k: [] for k in levels}
        for x in traces:
            encoded = coder.encode(x) if beam == 1 else coder.encode(x, beam_width=beam)
            encoded.source_rate = source_rate
            for k in levels:
                y = coder.decode(encoded, k)[0].cpu().numpy()
                per_k[k].append((snr_db(x, y), segmental_snr_db(x, y), frame_edge_ratio(y), frame_edge_ratio(x - y)))
        rows = []
        for k in levels:
            a = np.array(per_k[k], dtype=np.float64)
            rows.append({"k": k, "bits_per_second": coder_bits(coder)[k - 1],
                         "snr_db": float(np.nanmedian(a[:, 0])), "segsnr_db": float(np.nanmedian(a[:, 1])),
                         "edge_ratio": float(np.nanmedian(a[:, 2])), "error_edge_ratio": float(np.nanmedian(a[:, 3]))})
        result["coders"][name] = {"rows": rows, "beam_width": beam, "seconds": round(time.time() - start, 1)}
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
    if args.worker == "v2":
        from codec import load_codec

        coder = load_codec()
    elif args.worker == "lapped":
        from codec.lapped import LappedGainShapeRVQ

        coder = LappedGainShapeRVQ.load(args.out_dir / CODER_FILES["lapped"])
    else:
        from codec.baselines import GainShapeRVQ

        coder = GainShapeRVQ.load(args.out_dir / CODER_FILES["block"])
    beam = args.worker_beam
    encode = (lambda x: coder.encode(x)) if beam == 1 else (lambda x: coder.encode(x, beam_width=beam))
    samples = np.resize(np.load(args.tile), int(86400 * RATE))
    coder.decode(encode(samples[:24000]), 8)  # warm-up
    before = memory_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # restart VmHWM from the current RSS
    start = time.perf_counter()
    encoded = encode(samples)
    mid = time.perf_counter()
    coder.decode(encoded, 8)
    stop = time.perf_counter()
    print(json.dumps({"coder": args.worker, "beam_width": beam, "threads": 1, "seconds_of_data": 86400,
                      "encode_s": mid - start, "decode_s": stop - mid, "total_s": stop - start,
                      "realtime_factor": 86400 / (stop - start), "rss_before_mb": before,
                      "peak_rss_mb": memory_mb("VmHWM"), "growth_mb": memory_mb("VmHWM") - before,
                      "input_mb": samples.nbytes / 2**20}))
    return 0


def speed(args, tile: np.ndarray, names, widths) -> list[dict]:
    runs = []
    jobs = [(name, beam) for name in names for beam in (widths if name in ("lapped", "v2") else [1])]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tile.npy"
        np.save(path, tile)
        for coder, beam in jobs:
            command = [sys.executable, __file__, "--worker", coder, "--worker-beam", str(beam), "--tile", str(path),
                       "--out-dir", str(args.out_dir)]
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
            if done.returncode != 0:
                raise RuntimeError(f"speed worker failed:\n{done.stderr}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            log(f"speed {coder} beam {beam}: {runs[-1]['total_s']:.2f} s per channel-day")
    return runs


# ---------------------------------------------------------------------- report
def display(label: str) -> str:
    return label.replace("eqcodec", "EQcodec v1").replace("v2", "EQcodec v2")


def target_rows(report: dict, corpus: str, result: dict) -> list[str]:
    """Margins (dB) of each lapped column's SNR over max(EQcodec b1, the reference run's lapped) + 1 dB, per k."""
    reference = report.get("reference", {}).get("corpora", {}).get(corpus)
    v1 = result["coders"].get("eqcodec b1", result["coders"].get("eqcodec"))
    classical = result["coders"].get("lapped b1", result["coders"].get("lapped"))
    source = "lapped classical coder of this run"
    if classical is None and reference is not None and "lapped" in reference["coders"]:
        classical, source = reference["coders"]["lapped"], f"small-budget lapped [{report['reference']['path']}]"
    if classical is None or v1 is None:
        return []
    floor = [max(a["snr_db"], b["snr_db"]) + 1 for a, b in zip(v1["rows"], classical["rows"])]
    labels = ([c for c in result["coders"] if c.startswith("v2")]
              or [c for c in result["coders"] if c.startswith("lapped")])
    lines = [f"Target (broadband): SNR >= max(EQcodec v1 b1, {source}) "
             "+ 1 dB; margin = SNR - target (dB, >= 0: met). nc-events target: margin over EQcodec v1 b1 (SNR / segSNR).",
             "", "| k | target | " + " | ".join(f"margin {c}" for c in labels)
             + " | " + " | ".join(f"vs v1 SNR {c}" for c in labels)
             + " | " + " | ".join(f"vs v1 segSNR {c}" for c in labels) + " |",
             "|" + "---|" * (2 + 3 * len(labels))]
    for i, row in enumerate(v1["rows"]):
        cells = [str(row["k"]), f"{floor[i]:.2f}"]
        cells += [f"{result['coders'][c]['rows'][i]['snr_db'] - floor[i]:+.2f}" for c in labels]
        cells += [f"{result['coders'][c]['rows'][i]['snr_db'] - row['snr_db']:+.2f}" for c in labels]
        cells += [f"{result['coders'][c]['rows'][i]['segsnr_db'] - row['segsnr_db']:+.2f}" for c in labels]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(report: dict) -> str:
    lines = []
    for corpus, result in report["corpora"].items():
        coders = list(result["coders"])
        lines += [f"### {corpus}: {result['pieces']} traces/pieces, {result['hours']:.1f} h "
                  f"(originals' frame-edge ratio {result['original_edge_ratio']:.3f})", "",
                  "| k | bits/s | " + " | ".join(f"SNR {display(c)}" for c in coders) + " | "
                  + " | ".join(f"segSNR {display(c)}" for c in coders) + " | "
                  + " | ".join(f"edge {display(c)}" for c in coders) + " | "
                  + " | ".join(f"err-edge {display(c)}" for c in coders) + " |",
                  "|" + "---|" * (2 + 4 * len(coders))]
        for i, row in enumerate(result["coders"][coders[0]]["rows"]):
            cells = [str(row["k"]), f"{row['bits_per_second']:g}"]
            for metric, fmt in (("snr_db", "{:.2f}"), ("segsnr_db", "{:.2f}"), ("edge_ratio", "{:.3f}"),
                                ("error_edge_ratio", "{:.2f}")):
                cells += [fmt.format(result["coders"][c]["rows"][i][metric]) for c in coders]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        gaussian = ", ".join(f"{v:.2f}" for v in result["gaussian_rd_snr_db"])
        lines += [f"Gaussian rate-distortion reference SNR at k = 1..8 (dB, median): {gaussian}. "
                  f"Steim2 (lossless, 40 Hz integers): {result['steim2_bits_per_second']:.0f} bits/s (median).", ""]
        lines += target_rows(report, corpus, result)
    lines += ["SNR, segSNR: median over traces/pieces (dB, codec.metrics). edge: frame-edge ratio of the decoded "
              "output (RMS of differences across 1-s frame boundaries / inside frames; compare with the "
              "originals'); err-edge: the same ratio of the coding error x - y. All coders: 10 k + 8 bits/s.", ""]
    for run in report.get("speed", []):
        lines.append(f"speed ({run['coder']}, beam width {run.get('beam_width', 1)}, 1 thread, one channel-day at "
                     f"40 Hz): encode {run['encode_s']:.2f} s + "
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
    parser.add_argument("--flip", action="store_true",
                        help="draw the training frames from every frame and its polarity-flipped copy")
    parser.add_argument("--gain-step", type=float, default=0.75,
                        help="lapped coder's gain step in dB (default: %(default)s; headroom stays +40 dB)")
    parser.add_argument("--broadband-hours", type=int, default=4, help="1-h pieces per training day (default: 4)")
    parser.add_argument("--piece-minutes", type=float, default=10.0)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--reuse", action="store_true", help="reuse coders fitted with the same settings")
    parser.add_argument("--skip-eqcodec", action="store_true", help="same as leaving eqcodec out of --coders")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--coders", default="v2,block,lapped,eqcodec",
                        help="comma-separated coders to fit / evaluate (default: %(default)s)")
    parser.add_argument("--corpora", default="",
                        help="comma-separated words: evaluate only corpora whose name contains one "
                             "(case-insensitive; e.g. nc-events,KAPI; 'none': fit only; default: all)")
    parser.add_argument("--beam-widths", default="1",
                        help="comma-separated residual-VQ beam widths for lapped and EQcodec (default: 1)")
    parser.add_argument("--reference", type=Path,
                        help="results.json of an earlier run whose lapped column sets the targets table")
    parser.add_argument("--results-name", help="name of the results files (default: results / results_subset)")
    parser.add_argument("--worker", choices=["v2", "lapped", "block"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-beam", type=int, default=1, help=argparse.SUPPRESS)
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
    selected = [c.strip() for c in args.coders.split(",") if c.strip()]
    unknown = set(selected) - {"v2", "block", "lapped", "eqcodec"}
    if unknown or not selected:
        raise SystemExit(f"--coders: unknown coder(s) {sorted(unknown)} (choose from v2, block, lapped, eqcodec)")
    if args.skip_eqcodec:
        selected = [c for c in selected if c != "eqcodec"]
    widths = sorted({int(w) for w in args.beam_widths.split(",") if w.strip()})
    if not widths or widths[0] < 1:
        raise SystemExit("--beam-widths: positive integers, e.g. 1,4")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    classical = [c for c in CLASSICAL if c in selected]
    fitted = reusable_coders(args, classical)
    missing = [c for c in classical if c not in fitted]
    if missing:
        traces, description = training_traces(args.subset, args.broadband_hours)
        log(f"training data: {description}")
        fitted.update(fit_coders(traces, args, description, missing))
        del traces
    coders = {}  # label -> (coder, beam width)
    tagged = len(widths) > 1 or widths != [1]
    eqcodec = None
    for name in selected:
        if name == "eqcodec":
            from codec import EQCodec

            coder = eqcodec = EQCodec.from_pretrained()  # v1: codec/pretrained_v1
        elif name == "v2":
            from codec import load_codec

            coder = load_codec()
        else:
            coder = fitted[name]
        for beam in (widths if name != "block" else [1]):
            coders[f"{name} b{beam}" if tagged and name != "block" else name] = (coder, beam)
    corpora = evaluation_corpora(args.piece_minutes, args.subset)
    words = [w.strip().lower() for w in args.corpora.split(",") if w.strip()]
    if words:
        corpora = {name: pieces for name, pieces in corpora.items() if any(w in name.lower() for w in words)}
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "fit": {name: c.fit_info for name, c in fitted.items()}, "beam_widths": widths, "corpora": {}}
    if "lapped" in fitted:
        q = fitted["lapped"].quantizer
        report["gain_quantizer"] = {"step_db": q.step_db, "headroom_db": q.headroom_db,
                                    "reference_level": q.reference_level, "floor_db": q.floor_db}
    if eqcodec is not None:
        report["eqcodec_identity"] = eqcodec.identity()
    if args.reference is not None:
        report["reference"] = {"path": str(args.reference), **json.loads(args.reference.read_text())}
    for name, pieces in corpora.items():
        log(f"evaluating {name}: {len(pieces)} pieces")
        result = evaluate(coders, pieces, range(1, 9), SOURCE_RATES.get(name))
        result.update(pieces=len(pieces), hours=sum(map(len, pieces)) / RATE / 3600,
                      source_rate_hz=SOURCE_RATES.get(name))
        report["corpora"][name] = result
    timed = classical + (["v2"] if "v2" in selected else [])
    if not args.skip_speed and timed:
        oxf = [x for _, x in prepared_traces(PUBLIC / "ispaq" / EVAL_DAYS[0])]
        report["speed"] = speed(args, max(oxf, key=len), timed, widths)
    report["runtime_s"] = round(time.time() - started, 1)
    text = markdown(report)
    print(text)
    if "reference" in report:  # keep only what the targets table used, not a copy of the whole earlier run
        report["reference"] = {"path": report["reference"]["path"],
                               "lapped": {c: r["coders"]["lapped"]["rows"]
                                          for c, r in report["reference"]["corpora"].items()
                                          if "lapped" in r["coders"]}}
    name = args.results_name or ("results_subset" if args.subset else "results")
    (args.out_dir / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / f"{name}.md").write_text(text + "\n")
    log(f"wrote {args.out_dir / (name + '.json')} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
