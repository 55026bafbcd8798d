"""Turn waveform files or an SDS archive into a token corpus (a Hugging Face dataset folder).

Each waveform is merged per channel without filling gaps (a gap ends a
segment), detrended, resampled to 40 Hz, cut into windows and encoded by
EQcodec; one row per window (see tokenized_data.schema). Problems with single
files are reported and the rest is tokenized; the exit status is 1 if any file
had a problem, unless --allow-failures. An interrupted run continues where it
stopped when the same command is run again.
"""

from __future__ import annotations

import os
import re
import sys

from codec.errors import UsageError
from tokenized_data.augment import Augmentation
from tokenized_data.prepare import Preprocessing
from tokenized_data.writer import tokenize

from .types import band_hz, positive_int


def available_cpus() -> int:
    """CPUs this process may use (the default number of worker processes)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


EXAMPLES = """examples:
  eqcodec tokenize archive/ --out corpus
  eqcodec tokenize 'data/**/*.mseed' events/*.SAC --out corpus --num-proc 4
  eqcodec tokenize --sds /data/sds --start 2024-01-01 --end 2024-02-01 --seed-id 'CH.*..HH?' --out corpus
  eqcodec tokenize archive/ --out corpus-part0 --shard 0/2    # machine 0 of 2; the other runs --shard 1/2
"""


def build_parser(parser) -> None:
    files = parser.add_argument_group("input/output")
    files.add_argument("inputs", nargs="*", metavar="INPUT",
                       help="waveform files, directories (searched recursively) or glob patterns "
                            "('data/**/*.mseed'): any format obspy reads (miniSEED, SAC, GSE2, SEG-Y, ...)")
    files.add_argument("--out", required=True, metavar="DIR", help="corpus folder to create")
    files.add_argument("--seed-id", default="*", metavar="PATTERN",
                       help="only channels whose NET.STA.LOC.CHA matches this fnmatch pattern, "
                            "e.g. '*.HH?' (default: %(default)s, all)")
    files.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    sds = parser.add_argument_group("SDS archive (instead of INPUT)")
    sds.add_argument("--sds", metavar="ROOT", help="root of a local SDS archive (YEAR/NET/STA/CHA.D/...)")
    sds.add_argument("--start", metavar="T0", help="first time to read (UTC, e.g. 2024-01-01)")
    sds.add_argument("--end", metavar="T1", help="end of the time to read (UTC, exclusive)")
    windows = parser.add_argument_group("windows")
    windows.add_argument("--window-seconds", type=positive_int, default=120, metavar="S",
                         help="window length in s = frames; a local/regional event with its coda fits in one "
                              "window, and it is a convenient LM context (default: %(default)s)")
    windows.add_argument("--hop-seconds", type=positive_int, default=None, metavar="S",
                         help="start-to-start distance of windows in s (default: the window length, so "
                              "windows tile the data and no token appears twice)")
    windows.add_argument("--min-window-seconds", type=positive_int, default=10, metavar="S",
                         help="keep a last, shorter window of a segment if it has at least this many "
                              "seconds: short event files and segment ends are kept, fragments between "
                              "gaps are not (default: %(default)s)")
    windows.add_argument("--allow-clipped", action="store_true",
                         help="tokenize clipped windows too (default: skip and count them)")
    windows.add_argument("--bandpass", type=band_hz, default=None, metavar="LOW-HIGH",
                         help="band-pass every trace (zero-phase 4-pole Butterworth, at 40 Hz) before encoding, "
                              "e.g. 1-8: a corpus for `eqcodec index` on quiet broadband stations, whose 1-8 Hz "
                              "band can lie under the codec's error otherwise (docs/search.md); not for LM "
                              "corpora (default: none)")
    augment = parser.add_argument_group("augmentation (LM training corpora; tokenized_data.augment)")
    augment.add_argument("--augment-copies", type=positive_int, default=1, metavar="R",
                         help="also write R - 1 seeded augmented copies of every segment (band-pass, time "
                              "stretch, polarity, amplitude, noise); the augmentation column says what each "
                              "got (default: %(default)s, the recordings only)")
    augment.add_argument("--augment-seed", type=int, default=0, metavar="S", help="seed of the copies' draws (default: %(default)s)")
    augment.add_argument("--noise-files", nargs="+", default=[], metavar="FILE",
                         help="recordings of real noise to add under half of the copies (default: none)")
    model = parser.add_argument_group("codec")
    model.add_argument("--codec", default=None, metavar="PATH",
                       help="codec checkpoint folder (default: the shipped EQcodec)")
    running = parser.add_argument_group("running")
    running.add_argument("--num-proc", type=positive_int, default=available_cpus(), metavar="N",
                         help="worker processes, one codec each (default: %(default)s, the CPUs available)")
    running.add_argument("--shard", default=None, metavar="I/N",
                         help="tokenize only part I of N (0 <= I < N) of the sorted inputs, e.g. one "
                              "machine of N; merge the parts with load_tokenized([...])")
    running.add_argument("--allow-failures", action="store_true",
                         help="exit 0 even if some files could not be (fully) tokenized")
    running.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args) -> int:
    if args.sds and args.inputs:
        raise UsageError("give INPUT files or --sds, not both")
    if not args.sds and not args.inputs:
        raise UsageError("give INPUT files, directories or patterns, or --sds ROOT --start T0 --end T1")
    if args.sds and not (args.start and args.end):
        raise UsageError("--sds needs --start and --end")
    shard = None
    if args.shard:
        match = re.fullmatch(r"(\d+)/(\d+)", args.shard)
        if not match or not int(match[1]) < int(match[2]):
            raise UsageError(f"--shard must be I/N with 0 <= I < N, got {args.shard!r}")
        shard = (int(match[1]), int(match[2]))
    prep = Preprocessing(window_seconds=args.window_seconds,
                         hop_seconds=args.hop_seconds or args.window_seconds,
                         min_window_seconds=args.min_window_seconds,
                         allow_clipped=args.allow_clipped, seed_id=args.seed_id, bandpass=args.bandpass,
                         augmentation=Augmentation(copies=args.augment_copies, seed=args.augment_seed,
                                                   noise_files=tuple(args.noise_files)))
    sds = {"root": args.sds, "start": args.start, "end": args.end} if args.sds else None
    try:
        summary = tokenize(args.inputs, args.out, codec_path=args.codec, prep=prep, sds=sds,
                           num_proc=args.num_proc, shard=shard, overwrite=args.overwrite,
                           progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\nstopped: finished files are kept in {args.out}.partial; run the same command again "
              "to continue", file=sys.stderr)
        raise
    print(summary.format())
    if summary.corpus is None:
        print("eqcodec tokenize: error: no window could be tokenized; nothing was written", file=sys.stderr)
        return 1
    if summary.files_failed and not args.allow_failures:
        print(f"eqcodec tokenize: {summary.files_failed} file(s) had problems (listed above); the corpus holds "
              "the rest. Exit status 1; pass --allow-failures to exit 0.", file=sys.stderr)
        return 1
    return 0
