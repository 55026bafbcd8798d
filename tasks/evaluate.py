"""`eqcodec evaluate`: forecasting and predictive deconvolution, the token LM against classical methods.

Two subcommands; each prints markdown tables and writes into --out DIR the
tables (FORECAST.md / DECONVOLUTION.md), the JSON of every figure
(forecast.json / deconvolution.json) and example plots.

eqcodec evaluate forecast
    Cases: for every usable trace of the waveform files, contexts that end
      noise   10 s before the P pick (pre-event noise only)
      P+2s    2 s after the P pick
      S+5s    5 s after the S pick
    (picks from --picks CSV, columns file, p_arrival, s_arrival; without
    picks one case "end" per trace, whose truth is the trace's last
    max(--horizons) seconds). The context is the --context-seconds before
    that point and the truth the following max(--horizons) seconds; cases
    that do not fit in the trace are dropped. Each case is normalized by its
    context's mean and standard deviation (CRPS is in units of that std).
    Methods: zero, persistence (last second repeated) and ar (AR(p), Burg,
    order by AIC) are deterministic: their CRPS is the MAE and they have no
    90 % band; noise-ensemble, ar-ensemble (--samples members) and lm (the
    token LM's --lm-samples sampled continuations, top-k 50, temperature 0.8)
    are probabilistic. Scores over the first h s for each horizon h
    (tasks.scores): relative MSE, log-envelope RMSE, log-PSD error,
    CRPS, coverage of the 5-95 % band; median over cases (coverage: mean).

eqcodec evaluate deconvolution
    Real recordings (the waveform files or --nc-events): no truth, so the
    score is the reduction (dB) of the normalized autocorrelation's energy at
    lags [lag, lag + L] for each of --lags, and the error / input energy.
    The LM is slow (about 8 s of one CPU thread per 90-s trace and lag): it
    runs on the first --lm-traces traces, beside the Wiener filter on the
    same traces.
    --synthetic: the seeded reverberation sets of tasks.synthetic (truth known),
    "constant" (tau fixed per trace, seed --seed) and "drifting" (tau drifts
    by up to +-10 %, seed --seed + 1), --traces traces of --duration s each.
    Scores per trace, from second SCORE_FROM_S on (the LM predicts nothing
    before its first context window): multiple suppression (energy of all
    that is not primary, before / after, dB) and correlation with the true
    primaries. Lag and operator per trace from the true tau ("oracle") or
    the autocorrelation peak ("picked"):
        lag = tau_min - 0.25 s,  operator = 2 tau_max - lag + 1 s.
    With --train-steps N > 0 the LM is first fine-tuned on reverberations:
    --train-traces traces of each kind (seeds --seed + 100 and + 101, never
    the test traces) are written to OUT/synthetic-train/ as miniSEED,
    tokenized (tokenized_data.tokenize) into OUT/synthetic-corpus and the
    LM (--lm, default the shipped one) fine-tuned on them by `train-lm`
    (lm.train, N steps) into OUT/synthetic-lm; the fine-tuned
    OUT/synthetic-lm/final is then scored on the first --lm-traces test
    traces of each set, at the oracle lag, beside the Wiener filter at the
    same lag on the same traces. Rerunning the command reuses those folders
    (an interrupted fine-tuning resumes).
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from codec.errors import UsageError
from codec.files import write_atomically
from codec.preprocess import SAMPLING_RATE, InputError, read_stream, trace_to_codec_input

from . import synthetic
from .classical import FORECASTERS, SAMPLE_FORECASTERS, pick_reverberation_period
from .deconvolve import deconvolve_samples, make_predictor
from .scores import (autocorrelation_reduction_db, horizon_scores, multiple_suppression_db,
                               primary_correlation)


# ------------------------------------------------------------------ shared

#: Forecast cases: where the context ends, as (reference pick, offset in seconds).
CASES = {"noise": ("p", -10.0), "P+2s": ("p", 2.0), "S+5s": ("s", 5.0)}
#: The case of a trace without picks: the context ends max(horizons) seconds before the trace's end.
END_CASE = "end"
FORECAST_METRICS = ("relative_mse", "log_envelope_rmse", "log_psd_error", "crps", "coverage_90")
#: Synthetic deconvolution: lag and operator from tau (see the module docstring).
LAG_MARGIN_S = 0.25
OPERATOR_MARGIN_S = 1.0
#: Design window of the time-varying Wiener filter (half-overlapping windows).
DESIGN_WINDOW_S = 60.0
#: Synthetic scores skip the first seconds: the LM's first prediction comes after its
#: 10-s context plus the gap to the lag (up to 8 s), and every method is scored alike.
SCORE_FROM_S = 20.0
#: Seeds of the fine-tuning traces are offset from the test seeds by this much.
TRAIN_SEED_OFFSET = 100
#: Fine-tuning recipe on the synthetic set (besides --train-steps).
FINETUNE_BATCH_SIZE = 8
FINETUNE_LR = 3e-4


def waveform_files(inputs: list[str]) -> list[Path]:
    """Files of INPUTS: files as given, folders searched recursively (hidden files and tables skipped)."""
    skipped = {".csv", ".json", ".md", ".txt", ".png", ".xml"}
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() not in skipped)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    if not files:
        raise InputError(f"no waveform file in {', '.join(inputs)}")
    return files


def input_files(settings) -> tuple[list[Path], Path | None]:
    """(waveform files, picks CSV or None) of INPUTS [--picks] or --nc-events (its held-out split)."""
    if settings.nc_events and settings.inputs:
        raise UsageError("give waveform INPUTS or --nc-events, not both")
    picks = Path(settings.picks) if getattr(settings, "picks", None) else None
    if settings.nc_events:
        from codec.data import nc_events_split

        return nc_events_split(settings.nc_events)[1], picks or Path(settings.nc_events) / "picks.csv"
    return waveform_files(settings.inputs), picks


def load_lm_if_needed(settings):
    """(lm, codec) when the lm method is asked for, else (None, None); one torch thread per --threads."""
    if "lm" not in settings.methods:
        return None, None
    import torch
    from transformers.utils import logging as hf_logging

    from .forecast import load_lm_and_codec

    torch.set_num_threads(settings.threads)
    hf_logging.disable_progress_bar()
    return load_lm_and_codec(settings.lm, settings.codec)


def write_report(out: Path, name: str, report: dict, tables: str) -> list[Path]:
    """OUT/name.json and OUT/NAME.md, each written under a temporary name and renamed."""
    json_path, md_path = out / f"{name}.json", out / f"{name.upper()}.md"
    write_atomically(lambda tmp: tmp.write_text(json.dumps(report, indent=1, default=float)), json_path)
    write_atomically(lambda tmp: tmp.write_text(tables), md_path)
    return [json_path, md_path]


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    write_atomically(lambda tmp: fig.savefig(tmp, dpi=110, format="png"), path)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------ forecasting

def read_picks(path: Path) -> dict[str, dict]:
    """{file name: {"p": UTCDateTime or None, "s": ...}} from a CSV with columns file, p_arrival, s_arrival."""
    from obspy import UTCDateTime

    if not path.is_file():
        raise InputError(f"{path}: picks file not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"file", "p_arrival", "s_arrival"} - set(rows[0] if rows else {})
    if missing:
        raise InputError(f"{path}: picks CSV needs the columns file, p_arrival, s_arrival "
                         f"(missing: {', '.join(sorted(missing))})")
    picks = {}
    for line, row in enumerate(rows, start=2):
        try:
            picks[Path(row["file"]).name] = {p: UTCDateTime(row[f"{p}_arrival"]) if row[f"{p}_arrival"] else None
                                             for p in ("p", "s")}
        except Exception:
            raise InputError(f"{path}, line {line}: unreadable pick time") from None
    return picks


def forecast_cases(files: list[Path], picks: dict | None, context_s: float, horizon_s: float) -> list[dict]:
    """Every case that fits in its trace: {"kind", "trace", "context" [C], "truth" [H]}, normalized by the context."""
    context_n, horizon_n = int(round(context_s * SAMPLING_RATE)), int(round(horizon_s * SAMPLING_RATE))
    cases = []
    for path in files:
        if picks is not None and path.name not in picks:
            warnings.warn(f"skipping {path}: no picks for it")
            continue
        for trace in read_stream(path):
            try:
                samples = trace_to_codec_input(trace)
            except InputError as err:
                warnings.warn(f"skipping {err}")
                continue
            if picks is None:
                ends = {END_CASE: len(samples) - horizon_n}
            else:
                ends = {kind: int(round((picks[path.name][pick] - trace.stats.starttime + offset) * SAMPLING_RATE))
                        for kind, (pick, offset) in CASES.items() if picks[path.name][pick] is not None}
            for kind, end in ends.items():
                if end - context_n < 0 or end + horizon_n > len(samples):
                    continue
                context = samples[end - context_n : end]
                mean, std = context.mean(), context.std()
                if not std > 0:
                    continue
                cases.append({"kind": kind, "trace": f"{path.name}:{trace.id}",
                              "context": (context - mean) / std,
                              "truth": (samples[end : end + horizon_n] - mean) / std})
    return cases


def lm_sample_forecasts(context: np.ndarray, horizon_samples: int, n_samples: int, rng: np.random.Generator,
                        *, lm, codec) -> np.ndarray:
    """[S, H] token-LM continuations of a 40 Hz context [N] (its whole seconds are read)."""
    from .forecast import forecast_samples

    members = forecast_samples(context, lm, codec, len(context) // int(SAMPLING_RATE),
                               math.ceil(horizon_samples / SAMPLING_RATE), n_samples,
                               seed=int(rng.integers(2**31)))  # the LM's sampling settings
    return members[:, :horizon_samples]


def forecast_methods(lm=None, codec=None) -> dict:
    """name -> f(context [N], horizon_samples, n_samples, rng) -> [S, H] (S = 1 for deterministic ones)."""
    table = {name: (lambda f: lambda c, h, s, rng: f(c, h)[None])(f) for name, f in FORECASTERS.items()}
    table.update(SAMPLE_FORECASTERS)
    if lm is not None:
        table["lm"] = partial(lm_sample_forecasts, lm=lm, codec=codec)
    return table


def score_forecasts(cases: list[dict], methods: dict, horizons: list[float], samples: dict, seed: int) -> dict:
    """{kind: {method: {h: {metric: median over cases (coverage: mean)}}}}; samples: method -> members S."""
    horizon_n = int(round(max(horizons) * SAMPLING_RATE))
    per_case: dict = {}  # kind -> method -> [{h: {metric: value}}]
    for name, forecaster in methods.items():
        for i, case in enumerate(cases):
            forecast = forecaster(case["context"], horizon_n, samples[name], np.random.default_rng([seed, i]))
            per_case.setdefault(case["kind"], {}).setdefault(name, []).append(
                horizon_scores(case["truth"], forecast, horizons))
    summary = {}
    for kind, by_method in per_case.items():
        for name, scores in by_method.items():
            for h in horizons:
                values = {m: [s[h][m] for s in scores] for m in FORECAST_METRICS}
                summary.setdefault(kind, {}).setdefault(name, {})[h] = {
                    m: float(np.mean(v) if m == "coverage_90" else np.median(v)) for m, v in values.items()}
    return summary


def forecast_tables(summary: dict, counts: dict, context_s: float) -> str:
    """Markdown: one table per kind of case."""
    lines = []
    for kind, by_method in summary.items():
        lines += [f"### Cases '{kind}' ({counts[kind]} traces, {context_s:g} s context, normalized by its std)", "",
                  "| method | horizon s | rel. MSE | log-env. RMSE | log-PSD err. | CRPS | 90 % coverage |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, by_horizon in by_method.items():
            for h, row in by_horizon.items():
                coverage = "-" if np.isnan(row["coverage_90"]) else f"{row['coverage_90']:.2f}"
                lines.append(f"| {name} | {h:g} | {row['relative_mse']:.3f} | {row['log_envelope_rmse']:.3f} | "
                             f"{row['log_psd_error']:.3f} | {row['crps']:.3f} | {coverage} |")
        lines.append("")
    return "\n".join(lines)


def plot_forecast_examples(cases: list[dict], methods: dict, samples: dict, path: Path, seed: int) -> None:
    """First case of each kind: the end of the context, the truth, the AR(p) forecast and each ensemble's 5-95 % band."""
    plt = _pyplot()
    kinds = list(dict.fromkeys(c["kind"] for c in cases))
    firsts = [next(c for c in cases if c["kind"] == kind) for kind in kinds]
    fig, axes = plt.subplots(len(firsts), 1, figsize=(10, 2.6 * len(firsts)), squeeze=False)
    shown_context = int(5 * SAMPLING_RATE)
    bands = [name for name in ("ar-ensemble", "lm") if name in methods]
    for ax, case in zip(axes[:, 0], firsts):
        horizon = len(case["truth"])
        t = np.arange(horizon) / SAMPLING_RATE
        for name, color in zip(bands, ("tab:blue", "tab:red")):
            members = methods[name](case["context"], horizon, samples[name], np.random.default_rng(seed))
            low, high = np.quantile(members, [0.05, 0.95], axis=0)
            ax.fill_between(t, low, high, color=color, alpha=0.25, lw=0, label=f"{name} 5-95 %")
        ax.plot(np.arange(-shown_context, 0) / SAMPLING_RATE, case["context"][-shown_context:], color="gray",
                lw=0.6, label="context")
        ax.plot(t, case["truth"], color="black", lw=0.6, label="truth")
        if "ar" in methods:
            ax.plot(t, methods["ar"](case["context"], horizon, 1, None)[0], color="tab:green", lw=0.9, label="AR(p)")
        ax.axvline(0, color="k", lw=0.5, ls=":")
        ax.set_title(f"{case['kind']}: {case['trace']} (units of the context's std)", fontsize=9)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=5)
    axes[-1, 0].set_xlabel("seconds after the end of the context")
    save_figure(fig, path)


def evaluate_forecast(settings: "ForecastEvaluation") -> int:
    unknown = set(settings.methods) - set(forecast_methods()) - {"lm"}
    if unknown:
        raise UsageError(f"unknown --methods {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join([*forecast_methods(), 'lm'])}")
    files, picks_path = input_files(settings)
    lm, codec = load_lm_if_needed(settings)
    picks = read_picks(picks_path) if picks_path else None
    cases = forecast_cases(files, picks, settings.context_seconds, max(settings.horizons))
    if settings.max_cases:
        kinds = dict.fromkeys(c["kind"] for c in cases)
        cases = [c for kind in kinds for c in [c for c in cases if c["kind"] == kind][: settings.max_cases]]
    if not cases:
        raise InputError(f"no forecast case fits: every trace is shorter than the {settings.context_seconds:g} s "
                         f"context plus the {max(settings.horizons):g} s horizon around its picks")
    available = forecast_methods(lm, codec)
    methods = {name: available[name] for name in settings.methods}
    samples = {name: settings.lm_samples if name == "lm" else settings.samples for name in methods}

    started = time.monotonic()
    summary = score_forecasts(cases, methods, settings.horizons, samples, settings.seed)
    counts = {kind: sum(c["kind"] == kind for c in cases) for kind in summary}
    tables = forecast_tables(summary, counts, settings.context_seconds)
    print(tables)
    report = {"settings": {k: v for k, v in vars(settings).items() if k != "func"},
              "lm_codec_id": lm.config.codec_id if lm is not None else None,
              "horizons_s": settings.horizons, "context_s": settings.context_seconds, "cases": counts,
              "seconds": round(time.monotonic() - started, 1), "median_over_cases": summary}
    out = Path(settings.out)
    written = write_report(out, "forecast", report, tables)
    plot_forecast_examples(cases, methods, samples, out / "forecast_examples.png", settings.seed)
    print(f"wrote {', '.join(str(p) for p in written + [out / 'forecast_examples.png'])}")
    return 0


# ------------------------------------------------------------------ deconvolution

def lag_and_operator(trace: synthetic.SyntheticTrace, how: str) -> tuple[int, int]:
    """Samples of lag and operator for one synthetic trace, from the true ("oracle") or picked tau."""
    rate = SAMPLING_RATE
    if how == "oracle":
        tau_min, tau_max = trace.tau_samples.min(), trace.tau_samples.max()
    else:
        low, high = (int(t * rate) for t in (synthetic.TAU_RANGE_S[0] - 0.5, synthetic.TAU_RANGE_S[1] + 1.0))
        tau_min = tau_max = pick_reverberation_period(trace.observed, low, high)
    lag = int(round(tau_min - LAG_MARGIN_S * rate))
    operator = int(round(2 * tau_max - lag + OPERATOR_MARGIN_S * rate))
    return lag, operator


def score_synthetic(traces: list, label: str, predictor, how: str) -> dict:
    """Median multiple suppression and primary correlation over traces (from SCORE_FROM_S), plus per-trace rows."""
    start = int(SCORE_FROM_S * SAMPLING_RATE)
    per_trace = []
    for trace in traces:
        lag, operator = lag_and_operator(trace, how)
        _, _, error = deconvolve_samples(trace.observed, lag, operator, predictor)
        observed, primaries, error = trace.observed[start:], trace.primaries[start:], error[start:]
        per_trace.append({
            "index": trace.parameters["index"], "lag_s": lag / SAMPLING_RATE, "operator_s": operator / SAMPLING_RATE,
            "tau_start_s": trace.parameters["tau_start_s"], "tau_end_s": trace.parameters["tau_end_s"],
            "suppression_db": multiple_suppression_db(observed, error, primaries),
            "correlation_before": primary_correlation(observed, primaries),
            "correlation_after": primary_correlation(error, primaries),
        })
    values = lambda key: [t[key] for t in per_trace]  # noqa: E731
    return {"label": label, "traces": len(per_trace), "suppression_db": float(np.median(values("suppression_db"))),
            "suppression_db_p10": float(np.percentile(values("suppression_db"), 10)),
            "correlation_before": float(np.median(values("correlation_before"))),
            "correlation_after": float(np.median(values("correlation_after"))), "per_trace": per_trace}


def finetune_on_synthetic(settings, out: Path) -> Path:
    """Write training traces, tokenize them and fine-tune the LM with train-lm; returns the fine-tuned LM folder."""
    from tokenized_data import tokenize

    from lm import train
    from lm.model import PRETRAINED_DIR

    train_dir, corpus, run = out / "synthetic-train", out / "synthetic-corpus", out / "synthetic-lm"
    for offset, name in enumerate(("constant", "drifting")):
        if not (train_dir / name / "manifest.json").is_file():
            traces = synthetic.make_set(settings.train_traces, settings.seed + TRAIN_SEED_OFFSET + offset,
                                        drifting=name == "drifting", duration_s=settings.train_duration)
            synthetic.write_set(traces, train_dir / name, overwrite=True)
    if not corpus.is_dir():
        summary = tokenize([str(train_dir / "constant" / "waveforms"), str(train_dir / "drifting" / "waveforms")],
                           corpus, codec_path=settings.codec, progress=False)
        if summary.corpus is None:
            raise InputError(f"{train_dir}: no window of the training traces could be tokenized")
    init = settings.lm or str(PRETRAINED_DIR)
    train.train_lm(train.TrainLMConfig(
        data=str(corpus), out=str(run), init=init, steps=settings.train_steps, batch_size=FINETUNE_BATCH_SIZE,
        lr=FINETUNE_LR, warmup=max(1, settings.train_steps // 10), eval_every=max(1, settings.train_steps // 3),
        eval_batches=10, seed=settings.seed))
    return run / "final"


def evaluate_synthetic(settings, out: Path) -> tuple[dict, list[str], dict]:
    """Synthetic part: (results per set, markdown lines, the sets)."""
    from .forecast import load_lm_and_codec

    sets = {"constant": synthetic.make_set(settings.traces, settings.seed, drifting=False, duration_s=settings.duration),
            "drifting": synthetic.make_set(settings.traces, settings.seed + 1, drifting=True, duration_s=settings.duration)}
    lm = codec = None
    lm_label = "lm"
    if "lm" in settings.methods:
        import torch

        torch.set_num_threads(settings.threads)
        lm_path = settings.lm
        if settings.train_steps:
            lm_path = str(finetune_on_synthetic(settings, out))
            lm_label = f"lm fine-tuned {settings.train_steps} steps"
        lm, codec = load_lm_and_codec(lm_path, settings.codec)
    results, lines = {}, []
    for name, traces in sets.items():
        lines += [f"### Synthetic set '{name}' ({len(traces)} traces x {settings.duration:g} s, Backus water layer, "
                  f"scored from {SCORE_FROM_S:g} s)", "",
                  "| method | traces | suppression dB (median) | (10th pct.) | corr. with primaries before -> after |",
                  "|---|---:|---:|---:|---:|"]
        rows = []
        if "wiener" in settings.methods:
            fixed = make_predictor("wiener")
            window = make_predictor("wiener", design_window_samples=int(DESIGN_WINDOW_S * SAMPLING_RATE))
            rows += [score_synthetic(traces, "wiener, oracle tau", fixed, "oracle"),
                     score_synthetic(traces, "wiener, picked tau", fixed, "picked"),
                     score_synthetic(traces, f"wiener time-varying ({DESIGN_WINDOW_S:g} s windows), picked tau",
                                     window, "picked")]
        if lm is not None:
            subset = traces[: settings.lm_traces]
            if "wiener" in settings.methods:
                rows.append(score_synthetic(subset, "wiener, oracle tau (LM's traces)", make_predictor("wiener"),
                                            "oracle"))
            rows.append(score_synthetic(subset, f"{lm_label}, oracle tau",
                                        make_predictor("lm", lm=lm, codec=codec), "oracle"))
        for r in rows:
            lines.append(f"| {r['label']} | {r['traces']} | {r['suppression_db']:.1f} | {r['suppression_db_p10']:.1f} | "
                         f"{r['correlation_before']:.2f} -> {r['correlation_after']:.2f} |")
        lines.append("")
        results[name] = rows
    return results, lines, sets


def score_real(traces: list[tuple[str, np.ndarray]], method: str, predictor, lags_s: list[float],
               operator_s: float) -> list[dict]:
    """Per lag: median autocorrelation reduction at lags [lag, lag + L] and error / input energy over traces."""
    operator = int(round(operator_s * SAMPLING_RATE))
    rows = []
    for lag_s in lags_s:
        lag = int(round(lag_s * SAMPLING_RATE))
        reduction, energy = [], []
        for _, samples in traces:
            centred, _, error = deconvolve_samples(samples, lag, operator, predictor)
            reduction.append(autocorrelation_reduction_db(centred, error, lag, operator))
            energy.append(10 * np.log10(np.sum(error**2) / np.sum(centred**2)))
        rows.append({"method": method, "lag_s": lag_s, "operator_s": operator_s, "traces": len(traces),
                     "autocorrelation_reduction_db": float(np.median(reduction)),
                     "autocorrelation_reduction_db_p10": float(np.percentile(reduction, 10)),
                     "error_to_input_db": float(np.median(energy))})
    return rows


def evaluate_real(settings, files: list[Path]) -> tuple[list[dict], list[str]]:
    """Real part: (rows, markdown lines)."""
    from codec.data import load_traces

    from .deconvolve import check_lengths

    traces = load_traces(files)
    if not traces:
        raise InputError("no usable trace in the waveform files")
    lag_max, operator = (int(round(s * SAMPLING_RATE)) for s in (max(settings.lags), settings.operator_seconds))
    for label, samples in traces:
        check_lengths(label, len(samples), lag_max, operator)
    lm, codec = load_lm_if_needed(settings)
    runs = [("wiener", traces)] if "wiener" in settings.methods else []
    if lm is not None:  # the LM is slow: a subset, with the Wiener filter on the same traces
        subset = traces[: settings.lm_traces]
        if "wiener" in settings.methods and len(subset) < len(traces):
            runs.append(("wiener", subset))
        runs.append(("lm", subset))
    lines = [f"### Real recordings ({len(traces)} traces), operator {settings.operator_seconds:g} s", "",
             "| method | traces | lag s | autocorr. reduction at lags [lag, lag+L] dB (median) | (10th pct.) "
             "| error / input energy dB (median) |", "|---|---:|---:|---:|---:|---:|"]
    rows = []
    for method, scored in runs:
        predictor = make_predictor(method, lm=lm, codec=codec)
        for r in score_real(scored, method, predictor, settings.lags, settings.operator_seconds):
            rows.append(r)
            lines.append(f"| {method} | {r['traces']} | {r['lag_s']:g} | {r['autocorrelation_reduction_db']:.1f} | "
                         f"{r['autocorrelation_reduction_db_p10']:.1f} | {r['error_to_input_db']:.1f} |")
    lines.append("")
    return rows, lines


def plot_synthetic_examples(sets: dict, path: Path, seconds: float = 60.0) -> None:
    """First trace of each set, first `seconds`: observed, true primaries and the Wiener errors (picked tau)."""
    plt = _pyplot()
    predictors = {"fixed": make_predictor("wiener"),
                  "time-varying": make_predictor("wiener", design_window_samples=int(DESIGN_WINDOW_S * SAMPLING_RATE))}
    n = int(seconds * SAMPLING_RATE)
    fig, axes = plt.subplots(2 + len(predictors), len(sets), figsize=(6 * len(sets), 7), sharex=True, squeeze=False)
    for column, (name, traces) in enumerate(sets.items()):
        trace = traces[0]
        rows = [("observed", trace.observed - trace.observed.mean(), "black"),
                ("true primaries", trace.primaries - trace.primaries.mean(), "tab:green")]
        lag, operator = lag_and_operator(trace, "picked")
        for short, predictor in predictors.items():
            _, _, error = deconvolve_samples(trace.observed, lag, operator, predictor)
            suppression = multiple_suppression_db(trace.observed, error, trace.primaries)
            rows.append((f"Wiener {short}\n{suppression:.1f} dB", error, "tab:blue"))
        t = np.arange(min(n, len(trace.observed))) / SAMPLING_RATE
        limit = 1.05 * np.abs(rows[0][1][: len(t)]).max()
        for ax, (label, data, color) in zip(axes[:, column], rows):
            ax.plot(t, data[: len(t)], color=color, lw=0.6)
            ax.set_ylim(-limit, limit)
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        p = trace.parameters
        axes[0, column].set_title(f"{name} set, trace 0: tau {p['tau_start_s']:.2f} -> {p['tau_end_s']:.2f} s, "
                                  f"r {p['reflection']:.2f}, SNR {p['snr_db']:.0f} dB", fontsize=9)
        axes[-1, column].set_xlabel("seconds")
    save_figure(fig, path)


def evaluate_deconvolution(settings: "DeconvolutionEvaluation") -> int:
    unknown = set(settings.methods) - {"wiener", "lm"}
    if unknown:
        raise UsageError(f"unknown --methods {', '.join(sorted(unknown))}; choose from wiener, lm")
    if not (settings.synthetic or settings.inputs or settings.nc_events):
        raise UsageError("nothing to evaluate: give waveform INPUTS, --nc-events DIR or --synthetic")
    if settings.train_steps and not settings.synthetic:
        raise UsageError("--train-steps fine-tunes on the synthetic set: it needs --synthetic")
    if settings.synthetic and settings.duration < 2 * SCORE_FROM_S:
        raise UsageError(f"--duration must be at least {2 * SCORE_FROM_S:g} s (scores start at {SCORE_FROM_S:g} s)")
    files = input_files(settings)[0] if (settings.inputs or settings.nc_events) else None
    out = Path(settings.out)
    started = time.monotonic()
    report = {"settings": {k: v for k, v in vars(settings).items() if k != "func"}, "score_from_s": SCORE_FROM_S}
    lines, figures = [], []
    if settings.synthetic:
        report["synthetic"], synthetic_lines, sets = evaluate_synthetic(settings, out)
        lines += synthetic_lines
        figures.append((plot_synthetic_examples, sets, out / "deconvolution_synthetic.png"))
    if files is not None:
        report["real"], real_lines = evaluate_real(settings, files)
        lines += real_lines
    report["seconds"] = round(time.monotonic() - started, 1)
    tables = "\n".join(lines)
    print(tables)
    written = write_report(out, "deconvolution", report, tables)
    for plot, data, path in figures:
        plot(data, path)
        written.append(path)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


# ------------------------------------------------------------------ settings (the `eqcodec evaluate` flags)
@dataclass
class ForecastEvaluation:
    """Settings of `eqcodec evaluate forecast` (see the module docstring); run with evaluate_forecast."""

    out: str
    inputs: list[str] = field(default_factory=list)
    nc_events: str | None = None
    picks: str | None = None
    methods: list[str] = field(default_factory=lambda: [*forecast_methods(), "lm"])
    seed: int = 0
    lm: str | None = None
    codec: str | None = None
    threads: int = 1
    context_seconds: float = 20.0
    horizons: list[float] = field(default_factory=lambda: [1.0, 5.0, 10.0, 30.0])
    max_cases: int | None = None
    samples: int = 100
    lm_samples: int = 16


@dataclass
class DeconvolutionEvaluation:
    """Settings of `eqcodec evaluate deconvolution` (see the module docstring); run with evaluate_deconvolution."""

    out: str
    inputs: list[str] = field(default_factory=list)
    nc_events: str | None = None
    methods: list[str] = field(default_factory=lambda: ["wiener", "lm"])
    seed: int = 0
    lm: str | None = None
    codec: str | None = None
    threads: int = 1
    lags: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    operator_seconds: float = 1.0
    lm_traces: int = 10
    synthetic: bool = False
    traces: int = 50
    duration: float = 180.0
    train_steps: int = 0
    train_traces: int = 60
    train_duration: float = 120.0

    def __post_init__(self):
        if self.train_steps < 0:
            raise InputError(f"--train-steps must not be negative, got {self.train_steps}")
