"""Choose an LM's sampling settings by forecast CRPS on validation cases; store them with it.

    OMP_NUM_THREADS=1 python benchmarks/choose_sampling.py --lm lm/pretrained [--write] \
        [--temperatures 0.9,1.0] [--gain-temperatures 0.5,0.6,0.7,0.85,1.0] [--top-k 0] \
        [--frame-grids 1,4] [--samples 16] [--cases 24]

Settings: the temperature of every stream, the gain stream's own temperature (the gain sets a
frame's loudness: a too-flat gain distribution makes rare samples tens of dB too loud, which the
ensemble's mean and spread pay for), top-k and the number of frame grids the members read their
contexts on (lm.generate.frame_grid_offsets).

Validation cases, from recordings of the LM's TRAINING stations, none of the benchmark's test
stations (benchmarks/forecast_benchmark.py scores the held-out stations): the nc-events training
split around its analyst picks (noise before P, 2 s after P, 5 s after S) and the continuous
training days of IU.ANMO and TA.109C (end points spread over each day); --cases per kind, evenly
spread. Training recordings are fair here because the base LM does not memorise them: its
training loss and its held-out loss agree within a few hundredths of a nat (lm/pretrained/README.md).

Score of a setting: the CRPS of --samples continuations (units of the context's std) averaged
over horizons 5, 10 and 30 s, median over the cases of a kind, then the mean over the four kinds
(each kind counts the same). Choice: the one-standard-error rule. The settings whose score is within
one standard error of the lowest (a bootstrap over each kind's cases) cannot be told apart by CRPS on
this many cases; among them, the one whose point forecast (the members' mean) has the lowest relative
MSE, scored the same way, is chosen. Why: CRPS barely separates a flatter gain distribution, whose
few far too loud members wreck the mean forecast. With --write the chosen setting goes into the LM folder's
generation_config.json (transformers.GenerationConfig, plus its `gain_temperature` field), which
generate / forecast / evaluate read by default, and every score into sampling_selection.json (with the
90 % band coverage per kind, mean over cases and horizons: recorded, not part of the rule).
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

DATA = ROOT.parent / "shared/data"
CONTINUOUS_STATIONS = ("IU.ANMO", "TA.109C")
HORIZONS = [5.0, 10.0, 30.0]
CONTEXT_SECONDS = 20


def validation_cases(per_kind: int) -> dict[str, list[dict]]:
    """{kind: cases} from training stations only (see the module docstring)."""
    from codec.data import nc_events_split, public_recordings_split
    from tasks.evaluate import forecast_cases, read_picks, spread_subset

    nc_train, _ = nc_events_split(DATA / "nc-events")
    kinds: dict[str, list[dict]] = {}
    for case in forecast_cases(nc_train, read_picks(DATA / "nc-events/picks.csv"), CONTEXT_SECONDS, max(HORIZONS)):
        kinds.setdefault(case["kind"], []).append(case)
    public_train, _ = public_recordings_split(DATA / "public-recordings")
    days = [p for p in public_train if p.name.startswith(CONTINUOUS_STATIONS)]
    kinds["continuous"] = forecast_cases(days, None, CONTEXT_SECONDS, max(HORIZONS), cases_per_trace=per_kind)
    return {kind: spread_subset(cases, per_kind) for kind, cases in kinds.items()}


def bootstrap_standard_error(per_case: dict[str, np.ndarray], draws: int = 1000, seed: int = 0) -> float:
    """Standard error of the score (mean over kinds of the median over a kind's cases), by resampling
    each kind's cases with replacement."""
    rng = np.random.default_rng(seed)
    scores = [np.mean([np.median(rng.choice(v, size=len(v))) for v in per_case.values()]) for _ in range(draws)]
    return float(np.std(scores))


def one_standard_error_choice(results: list[dict]) -> dict:
    """Among the settings whose CRPS score is within one standard error of the lowest, the lowest relative
    MSE of the point forecast (ties: the lower CRPS)."""
    lowest = min(results, key=lambda r: r["crps"])
    close = [r for r in results if r["crps"] <= lowest["crps"] + lowest["crps_standard_error"]]
    return min(close, key=lambda r: (r["relative_mse"], r["crps"]))


def main(argv=None) -> int:
    import torch

    from tasks.forecast import forecast_samples, load_lm_and_codec
    from tasks.scores import horizon_scores

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", default=str(ROOT / "lm" / "pretrained"))
    parser.add_argument("--codec", default=None)
    parser.add_argument("--temperatures", default="0.9,1.0")
    parser.add_argument("--gain-temperatures", default="0.5,0.6,0.7,0.85,1.0")
    parser.add_argument("--top-k", default="0", help="0: no top-k cut")
    parser.add_argument("--frame-grids", default="1", help="numbers of frame grids to try")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--cases", type=int, default=24, help="cases per kind")
    parser.add_argument("--write", action="store_true", help="store the best setting in the LM's generation_config.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    lm, codec = load_lm_and_codec(args.lm, args.codec)
    kinds = validation_cases(args.cases)
    print("validation cases: " + ", ".join(f"{kind} {len(cases)}" for kind, cases in kinds.items()), flush=True)
    horizon_n = int(max(HORIZONS) * 40)
    grid = itertools.product([float(t) for t in args.temperatures.split(",")],
                             [float(t) for t in args.gain_temperatures.split(",")],
                             [int(k) for k in args.top_k.split(",")],
                             [int(g) for g in args.frame_grids.split(",")])
    results = []
    for temperature, gain_temperature, top_k, frame_grids in grid:
        per_kind, per_case, mse_by_kind, coverage_by_kind = {}, {}, {}, {}
        for kind, cases in kinds.items():
            crps, mse, coverage = [], [], []
            for i, case in enumerate(cases):
                members = forecast_samples(case["context"], lm, codec, CONTEXT_SECONDS, int(max(HORIZONS)),
                                           args.samples, seed=i, temperature=temperature, top_k=top_k,
                                           gain_temperature=gain_temperature,
                                           frame_grids=frame_grids)[:, :horizon_n]
                scores = horizon_scores(case["truth"], members, HORIZONS)
                crps.append(np.mean([scores[h]["crps"] for h in HORIZONS]))
                mse.append(np.mean([scores[h]["relative_mse"] for h in HORIZONS]))
                coverage.append(np.mean([scores[h]["coverage_90"] for h in HORIZONS]))
            per_case[kind] = np.array(crps)
            per_kind[kind] = round(float(np.median(crps)), 4)
            mse_by_kind[kind] = round(float(np.median(mse)), 4)
            coverage_by_kind[kind] = round(float(np.mean(coverage)), 3)
        results.append({"temperature": temperature, "gain_temperature": gain_temperature, "top_k": top_k,
                        "frame_grids": frame_grids,
                        "crps": round(float(np.mean(list(per_kind.values()))), 4), "crps_by_kind": per_kind,
                        "crps_standard_error": round(bootstrap_standard_error(per_case), 4),
                        "relative_mse": round(float(np.mean(list(mse_by_kind.values()))), 4),
                        "relative_mse_by_kind": mse_by_kind,
                        "coverage_90_by_kind": coverage_by_kind})  # for the record: the rule does not read it
        print(json.dumps(results[-1]), flush=True)
    best = one_standard_error_choice(results)
    print(f"chosen (one-standard-error rule): temperature {best['temperature']}, gain temperature {best['gain_temperature']}, top-k "
          f"{best['top_k']}, {best['frame_grids']} frame grid(s) (CRPS at 5/10/30 s, mean over kinds of the median over cases: {best['crps']:.3f})")
    if args.write:
        config = lm.generation_config
        config.temperature, config.top_k = best["temperature"], best["top_k"]  # 0: no top-k cut
        config.gain_temperature, config.frame_grids = best["gain_temperature"], best["frame_grids"]
        config.num_return_sequences = config.num_return_sequences or 32
        config.save_pretrained(args.lm)
        (Path(args.lm) / "sampling_selection.json").write_text(json.dumps(
            {"validation": {"nc-events": "training split, picks.csv", "continuous": list(CONTINUOUS_STATIONS)},
             "cases": {kind: len(cases) for kind, cases in kinds.items()}, "samples": args.samples,
             "horizons_s": HORIZONS, "rule": "one standard error of the lowest CRPS score, then the lowest "
             "relative MSE of the point forecast", "results": results, "best": best}, indent=1) + "\n")
        print(f"wrote {Path(args.lm) / 'generation_config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
