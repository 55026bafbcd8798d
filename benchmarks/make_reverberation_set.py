"""Write the synthetic deconvolution benchmark (tasks.synthetic) to miniSEED: constant and drifting sets.

    python benchmarks/make_reverberation_set.py --out reverb --traces 200

creates reverb/constant/ and reverb/drifting/, each with waveforms/ (observed
traces, one miniSEED file per trace), truth/ (primaries PR, reverberation RV,
noise NS) and manifest.json (per-trace parameters). The drifting set uses
seed + 1, as `eqcodec evaluate deconvolution --synthetic` does (its test sets
use seeds 0 and 1, its fine-tuning traces 100 and 101). That command also
fine-tunes and scores the LM in one go; to do the steps by hand:

    eqcodec tokenize reverb/constant/waveforms --out reverb-corpus
    eqcodec train-lm --data reverb-corpus --init <LM> --out reverb-lm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import synthetic  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to create (constant/ and drifting/ inside)")
    parser.add_argument("--traces", type=int, default=200, help="traces per set (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds per trace (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=["backus", "simple"], default="backus", help="water-layer operator")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sets")
    args = parser.parse_args(argv)

    for offset, name in enumerate(("constant", "drifting")):
        traces = synthetic.make_set(args.traces, args.seed + offset, drifting=name == "drifting",
                                    duration_s=args.duration, kind=args.kind)
        manifest = synthetic.write_set(traces, Path(args.out) / name, overwrite=args.overwrite)
        print(f"wrote {len(traces)} traces x {args.duration:g} s: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
