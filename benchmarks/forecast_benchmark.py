"""Forecasting benchmark on real held-out recordings: classical baselines and the token LM.

Cases: every usable trace of the held-out nc-events files
(codec.data.nc_events_split(...)[1]) gives up to three cases, from the
analyst picks in picks.csv:

    noise    context ends 10 s before P (pre-event noise only)
    P+2s     context ends 2 s after the P arrival
    S+5s     context ends 5 s after the S arrival

The context is the CONTEXT_S seconds before that point and the truth the
following max(horizons) seconds (cases that do not fit in the 90 s window are
dropped). Every case is normalized by its context's mean and standard
deviation, so CRPS is in units of the context's standard deviation.

Methods: zero, persistence (last second repeated) and AR(p) (Burg, AIC) are
deterministic: their CRPS is the MAE and they have no 90 % band.
noise-ensemble (Gaussian noise of the context's level) and ar-ensemble (the
AR(p) model driven by Gaussian innovations) give S sampled continuations.
"lm" is the token LM's sampled continuations (lm.forecast.forecast_samples:
--lm-samples members, default 16, top-k 50, temperature 0.8, shipped LM and
codec); about 1.3 s per case on one CPU thread, so --max-cases N keeps the
first N cases of each kind (for every method alike) to bound the run time.

Scores (lm.forecast_metrics) over the first h seconds for h in HORIZONS_S:
relative MSE (ensembles: of the member mean), log-envelope RMSE and log-PSD
error (decades; ensembles: median member), CRPS, coverage of the 5-95 %
band. Tables give the median over cases (coverage: the mean).

    python benchmarks/forecast_benchmark.py          # JSON in benchmarks/results/
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec.data import nc_events_split  # noqa: E402
from codec.preprocess import SAMPLING_RATE, InputError, read_stream, trace_to_codec_input  # noqa: E402
from lm.baselines import FORECASTERS, SAMPLE_FORECASTERS  # noqa: E402
from lm.deconvolve import LMUnavailableError  # noqa: E402
from lm.forecast_metrics import horizon_scores  # noqa: E402

HORIZONS_S = (1, 5, 10, 30)
CONTEXT_S = 20.0
#: Where each kind of case ends its context: (reference pick, offset in seconds).
CASES = {"noise": ("p", -10.0), "P+2s": ("p", 2.0), "S+5s": ("s", 5.0)}
METRICS = ("relative_mse", "log_envelope_rmse", "log_psd_error", "crps", "coverage_90")


#: Sampling settings of the LM's forecasts.
LM_TOP_K = 50
LM_TEMPERATURE = 0.8
_LM_AND_CODEC = []  # loaded on first use


def lm_sample_forecasts(context: np.ndarray, horizon_samples: int, n_samples: int,
                        rng: np.random.Generator) -> np.ndarray:
    """[S, H] token-LM continuations of a 40 Hz context [N] (whole seconds of it are read)."""
    import math

    from codec.model import EQCodec
    from lm.forecast import forecast_samples
    from lm.model import load_lm

    if not _LM_AND_CODEC:
        import torch

        torch.set_num_threads(1)  # a shared machine; one thread is as fast for a model this small
        _LM_AND_CODEC.extend([load_lm(), EQCodec.from_pretrained()])
    lm, codec = _LM_AND_CODEC
    members = forecast_samples(context, lm, codec, len(context) // int(SAMPLING_RATE),
                               math.ceil(horizon_samples / SAMPLING_RATE), n_samples,
                               seed=int(rng.integers(2**31)), top_k=LM_TOP_K, temperature=LM_TEMPERATURE)
    return members[:, :horizon_samples]


def methods() -> dict:
    """name -> f(context [N], horizon_samples, n_samples, rng) -> [S, H] (S = 1 for deterministic)."""
    table = {name: (lambda f: lambda c, h, s, rng: f(c, h)[None])(f) for name, f in FORECASTERS.items()}
    table.update(SAMPLE_FORECASTERS)
    table["lm"] = lm_sample_forecasts
    return table


def build_cases(directory: Path, horizon_s: float) -> list[dict]:
    """Context and truth (normalized by the context) of every case that fits in its window."""
    from obspy import UTCDateTime

    with open(directory / "picks.csv") as f:
        picks = {row["file"]: row for row in csv.DictReader(f)}
    context_n, horizon_n = int(CONTEXT_S * SAMPLING_RATE), int(horizon_s * SAMPLING_RATE)
    cases = []
    for path in nc_events_split(directory)[1]:
        row = picks[path.name]
        for trace in read_stream(path):
            try:
                samples = trace_to_codec_input(trace)
            except InputError as err:
                warnings.warn(f"skipping {err}")
                continue
            for kind, (pick, offset) in CASES.items():
                arrival = UTCDateTime(row[f"{pick}_arrival"])
                end = int(round((arrival - trace.stats.starttime + offset) * SAMPLING_RATE))
                if end - context_n < 0 or end + horizon_n > len(samples):
                    continue
                context = samples[end - context_n : end]
                mean, std = context.mean(), context.std()
                cases.append({"kind": kind, "trace": f"{path.name}:{trace.id}",
                              "context": (context - mean) / std,
                              "truth": (samples[end : end + horizon_n] - mean) / std})
    return cases


def plot_examples(cases: list[dict], out_path: Path, n_samples: int, seed: int) -> None:
    """First case of each kind: context end, truth, AR(p) mean, persistence and the ar-ensemble's 5-95 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lm.baselines import ar_forecast, ar_sample_forecasts, persistence_forecast

    firsts = [next(c for c in cases if c["kind"] == kind) for kind in CASES if any(c["kind"] == kind for c in cases)]
    fig, axes = plt.subplots(len(firsts), 1, figsize=(10, 2.6 * len(firsts)), squeeze=False)
    shown_context = int(5 * SAMPLING_RATE)
    for ax, case in zip(axes[:, 0], firsts):
        horizon = len(case["truth"])
        t_context = np.arange(-shown_context, 0) / SAMPLING_RATE
        t = np.arange(horizon) / SAMPLING_RATE
        members = ar_sample_forecasts(case["context"], horizon, n_samples, np.random.default_rng(seed))
        low, high = np.quantile(members, [0.05, 0.95], axis=0)
        ax.fill_between(t, low, high, color="tab:blue", alpha=0.25, lw=0, label="ar-ensemble 5-95 %")
        ax.plot(t_context, case["context"][-shown_context:], color="gray", lw=0.6, label="context")
        ax.plot(t, persistence_forecast(case["context"], horizon), color="tab:green", lw=0.5, alpha=0.6,
                label="persistence")
        ax.plot(t, case["truth"], color="black", lw=0.6, label="truth")
        ax.plot(t, ar_forecast(case["context"], horizon), color="tab:red", lw=0.9, label="AR(p)")
        ax.axvline(0, color="k", lw=0.5, ls=":")
        ax.set_title(f"{case['kind']}: {case['trace']} (units of the context's std)", fontsize=9)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=5)
    axes[-1, 0].set_xlabel("seconds after the end of the context")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nc-events", default="/work/shared/data/nc-events")
    parser.add_argument("--samples", type=int, default=100, help="members S of each ensemble (default: %(default)s)")
    parser.add_argument("--lm-samples", type=int, default=16, help="LM ensemble members (default: %(default)s)")
    parser.add_argument("--max-cases", type=int, default=None, help="first N cases of each kind only (default: all)")
    parser.add_argument("--methods", default=",".join(methods()), help="comma-separated (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/forecast_benchmark.json"))
    parser.add_argument("--figure", default=None, help="PNG of the first case of each kind")
    args = parser.parse_args(argv)

    horizon_n = int(max(HORIZONS_S) * SAMPLING_RATE)
    cases = build_cases(Path(args.nc_events), max(HORIZONS_S))
    if args.max_cases:
        cases = [c for kind in CASES for c in [c for c in cases if c["kind"] == kind][: args.max_cases]]
    available = methods()
    scores: dict[str, dict[str, list]] = {}  # method -> kind -> per-case {h: {metric: value}}
    unavailable = {}
    for name in args.methods.split(","):
        forecaster = available[name]
        try:
            for i, case in enumerate(cases):
                rng = np.random.default_rng([args.seed, i])
                forecast = forecaster(case["context"], horizon_n, args.lm_samples if name == "lm" else args.samples,
                                      rng)
                scores.setdefault(name, {}).setdefault(case["kind"], []).append(
                    horizon_scores(case["truth"], forecast, HORIZONS_S))
        except LMUnavailableError as err:
            unavailable[name] = str(err)

    summary = {}
    for kind in CASES:
        n = sum(case["kind"] == kind for case in cases)
        print(f"\n### Cases '{kind}' ({n} held-out traces, {CONTEXT_S:g} s context, normalized by its std)\n")
        print("| method | horizon s | rel. MSE | log-env. RMSE | log-PSD err. | CRPS | 90 % coverage |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in args.methods.split(","):
            if name in unavailable:
                print(f"| {name} | | not available | | | | |")
                continue
            for h in HORIZONS_S:
                per_case = [s[h] for s in scores[name][kind]]
                row = {m: float((np.mean if m == "coverage_90" else np.median)([c[m] for c in per_case]))
                       for m in METRICS}
                summary.setdefault(kind, {}).setdefault(name, {})[h] = row
                coverage = "-" if np.isnan(row["coverage_90"]) else f"{row['coverage_90']:.2f}"
                print(f"| {name} | {h} | {row['relative_mse']:.3f} | {row['log_envelope_rmse']:.3f} | "
                      f"{row['log_psd_error']:.3f} | {row['crps']:.3f} | {coverage} |")
    for name, reason in unavailable.items():
        print(f"\n{name}: not available ({reason})")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "horizons_s": HORIZONS_S, "context_s": CONTEXT_S,
                               "cases": {k: sum(c["kind"] == k for c in cases) for k in CASES},
                               "unavailable_methods": unavailable, "median_over_cases": summary}, indent=1))
    print(f"\nwrote {out}")
    if args.figure:
        plot_examples(cases, Path(args.figure), args.samples, args.seed)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
