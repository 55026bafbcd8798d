#!/bin/bash
# Evaluate a finished base-LM run as a candidate for lm/pretrained, as the card's figures were made:
#
#   bash benchmarks/evaluate_lm_candidate.sh runs/lm-base-v2-continue3 [CANDIDATE_DIR]
#
# 1. RUN/final converted to float16, with lm/pretrained's sampling settings, in CANDIDATE_DIR
#    (default runs/lm-candidate);
# 2. its sampling settings chosen on training-station contexts (benchmarks/choose_sampling.py --write,
#    one-standard-error rule), ~12 min; meanwhile, on the other core, the onset benchmark (eqcodec evaluate
#    deconvolution --onsets, into runs/eval-onsets-candidate, ~2 min; it samples nothing) and the held-out
#    cross-entropy per stream (benchmarks/lm_heldout_ce.py on runs/corpora/heldout, ~3 min);
# 3. the forecast benchmark on the held-out data with every case (83 per kind of nc-events, 8 end points per
#    trace of the held-out stations: benchmarks/forecast_benchmark.py writes
#    benchmarks/results/forecast_benchmark*.json), ~6 min. (With 40 cases per kind, a reseeded run moves the
#    medians by up to ~0.02 CRPS: the size of the differences the targets ask about.)
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
echo "$(date -u +%T) candidate in $candidate; choosing sampling settings; onsets and held-out CE alongside"
(.venv/bin/eqcodec evaluate deconvolution --nc-events ../shared/data/nc-events --methods none --onsets \
    --lm "$candidate" --out runs/eval-onsets-candidate > runs/logs/candidate-onsets.log 2>&1
 "$python" benchmarks/lm_heldout_ce.py --lm "$candidate" --data runs/corpora/heldout \
    > runs/logs/candidate-heldout-ce.log 2>&1) &
side=$!
"$python" benchmarks/choose_sampling.py --lm "$candidate" --write --temperatures 0.9,1.0 \
    --gain-temperatures 0.75,1.0 --frame-grids 1,4 --samples 32 > runs/logs/candidate-sampling.log 2>&1
grep "^chosen" runs/logs/candidate-sampling.log
wait "$side"
echo "$(date -u +%T) forecast benchmark"
"$python" benchmarks/forecast_benchmark.py --cases-per-trace 8 --lm "$candidate" \
    > runs/logs/candidate-forecast.log 2>&1
echo "$(date -u +%T) done: runs/logs/candidate-*.log, benchmarks/results/forecast_benchmark*.json, runs/eval-onsets-candidate"
