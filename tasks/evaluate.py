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
    max(--horizons) seconds, or with --cases-per-trace N, N cases
    "continuous" with end points spread evenly over each trace: for
    continuous recordings). The context is the --context-seconds before
    that point and the truth the following max(--horizons) seconds; cases
    that do not fit in the trace are dropped. Each case is normalized by its
    context's mean and standard deviation (CRPS is in units of that std).
    Methods: zero, persistence (last second repeated) and ar (AR(p), Burg,
    order by AIC) are deterministic: their CRPS is the MAE and they have no
    90 % band; noise-ensemble, ar-ensemble (--samples members) and lm (the
    token LM's --lm-samples sampled continuations at the LM's sampling settings, generation_config.json)
    are probabilistic. Scores over the first h s for each horizon h
    (tasks.scores): relative MSE, log-envelope RMSE, log-PSD error,
    CRPS, coverage of the 5-95 % band; median over cases (coverage: mean).

eqcodec evaluate deconvolution
    Methods (--methods, tasks.deconvolve): wiener (one operator, or
    time-varying over 60-s design windows), delay (the model-free trace
    delayed by its period tau: picked from the autocorrelation per trace or
    per 60-s window, or the true tau(t) on synthetics) and lm (the LM's
    conditional mean, --lm-samples continuations at temperature 1 per
    frame). Each prediction is subtracted as it is ("direct") and/or after
    adaptive matching ("adaptive": --match-taps filters in half-overlapping
    --match-window-seconds windows, tasks.adaptive); Wiener both ways, delay
    adaptively, the LM both ways.
    Real recordings (the waveform files or --nc-events): no truth, so the
    score is the reduction (dB) of the normalized autocorrelation's energy at
    lags [lag, lag + L] for each of --lags, and the error / input energy:
    median, maximum, the worst matching window and the number of traces
    whose output holds more energy than the input (whole trace / any
    window), checked on every trace. The LM is slow (it continues every
    frame --lm-samples times, for each lag): it runs on the first
    --lm-traces traces, beside the other methods on the same traces.
    --onsets (with --nc-events, or INPUTS and --picks CSV): the LM as an onset
    detector against the analyst P picks, beside obspy's classic STA/LTA
    (1 s / 10 s) on the same traces: a detection is a trigger within +-1 s
    of P, a false trigger any other trigger not within +-1 s of P or S; no
    detector triggers in the first 10 s. The LM's detectors (tasks.surprisal):
    the summed surprisal (--output surprisal), the gain stream's surprisal,
    its one-sided exceedance -log P(gain >= observed | past), and the gain
    rise (dB above the LM's predicted quantile of the frame's gain) on one
    frame grid and on n grids a frame / n apart. Thresholds are swept over
    each function's quantiles; every detector's detection rate is read off
    its curve (interpolated) at 1, 3 and 10 false triggers per hour and at
    STA/LTA's rate. With --nc-events the training split chooses the gain
    rise's quantile and n and every threshold (STA/LTA's at its best CSI,
    the others' at no more false triggers), and the held-out split reports,
    at those thresholds too. Uses --lm as given (not the synthetic
    fine-tuning). `--methods none --onsets` runs only this.
    --synthetic: the seeded reverberation sets of tasks.synthetic (truth known),
    "constant" (tau fixed per trace, seed --seed) and "drifting" (tau drifts
    by up to +-10 %, seed --seed + 1), --traces traces of --duration s each.
    Scores per trace, from second SCORE_FROM_S on (the LM predicts nothing
    before its first context window): multiple suppression (energy of all
    that is not primary, before / after, dB), correlation with the true
    primaries, and the SNR against the true multiples (what the water layer
    adds: tasks.synthetic's reverberation) of the prediction itself and of
    the prediction as subtracted. Lag and operator per trace from the true
    tau ("oracle") or the autocorrelation peak ("picked"):
        lag = tau_min - 0.25 s,  operator = 2 tau_max - lag + 1 s.
    With --train-steps N > 0 the LM is first fine-tuned on reverberations:
    --train-traces traces of each kind (seeds --seed + 100 and + 101, never
    the test traces; wavelets drawn from --train-wavelets; the default of
    5000 per kind of 120 s is 10^4 tokenized windows) are written to
    OUT/synthetic-train/ as miniSEED one at a time, tokenized
    (tokenized_data.tokenize) into OUT/synthetic-corpus and the LM (--lm,
    default the shipped one) fine-tuned on them by `train-lm` (lm.train, N
    steps) into OUT/synthetic-lm; the fine-tuned OUT/synthetic-lm/final is
    then scored on the first --lm-traces test traces of each set, at the
    oracle lag, beside the Wiener filter and the delay at the same lag on the
    same traces. Rerunning the command reuses those folders when drawn the
    same way (an interrupted fine-tuning resumes).
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
from .adaptive import DEFAULT_TAPS, DEFAULT_WINDOW_SECONDS
from .deconvolve import LM_SAMPLES, Matching, deconvolve_samples, energy_check, make_predictor, subtract
from .scores import (autocorrelation_reduction_db, ensemble_quantiles, horizon_scores, multiple_suppression_db,
                     primary_correlation)


# ------------------------------------------------------------------ shared

#: Forecast cases: where the context ends, as (reference pick, offset in seconds).
CASES = {"noise": ("p", -10.0), "P+2s": ("p", 2.0), "S+5s": ("s", 5.0)}
#: The case of a trace without picks: the context ends max(horizons) seconds before the trace's end.
END_CASE = "end"
#: Cases of a trace without picks when several are asked for: end points spread evenly over it.
CONTINUOUS_CASE = "continuous"
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


def usable_traces(path: Path):
    """Yield (trace, its samples at 40 Hz) for every trace of a file the codec can read; the others are skipped with a warning."""
    for trace in read_stream(path):
        try:
            yield trace, trace_to_codec_input(trace)
        except InputError as err:
            warnings.warn(f"skipping {err}")


def forecast_cases(files: list[Path], picks: dict | None, context_s: float, horizon_s: float,
                   cases_per_trace: int = 1) -> list[dict]:
    """Every case that fits in its trace: {"kind", "trace", "context" [C], "truth" [H]}, normalized by the context.

    Without picks: one case "end" per trace, or with cases_per_trace N > 1, N cases
    "continuous" whose end points are spread evenly over the trace.
    """
    context_n, horizon_n = int(round(context_s * SAMPLING_RATE)), int(round(horizon_s * SAMPLING_RATE))
    cases = []
    for path in files:
        if picks is not None and path.name not in picks:
            warnings.warn(f"skipping {path}: no picks for it")
            continue
        for trace, samples in usable_traces(path):
            if picks is None and cases_per_trace > 1:
                first, last = context_n, len(samples) - horizon_n
                points = [] if last < first else np.linspace(first, last, cases_per_trace + 2)[1:-1]
                ends = {f"{CONTINUOUS_CASE}:{i}": int(round(p)) for i, p in enumerate(points)}
            elif picks is None:
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
                cases.append({"kind": kind.split(":")[0], "trace": f"{path.name}:{trace.id}",
                              "context": (context - mean) / std,
                              "truth": (samples[end : end + horizon_n] - mean) / std,
                              "source_rate": float(trace.stats.sampling_rate)})
    return cases


def spread_subset(items: list, n: int) -> list:
    """At most n items, evenly spaced over the list (all of them if it is not longer): every file and station keeps a share."""
    if len(items) <= n:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def lm_sample_forecasts(context: np.ndarray, horizon_samples: int, n_samples: int, rng: np.random.Generator,
                        source_rate: float | None = None, *, lm, codec) -> np.ndarray:
    """[S, H] token-LM continuations of a 40 Hz context [N] (its whole seconds are read); source_rate: the
    channel's own rate (decoded with nothing above a slower channel's Nyquist)."""
    from .forecast import forecast_samples

    members = forecast_samples(context, lm, codec, len(context) // int(SAMPLING_RATE),
                               math.ceil(horizon_samples / SAMPLING_RATE), n_samples,
                               seed=int(rng.integers(2**31)), source_rate=source_rate)  # the LM's settings
    return members[:, :horizon_samples]


def forecast_methods(lm=None, codec=None) -> dict:
    """name -> f(context [N], horizon_samples, n_samples, rng, source_rate=None) -> [S, H] (S = 1 for
    deterministic ones). source_rate: the rate the channel was recorded at; the classical methods continue the
    context's own band and need not know it."""
    table = {name: (lambda f: lambda c, h, s, rng, source_rate=None: f(c, h)[None])(f)
             for name, f in FORECASTERS.items()}
    table.update({name: (lambda f: lambda c, h, s, rng, source_rate=None: f(c, h, s, rng))(f)
                  for name, f in SAMPLE_FORECASTERS.items()})
    if lm is not None:
        table["lm"] = partial(lm_sample_forecasts, lm=lm, codec=codec)
    return table


def score_forecasts(cases: list[dict], methods: dict, horizons: list[float], samples: dict, seed: int) -> dict:
    """{kind: {method: {h: {metric: median over cases (coverage: mean)}}}}; samples: method -> members S."""
    horizon_n = int(round(max(horizons) * SAMPLING_RATE))
    per_case: dict = {}  # kind -> method -> [{h: {metric: value}}]
    for name, forecaster in methods.items():
        for i, case in enumerate(cases):
            forecast = forecaster(case["context"], horizon_n, samples[name], np.random.default_rng([seed, i]),
                                  source_rate=case.get("source_rate"))
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
            members = methods[name](case["context"], horizon, samples[name], np.random.default_rng(seed),
                                    source_rate=case.get("source_rate"))
            low, high = ensemble_quantiles(members, [0.05, 0.95])
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
    cases = forecast_cases(files, picks, settings.context_seconds, max(settings.horizons), settings.cases_per_trace)
    if settings.max_cases:
        kinds = dict.fromkeys(c["kind"] for c in cases)
        cases = [c for kind in kinds for c in spread_subset([c for c in cases if c["kind"] == kind], settings.max_cases)]
    if not cases:
        raise InputError(f"no forecast case fits: every trace is shorter than the {settings.context_seconds:g} s "
                         f"context plus the {max(settings.horizons):g} s horizon around its picks")
    available = forecast_methods(lm, codec)
    methods = {name: available[name] for name in settings.methods}
    lm_samples = settings.lm_samples or (lm.sampling_settings()["samples"] if lm is not None else None)
    samples = {name: lm_samples if name == "lm" else settings.samples for name in methods}

    started = time.monotonic()
    summary = score_forecasts(cases, methods, settings.horizons, samples, settings.seed)
    counts = {kind: sum(c["kind"] == kind for c in cases) for kind in summary}
    tables = forecast_tables(summary, counts, settings.context_seconds)
    print(tables)
    report = {"settings": {k: v for k, v in vars(settings).items() if k != "func"},
              "lm_codec_id": lm.config.codec_id if lm is not None else None, "lm_samples": lm_samples,
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


def snr_db(truth: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10( sum truth^2 / sum (truth - estimate)^2 ): 0 dB for an estimate of zero."""
    truth, estimate = np.asarray(truth, dtype=np.float64), np.asarray(estimate, dtype=np.float64)
    misfit = np.sum((truth - estimate) ** 2)
    return float(10 * np.log10(np.sum(truth**2) / misfit)) if misfit > 0 else float("inf")


def matching_of(settings) -> Matching:
    """The adaptive subtraction's settings of an evaluation (--match-taps, --match-window-seconds)."""
    return Matching(settings.match_taps, int(round(settings.match_window_seconds * SAMPLING_RATE)))


def score_synthetic(traces: list, label: str, predictor_of, how: str,
                    subtractions: dict[str, Matching | None]) -> list[dict]:
    """One row per subtraction ("direct": None, "adaptive": Matching): medians over traces, scored from SCORE_FROM_S.

    predictor_of(trace) -> the predictor for that trace; the prediction is
    computed once per trace and subtracted each way. Scores: multiple
    suppression and correlation with the true primaries (tasks.scores), and the
    SNR against the true multiples (trace.reverberation) of the prediction
    itself and of the prediction as subtracted (matched).
    """
    start = int(SCORE_FROM_S * SAMPLING_RATE)
    per_trace: dict[str, list] = {name: [] for name in subtractions}
    for trace in traces:
        lag, operator = lag_and_operator(trace, how)
        centred = trace.observed - trace.observed.mean()
        prediction = predictor_of(trace)(centred, lag, operator)
        observed, primaries, multiples = trace.observed[start:], trace.primaries[start:], trace.reverberation[start:]
        for name, matching in subtractions.items():
            error = subtract(centred, prediction, lag, matching, f"synthetic trace {trace.parameters['index']}")
            per_trace[name].append({
                "index": trace.parameters["index"], "lag_s": lag / SAMPLING_RATE,
                "operator_s": operator / SAMPLING_RATE,
                "tau_start_s": trace.parameters["tau_start_s"], "tau_end_s": trace.parameters["tau_end_s"],
                "suppression_db": multiple_suppression_db(observed, error[start:], primaries),
                "correlation_before": primary_correlation(observed, primaries),
                "correlation_after": primary_correlation(error[start:], primaries),
                "prediction_snr_db": snr_db(multiples, prediction[start:]),
                "matched_snr_db": snr_db(multiples, (centred - error)[start:]),
            })
    rows = []
    for name, scored in per_trace.items():
        values = lambda key: [t[key] for t in scored]  # noqa: E731
        rows.append({"label": f"{label}, {name}", "subtraction": name, "traces": len(scored),
                     "suppression_db": float(np.median(values("suppression_db"))),
                     "suppression_db_p10": float(np.percentile(values("suppression_db"), 10)),
                     "correlation_before": float(np.median(values("correlation_before"))),
                     "correlation_after": float(np.median(values("correlation_after"))),
                     "prediction_snr_db": float(np.median(values("prediction_snr_db"))),
                     "matched_snr_db": float(np.median(values("matched_snr_db"))), "per_trace": scored})
    return rows


def training_recipe(settings, drifting: bool) -> dict:
    """How a fine-tuning set is drawn: a stored set is reused only when it was drawn the same way."""
    return {"n_traces": settings.train_traces, "seed": settings.seed + TRAIN_SEED_OFFSET + int(drifting),
            "drifting": drifting, "duration_s": settings.train_duration, "wavelets": list(settings.train_wavelets)}


def finetune_on_synthetic(settings, out: Path) -> Path:
    """Write training traces, tokenize them and fine-tune the LM with train-lm; returns the fine-tuned LM folder.

    Both sets ("constant" and "drifting", --train-traces each, wavelets
    --train-wavelets) are drawn and written one trace at a time
    (synthetic.iter_set); sets, corpus and run are reused when the command
    runs again with the same recipe (the corpus is rebuilt when a set changed).
    """
    import shutil

    from tokenized_data import tokenize

    from lm import train
    from lm.model import PRETRAINED_DIR

    train_dir, corpus, run = out / "synthetic-train", out / "synthetic-corpus", out / "synthetic-lm"
    for name in ("constant", "drifting"):
        recipe = training_recipe(settings, name == "drifting")
        manifest = train_dir / name / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("recipe") == recipe:
            continue
        traces = synthetic.iter_set(recipe["n_traces"], recipe["seed"], drifting=recipe["drifting"],
                                    duration_s=recipe["duration_s"], wavelets=tuple(recipe["wavelets"]))
        synthetic.write_set(traces, train_dir / name, overwrite=True, recipe=recipe)
        shutil.rmtree(corpus, ignore_errors=True)  # made from the old set
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


SYNTHETIC_HEADER = ["| method | traces | suppression dB (median) | (10th pct.) | corr. with primaries before -> after "
                    "| prediction SNR dB | matched SNR dB |", "|---|---:|---:|---:|---:|---:|---:|"]


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
    window = int(DESIGN_WINDOW_S * SAMPLING_RATE)
    direct, adaptive = {"direct": None}, {"adaptive": matching_of(settings)}
    both = {**direct, **adaptive}
    fixed = lambda predictor: lambda trace: predictor  # noqa: E731
    wiener, wiener_tv = make_predictor("wiener"), make_predictor("wiener", design_window_samples=window)
    delay, delay_tv = make_predictor("delay"), make_predictor("delay", design_window_samples=window)
    oracle_delay = lambda trace: make_predictor("delay", period_samples=trace.tau_samples)  # noqa: E731
    tv = f"time-varying ({DESIGN_WINDOW_S:g} s windows)"
    results, lines = {}, []
    for name, traces in sets.items():
        lines += [f"### Synthetic set '{name}' ({len(traces)} traces x {settings.duration:g} s, Backus water layer, "
                  f"scored from {SCORE_FROM_S:g} s; adaptive: {settings.match_taps} taps, "
                  f"{settings.match_window_seconds:g}-s windows)", "", *SYNTHETIC_HEADER]
        rows = []
        if "wiener" in settings.methods:
            rows += score_synthetic(traces, "wiener, oracle tau", fixed(wiener), "oracle", direct)
            rows += score_synthetic(traces, "wiener, picked tau", fixed(wiener), "picked", both)
            rows += score_synthetic(traces, f"wiener {tv}, picked tau", fixed(wiener_tv), "picked", both)
        if "delay" in settings.methods:
            rows += score_synthetic(traces, "delay, oracle tau(t)", oracle_delay, "oracle", adaptive)
            rows += score_synthetic(traces, "delay, picked tau", fixed(delay), "picked", adaptive)
            rows += score_synthetic(traces, f"delay {tv}, picked tau", fixed(delay_tv), "picked", adaptive)
        if lm is not None:
            subset = traces[: settings.lm_traces]
            if "wiener" in settings.methods:
                rows += score_synthetic(subset, "wiener, oracle tau (LM's traces)", fixed(wiener), "oracle", direct)
                rows += score_synthetic(subset, f"wiener {tv}, picked tau (LM's traces)", fixed(wiener_tv),
                                        "picked", direct)
            if "delay" in settings.methods:
                rows += score_synthetic(subset, "delay, oracle tau(t) (LM's traces)", oracle_delay, "oracle", adaptive)
            lm_predictor = make_predictor("lm", lm=lm, codec=codec, lm_samples=settings.lm_samples, seed=settings.seed)
            rows += score_synthetic(subset, f"{lm_label}, oracle tau", fixed(lm_predictor), "oracle", both)
        for r in rows:
            lines.append(f"| {r['label']} | {r['traces']} | {r['suppression_db']:.1f} | {r['suppression_db_p10']:.1f} | "
                         f"{r['correlation_before']:.2f} -> {r['correlation_after']:.2f} | "
                         f"{r['prediction_snr_db']:.1f} | {r['matched_snr_db']:.1f} |")
        lines.append("")
        results[name] = rows
    lines += ["Prediction SNR: the prediction against the true multiples (what the water layer adds), before "
              "subtraction; matched SNR: the same for the prediction as subtracted (after the matching filters).", ""]
    return results, lines, sets


def score_real(traces: list[tuple[str, np.ndarray]], method: str, predictor, lags_s: list[float],
               operator_s: float, subtractions: dict[str, Matching | None], check_window: int) -> list[dict]:
    """Per lag and subtraction: median autocorrelation reduction at lags [lag, lag + L], error / input energy,
    and the energy check of every trace (deconvolve.energy_check over windows of check_window samples)."""
    operator = int(round(operator_s * SAMPLING_RATE))
    rows = []
    for lag_s in lags_s:
        lag = int(round(lag_s * SAMPLING_RATE))
        scored: dict[str, list] = {name: [] for name in subtractions}
        for label, samples in traces:
            centred = samples - samples.mean()
            prediction = predictor(centred, lag, operator)
            for name, matching in subtractions.items():
                error = subtract(centred, prediction, lag, matching, label)
                scored[name].append({"trace": label,
                                     "autocorrelation_reduction_db": autocorrelation_reduction_db(centred, error, lag,
                                                                                                  operator),
                                     **energy_check(centred, error, check_window)})
        for name, per_trace in scored.items():
            reduction = [t["autocorrelation_reduction_db"] for t in per_trace]
            rows.append({"method": method, "subtraction": name, "lag_s": lag_s, "operator_s": operator_s,
                         "traces": len(per_trace),
                         "autocorrelation_reduction_db": float(np.median(reduction)),
                         "autocorrelation_reduction_db_p10": float(np.percentile(reduction, 10)),
                         "error_to_input_db": float(np.median([t["trace_db"] for t in per_trace])),
                         "max_error_to_input_db": float(np.max([t["trace_db"] for t in per_trace])),
                         "max_window_db": float(np.max([t["max_window_db"] for t in per_trace])),
                         "traces_over": int(sum(t["trace_db"] > 0 for t in per_trace)),
                         "traces_with_a_window_over": int(sum(t["windows_over"] > 0 for t in per_trace)),
                         "per_trace": per_trace})
    return rows


def _load_lm(settings):
    """(lm, codec) of --lm / --codec, checked to belong together; one torch thread per --threads."""
    import torch
    from transformers.utils import logging as hf_logging

    from .forecast import load_lm_and_codec

    torch.set_num_threads(settings.threads)
    hf_logging.disable_progress_bar()
    return load_lm_and_codec(settings.lm, settings.codec)


def evaluate_real(settings, files: list[Path]) -> tuple[list[dict], list[str]]:
    """Real part: (rows, markdown lines)."""
    from codec.data import load_traces

    from .deconvolve import check_lengths

    traces = load_traces(files)
    if not traces:
        raise InputError("no usable trace in the waveform files")
    matching = matching_of(settings)
    lag_max, operator = (int(round(s * SAMPLING_RATE)) for s in (max(settings.lags), settings.operator_seconds))
    for label, samples in traces:
        check_lengths(label, len(samples), lag_max, operator, match_window=matching.window_samples)
    direct, adaptive = {"direct": None}, {"adaptive": matching}
    runs = []
    if "wiener" in settings.methods:
        runs.append(("wiener", traces, {**direct, **adaptive}))
    if "delay" in settings.methods:
        runs.append(("delay", traces, adaptive))
    lm = codec = None
    if "lm" in settings.methods:  # the LM is slow: a subset, with the other methods on the same traces
        lm, codec = _load_lm(settings)
        subset = traces[: settings.lm_traces]
        if len(subset) < len(traces):
            runs += [(method, subset, subs) for method, _, subs in runs]
        runs.append(("lm", subset, {**direct, **adaptive}))
    lines = [f"### Real recordings ({len(traces)} traces), operator {settings.operator_seconds:g} s; adaptive: "
             f"{settings.match_taps} taps, {settings.match_window_seconds:g}-s windows", "",
             "| method | subtraction | traces | lag s | autocorr. reduction at lags [lag, lag+L] dB (median) "
             "| (10th pct.) | error / input energy dB (median) | (max) | worst window dB | traces louder than "
             "the input (whole / any window) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = []
    for method, scored, subtractions in runs:
        predictor = make_predictor(method, lm=lm, codec=codec, lm_samples=settings.lm_samples, seed=settings.seed)
        for r in score_real(scored, method, predictor, settings.lags, settings.operator_seconds, subtractions,
                            matching.window_samples):
            rows.append(r)
            lines.append(f"| {method} | {r['subtraction']} | {r['traces']} | {r['lag_s']:g} | "
                         f"{r['autocorrelation_reduction_db']:.1f} | {r['autocorrelation_reduction_db_p10']:.1f} | "
                         f"{r['error_to_input_db']:.1f} | {r['max_error_to_input_db']:.1f} | "
                         f"{r['max_window_db']:.1f} | {r['traces_over']} / {r['traces_with_a_window_over']} |")
    lines += ["", f"Energy check: output against input energy over each whole trace and over every "
              f"{settings.match_window_seconds:g}-s matching window (half overlapping); the adaptive "
              "subtraction never exceeds the input by construction (tasks.adaptive).", ""]
    return rows, lines


# ------------------------------------------------------------------ onsets

#: The classic STA/LTA's windows (s); no detector triggers in a trace's first LTA_S (STA/LTA has no
#: LTA yet there, the LM fewer frames of context than its shortest training crop).
STA_S, LTA_S = 1.0, 10.0
#: A detection is a trigger within this many seconds of the P pick.
ONSET_TOLERANCE_S = 1.0
#: False-trigger rates (per hour) at which every detector's detection rate is read off its curve.
FALSE_RATES_PER_HOUR = (1.0, 3.0, 10.0)
#: Predicted-gain quantiles a gain-rise detector may compare with, and the numbers of frame grids
#: (tasks.surprisal.grid_scores) it may read; the training split picks one of each.
RISE_QUANTILES = (0.5, 0.84, 0.95, 0.99, 0.995, 0.999)
GRID_CHOICES = (2, 4, 8)
#: Thresholds tried: quantiles of each function pooled over its traces, denser towards the top,
#: where the low false-trigger rates are.
THRESHOLD_QUANTILES = 1 - np.geomspace(0.5, 2e-5, 160)


@dataclass
class Detector:
    """One characteristic function per trace, sampled at `rate` Hz; sample i stands for the time
    first_s + i / rate (s after the trace's start); `baseline` is its level without an onset."""

    functions: list[np.ndarray]
    rate: float
    first_s: float
    baseline: float
    parameters: dict = field(default_factory=dict)  # free parameters, as chosen on the training split


def onset_cases(files: list[Path], picks: dict) -> list[dict]:
    """Every usable trace of a file with a P pick: {"trace", "samples" [N] at 40 Hz, "p_s", "s_s" (or None)},
    the picks in seconds after the trace's start."""
    cases = []
    for path in files:
        if path.name not in picks or picks[path.name]["p"] is None:
            warnings.warn(f"skipping {path}: no P pick for it")
            continue
        for trace, samples in usable_traces(path):
            start = trace.stats.starttime
            s_pick = picks[path.name]["s"]
            cases.append({"trace": f"{path.name}:{trace.id}", "samples": samples,
                          "p_s": float(picks[path.name]["p"] - start),
                          "s_s": float(s_pick - start) if s_pick is not None else None})
    return cases


def sta_lta(samples: np.ndarray) -> np.ndarray:
    """[N] obspy's classic STA/LTA (STA_S / LTA_S) of the offset-free 40 Hz samples (0 for the first LTA_S)."""
    from obspy.signal.trigger import classic_sta_lta

    x = np.asarray(samples, dtype=np.float64)
    return classic_sta_lta(x - x.mean(), int(STA_S * SAMPLING_RATE), int(LTA_S * SAMPLING_RATE))


def trigger_times(function: np.ndarray, rate: float, on: float, off: float) -> np.ndarray:
    """Onset times (s) where `function` (sampled at `rate`) rises above `on`, each trigger ending below `off`."""
    from obspy.signal.trigger import trigger_onset

    spans = trigger_onset(np.nan_to_num(function, nan=-np.inf), on, off)
    return np.array([span[0] / rate for span in spans], dtype=np.float64)


def detection_curve(cases: list[dict], detector: Detector, thresholds: np.ndarray) -> list[dict]:
    """Per threshold: detection rate (a trigger within ONSET_TOLERANCE_S of P), false triggers per hour, CSI.

    A trigger within the tolerance of P or S is not false; every other is.
    The trigger ends when the function falls half-way back from the
    threshold to the detector's baseline. CSI (critical success index) =
    detections / (traces + false triggers).
    """
    hours = sum(len(c["samples"]) for c in cases) / SAMPLING_RATE / 3600
    functions = []
    for function in detector.functions:
        times = detector.first_s + np.arange(len(function)) / detector.rate
        functions.append(np.where(times < LTA_S, -np.inf, function))
    curve = []
    for on in thresholds:
        detected = false = 0
        off = detector.baseline + (on - detector.baseline) / 2
        for case, function in zip(cases, functions):
            times = detector.first_s + trigger_times(function, detector.rate, on, off)
            near = lambda pick: np.abs(times - pick) <= ONSET_TOLERANCE_S if pick is not None else False  # noqa: E731
            at_p = near(case["p_s"])
            detected += bool(np.any(at_p))
            false += int(np.sum(~(at_p | near(case["s_s"]))))
        curve.append({"threshold": float(on), "detection_rate": detected / len(cases),
                      "false_per_hour": false / hours, "csi": detected / (len(cases) + false)})
    return curve


def sweep(cases: list[dict], detector: Detector) -> list[dict]:
    """detection_curve over THRESHOLD_QUANTILES of the detector's functions, above its baseline."""
    pooled = np.concatenate(detector.functions)
    thresholds = np.unique(np.quantile(pooled[np.isfinite(pooled)], THRESHOLD_QUANTILES))
    return detection_curve(cases, detector, thresholds[thresholds > detector.baseline])


def best_of(curve: list[dict]) -> dict:
    """The threshold of highest CSI."""
    return max(curve, key=lambda point: (point["csi"], point["detection_rate"]))


def at_false_rate(curve: list[dict], false_per_hour: float) -> dict | None:
    """The point of highest detection rate whose false-trigger rate is at most `false_per_hour` (None if none is)."""
    allowed = [p for p in curve if p["false_per_hour"] <= false_per_hour + 1e-9]
    return max(allowed, key=lambda p: (p["detection_rate"], -p["false_per_hour"])) if allowed else None


def detection_at(curve: list[dict], false_per_hour: float) -> float | None:
    """Detection rate at exactly `false_per_hour`, interpolated linearly on the curve's upper envelope.

    Between two thresholds a detector can reach any point of the segment
    joining them (using either at random), and "never trigger" reaches
    (0, 0), so the envelope starts there. None beyond the curve's highest
    false-trigger rate: that rate was never reached.
    """
    points = sorted([(0.0, 0.0)] + [(p["false_per_hour"], p["detection_rate"]) for p in curve])
    rates = np.array([f for f, _ in points])
    if false_per_hour > rates.max():
        return None
    return float(np.interp(false_per_hour, rates, np.maximum.accumulate([d for _, d in points])))


def lm_detectors(scores: list[list]) -> dict[str, Detector]:
    """The LM's detectors without a free parameter, from each trace's grid_scores (its first grid): the summed
    surprisal (--output surprisal), the gain stream's surprisal and its one-sided exceedance.

    A frame stands for its centre, half a second after its start: the
    codec's frame window is centred there (codec.lapped), and the start
    would put every onset up to a frame early.
    """
    first = [s[0] for s in scores]
    functions = {"surprisal (all streams summed)": [s.surprisal for s in first],
                 "surprisal of the gain stream": [s.nll[0] for s in first],
                 "gain exceedance -log P(gain >= observed)": [s.gain_exceedance for s in first]}
    return {name: Detector(f, 1.0, 0.5, background(f)) for name, f in functions.items()}


def background(functions: list[np.ndarray]) -> float:
    """The level of a function without an onset: its median over all traces (most frames hold none)."""
    return float(np.nanmedian(np.concatenate(functions)))


def rise_detector(scores: list[list], quantile: float, grids: int) -> Detector:
    """The gain rise over the predicted `quantile` on `grids` of each trace's grid_scores (every
    len / grids-th, so a frame / grids apart), interleaved: `grids` samples per second."""
    from .surprisal import interleave_grids

    functions = [interleave_grids([s.gain_rise_db(quantile) for s in trace[:: len(trace) // grids]])
                 for trace in scores]
    return Detector(functions, float(grids), 0.5, background(functions), {"quantile": quantile, "grids": grids})


#: The gain-rise detectors and the grid counts each may choose from (the quantile: RISE_QUANTILES).
RISE_DETECTORS = {"gain rise over the predicted quantile (1 grid)": (1,),
                  "gain rise over the predicted quantile, several grids": GRID_CHOICES}


def onset_split(cases: list[dict], lm, codec) -> dict:
    """{"cases", "hours", "scores" (each trace's grid_scores on max(GRID_CHOICES) grids), "sta_lta" Detector}."""
    from .surprisal import grid_scores

    return {"cases": cases, "hours": sum(len(c["samples"]) for c in cases) / SAMPLING_RATE / 3600,
            "scores": [grid_scores(c["samples"], lm, codec, grids=max(GRID_CHOICES), label=c["trace"])
                       for c in cases],
            "sta_lta": Detector([sta_lta(c["samples"]) for c in cases], SAMPLING_RATE, 0.0, 1.0)}


def choose_rise_parameters(split: dict) -> dict[str, dict]:
    """Per gain-rise detector, the (quantile, grids) of highest detection rate on `split` at STA/LTA's
    false-trigger rate there (the rate the target compares at), ties broken by the mean at FALSE_RATES_PER_HOUR."""
    reference = best_of(sweep(split["cases"], split["sta_lta"]))["false_per_hour"]
    chosen = {}
    for name, grid_choices in RISE_DETECTORS.items():
        score = {}
        for quantile in RISE_QUANTILES:
            for grids in grid_choices:
                curve = sweep(split["cases"], rise_detector(split["scores"], quantile, grids))
                score[quantile, grids] = (detection_at(curve, reference) or 0.0,
                                          np.mean([detection_at(curve, r) or 0.0 for r in FALSE_RATES_PER_HOUR]))
        quantile, grids = max(score, key=score.get)
        chosen[name] = {"quantile": quantile, "grids": grids}
    return chosen


def evaluate_onsets(settings, files: list[Path], picks_path: Path | None) -> tuple[dict, list[str], dict]:
    """Onset part: (report, markdown lines, the plot's data); STA/LTA and the LM's detectors on the same traces.

    With --nc-events, the training split of nc-events chooses every free
    parameter (each gain-rise detector's quantile and number of frame grids,
    each detector's threshold) and the held-out split reports; with INPUTS
    and --picks there is no training split: tasks.surprisal's ONSET_QUANTILE
    and ONSET_GRIDS are used and only the threshold-free table is reported.
    """
    from .surprisal import ONSET_GRIDS, ONSET_QUANTILE

    if picks_path is None:
        raise UsageError("--onsets needs analyst picks: --picks CSV (columns file, p_arrival, s_arrival), "
                         "or --nc-events DIR (its picks.csv)")
    picks = read_picks(picks_path)
    cases = onset_cases(files, picks)
    if not cases:
        raise InputError(f"no trace of the waveform files has a P pick in {picks_path}")
    lm, codec = _load_lm(settings)
    test = onset_split(cases, lm, codec)
    training = None
    if settings.nc_events:
        from codec.data import nc_events_split

        training_cases = onset_cases(nc_events_split(settings.nc_events)[0], picks)
        if not training_cases:
            raise InputError(f"no trace of the training split of {settings.nc_events} has a P pick in {picks_path}")
        training = onset_split(training_cases, lm, codec)
        parameters = choose_rise_parameters(training)
    else:
        parameters = {name: {"quantile": ONSET_QUANTILE, "grids": 1 if grid_choices == (1,) else ONSET_GRIDS}
                      for name, grid_choices in RISE_DETECTORS.items()}

    def detectors_of(split):
        """STA/LTA and the LM's detectors on a split, each gain rise with its chosen parameters."""
        return {"STA/LTA": split["sta_lta"], **lm_detectors(split["scores"]),
                **{name: rise_detector(split["scores"], **chosen) for name, chosen in parameters.items()}}

    detectors = detectors_of(test)
    curves = {name: sweep(cases, detector) for name, detector in detectors.items()}
    report = {"traces": len(cases), "hours": test["hours"], "tolerance_s": ONSET_TOLERANCE_S, "sta_s": STA_S,
              "lta_s": LTA_S, "lm_codec_id": lm.config.codec_id, "rise_parameters": parameters, "detectors": {}}
    # The STA/LTA rate all detectors are read at: its held-out rate at its training threshold when there is a
    # training split, else its rate at its best CSI on these traces.
    thresholds = {}
    if training is not None:
        training_detectors = detectors_of(training)
        training_curves = {name: sweep(training["cases"], d) for name, d in training_detectors.items()}
        sta_lta_choice = best_of(training_curves["STA/LTA"])
        (sta_lta_held,) = detection_curve(cases, detectors["STA/LTA"], np.array([sta_lta_choice["threshold"]]))
        reference = sta_lta_held["false_per_hour"]
        for name, curve in training_curves.items():
            choice = sta_lta_choice if name == "STA/LTA" else at_false_rate(curve, sta_lta_choice["false_per_hour"])
            if choice is not None:
                (held,) = detection_curve(cases, detectors[name], np.array([choice["threshold"]]))
                thresholds[name] = {"training": choice, "held_out": held}
        report["training"] = {"traces": len(training["cases"]), "hours": training["hours"],
                              "sta_lta_false_per_hour": sta_lta_choice["false_per_hour"]}
    else:
        reference = best_of(curves["STA/LTA"])["false_per_hour"]
    report["reference_false_per_hour"] = reference
    for name, curve in curves.items():
        report["detectors"][name] = {"parameters": detectors[name].parameters,
                                     "detection_at": {f"{r:g}": detection_at(curve, r) for r in FALSE_RATES_PER_HOUR},
                                     "detection_at_reference": detection_at(curve, reference),
                                     "training_threshold": thresholds.get(name), "curve": curve}
    split_name = "held-out split of nc-events" if training is not None else "the given traces"
    lines = [f"### Onsets: {len(cases)} traces ({test['hours']:.2f} h, {split_name}); a detection = a trigger "
             f"within +-{ONSET_TOLERANCE_S:g} s of the analyst P pick, false = any other trigger not within "
             f"+-{ONSET_TOLERANCE_S:g} s of P or S", "",
             "Detection rate at equal false-trigger rates (each detector's curve, interpolated):", "",
             "| detector | quantile | grids | " + " | ".join(f"at {r:g} false/h" for r in FALSE_RATES_PER_HOUR)
             + f" | at STA/LTA's {reference:.1f} false/h |",
             "|---|---:|---:|" + "---:|" * (len(FALSE_RATES_PER_HOUR) + 1)]
    for name, result in report["detectors"].items():
        values = " | ".join("-" if v is None else f"{v:.2f}"
                            for v in [*result["detection_at"].values(), result["detection_at_reference"]])
        chosen = result["parameters"]
        lines.append(f"| {name} | {chosen.get('quantile', '-')} | {chosen.get('grids', '-')} | {values} |")
    if training is not None:
        lines += ["", f"Thresholds fixed on the training split ({report['training']['traces']} traces, "
                  f"{training['hours']:.2f} h) at STA/LTA's best CSI there "
                  f"({report['training']['sta_lta_false_per_hour']:.1f} false/h; each other detector: its highest "
                  "detection rate at no more false triggers), applied to the held-out traces:", "",
                  "| detector | threshold | training: detection rate | false/h | held-out: detection rate "
                  "| false/h | CSI |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name in curves:
            if name not in thresholds:
                lines.append(f"| {name} | - | - | - | - | - | - |")
                continue
            t, h = thresholds[name]["training"], thresholds[name]["held_out"]
            lines.append(f"| {name} | {t['threshold']:.2f} | {t['detection_rate']:.2f} | {t['false_per_hour']:.1f} | "
                         f"{h['detection_rate']:.2f} | {h['false_per_hour']:.1f} | {h['csi']:.2f} |")
    lines += ["", f"STA/LTA: obspy classic_sta_lta ({STA_S:g} s / {LTA_S:g} s) on the 40 Hz trace, an onset at its "
              "trigger sample. The LM's (tasks.surprisal): per 1-s frame given the frames before, an onset at the "
              "frame's centre; gain rise = dB of the frame's gain level above the LM's predicted quantile of it, on "
              "n frame grids a frame / n apart (n samples per second; quantile and n chosen on the training split "
              f"when there is one). No detector triggers in the first {LTA_S:g} s. Thresholds: quantiles of each "
              "function, above its background level; a trigger ends half-way back to that level.", ""]
    return report, lines, {"curves": curves, "reference": reference}


def plot_onset_curves(data: dict, path: Path) -> None:
    """Detection rate against false triggers per hour for each detector of data["curves"] (a held-out curve
    when there is a training split), the rate they are compared at (data["reference"]) marked."""
    plt = _pyplot()
    curves, reference = data["curves"], data["reference"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, curve in curves.items():
        points = sorted(curve, key=lambda p: p["false_per_hour"])
        ax.plot([p["false_per_hour"] for p in points], [p["detection_rate"] for p in points], lw=1,
                marker=".", ms=3, label=name)
    ax.axvline(reference, color="grey", lw=0.8, ls="--", label=f"STA/LTA's rate ({reference:.1f}/h)")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)  # rates are never negative: no mirrored half of the symlog axis
    ax.set_xlabel("false triggers per hour")
    ax.set_ylabel(f"detection rate (+-{ONSET_TOLERANCE_S:g} s of P)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Onset detection on the same traces", fontsize=9)
    save_figure(fig, path)


def plot_synthetic_examples(sets: dict, path: Path, settings=None, seconds: float = 60.0) -> None:
    """First trace of each set, first `seconds`: observed, true primaries, the Wiener errors and the
    delay prediction adaptively subtracted (picked tau)."""
    plt = _pyplot()
    window = int(DESIGN_WINDOW_S * SAMPLING_RATE)
    matching = matching_of(settings) if settings is not None else Matching()
    predictors = {"Wiener fixed": (make_predictor("wiener"), None),
                  "Wiener time-varying": (make_predictor("wiener", design_window_samples=window), None),
                  "delay, adaptive": (make_predictor("delay"), matching)}
    n = int(seconds * SAMPLING_RATE)
    fig, axes = plt.subplots(2 + len(predictors), len(sets), figsize=(6 * len(sets), 8), sharex=True, squeeze=False)
    for column, (name, traces) in enumerate(sets.items()):
        trace = traces[0]
        rows = [("observed", trace.observed - trace.observed.mean(), "black"),
                ("true primaries", trace.primaries - trace.primaries.mean(), "tab:green")]
        lag, operator = lag_and_operator(trace, "picked")
        for short, (predictor, matched) in predictors.items():
            _, _, error = deconvolve_samples(trace.observed, lag, operator, predictor, matched)
            suppression = multiple_suppression_db(trace.observed, error, trace.primaries)
            rows.append((f"{short}\n{suppression:.1f} dB", error, "tab:blue"))
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


DECONVOLUTION_METHODS = ("wiener", "delay", "lm")


def evaluate_deconvolution(settings: "DeconvolutionEvaluation") -> int:
    unknown = set(settings.methods) - set(DECONVOLUTION_METHODS)
    if unknown:
        raise UsageError(f"unknown --methods {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(DECONVOLUTION_METHODS)} (or none, with --onsets)")
    if not (settings.synthetic or settings.inputs or settings.nc_events):
        raise UsageError("nothing to evaluate: give waveform INPUTS, --nc-events DIR or --synthetic")
    if settings.onsets and not (settings.inputs or settings.nc_events):
        raise UsageError("--onsets scores recordings: give waveform INPUTS with --picks CSV, or --nc-events DIR")
    if not settings.methods and not settings.onsets:
        raise UsageError("--methods none leaves nothing to evaluate without --onsets")
    if settings.train_steps and not settings.synthetic:
        raise UsageError("--train-steps fine-tunes on the synthetic set: it needs --synthetic")
    if settings.synthetic and settings.duration < 2 * SCORE_FROM_S:
        raise UsageError(f"--duration must be at least {2 * SCORE_FROM_S:g} s (scores start at {SCORE_FROM_S:g} s)")
    if settings.match_taps % 2 == 0:
        raise UsageError(f"--match-taps must be odd (a filter centred on zero lag), got {settings.match_taps}")
    files, picks = input_files(settings) if (settings.inputs or settings.nc_events) else (None, None)
    if settings.onsets and picks is None:  # before the deconvolution runs, not after
        raise UsageError("--onsets needs analyst picks: --picks CSV (columns file, p_arrival, s_arrival), "
                         "or --nc-events DIR (its picks.csv)")
    out = Path(settings.out)
    started = time.monotonic()
    report = {"settings": {k: v for k, v in vars(settings).items() if k != "func"}, "score_from_s": SCORE_FROM_S}
    lines, figures = [], []
    if settings.synthetic and settings.methods:
        report["synthetic"], synthetic_lines, sets = evaluate_synthetic(settings, out)
        lines += synthetic_lines
        figures.append((partial(plot_synthetic_examples, settings=settings), sets, out / "deconvolution_synthetic.png"))
    if files is not None and settings.methods:
        report["real"], real_lines = evaluate_real(settings, files)
        lines += real_lines
    if settings.onsets:
        report["onsets"], onset_lines, curves = evaluate_onsets(settings, files, picks)
        lines += onset_lines
        figures.append((plot_onset_curves, curves, out / "deconvolution_onsets.png"))
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
    cases_per_trace: int = 1
    samples: int = 100
    lm_samples: int | None = None  # None: the LM's own number (generation_config.json)


@dataclass
class DeconvolutionEvaluation:
    """Settings of `eqcodec evaluate deconvolution` (see the module docstring); run with evaluate_deconvolution."""

    out: str
    inputs: list[str] = field(default_factory=list)
    nc_events: str | None = None
    picks: str | None = None
    methods: list[str] = field(default_factory=lambda: list(DECONVOLUTION_METHODS))
    seed: int = 0
    lm: str | None = None
    codec: str | None = None
    threads: int = 1
    lags: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    operator_seconds: float = 1.0
    lm_traces: int = 10
    lm_samples: int = LM_SAMPLES
    match_taps: int = DEFAULT_TAPS
    match_window_seconds: float = DEFAULT_WINDOW_SECONDS
    onsets: bool = False
    synthetic: bool = False
    traces: int = 50
    duration: float = 180.0
    train_steps: int = 0
    train_traces: int = 5000
    train_duration: float = 120.0
    train_wavelets: list[str] = field(default_factory=lambda: list(synthetic.WAVELETS))

    def __post_init__(self):
        if self.train_steps < 0:
            raise InputError(f"--train-steps must not be negative, got {self.train_steps}")
        self.methods = [m for m in self.methods if m != "none"]
        unknown = set(self.train_wavelets) - set(synthetic.WAVELETS)
        if unknown:
            raise UsageError(f"unknown --train-wavelets {', '.join(sorted(unknown))}; choose from "
                             f"{', '.join(synthetic.WAVELETS)}")
