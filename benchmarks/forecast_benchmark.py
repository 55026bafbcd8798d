"""Forecasting benchmark on held-out real data: a thin wrapper of `eqcodec evaluate forecast`, two corpora.

The benchmark itself lives in tasks/evaluate.py (horizons 1/5/10/30 s; zero,
persistence, AR(p), noise- and AR-ensembles and the token LM, all in one run
per corpus). This script runs it on

    events      the held-out nc-events split, cases from picks.csv: pre-event noise,
                2 s after P, 5 s after S
    continuous  the held-out stations of public-recordings (US.OXF, II.KAPI, Rutford
                ST09/ST10: codec.data.public_recordings_split), --cases-per-trace end
                points spread evenly over each gap-free trace

writes tables, JSON and plots to runs/benchmarks/forecast/<corpus>/ and copies each
JSON to benchmarks/results/forecast_benchmark[_continuous].json:

    python benchmarks/forecast_benchmark.py --max-cases 40                    # both corpora
    python benchmarks/forecast_benchmark.py --corpora continuous --cases-per-trace 4 --max-cases 60
    python benchmarks/forecast_benchmark.py --methods zero,persistence,ar      # any `evaluate forecast` option
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli import main as eqcodec  # noqa: E402

DATA = ROOT.parent / "shared/data"
OUT = ROOT / "runs/benchmarks/forecast"
RESULTS = {"events": ROOT / "benchmarks/results/forecast_benchmark.json",
           "continuous": ROOT / "benchmarks/results/forecast_benchmark_continuous.json"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default="events,continuous", help="events, continuous or both (default)")
    parser.add_argument("--cases-per-trace", default="4", help="continuous corpus: cases per trace (default: 4)")
    args, rest = parser.parse_known_args(argv)
    code = 0
    for corpus in [c.strip() for c in args.corpora.split(",") if c.strip()]:
        out = OUT / corpus
        if corpus == "events":
            command = ["evaluate", "forecast", "--nc-events", str(DATA / "nc-events"), "--out", str(out), *rest]
        elif corpus == "continuous":
            from codec.data import public_recordings_split

            _, held_out = public_recordings_split(DATA / "public-recordings")
            command = ["evaluate", "forecast", *map(str, held_out), "--cases-per-trace", args.cases_per_trace,
                       "--out", str(out), *rest]
        else:
            raise SystemExit(f"--corpora: unknown corpus {corpus!r} (events, continuous)")
        print(f"== {corpus}: eqcodec {' '.join(command[:2])} ...", flush=True)
        result = eqcodec(command)
        if result == 0:
            shutil.copyfile(out / "forecast.json", RESULTS[corpus])
            print(f"copied to {RESULTS[corpus]}")
        code = code or result
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
