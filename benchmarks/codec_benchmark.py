"""EQcodec against its classical baselines: quality per bit rate, speed and memory.

    python benchmarks/codec_benchmark.py [--data DIR] [--codec DIR] [--baseline-cache FILE] [--out FILE]

Quality (held-out split of nc-events, k = 1..8 codebooks): bits/s, median
per-trace SNR and mean segmental SNR (codec.metrics) of EQcodec and of the
gain-shape residual VQ baseline (codec.baselines), with EQcodec's margin over
it (target: >= 3 dB at every k on both), and the Steim2 lossless bit rate of
the same samples rounded to integer counts.

Speed and memory (2 threads): encode + decode (k = 8) of one channel-day at
40 Hz, a held-out trace tiled to 86,400 s; peak resident memory at 1, 6 and
24 h, each in a fresh subprocess, to show that memory is flat in trace length
beyond the input and output arrays.

The baseline is fitted once on EQcodec's training split (nc-events training
files + obspy's bundled recordings) and cached in --baseline-cache; a cache
fitted on other data or settings is refitted.
"""

from __future__ import annotations

import argparse
import hashlib
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

from codec.preprocess import SAMPLING_RATE  # noqa: E402

DEFAULT_DATA = "/work/shared/data/nc-events"
#: Committed (1.3 MB), so the benchmark does not refit for 70 min; refitted here if the split or settings change.
DEFAULT_CACHE = REPO / "benchmarks" / "baselines" / "gain_shape_rvq.safetensors"
DEFAULT_OUT = REPO / "runs" / "codec_benchmark.json"
TARGET_MARGIN_DB = 3.0
TARGET_REALTIME_FACTOR = 20_000
MEMORY_HOURS = (1, 6, 24)
SPEED_THREADS = 2
#: Baseline fit settings; changing one invalidates the cache.
BASELINE_FIT = {"num_codebooks": 8, "codebook_size": 1024, "iters": 20, "max_vectors": 1_500_000, "seed": 0}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- data
def training_data_description(train_files, obspy_files) -> dict:
    """What the baseline is fitted on, as stored with its codebooks (names, not contents)."""
    names = sorted(p.name for p in train_files) + ["--obspy--"] + sorted(str(p.name) for p in obspy_files)
    return {"training_data": "nc-events train split + obspy recordings + obspy.read() example",
            "training_files_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
            "training_files": len(train_files) + len(obspy_files) + 1}


def load_baseline(cache: Path, data: str):
    """The cached baseline if it was fitted on this training split with BASELINE_FIT, else fit and cache it."""
    import torch

    from codec.baselines import GainShapeRVQ
    from codec.data import load_traces, nc_events_split, obspy_recordings

    train_files, _ = nc_events_split(data)
    obspy_files = obspy_recordings()
    wanted = {**training_data_description(train_files, obspy_files), **BASELINE_FIT}
    if cache.is_file():
        baseline = GainShapeRVQ.load(cache)
        stale = {k: (baseline.fit_info.get(k), v) for k, v in wanted.items() if baseline.fit_info.get(k) != v}
        if not stale:
            log(f"baseline: loaded {cache}")
            return baseline
        log(f"baseline: {cache} was fitted with other settings {stale}; refitting")
    traces = [x for _, x in load_traces(train_files + obspy_files, include_obspy_example=True)]
    log(f"baseline: fitting on {len(traces)} traces ({sum(map(len, traces)) / SAMPLING_RATE / 3600:.2f} h), "
        "1 thread")
    torch.set_num_threads(1)  # leave the other core to whatever else runs
    start = time.time()
    baseline = GainShapeRVQ.fit(traces, **BASELINE_FIT, metadata=wanted, log=log)
    baseline.fit_info["fit_seconds"] = round(time.time() - start, 1)
    baseline.save(cache)
    log(f"baseline: fitted in {time.time() - start:.0f} s, saved to {cache}")
    return baseline


# ---------------------------------------------------------------------- quality
def scores(coder, traces: list[np.ndarray], levels) -> dict:
    """Per k: median per-trace SNR and mean segmental SNR (dB) of a coder with encode/decode(k)."""
    from codec.metrics import segmental_snr_db, snr_db

    encoded = [coder.encode(x) for x in traces]
    result = {}
    for k in levels:
        decoded = [coder.decode(e, k)[0].cpu().numpy() for e in encoded]
        result[k] = {"snr": float(np.median([snr_db(x, y) for x, y in zip(traces, decoded)])),
                     "segsnr": float(np.mean([segmental_snr_db(x, y) for x, y in zip(traces, decoded)]))}
    return result


def quality(codec, baseline, traces: list[np.ndarray]) -> list[dict]:
    """Per k: bits/s, median SNR and mean segmental SNR of both coders, and EQcodec's margins."""
    levels = range(1, codec.config.num_codebooks + 1)
    results = {"eqcodec": scores(codec, traces, levels), "baseline": scores(baseline, traces, levels)}
    rows = []
    if codec.config.bits_per_second != baseline.bits_per_second:
        raise ValueError(f"the coders spend different bits/s: EQcodec {codec.config.bits_per_second}, "
                         f"baseline {baseline.bits_per_second}")
    for k, bits in zip(levels, codec.config.bits_per_second):
        row = {"k": k, "bits_per_second": bits}
        for metric in ("snr", "segsnr"):
            for name, result in results.items():
                row[f"{name}_{metric}_db"] = result[k][metric]
            row[f"margin_{metric}_db"] = row[f"eqcodec_{metric}_db"] - row[f"baseline_{metric}_db"]
        row["target_met"] = min(row["margin_snr_db"], row["margin_segsnr_db"]) >= TARGET_MARGIN_DB
        rows.append(row)
    return rows


def steim2(traces: list[np.ndarray]) -> dict:
    """Steim2 bits/s of the held-out 40 Hz samples rounded to integers, in 4096-byte records.

    Per file: each trace its own file (a 90-s trace fills about one record, so
    padding of the last record weighs heavily). Continuous: all traces
    concatenated into one stream, what a continuous archive would cost.
    """
    from codec.baselines import steim2_bits_per_second, steim2_integers
    from codec.metrics import snr_db

    integers = [steim2_integers(x) for x in traces]
    seconds = np.array([len(q) / SAMPLING_RATE for q in integers])
    per_file = np.array([steim2_bits_per_second(q) for q in integers])
    return {"quantization": "40 Hz samples rounded to the nearest integer count (numpy.rint)",
            "rounding_snr_db_median": float(np.median([snr_db(x, q) for x, q in zip(traces, integers)])),
            "record_length": 4096,
            "per_file_bits_per_second": float((per_file * seconds).sum() / seconds.sum()),
            "per_file_bits_per_second_median": float(np.median(per_file)),
            "continuous_bits_per_second": steim2_bits_per_second(np.concatenate(integers))}


# ---------------------------------------------------------------------- speed and memory
def memory_status_mb(field: str) -> float:
    """A field of /proc/self/status in MB: VmRSS (resident now) or VmHWM (peak since reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Make VmHWM restart from the current RSS (Linux >= 4.0), so it measures coding alone,
    not the import of torch; ru_maxrss cannot be reset."""
    Path("/proc/self/clear_refs").write_text("5")


def speed_worker(args: argparse.Namespace) -> int:
    """In a fresh process: encode + decode `hours` of the tiled trace once; print one JSON line."""
    import torch

    torch.set_num_threads(SPEED_THREADS)
    if args.worker == "eqcodec":
        from codec import EQCodec

        coder = EQCodec.from_pretrained(args.codec)
    else:
        from codec.baselines import GainShapeRVQ

        coder = GainShapeRVQ.load(args.baseline_cache)
    samples = np.resize(np.load(args.tile), int(args.hours * 3600 * SAMPLING_RATE))  # repeats the trace
    coder.decode(coder.encode(samples[:24000]), 8)  # warm-up: first calls allocate and pick kernels
    rss_before = memory_status_mb("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    encoded = coder.encode(samples)
    encoded_at = time.perf_counter()
    decoded = coder.decode(encoded, 8)
    stop = time.perf_counter()
    seconds = len(samples) / SAMPLING_RATE
    print(json.dumps({
        "coder": args.worker, "hours": args.hours, "threads": SPEED_THREADS,
        "encode_s": encoded_at - start, "decode_s": stop - encoded_at, "total_s": stop - start,
        "realtime_factor": seconds / (stop - start),
        "rss_before_mb": rss_before, "peak_rss_mb": memory_status_mb("VmHWM"),
        "growth_mb": memory_status_mb("VmHWM") - rss_before,
        "input_output_mb": (samples.nbytes + decoded.numel() * decoded.element_size()
                            + encoded.codes.numel() * encoded.codes.element_size()) / 2**20,
    }))
    return 0


def speed_and_memory(args: argparse.Namespace, tile: np.ndarray) -> list[dict]:
    """Run speed_worker for each coder and length in its own subprocess."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tile_path = Path(tmp) / "tile.npy"
        np.save(tile_path, tile)
        for hours in MEMORY_HOURS:
            for coder in ("eqcodec", "baseline"):
                command = [sys.executable, __file__, "--worker", coder, "--hours", str(hours),
                           "--tile", str(tile_path), "--baseline-cache", str(args.baseline_cache)]
                if args.codec:
                    command += ["--codec", args.codec]
                log(f"speed/memory: {coder}, {hours} h")
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"speed worker failed ({' '.join(command)}):\n{done.stderr}")
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


# ---------------------------------------------------------------------- report
def markdown_tables(report: dict) -> str:
    lines = ["### Quality on the held-out split of nc-events "
             f"({report['held_out']['traces']} traces, {report['held_out']['files']} files)", "",
             "| k | bits/s | SNR EQcodec | SNR baseline | margin | segSNR EQcodec | segSNR baseline | margin | >= 3 dB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["quality"]:
        lines.append(f"| {r['k']} | {r['bits_per_second']:g} | {r['eqcodec_snr_db']:.2f} | {r['baseline_snr_db']:.2f} "
                     f"| {r['margin_snr_db']:+.2f} | {r['eqcodec_segsnr_db']:.2f} | {r['baseline_segsnr_db']:.2f} "
                     f"| {r['margin_segsnr_db']:+.2f} | {'yes' if r['target_met'] else 'no'} |")
    s = report["steim2"]
    lines += ["", "SNR: median over traces (dB); segSNR: mean over traces of the segmental SNR (dB). "
              "Baseline: gain-shape residual VQ (k-means codebooks, same 8-bit gain, same bits/s).", "",
              f"Steim2 lossless ({s['quantization']}; rounding SNR median {s['rounding_snr_db_median']:.1f} dB, "
              f"{s['record_length']}-byte records): {s['continuous_bits_per_second']:.0f} bits/s as one continuous "
              f"stream; {s['per_file_bits_per_second']:.0f} bits/s with each trace in its own file "
              f"(median {s['per_file_bits_per_second_median']:.0f}; mostly last-record padding).", ""]
    if report.get("speed"):
        speed = report["speed"]
        lines += [f"### Speed and memory ({speed['threads']} threads; input: {speed['input']})", "",
                  "| coder | hours | encode s | decode s | total s | x real time | RSS before MB | peak RSS MB "
                  "| growth MB | input+output arrays MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in speed["runs"]:
            lines.append(f"| {r['coder']} | {r['hours']:g} | {r['encode_s']:.2f} | {r['decode_s']:.2f} "
                         f"| {r['total_s']:.2f} | {r['realtime_factor']:,.0f} | {r['rss_before_mb']:.0f} "
                         f"| {r['peak_rss_mb']:.0f} | {r['growth_mb']:.0f} | {r['input_output_mb']:.0f} |")
        lines += ["", f"Target: one channel-day (24 h) >= {TARGET_REALTIME_FACTOR:,}x real time (< 4.3 s). "
                  "peak RSS: during encode + decode (VmHWM reset just before); "
                  "growth = peak minus the RSS just before (model and input loaded).",
                  *([f"Note: {speed['note']}"] if speed["note"] else []), ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="nc-events folder (default: %(default)s)")
    parser.add_argument("--codec", default=None, help="EQcodec checkpoint folder (default: the shipped codec/pretrained)")
    parser.add_argument("--baseline-cache", type=Path, default=DEFAULT_CACHE,
                        help="fitted baseline file, reused if fitted on the same data and settings (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default: %(default)s)")
    parser.add_argument("--speed-note", default="", help="printed under the speed table (e.g. what else ran)")
    parser.add_argument("--skip-speed", action="store_true", help="quality only (no speed/memory subprocesses)")
    # Internal: one speed/memory measurement in a fresh process.
    parser.add_argument("--worker", choices=["eqcodec", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--hours", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--tile", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # load_traces names skipped obspy files
    if args.worker:
        return speed_worker(args)

    import torch

    from codec import EQCodec
    from codec.data import load_traces, nc_events_split

    baseline = load_baseline(args.baseline_cache, args.data)
    torch.set_num_threads(1)
    eqcodec = EQCodec.from_pretrained(args.codec)
    _, held_out_files = nc_events_split(args.data)
    held_out = load_traces(held_out_files)
    traces = [x for _, x in held_out]
    log(f"quality: {len(traces)} held-out traces from {len(held_out_files)} files")
    report = {
        "codec": {"path": args.codec or "codec/pretrained (shipped)", "identity": eqcodec.identity()},
        "baseline": {"path": str(args.baseline_cache), "fit_info": baseline.fit_info},
        "held_out": {"files": len(held_out_files), "traces": len(traces),
                     "hours": sum(map(len, traces)) / SAMPLING_RATE / 3600},
        "quality": quality(eqcodec, baseline, traces),
        "steim2": steim2(traces),
    }
    if not args.skip_speed:
        # A vertical held-out trace (the first one), repeated to the lengths measured.
        label, tile = next(((lab, x) for lab, x in held_out if lab.endswith("Z")), held_out[0])
        report["speed"] = {"threads": SPEED_THREADS, "input": f"{label} ({len(tile) / SAMPLING_RATE:g} s) tiled",
                           "note": args.speed_note,
                           "runs": speed_and_memory(args, tile)}
    print(markdown_tables(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
