"""Predictive-deconvolution benchmark: a thin wrapper of `eqcodec evaluate deconvolution`.

The benchmark itself lives in tasks/evaluate.py. This script runs the seeded
synthetic reverberation benchmark (Wiener, time-varying Wiener, the delayed
trace and the LM, each subtracted directly and/or adaptively), with the LM
fine-tuned by train-lm on separate synthetic training traces (5000 per kind
of 120 s, every wavelet family: 10^4 windows), the held-out nc-events
recordings (energy check on every trace) and, with --onsets, the LM's
surprisal against STA/LTA at the analyst P picks; it writes tables, JSON,
plots and the fine-tuned LM to runs/benchmarks/deconvolution/ (git-ignored)
and copies the JSON to benchmarks/results/:

    python benchmarks/deconvolution_benchmark.py                    # results/deconvolution_benchmark.json
    python benchmarks/deconvolution_benchmark.py --train-steps 50   # any `evaluate deconvolution` option
    python benchmarks/deconvolution_benchmark.py --methods wiener,delay --train-steps 0   # no LM deconvolution
                                                    # (the --onsets default still runs the LM for the surprisal)

equals `eqcodec evaluate deconvolution --synthetic --train-steps 150 --traces 50 --lm-traces 6
--onsets --nc-events ../shared/data/nc-events --out runs/benchmarks/deconvolution ...`. Without
../shared (a clone elsewhere), pass recordings and picks instead: `--nc-events` is only the default.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli import main as eqcodec  # noqa: E402

NC_EVENTS = ROOT.parent / "shared/data/nc-events"
OUT = ROOT / "runs/benchmarks/deconvolution"
RESULT = ROOT / "benchmarks/results/deconvolution_benchmark.json"
DEFAULTS = ["--synthetic", "--train-steps", "150", "--traces", "50", "--lm-traces", "6",
            *(["--nc-events", str(NC_EVENTS), "--onsets"] if NC_EVENTS.is_dir() else [])]

if __name__ == "__main__":
    code = eqcodec(["evaluate", "deconvolution", *DEFAULTS, "--out", str(OUT), *sys.argv[1:]])
    if code == 0:
        shutil.copyfile(OUT / "deconvolution.json", RESULT)
        print(f"copied to {RESULT}")
    sys.exit(code)
