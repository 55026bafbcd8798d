"""Tokenization throughput and disk use on this machine.

    python benchmarks/tokenize_benchmark.py [DATA_DIR] [--num-proc N] [--codec PATH]

DATA_DIR defaults to /work/shared/data/nc-events. Prints two tables:

throughput, in channel-hours of input per second of wall time:
  obspy read + prepare   reading the files, merging, detrending and resampling
                         to 40 Hz (tokenized_data.prepare): the input limit
  codec encode           EQcodec encode of the prepared windows alone (1 thread)
  tokenize, 1 process    the whole `tokenize` run: the above plus Arrow shards,
  tokenize, N processes  assembly with save_to_disk and the dataset card

disk, in bytes per channel-hour of the same recordings:
  the token corpus (Arrow files; K = 8 int16 codes + 1 uint8 gain per second),
  the source written as miniSEED Steim2 (samples rounded to int32) and FLOAT32,
  and the information content of the tokens (10 K + 8 bits/s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cli.tokenize import available_cpus  # noqa: E402

DEFAULT_DATA = "/work/shared/data/nc-events"


def folder_bytes(folder: Path, suffix: str = "") -> int:
    return sum(p.stat().st_size for p in folder.rglob(f"*{suffix}") if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA, help=f"waveform folder (default {DEFAULT_DATA})")
    parser.add_argument("--num-proc", type=int, default=available_cpus())
    parser.add_argument("--codec", default=None, help="codec checkpoint (default: shipped)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)

    import obspy

    from codec import EQCodec
    from codec.preprocess import read_stream
    from tokenized_data import Preprocessing, load_tokenized, tokenize
    from tokenized_data.prepare import Report, prepare_stream, window_skip_reason, window_spans
    from tokenized_data.writer import ENCODE_BATCH, file_units, one_torch_thread

    units = file_units([args.data], failures := [])
    if not units:
        print(f"{args.data}: no waveform files ({failures[0].failures[0] if failures else ''})")
        return 1
    prep = Preprocessing()
    codec = EQCodec.from_pretrained(args.codec)

    # 1. obspy alone: read + prepare
    started = time.perf_counter()
    segments, input_seconds = [], 0.0
    for unit in units:
        report = Report(unit.source)
        try:
            segments += prepare_stream(read_stream(unit.path), prep, report)
        except Exception as err:  # the benchmark goes on; tokenize reports these
            print(f"skipped {unit.source}: {err}")
        input_seconds += report.input_seconds
    read_time = time.perf_counter() - started
    input_hours = input_seconds / 3600

    # 2. codec alone: encode the same windows, batched as tokenize does
    windows = [seg.samples[lo:hi] for seg in segments for (lo, hi) in window_spans(len(seg.samples), prep)
               if window_skip_reason(seg, (lo, hi), prep) is None]
    by_length: dict[int, list[np.ndarray]] = {}
    for window in windows:
        by_length.setdefault(len(window), []).append(window)
    started = time.perf_counter()
    with one_torch_thread():
        for group in by_length.values():
            for i in range(0, len(group), ENCODE_BATCH):
                codec.encode(np.stack(group[i:i + ENCODE_BATCH]))
    encode_time = time.perf_counter() - started
    window_hours = sum(len(w) for w in windows) / 40 / 3600

    # 3. end to end
    rows = [("obspy read + prepare (input limit)", read_time, input_hours),
            ("codec encode only (1 thread)", encode_time, window_hours)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus_dir = None
        for num_proc in sorted({1, args.num_proc}):
            out = tmp / f"corpus-{num_proc}"
            started = time.perf_counter()
            summary = tokenize([args.data], out, codec_path=args.codec, num_proc=num_proc, progress=False)
            rows.append((f"tokenize end to end, {num_proc} process{'es' if num_proc > 1 else ''}",
                         time.perf_counter() - started, summary.input_channel_hours))
            corpus_dir = out
        corpus = load_tokenized(corpus_dir)
        token_hours = corpus.metadata["counts"]["channel_hours"]
        arrow_bytes = folder_bytes(corpus_dir, ".arrow")
        all_bytes = folder_bytes(corpus_dir)

        # the same recordings as miniSEED: Steim2 (integer counts) and FLOAT32
        steim, floats = tmp / "steim2.mseed", tmp / "float32.mseed"
        raw = obspy.Stream()
        for unit in units:
            try:
                raw += read_stream(unit.path)
            except Exception:
                continue
        raw_hours = sum(tr.stats.npts / tr.stats.sampling_rate for tr in raw) / 3600
        as_int = raw.copy()
        for tr in as_int:
            tr.data = np.round(tr.data).astype(np.int32)
        as_int.write(str(steim), format="MSEED", encoding="STEIM2")
        as_float = raw.copy()
        for tr in as_float:
            tr.data = tr.data.astype(np.float32)
        as_float.write(str(floats), format="MSEED", encoding="FLOAT32")
        source_bytes = sum(Path(u.path).stat().st_size for u in units)
        steim_bytes, float_bytes = steim.stat().st_size, floats.stat().st_size

    rates = sorted({tr.stats.sampling_rate for tr in raw})
    print(f"\n{args.data}: {len(units)} files, {len(raw)} traces, {raw_hours:.3f} channel-hours "
          f"at {', '.join(f'{r:g}' for r in rates)} Hz; torch threads {torch.get_num_threads()}, "
          f"CPUs {available_cpus()}, codec {codec.identity()}\n")
    print(f"{'stage':<42} {'seconds':>9} {'channel-h':>10} {'channel-h/s':>12}")
    for name, seconds, hours in rows:
        print(f"{name:<42} {seconds:>9.2f} {hours:>10.3f} {hours / seconds:>12.3f}")
    K = corpus.num_codebooks
    print(f"\n{'storage':<42} {'bytes':>11} {'bytes/channel-h':>16} {'vs tokens':>10}")
    disk = [("token corpus: Arrow data files", arrow_bytes, token_hours),
            ("token corpus: whole folder (+ card, info)", all_bytes, token_hours),
            (f"token information, {10 * K + 8} bits/s (K={K})", (10 * K + 8) / 8 * 3600 * token_hours, token_hours),
            ("source files as given", source_bytes, raw_hours),
            ("source as miniSEED Steim2 (int32 counts)", steim_bytes, raw_hours),
            ("source as miniSEED FLOAT32", float_bytes, raw_hours)]
    per_hour_tokens = arrow_bytes / token_hours
    for name, size, hours in disk:
        print(f"{name:<42} {size:>11.0f} {size / hours:>16.0f} {size / hours / per_hour_tokens:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
