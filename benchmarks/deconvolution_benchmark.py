"""Predictive-deconvolution benchmark: a thin wrapper of `eqcodec evaluate deconvolution`.

The benchmark itself lives in tasks/evaluate.py. This script runs the seeded
synthetic reverberation benchmark, with the LM fine-tuned on separate
synthetic training traces by train-lm, and the held-out nc-events
recordings, writes tables, JSON, plots and the fine-tuned LM to
runs/benchmarks/deconvolution/ (git-ignored) and copies the JSON to
benchmarks/results/:

    python benchmarks/deconvolution_benchmark.py                   # results/deconvolution_benchmark.json
    python benchmarks/deconvolution_benchmark.py --train-steps 50  # any `evaluate deconvolution` option

equals `eqcodec evaluate deconvolution --synthetic --train-steps 150 --traces 50 --lm-traces 6
--nc-events ../shared/data/nc-events --out runs/benchmarks/deconvolution ...`.
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
            "--nc-events", str(NC_EVENTS)]

if __name__ == "__main__":
    code = eqcodec(["evaluate", "deconvolution", *DEFAULTS, "--out", str(OUT), *sys.argv[1:]])
    if code == 0:
        shutil.copyfile(OUT / "deconvolution.json", RESULT)
        print(f"copied to {RESULT}")
    sys.exit(code)
