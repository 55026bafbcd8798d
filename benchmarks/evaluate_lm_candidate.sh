#!/bin/bash
# Evaluate a finished base-LM run as a candidate for lm/pretrained, as the card's figures were made:
#
#   bash benchmarks/evaluate_lm_candidate.sh runs/lm-base-v2-continue3 [CANDIDATE_DIR]
#
# 1. RUN/final converted to float16, with lm/pretrained's sampling settings, in CANDIDATE_DIR
#    (default runs/lm-candidate);
# 2. its sampling settings chosen on training-station contexts (benchmarks/choose_sampling.py --write,
#    one-standard-error rule), ~12 min;
# 3. the forecast benchmark on the held-out stations (benchmarks/forecast_benchmark.py: writes
#    benchmarks/results/forecast_benchmark*.json), ~2 min;
# 4. the onset benchmark (eqcodec evaluate deconvolution --onsets) into runs/eval-onsets-candidate, ~2 min.
# Logs go to runs/logs/candidate-*.log. Shipping is a copy of CANDIDATE_DIR's files into lm/pretrained and
# an update of its card; this script does not do it.
set -euo pipefail
run=${1:?usage: evaluate_lm_candidate.sh RUN_DIR [CANDIDATE_DIR]}
candidate=${2:-runs/lm-candidate}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
python=${PYTHON:-.venv/bin/python}
[ -f "$run/final/model.safetensors" ] || { echo "$run/final: no finished run there" >&2; exit 1; }
mkdir -p runs/logs
rm -rf "$candidate.tmp"
"$python" - "$run/final" "$candidate.tmp" <<'PY'
import sys

import torch

from lm.model import load_lm

lm = load_lm(sys.argv[1])
lm.generation_config = load_lm("lm/pretrained").generation_config
lm.to(torch.float16).save_pretrained(sys.argv[2])
PY
rm -rf "$candidate" && mv "$candidate.tmp" "$candidate"
echo "$(date -u +%T) candidate in $candidate; choosing sampling settings"
"$python" benchmarks/choose_sampling.py --lm "$candidate" --write --temperatures 0.9,1.0 \
    --gain-temperatures 0.75,1.0 --frame-grids 1,4 --samples 32 > runs/logs/candidate-sampling.log 2>&1
grep "^chosen" runs/logs/candidate-sampling.log
echo "$(date -u +%T) forecast benchmark"
"$python" benchmarks/forecast_benchmark.py --max-cases 40 --cases-per-trace 4 --lm "$candidate" \
    > runs/logs/candidate-forecast.log 2>&1
echo "$(date -u +%T) onsets"
.venv/bin/eqcodec evaluate deconvolution --nc-events ../shared/data/nc-events --methods none --onsets \
    --lm "$candidate" --out runs/eval-onsets-candidate > runs/logs/candidate-onsets.log 2>&1
echo "$(date -u +%T) done: runs/logs/candidate-*.log, benchmarks/results/forecast_benchmark*.json, runs/eval-onsets-candidate"
