"""Predictive deconvolution: keep what a trace's own past cannot predict at a given lag.

For each trace (resampled to 40 Hz, offset removed) a predictor estimates
x[n] from the samples up to n - lag only; the prediction error x - prediction
keeps the unpredictable part (primary arrivals) and drops the predictable one
(reverberations, multiples with period >= lag). Writes the prediction-error
traces to --out as miniSEED (same ids and start times, 40 Hz, input units),
prints per trace the autocorrelation energy removed at lags [lag, lag + L],
and with --plot draws input, prediction and error.

methods:
  wiener  Wiener prediction-error filter (Peacock and Treitel 1969): an operator
          of --operator-seconds L, least-squares on the trace's autocorrelation,
          with --prewhitening; --design-window makes it time-varying
  lm      the token language model's conditional-mean prediction: each 1-s frame
          is predicted from the C s of data ending at least --lag before it
          (C = --operator-seconds, at least 10 s), as the mean of 8 sampled LM
          continuations decoded by the codec; the first C + lag seconds are
          left as they are (prediction 0). Slow: about 1 s of CPU per 10 s of trace.
          --lm DIR uses a fine-tuned LM (e.g. OUT/final of `eqcodec train-lm`);
          it must have been trained on tokens of the codec used (--codec)

Choose --lag at or slightly before the first multiple (e.g. the water-layer
two-way time, seen as a strong peak of the trace's autocorrelation), and an
operator at least as long as the reverberating wavelet; for a Backus
(source + receiver) water layer of period tau the operator must reach the
second multiple: L > 2 tau - lag (about the lag when lag = tau).

Benchmarks of both methods (synthetic reverberations, real recordings):
`eqcodec evaluate deconvolution --help`.
"""

from __future__ import annotations


from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from codec.files import write_atomically
from codec.preprocess import (SAMPLING_RATE, InputError, check_miniseed_ids, read_stream, trace_label,
                              trace_to_codec_input)

from .classical import DEFAULT_PREWHITENING, time_varying_wiener_prediction_error, wiener_prediction_error
from .scores import autocorrelation_reduction_db

#: A trace must hold this many times lag + operator samples: the autocorrelation
#: at the longest lag the normal equations use must average enough products.
MIN_LENGTH_FACTOR = 2

#: At most this many traces are drawn by --plot.
MAX_PLOTTED_TRACES = 6


# ------------------------------------------------------------------ predictors
# A predictor maps (samples [N] at 40 Hz with the offset removed, lag in
# samples, operator/context length in samples) to a prediction [N] in which
# prediction[n] depends on samples[: n - lag + 1] only. The deconvolved trace
# is samples - prediction, computed in one place (deconvolve_samples).

def wiener_prediction(samples: np.ndarray, lag_samples: int, operator_samples: int, *,
                      prewhitening: float = DEFAULT_PREWHITENING,
                      design_window_samples: int | None = None) -> np.ndarray:
    """[N]: the Wiener prediction-error filter's prediction (time-varying with a design window)."""
    if design_window_samples:
        prediction, _ = time_varying_wiener_prediction_error(
            samples, lag_samples, operator_samples, design_window_samples, prewhitening)
    else:
        prediction, _ = wiener_prediction_error(samples, lag_samples, operator_samples, prewhitening)
    return prediction


#: Sampled continuations averaged per predicted frame, and windows generated per LM call (bounds memory).
LM_SAMPLES = 8
LM_WINDOWS_PER_CALL = 32


def lm_prediction(samples: np.ndarray, lag_samples: int, context_samples: int, *, lm, codec,
                  n_samples: int = LM_SAMPLES, seed: int = 0) -> np.ndarray:
    """[N]: the token LM's prediction of samples[n] from samples[: n - lag + 1] (conditional mean).

    lm, codec: a SeismicLM and the EQCodec it was trained with (tasks.forecast.load_lm_and_codec).
    The trace is cut in 1-s frames. Frame t is predicted from the window of
    C whole frames that ends g frames before it, g = max(1, ceil((lag - 1) / 40)),
    so that every sample of frame t is at least `lag` samples after the
    window's last sample. The LM continues each window by g frames
    (n_samples continuations sampled with the LM's generation_config; lm.generate), the
    codec decodes them, and the mean of the samples' last frame is the
    prediction. C = ceil(context_samples / 40) clamped to 10 s .. the LM's
    window (the LM needs at least lm.generate.MIN_CONTEXT_SECONDS). The first
    C + g frames have no such window: their prediction is 0 (nothing removed).
    All windows of a trace are generated together in batches.
    """
    import math

    from lm.generate import MIN_CONTEXT_SECONDS, continue_array

    frame = int(SAMPLING_RATE)  # samples per codec frame (1 s)
    gap = max(1, math.ceil((lag_samples - 1) / frame))
    context_frames = min(max(math.ceil(context_samples / frame), MIN_CONTEXT_SECONDS), lm.config.max_frames)
    targets = list(range(context_frames + gap, math.ceil(len(samples) / frame)))  # frame indices predicted
    prediction = np.zeros(len(targets) * frame + (context_frames + gap) * frame)
    for first in range(0, len(targets), LM_WINDOWS_PER_CALL):
        chunk = targets[first : first + LM_WINDOWS_PER_CALL]
        windows = np.stack([samples[(t - gap - context_frames) * frame : (t - gap) * frame] for t in chunk])
        continuations = continue_array(windows, lm, codec, context_frames, gap, samples=n_samples,
                                       seed=seed + first, allow_clipped=True)  # [W, S, gap * 40]
        for i, t in enumerate(chunk):
            prediction[t * frame : (t + 1) * frame] = continuations[i, :, -frame:].mean(axis=0)  # frame t
    return prediction[: len(samples)]


METHODS = ("wiener", "lm")


# ------------------------------------------------------------ deconvolution

@dataclass
class DeconvolvedTrace:
    """One trace's deconvolution, all [N] at 40 Hz in the input's units with the offset removed."""

    trace_id: str
    starttime: object
    samples: np.ndarray
    prediction: np.ndarray
    error: np.ndarray
    lag_samples: int
    operator_samples: int

    @property
    def autocorrelation_reduction_db(self) -> float:
        return autocorrelation_reduction_db(self.samples, self.error, self.lag_samples, self.operator_samples)


def seconds_to_samples(seconds: float, what: str) -> int:
    """Round a duration to samples at 40 Hz; InputError unless it is at least one sample."""
    if not np.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{what} must be a positive number of seconds, got {seconds:g}")
    samples = int(round(seconds * SAMPLING_RATE))
    if samples < 1:
        raise InputError(f"{what} {seconds:g} s is shorter than one sample at {SAMPLING_RATE:g} Hz")
    return samples


def check_lengths(label: str, n_samples: int, lag: int, operator: int,
                  design_window: int | None = None) -> None:
    """InputError naming the trace when lag, operator or design window do not fit its length."""
    seconds = lambda n: f"{n / SAMPLING_RATE:g} s"  # noqa: E731
    if lag >= n_samples:
        raise InputError(f"{label}: lag {seconds(lag)} is not shorter than the trace ({seconds(n_samples)} at 40 Hz)")
    if operator >= n_samples:
        raise InputError(f"{label}: operator {seconds(operator)} is longer than the data ({seconds(n_samples)})")
    if MIN_LENGTH_FACTOR * (lag + operator) > n_samples:
        raise InputError(
            f"{label}: trace too short ({seconds(n_samples)}) for lag {seconds(lag)} + operator "
            f"{seconds(operator)}: it must be at least {MIN_LENGTH_FACTOR}x their sum")
    if design_window is not None and design_window <= lag + operator:
        raise InputError(f"{label}: design window {seconds(design_window)} must be longer than "
                             f"lag + operator ({seconds(lag + operator)})")


def deconvolve_samples(samples: np.ndarray, lag_samples: int, operator_samples: int,
                       predictor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(samples - mean, prediction, error), each [N]; `predictor` as described above."""
    centred = np.asarray(samples, dtype=np.float64) - np.mean(samples)
    prediction = predictor(centred, lag_samples, operator_samples)
    return centred, prediction, centred - prediction


def make_predictor(method: str, prewhitening: float = DEFAULT_PREWHITENING,
                   design_window_samples: int | None = None, *, lm=None, codec=None):
    """The predictor function of a method name, options bound ("lm" needs the LM and its codec)."""
    if method == "wiener":
        return partial(wiener_prediction, prewhitening=prewhitening,
                       design_window_samples=design_window_samples)
    if method == "lm":
        if lm is None or codec is None:
            raise ValueError("the lm method needs an LM and its codec (tasks.forecast.load_lm_and_codec)")
        return partial(lm_prediction, lm=lm, codec=codec)
    raise InputError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")


def deconvolve_stream(stream, lag_s: float, operator_s: float, predictor, *,
                      design_window_s: float | None = None,
                      allow_clipped: bool = False) -> list[DeconvolvedTrace]:
    """Deconvolve every trace of an obspy Stream (pieces split by gaps are handled separately)."""
    lag = seconds_to_samples(lag_s, "--lag")
    operator = seconds_to_samples(operator_s, "--operator-seconds")
    window = seconds_to_samples(design_window_s, "--design-window") if design_window_s else None
    results = []
    for trace in stream:
        samples = trace_to_codec_input(trace, allow_clipped=allow_clipped)
        check_lengths(trace_label(trace), len(samples), lag, operator, window)
        centred, prediction, error = deconvolve_samples(samples, lag, operator, predictor)
        results.append(DeconvolvedTrace(trace.id, trace.stats.starttime, centred, prediction, error,
                                        lag, operator))
    return results


# ------------------------------------------------------------------ output

def to_stream(results: list[DeconvolvedTrace], which: str = "error"):
    """obspy Stream of the error (or prediction) traces: same ids and start times, 40 Hz."""
    import obspy

    traces = []
    for r in results:
        net, sta, loc, cha = r.trace_id.split(".")
        header = {"network": net, "station": sta, "location": loc, "channel": cha,
                  "starttime": r.starttime, "sampling_rate": SAMPLING_RATE}
        traces.append(obspy.Trace(getattr(r, which).astype(np.float64), header=header))
    return obspy.Stream(traces)


def plot_deconvolution(results: list[DeconvolvedTrace], path: Path, title: str) -> None:
    """Input, prediction and error of each trace (up to MAX_PLOTTED_TRACES), on one amplitude scale per trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = results[:MAX_PLOTTED_TRACES]
    fig, axes = plt.subplots(3 * len(shown), 1, figsize=(10, 1.4 * 3 * len(shown)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for i, r in enumerate(shown):
        t = np.arange(len(r.samples)) / SAMPLING_RATE
        limit = 1.05 * np.abs(r.samples).max()
        rows = [("input", r.samples, "black"), ("prediction", r.prediction, "tab:orange"),
                ("error", r.error, "tab:blue")]
        for ax, (name, data, color) in zip(axes[3 * i : 3 * i + 3], rows):
            ax.plot(t, data, color=color, lw=0.6)
            ax.set_ylim(-limit, limit)
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        axes[3 * i].set_title(f"{r.trace_id}: lag {r.lag_samples / SAMPLING_RATE:g} s, operator "
                              f"{r.operator_samples / SAMPLING_RATE:g} s, autocorrelation at "
                              f"lags >= lag reduced by {r.autocorrelation_reduction_db:.1f} dB", fontsize=9)
    axes[-1].set_xlabel(f"seconds after {shown[0].starttime}")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    write_atomically(lambda tmp: fig.savefig(tmp, dpi=110, format="png"), path)
    plt.close(fig)


def deconvolve_file(input: str, out: str, *, lag: float, operator_seconds: float = 1.0, method: str = "wiener",
                    prediction_out: str | None = None, plot: str | None = None, allow_clipped: bool = False,
                    prewhitening: float = 100 * DEFAULT_PREWHITENING, design_window: float | None = None,
                    lm: str | None = None, codec: str | None = None) -> list[DeconvolvedTrace]:
    """`eqcodec deconvolve`: prediction-error traces of every trace of a file, written as miniSEED.

    prewhitening is in percent; lm / codec are checkpoint folders for method "lm"
    (None: the shipped ones). Prints a table per trace and returns the results;
    nothing is written when a trace fails.
    """
    from codec.errors import UsageError

    if prewhitening < 0:
        raise InputError(f"--prewhitening must not be negative, got {prewhitening:g} %")
    if plot and Path(plot).suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: expected a .png file name")
    if method != "lm" and (lm or codec):
        raise UsageError("--lm and --codec are used by --method lm only")
    model = coder = None
    if method == "lm":
        from .forecast import load_lm_and_codec

        model, coder = load_lm_and_codec(lm, codec)  # refuses a missing LM or one of another codec
    predictor = make_predictor(method, prewhitening / 100,
                               seconds_to_samples(design_window, "--design-window") if design_window else None,
                               lm=model, codec=coder)
    stream = read_stream(input)
    check_miniseed_ids(stream, input)  # the outputs are miniSEED with the input's ids
    # Everything is computed before anything is written: a bad trace leaves no output.
    results = deconvolve_stream(stream, lag, operator_seconds, predictor, design_window_s=design_window,
                                allow_clipped=allow_clipped)

    out = Path(out)
    write_atomically(lambda tmp: to_stream(results).write(str(tmp), format="MSEED", encoding="FLOAT64"), out)
    written = [str(out)]
    if prediction_out:
        path = Path(prediction_out)
        write_atomically(lambda tmp: to_stream(results, "prediction").write(str(tmp), format="MSEED",
                                                                            encoding="FLOAT64"), path)
        written.append(str(path))
    if plot:
        plot_deconvolution(results, Path(plot), f"{Path(input).name}: {method} predictive deconvolution")
        written.append(plot)

    print("| trace | samples | lag s | operator s | autocorr. reduction dB | error / input energy dB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = 10 * np.log10(np.sum(r.error**2) / np.sum(r.samples**2))
        print(f"| {r.trace_id} | {len(r.samples)} | {r.lag_samples / SAMPLING_RATE:g} | "
              f"{r.operator_samples / SAMPLING_RATE:g} | {r.autocorrelation_reduction_db:.1f} | {ratio:.1f} |")
    print(f"\nwrote {', '.join(written)}")
    return results
