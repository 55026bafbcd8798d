"""Choose an LM's sampling settings (temperature, top-k) by forecast CRPS on validation cases; store them with it.

    OMP_NUM_THREADS=1 python benchmarks/choose_sampling.py --lm lm/pretrained [--write] \
        [--temperatures 0.7,0.85,1.0] [--top-k 0,50,200] [--samples 16] [--cases 24]

Validation cases: --cases contexts of 20 s spread over II.KAPI days 005 and 006, recordings of a
held-out station the LM never trained on. (The forecast benchmark's continuous corpus holds them
too: a figure measured there on KAPI 005/006 is not independent of this choice.) For each setting: the CRPS of --samples continuations (units of the context's std) at
horizons 5, 10 and 30 s, averaged over the horizons, median over cases (tasks.scores). With
--write the best setting goes into the LM folder's generation_config.json
(transformers.GenerationConfig), which generate / forecast / evaluate read by default.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VALIDATION_DAYS = ["II.KAPI.00.BHZ.2013.005.M", "II.KAPI.00.BHZ.2013.006.M"]
HORIZONS = [5.0, 10.0, 30.0]
CONTEXT_SECONDS = 20


def main(argv=None) -> int:
    import torch

    from tasks.evaluate import forecast_cases, spread_subset
    from tasks.forecast import forecast_samples, load_lm_and_codec
    from tasks.scores import horizon_scores

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", default=str(ROOT / "lm" / "pretrained"))
    parser.add_argument("--codec", default=None)
    parser.add_argument("--temperatures", default="0.7,0.85,1.0")
    parser.add_argument("--top-k", default="0,50,200", help="0: no top-k cut")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--write", action="store_true", help="store the best setting in the LM's generation_config.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    lm, codec = load_lm_and_codec(args.lm, args.codec)
    days = [ROOT.parent / "shared/data/public-recordings/ispaq" / name for name in VALIDATION_DAYS]
    cases = spread_subset(forecast_cases(days, None, CONTEXT_SECONDS, max(HORIZONS), cases_per_trace=args.cases),
                          args.cases)
    horizon_n = int(max(HORIZONS) * 40)
    results = []
    for temperature, top_k in itertools.product([float(t) for t in args.temperatures.split(",")],
                                               [int(k) for k in args.top_k.split(",")]):
        crps = []
        for i, case in enumerate(cases):
            members = forecast_samples(case["context"], lm, codec, CONTEXT_SECONDS, int(max(HORIZONS)), args.samples,
                                       seed=i, temperature=temperature, top_k=top_k or 0)[:, :horizon_n]
            scores = horizon_scores(case["truth"], members, HORIZONS)
            crps.append(np.mean([scores[h]["crps"] for h in HORIZONS]))
        results.append({"temperature": temperature, "top_k": top_k, "crps": float(np.median(crps))})
        print(json.dumps(results[-1]), flush=True)
    best = min(results, key=lambda r: r["crps"])
    print(f"best on {len(cases)} validation cases: temperature {best['temperature']}, top-k {best['top_k']} "
          f"(median CRPS at 5/10/30 s {best['crps']:.3f})")
    if args.write:
        config = lm.generation_config
        config.temperature, config.top_k = best["temperature"], best["top_k"]  # 0: no top-k cut
        config.num_return_sequences = config.num_return_sequences or 32
        config.save_pretrained(args.lm)
        (Path(args.lm) / "sampling_selection.json").write_text(json.dumps(
            {"validation": VALIDATION_DAYS, "cases": len(cases), "samples": args.samples, "horizons_s": HORIZONS,
             "results": results, "best": best}, indent=1) + "\n")
        print(f"wrote {Path(args.lm) / 'generation_config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
