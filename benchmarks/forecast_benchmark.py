"""Forecasting benchmark on the held-out nc-events split: a thin wrapper of `eqcodec evaluate forecast`.

The benchmark itself lives in tasks/evaluate.py (cases from picks.csv: pre-event
noise, 2 s after P, 5 s after S; horizons 1/5/10/30 s; zero, persistence,
AR(p), noise- and AR-ensembles and the token LM). This script runs it on
the held-out split with the options given, writes the tables, JSON and plot
to runs/benchmarks/forecast/ and copies the JSON to benchmarks/results/:

    python benchmarks/forecast_benchmark.py --max-cases 40                 # results/forecast_benchmark.json
    python benchmarks/forecast_benchmark.py --methods zero,persistence,ar  # any `evaluate forecast` option

equals `eqcodec evaluate forecast --nc-events ../shared/data/nc-events --out runs/benchmarks/forecast ...`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli import main as eqcodec  # noqa: E402

NC_EVENTS = ROOT.parent / "shared/data/nc-events"
OUT = ROOT / "runs/benchmarks/forecast"
RESULT = ROOT / "benchmarks/results/forecast_benchmark.json"

if __name__ == "__main__":
    code = eqcodec(["evaluate", "forecast", "--nc-events", str(NC_EVENTS), "--out", str(OUT), *sys.argv[1:]])
    if code == 0:
        shutil.copyfile(OUT / "forecast.json", RESULT)
        print(f"copied to {RESULT}")
    sys.exit(code)
