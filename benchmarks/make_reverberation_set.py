"""Write the synthetic deconvolution benchmark (tasks.synthetic) to miniSEED: constant and drifting sets.

    python benchmarks/make_reverberation_set.py --out reverb --traces 200
    python benchmarks/make_reverberation_set.py --out reverb-train --traces 5000 --duration 120 \\
        --seed 100 --wavelets ricker,minimum-phase,berlage        # 10^4 fine-tuning windows

creates OUT/constant/ and OUT/drifting/, each with waveforms/ (observed
traces, one miniSEED file per trace), truth/ (primaries PR, reverberation RV,
noise NS) and manifest.json (per-trace parameters, and the recipe). Traces
are drawn and written one at a time (tasks.synthetic.iter_set), so 10^4 of
them take the memory of one; tau 2-8 s, r 0.3-0.7, wavelets as given. The
drifting set uses seed + 1, as `eqcodec evaluate deconvolution --synthetic`
does (its test sets use seeds 0 and 1 with Ricker wavelets, its fine-tuning
traces 100 and 101 with every wavelet family; one 120-s trace is one
tokenized window). That command also fine-tunes and scores the LM in one go;
to do the steps by hand:

    eqcodec tokenize reverb-train/constant/waveforms reverb-train/drifting/waveforms --out reverb-corpus
    eqcodec train-lm --data reverb-corpus --init <LM> --out reverb-lm
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import synthetic  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to create (constant/ and drifting/ inside)")
    parser.add_argument("--traces", type=int, default=200, help="traces per set (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds per trace (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the constant set; drifting: seed + 1 "
                                                            "(default: %(default)s)")
    parser.add_argument("--kind", choices=["backus", "simple"], default="backus",
                        help="water-layer operator (default: %(default)s)")
    parser.add_argument("--wavelets", default="ricker", type=lambda s: tuple(w for w in s.split(",") if w),
                        help=f"comma-separated families drawn from, of {','.join(synthetic.WAVELETS)} "
                             "(default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sets")
    args = parser.parse_args(argv)
    unknown = set(args.wavelets) - set(synthetic.WAVELETS)
    if unknown or not args.wavelets:
        parser.error(f"--wavelets: unknown {', '.join(sorted(unknown)) or 'empty list'}; "
                     f"choose from {', '.join(synthetic.WAVELETS)}")
    if args.traces < 1 or not args.duration > 0:
        parser.error("--traces and --duration must be positive")

    for offset, name in enumerate(("constant", "drifting")):
        started = time.monotonic()
        recipe = {"n_traces": args.traces, "seed": args.seed + offset, "drifting": name == "drifting",
                  "duration_s": args.duration, "kind": args.kind, "wavelets": list(args.wavelets)}
        traces = synthetic.iter_set(args.traces, args.seed + offset, drifting=name == "drifting",
                                    duration_s=args.duration, kind=args.kind, wavelets=args.wavelets)
        manifest = synthetic.write_set(traces, Path(args.out) / name, overwrite=args.overwrite, recipe=recipe)
        print(f"wrote {args.traces} traces x {args.duration:g} s in {time.monotonic() - started:.0f} s: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
