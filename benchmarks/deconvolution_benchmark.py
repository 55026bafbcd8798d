"""Predictive-deconvolution benchmark: Wiener prediction-error filter and the token LM.

Synthetic sets (lm.synthetic, truth known): a "constant" set (water-layer
period tau fixed per trace) and a "drifting" set (tau drifts by up to +-10 %
along the trace). Scores per trace: multiple suppression in dB (energy of
everything that is not primary, before / after) and the correlation
coefficient with the true primaries (before -> after); the tables give the
median over traces. Lag and operator are set per trace either from the true
tau ("oracle") or from the autocorrelation peak ("picked", what a user does):

    lag = tau_min - LAG_MARGIN_S,  operator = 2 tau_max - lag + OPERATOR_MARGIN_S
    (the operator reaches the Backus operator's second multiple at 2 tau;
    picked: tau_min = tau_max = the autocorrelation peak)

Real data: held-out nc-events traces (codec.data.nc_events_split). There is
no truth, so the score is the reduction (dB) of the normalized
autocorrelation's energy at lags [lag, lag + L] for several lags; the error /
input energy ratio shows how much of the trace was judged predictable.

Methods come from lm.deconvolve (one predictor per method). "lm" is the
token LM's conditional-mean prediction (lm.deconvolve.lm_prediction), about
8 s of one CPU thread per 90-s trace and lag: it is scored on the first
--lm-traces real traces only (default 10), next to "wiener" on the same
traces, and on the synthetic sets only with --lm-synthetic (the shipped LM
has not been fine-tuned on reverberations).

    python benchmarks/deconvolution_benchmark.py                 # all, JSON in benchmarks/results/
    python benchmarks/deconvolution_benchmark.py --traces 10 --no-real
    python benchmarks/deconvolution_benchmark.py --traces 50 --lm-traces 10    # LM on 10 real traces
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec.data import nc_events_split  # noqa: E402
from codec.preprocess import SAMPLING_RATE, InputError, read_stream, trace_to_codec_input  # noqa: E402
from lm import synthetic  # noqa: E402
from lm.baselines import pick_reverberation_period  # noqa: E402
from lm.deconvolve import LMUnavailableError, deconvolve_samples, make_predictor  # noqa: E402
from lm.forecast_metrics import (autocorrelation_reduction_db, multiple_suppression_db,  # noqa: E402
                                 primary_correlation)

LAG_MARGIN_S = 0.25
OPERATOR_MARGIN_S = 1.0
#: Design window of the time-varying Wiener filter (half-overlapping windows).
DESIGN_WINDOW_S = 60.0
#: Lags (s) scored on real data, each with an operator of REAL_OPERATOR_S.
REAL_LAGS_S = (0.25, 0.5, 1.0, 2.0)
REAL_OPERATOR_S = 1.0


def synthetic_configurations(methods: list[str]) -> list[dict]:
    """(label, method, how the lag is set, design window) rows of the synthetic tables."""
    rows = []
    for method in methods:
        rows.append({"label": f"{method}, oracle tau", "method": method, "lag": "oracle", "window": None})
        rows.append({"label": f"{method}, picked tau", "method": method, "lag": "picked", "window": None})
        if method == "wiener":
            rows.append({"label": f"wiener time-varying ({DESIGN_WINDOW_S:g} s windows), picked tau",
                         "method": method, "lag": "picked", "window": DESIGN_WINDOW_S})
    return rows


def lag_and_operator(trace: synthetic.SyntheticTrace, how: str) -> tuple[int, int]:
    """Samples of lag and operator for one trace, from the true or the picked tau."""
    rate = SAMPLING_RATE
    if how == "oracle":
        tau_min, tau_max = trace.tau_samples.min(), trace.tau_samples.max()
    else:
        low, high = (int(t * rate) for t in (synthetic.TAU_RANGE_S[0] - 0.5, synthetic.TAU_RANGE_S[1] + 1.0))
        tau_min = tau_max = pick_reverberation_period(trace.observed, low, high)
    lag = int(round(tau_min - LAG_MARGIN_S * rate))
    operator = int(round(2 * tau_max - lag + OPERATOR_MARGIN_S * rate))
    return lag, operator


def score_synthetic(traces, configuration) -> dict:
    predictor = make_predictor(configuration["method"],
                               design_window_samples=int(configuration["window"] * SAMPLING_RATE)
                               if configuration["window"] else None)
    per_trace = []
    for trace in traces:
        lag, operator = lag_and_operator(trace, configuration["lag"])
        _, _, error = deconvolve_samples(trace.observed, lag, operator, predictor)
        per_trace.append({
            "index": trace.parameters["index"],
            "lag_s": lag / SAMPLING_RATE, "operator_s": operator / SAMPLING_RATE,
            "tau_start_s": trace.parameters["tau_start_s"], "tau_end_s": trace.parameters["tau_end_s"],
            "suppression_db": multiple_suppression_db(trace.observed, error, trace.primaries),
            "correlation_before": primary_correlation(trace.observed, trace.primaries),
            "correlation_after": primary_correlation(error, trace.primaries),
        })
    median = lambda key: float(np.median([t[key] for t in per_trace]))  # noqa: E731
    return {"label": configuration["label"], "suppression_db": median("suppression_db"),
            "suppression_db_p10": float(np.percentile([t["suppression_db"] for t in per_trace], 10)),
            "correlation_before": median("correlation_before"), "correlation_after": median("correlation_after"),
            "traces": per_trace}


def real_traces(directory: Path) -> list[tuple[str, np.ndarray]]:
    """(label, 40 Hz samples) of every usable trace of the held-out nc-events files."""
    traces = []
    for path in nc_events_split(directory)[1]:
        for trace in read_stream(path):
            try:
                traces.append((f"{path.name}:{trace.id}", trace_to_codec_input(trace)))
            except InputError as err:
                warnings.warn(f"skipping {err}")
    return traces


def score_real(traces, method: str) -> list[dict]:
    predictor = make_predictor(method)
    operator = int(REAL_OPERATOR_S * SAMPLING_RATE)
    rows = []
    for lag_s in REAL_LAGS_S:
        lag = int(lag_s * SAMPLING_RATE)
        reduction, energy = [], []
        for _, samples in traces:
            centred, _, error = deconvolve_samples(samples, lag, operator, predictor)
            reduction.append(autocorrelation_reduction_db(centred, error, lag, operator))
            energy.append(10 * np.log10(np.sum(error**2) / np.sum(centred**2)))
        rows.append({"method": method, "lag_s": lag_s, "operator_s": REAL_OPERATOR_S, "traces": len(traces),
                     "autocorrelation_reduction_db": float(np.median(reduction)),
                     "autocorrelation_reduction_db_p10": float(np.percentile(reduction, 10)),
                     "error_to_input_db": float(np.median(energy))})
    return rows


def plot_synthetic_examples(sets: dict, out_path: Path, seconds: float = 60.0) -> None:
    """First trace of each set, first `seconds`: observed, true primaries and each Wiener configuration's error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configurations = synthetic_configurations(["wiener"])[1:]  # picked tau: fixed and time-varying
    n = int(seconds * SAMPLING_RATE)
    fig, axes = plt.subplots(2 + len(configurations), len(sets), figsize=(6 * len(sets), 7), sharex=True,
                             squeeze=False)
    for column, (name, traces) in enumerate(sets.items()):
        trace = traces[0]
        rows = [("observed", trace.observed - trace.observed.mean(), "black"),
                ("true primaries", trace.primaries - trace.primaries.mean(), "tab:green")]
        for c in configurations:
            lag, operator = lag_and_operator(trace, c["lag"])
            window = int(c["window"] * SAMPLING_RATE) if c["window"] else None
            _, _, error = deconvolve_samples(trace.observed, lag, operator, make_predictor("wiener",
                                             design_window_samples=window))
            suppression = multiple_suppression_db(trace.observed, error, trace.primaries)
            short = "time-varying" if c["window"] else "fixed"
            rows.append((f"Wiener {short}\n{suppression:.1f} dB", error, "tab:blue"))
        t = np.arange(n) / SAMPLING_RATE
        limit = 1.05 * np.abs(rows[0][1][:n]).max()
        for ax, (label, data, color) in zip(axes[:, column], rows):
            ax.plot(t, data[:n], color=color, lw=0.6)
            ax.set_ylim(-limit, limit)
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        p = trace.parameters
        axes[0, column].set_title(f"{name} set, trace 0: tau {p['tau_start_s']:.2f} -> {p['tau_end_s']:.2f} s, "
                                  f"r {p['reflection']:.2f}, SNR {p['snr_db']:.0f} dB", fontsize=9)
        axes[-1, column].set_xlabel("seconds")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=50, help="traces per synthetic set (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=180.0, help="synthetic trace length, s (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="wiener,lm", help="comma-separated lm.deconvolve methods")
    parser.add_argument("--nc-events", default="/work/shared/data/nc-events", help="real corpus (held-out split used)")
    parser.add_argument("--no-real", action="store_true", help="skip the real-data part")
    parser.add_argument("--lm-traces", type=int, default=10, help="real traces scored by the LM (default: %(default)s)")
    parser.add_argument("--lm-synthetic", action="store_true", help="also score the LM on the synthetic sets (slow)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/deconvolution_benchmark.json"))
    parser.add_argument("--figure", default=None, help="PNG of the first trace of each synthetic set")
    args = parser.parse_args(argv)

    methods, unavailable = args.methods.split(","), {}
    if "lm" in methods:
        import torch

        torch.set_num_threads(1)  # a shared machine; one thread is as fast for a model this small
    sets = {"constant": synthetic.make_set(args.traces, args.seed, drifting=False, duration_s=args.duration),
            "drifting": synthetic.make_set(args.traces, args.seed + 1, drifting=True, duration_s=args.duration)}
    report = {"settings": vars(args), "unavailable_methods": unavailable, "synthetic": {}, "real": []}

    for name, traces in sets.items():
        print(f"\n### Synthetic set '{name}' ({len(traces)} traces x {args.duration:g} s, Backus water layer)\n")
        print("| method | suppression dB (median) | suppression dB (10th pct.) | corr. with primaries before -> after |")
        print("|---|---:|---:|---:|")
        results = []
        for configuration in synthetic_configurations([m for m in methods if m != "lm" or args.lm_synthetic]):
            try:
                r = score_synthetic(traces, configuration)
            except LMUnavailableError as err:  # the LM's slot, until lm_prediction is connected
                unavailable[configuration["method"]] = str(err)
                print(f"| {configuration['label']} | not available | | |")
                continue
            results.append(r)
            print(f"| {r['label']} | {r['suppression_db']:.1f} | {r['suppression_db_p10']:.1f} | "
                  f"{r['correlation_before']:.2f} -> {r['correlation_after']:.2f} |")
        report["synthetic"][name] = results

    if not args.no_real:
        traces = real_traces(Path(args.nc_events))
        print(f"\n### Real held-out nc-events traces ({len(traces)} traces x 90 s), operator {REAL_OPERATOR_S:g} s\n")
        print("| method | lag s | autocorr. reduction at lags [lag, lag+L] dB (median) | (10th pct.) "
              "| error / input energy dB (median) |")
        print("|---|---:|---:|---:|---:|")
        runs = [(method, traces) for method in methods if method != "lm"]
        if "lm" in methods:  # the LM is slow: a subset, with the Wiener filter on the same traces
            subset = traces[: args.lm_traces]
            runs += [("wiener", subset), ("lm", subset)] if "wiener" in methods else [("lm", subset)]
        for method, scored in runs:
            try:
                rows = score_real(scored, method)
            except LMUnavailableError as err:
                unavailable[method] = str(err)
                print(f"| {method} | | not available | | |")
                continue
            for r in rows:
                print(f"| {method} ({r['traces']} traces) | {r['lag_s']:g} | {r['autocorrelation_reduction_db']:.1f} | "
                      f"{r['autocorrelation_reduction_db_p10']:.1f} | {r['error_to_input_db']:.1f} |")
            report["real"].extend(rows)

    for method, reason in unavailable.items():
        print(f"\n{method}: {reason}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    if args.figure:
        plot_synthetic_examples(sets, Path(args.figure))
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
