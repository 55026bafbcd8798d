"""Predictive deconvolution: keep what a trace's own past cannot predict at a given lag.

For each trace (resampled to 40 Hz, offset removed) a predictor estimates
x[n] from the samples up to n - lag only, and the prediction is subtracted:
the error keeps the unpredictable part (primary arrivals) and drops the
predictable one (reverberations, multiples with period >= lag). Writes the
error traces to --out as miniSEED (same ids and start times, 40 Hz, input
units), prints per trace the autocorrelation energy removed at lags
[lag, lag + L] and the output / input energy (whole trace and the worst
matching window), and with --plot draws input, prediction and error.

predictors (--method):
  wiener  Wiener prediction-error filter (Peacock and Treitel 1969): an operator
          of --operator-seconds L, least-squares on the trace's autocorrelation,
          with --prewhitening; --design-window makes it time-varying
  delay   model-free: the trace delayed by its period tau, x[n - tau]; tau is
          --period, or picked where the autocorrelation peaks at lags
          [lag, lag + L] (one tau per trace, or per --design-window, linearly
          interpolated between windows, for a drifting period)
  lm      the token language model's conditional mean: each 1-s frame is
          predicted from the C s of data ending at least --lag before it
          (C = --operator-seconds, at least 10 s), as the mean of --lm-samples
          continuations sampled from the LM's own distribution (temperature 1,
          no top-k / top-p: a Monte Carlo estimate of the expected decoded
          frame, whose sampling error falls as 1 / sqrt(samples)); the first
          C + lag seconds are predicted as 0. Slow: the LM continues every
          frame --lm-samples times. --lm DIR uses a fine-tuned LM (e.g.
          OUT/final of `eqcodec train-lm`); it must have been trained on
          tokens of the codec used (--codec)

subtraction (--subtraction; default adaptive for delay and lm, direct for wiener):
  direct    error = x - prediction
  adaptive  the prediction is first fitted to the data by short least-squares
            matching filters (--match-taps, centred, so they fix sub-frame shifts
            of a few samples, scale, polarity and phase) in half-overlapping
            tapered windows of --match-window-seconds (several tau), then
            subtracted (tasks.adaptive). The output never holds more energy
            than the input, over the trace or in any matching window.

--output surprisal writes instead the LM's per-frame negative log-likelihood
(nats per 1-s frame, gain and codebook streams summed; tasks.surprisal) as a
1-Hz trace per input trace: sample t is frame t, starting at the frame's start.
--output onset writes the LM's onset function (tasks.surprisal.onset_function):
the dB by which each frame's gain exceeds the LM's 99th-percentile forecast of
it, read on 4 frame grids a quarter-second apart, as a 4-Hz trace whose sample
i stands for the frame centred at its time; a rise of a few dB marks an onset
the past did not announce (`eqcodec evaluate deconvolution --onsets` chooses
the threshold on labelled data). --lag is not used by either.

Choose --lag at or slightly before the first multiple (e.g. the water-layer
two-way time, seen as a strong peak of the trace's autocorrelation), and an
operator at least as long as the reverberating wavelet; for a Backus
(source + receiver) water layer of period tau the operator must reach the
second multiple: L > 2 tau - lag (about the lag when lag = tau).

Bad input (a lag that is not positive or not shorter than the trace, an
operator, design or matching window longer than the data, a period shorter
than the lag, an LM of another codec) is refused with the trace named and a
non-zero exit; nothing is written unless every trace succeeds.

Benchmarks of every method (synthetic reverberations, real recordings, onsets):
`eqcodec evaluate deconvolution --help`.
"""

from __future__ import annotations


from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from codec.errors import UsageError
from codec.files import write_all_or_nothing
from codec.preprocess import (SAMPLING_RATE, InputError, check_miniseed_ids, read_stream, trace_label,
                              trace_to_codec_input)

from .adaptive import DEFAULT_TAPS, DEFAULT_WINDOW_SECONDS, adaptive_subtract, window_energies, window_starts
from .classical import (DEFAULT_PREWHITENING, autocorrelation, time_varying_wiener_prediction_error,
                        wiener_prediction_error)
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
# is samples minus the prediction (as it is, or adaptively matched), computed
# in one place (deconvolve_samples).

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


def pick_period(samples: np.ndarray, low: int, high: int) -> float:
    """Period (samples, fractional) in [low, high] where |autocorrelation| peaks (a parabola through the peak)."""
    x = np.asarray(samples, dtype=np.float64)
    r = np.abs(autocorrelation(x - x.mean(), high + 1))
    k = low + int(np.argmax(r[low : high + 1]))
    if low < k < high:
        left, centre, right = r[k - 1], r[k], r[k + 1]
        curvature = left - 2 * centre + right
        if curvature < 0:
            return float(np.clip(k + 0.5 * (left - right) / curvature, low, high))
    return float(k)


def delayed(samples: np.ndarray, period_samples) -> np.ndarray:
    """[N]: x(n - tau) with tau a number or [N] (fractional: linear interpolation; 0 before the data)."""
    x = np.asarray(samples, dtype=np.float64)
    n = np.arange(len(x), dtype=np.float64)
    return np.interp(n - np.broadcast_to(np.asarray(period_samples, dtype=np.float64), x.shape), n, x, left=0.0)


def delay_periods(samples: np.ndarray, lag_samples: int, operator_samples: int,
                  design_window_samples: int | None = None) -> np.ndarray:
    """[N] period in effect at each sample, picked in [lag, lag + L]: one per trace, or per half-overlapping
    design window (interpolated linearly between the windows' centres)."""
    x = np.asarray(samples, dtype=np.float64)
    low, high = lag_samples, lag_samples + operator_samples
    if not design_window_samples or design_window_samples >= len(x):
        return np.full(len(x), pick_period(x, low, high))
    hop = design_window_samples // 2
    starts = list(range(0, len(x) - design_window_samples + 1, hop))
    if starts[-1] + design_window_samples < len(x):
        starts.append(len(x) - design_window_samples)
    centres = [s + design_window_samples / 2 for s in starts]
    picks = [pick_period(x[s : s + design_window_samples], low, high) for s in starts]
    return np.interp(np.arange(len(x)), centres, picks)


def delay_prediction(samples: np.ndarray, lag_samples: int, operator_samples: int, *,
                     period_samples=None, design_window_samples: int | None = None) -> np.ndarray:
    """[N]: the model-free prediction x(n - tau), tau = period_samples (a number or [N]) or picked (delay_periods).

    Not scaled: with --subtraction adaptive the matching filters find the
    multiples' scale and polarity (-2 r for a Backus water layer's first one).
    """
    if period_samples is None:
        period = delay_periods(samples, lag_samples, operator_samples, design_window_samples)
    else:
        period = np.asarray(period_samples, dtype=np.float64)
        if np.min(period) < lag_samples:
            raise InputError(f"period {np.min(period) / SAMPLING_RATE:g} s is shorter than the lag "
                             f"{lag_samples / SAMPLING_RATE:g} s: the delayed trace would use samples closer "
                             "than the lag")
    return delayed(samples, period)


#: Sampled continuations averaged per predicted frame, and sequences (windows x samples) per LM call (bounds memory).
LM_SAMPLES = 32
LM_SEQUENCES_PER_CALL = 512


def lm_prediction(samples: np.ndarray, lag_samples: int, context_samples: int, *, lm, codec,
                  n_samples: int = LM_SAMPLES, seed: int = 0) -> np.ndarray:
    """[N]: the token LM's conditional-mean prediction of samples[n] from samples[: n - lag + 1].

    lm, codec: a SeismicLM and the codec it was trained with (tasks.forecast.load_lm_and_codec).
    The trace is cut in 1-s frames. Frame t is predicted from the window of
    C whole frames that ends g frames before it, g = max(1, ceil((lag - 1) / 40)),
    so that every sample of frame t is at least `lag` samples after the
    window's last sample. The LM continues each window by g frames, sampling
    n_samples continuations from its own distribution (temperature 1, no
    top-k or top-p truncation: not the tempered generation_config), the
    codec decodes them, and the mean of their last frame is the prediction:
    a Monte Carlo estimate of the expected decoded frame under the LM, with
    a sampling error that falls as 1 / sqrt(n_samples). (The expectation
    cannot be read off the per-token distributions: the decoded waveform is
    a nonlinear function of all tokens of a frame and its neighbours.)
    C = ceil(context_samples / 40) clamped to 10 s .. the LM's window (the LM
    needs at least lm.generate.MIN_CONTEXT_SECONDS). The first C + g frames
    have no such window: their prediction is 0 (nothing removed). The windows
    of a trace are generated together in batches.
    """
    import math

    from lm.generate import MIN_CONTEXT_SECONDS, continue_array

    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise InputError(f"the LM prediction needs a whole number of samples >= 1, got {n_samples!r}")
    frame = int(SAMPLING_RATE)  # samples per codec frame (1 s)
    gap = max(1, math.ceil((lag_samples - 1) / frame))
    context_frames = min(max(math.ceil(context_samples / frame), MIN_CONTEXT_SECONDS), lm.config.max_frames)
    targets = list(range(context_frames + gap, math.ceil(len(samples) / frame)))  # frame indices predicted
    prediction = np.zeros(len(targets) * frame + (context_frames + gap) * frame)
    per_call = max(1, LM_SEQUENCES_PER_CALL // n_samples)
    for first in range(0, len(targets), per_call):
        chunk = targets[first : first + per_call]
        windows = np.stack([samples[(t - gap - context_frames) * frame : (t - gap) * frame] for t in chunk])
        continuations = continue_array(windows, lm, codec, context_frames, gap, samples=n_samples,
                                       temperature=1.0, gain_temperature=1.0, top_k=0, top_p=1.0,  # its own
                                       frame_grids=1,  # the windows hold the context only
                                       seed=seed + first, allow_clipped=True)  # [W, S, gap * 40]
        for i, t in enumerate(chunk):
            prediction[t * frame : (t + 1) * frame] = continuations[i, :, -frame:].mean(axis=0)  # frame t
    return prediction[: len(samples)]


METHODS = ("wiener", "delay", "lm")
SUBTRACTIONS = ("adaptive", "direct")
OUTPUTS = ("error", "surprisal", "onset")
#: What the LM-only outputs hold: (plot's y label, plot title).
LM_TRACE_OUTPUTS = {"surprisal": ("nats / frame", "LM surprisal per 1-s frame"),
                    "onset": ("dB above forecast", "LM onset function (gain above its 99th-percentile forecast)")}


def default_subtraction(method: str) -> str:
    """Adaptive for predictions that need matching (delay, lm); direct for the least-squares Wiener prediction."""
    return "direct" if method == "wiener" else "adaptive"


@dataclass(frozen=True)
class Matching:
    """Settings of the adaptive subtraction (tasks.adaptive.adaptive_subtract), lengths in samples."""

    taps: int = DEFAULT_TAPS
    window_samples: int = int(DEFAULT_WINDOW_SECONDS * SAMPLING_RATE)


# ------------------------------------------------------------ deconvolution

@dataclass
class DeconvolvedTrace:
    """One trace's deconvolution, all [N] at 40 Hz in the input's units with the offset removed.

    prediction is the predictor's output; error = samples - matched, where
    matched is the prediction as subtracted (the prediction itself for
    direct subtraction, its matched version for adaptive subtraction).
    """

    trace_id: str
    starttime: object
    samples: np.ndarray
    prediction: np.ndarray
    error: np.ndarray
    lag_samples: int
    operator_samples: int
    subtraction: str = "direct"
    check_window_samples: int = int(DEFAULT_WINDOW_SECONDS * SAMPLING_RATE)

    @property
    def matched(self) -> np.ndarray:
        return self.samples - self.error

    @property
    def autocorrelation_reduction_db(self) -> float:
        return autocorrelation_reduction_db(self.samples, self.error, self.lag_samples, self.operator_samples)

    @property
    def energy(self) -> dict:
        """energy_check of input and error over the matching windows (check_window_samples)."""
        return energy_check(self.samples, self.error, self.check_window_samples)


def energy_check(samples: np.ndarray, error: np.ndarray, window_samples: int) -> dict:
    """Output / input energy: {"trace_db", "max_window_db", "windows", "windows_over"} over the matching windows.

    The windows are those of the adaptive subtraction (tasks.adaptive.window_starts)
    of that length, clipped to the data; a window of zero input energy counts as
    over when the output there is not zero too.
    """
    samples, error = np.asarray(samples, dtype=np.float64), np.asarray(error, dtype=np.float64)
    window = min(int(window_samples) + int(window_samples) % 2, len(samples) + len(samples) % 2)
    starts = window_starts(len(samples), window)
    before, after = window_energies(samples, starts, window), window_energies(error, starts, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_db = np.where(before > 0, 10 * np.log10(after / before), np.where(after > 0, np.inf, -np.inf))
        total = 10 * np.log10(np.sum(error**2) / np.sum(samples**2)) if np.sum(samples**2) > 0 else -np.inf
    return {"trace_db": float(total), "max_window_db": float(np.max(ratio_db)), "windows": len(starts),
            "windows_over": int(np.sum(after > before))}


def seconds_to_samples(seconds: float, what: str) -> int:
    """Round a duration to samples at 40 Hz; InputError unless it is at least one sample."""
    if seconds is None or not np.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{what} must be a positive number of seconds, got {seconds}")
    samples = int(round(seconds * SAMPLING_RATE))
    if samples < 1:
        raise InputError(f"{what} {seconds:g} s is shorter than one sample at {SAMPLING_RATE:g} Hz")
    return samples


def check_lengths(label: str, n_samples: int, lag: int, operator: int,
                  design_window: int | None = None, *, match_window: int | None = None,
                  period: float | None = None) -> None:
    """InputError naming the trace when lag, operator, design or matching window, or period do not fit its length."""
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
    if match_window is not None and match_window > n_samples:
        raise InputError(f"{label}: matching window {seconds(match_window)} is longer than the data "
                         f"({seconds(n_samples)})")
    if period is not None and period >= n_samples:
        raise InputError(f"{label}: period {seconds(period)} is not shorter than the trace ({seconds(n_samples)})")


def deconvolve_samples(samples: np.ndarray, lag_samples: int, operator_samples: int, predictor,
                       matching: Matching | None = None,
                       label: str = "trace") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(samples - mean, prediction, error), each [N]; `predictor` as described above.

    matching None: error = centred - prediction (direct subtraction); a
    Matching: error = adaptive_subtract(centred, prediction).output.
    """
    centred = np.asarray(samples, dtype=np.float64) - np.mean(samples)
    prediction = predictor(centred, lag_samples, operator_samples)
    return centred, prediction, subtract(centred, prediction, lag_samples, matching, label)


def subtract(centred: np.ndarray, prediction: np.ndarray, lag_samples: int, matching: Matching | None,
             label: str = "trace") -> np.ndarray:
    """[N] error: centred - prediction (matching None) or the adaptive subtraction's output."""
    if matching is None:
        return centred - prediction
    return adaptive_subtract(centred, prediction, taps=matching.taps, window_samples=matching.window_samples,
                             lag_samples=lag_samples, label=label).output


def make_predictor(method: str, prewhitening: float = DEFAULT_PREWHITENING,
                   design_window_samples: int | None = None, *, lm=None, codec=None,
                   period_samples: float | None = None, lm_samples: int = LM_SAMPLES, seed: int = 0):
    """The predictor function of a method name, options bound ("lm" needs the LM and its codec)."""
    if method == "wiener":
        return partial(wiener_prediction, prewhitening=prewhitening,
                       design_window_samples=design_window_samples)
    if method == "delay":
        return partial(delay_prediction, period_samples=period_samples, design_window_samples=design_window_samples)
    if method == "lm":
        if lm is None or codec is None:
            raise ValueError("the lm method needs an LM and its codec (tasks.forecast.load_lm_and_codec)")
        return partial(lm_prediction, lm=lm, codec=codec, n_samples=lm_samples, seed=seed)
    raise InputError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")


def deconvolve_stream(stream, lag_s: float, operator_s: float, predictor, *,
                      design_window_s: float | None = None, allow_clipped: bool = False,
                      matching: Matching | None = None, period_s: float | None = None,
                      check_window_samples: int | None = None) -> list[DeconvolvedTrace]:
    """Deconvolve every trace of an obspy Stream (pieces split by gaps are handled separately).

    matching: adaptive subtraction (None: direct); check_window_samples: the
    energy check's windows (None: the matching windows, or the default ones).
    Every trace is checked before any is predicted (the LM is slow): a bad
    trace fails the call early, naming it.
    """
    lag = seconds_to_samples(lag_s, "--lag")
    operator = seconds_to_samples(operator_s, "--operator-seconds")
    window = seconds_to_samples(design_window_s, "--design-window") if design_window_s else None
    period = period_s * SAMPLING_RATE if period_s is not None else None
    prepared = []
    for trace in stream:
        samples = trace_to_codec_input(trace, allow_clipped=allow_clipped)
        check_lengths(trace_label(trace), len(samples), lag, operator, window,
                      match_window=matching.window_samples if matching else None, period=period)
        prepared.append((trace, samples))
    results = []
    for trace, samples in prepared:
        centred, prediction, error = deconvolve_samples(samples, lag, operator, predictor, matching,
                                                        label=trace_label(trace))
        results.append(DeconvolvedTrace(
            trace.id, trace.stats.starttime, centred, prediction, error, lag, operator,
            subtraction="adaptive" if matching else "direct",
            check_window_samples=check_window_samples or (matching or Matching()).window_samples))
    return results


# ------------------------------------------------------------------ output

def to_stream(results: list[DeconvolvedTrace], which: str = "error"):
    """obspy Stream of the error (or prediction, or matched) traces: same ids and start times, 40 Hz."""
    import obspy

    traces = []
    for r in results:
        net, sta, loc, cha = r.trace_id.split(".")
        header = {"network": net, "station": sta, "location": loc, "channel": cha,
                  "starttime": r.starttime, "sampling_rate": SAMPLING_RATE}
        traces.append(obspy.Trace(getattr(r, which).astype(np.float64), header=header))
    return obspy.Stream(traces)


def plot_deconvolution(results: list[DeconvolvedTrace], path: Path, title: str) -> None:
    """Input, prediction (and its matched version) and error of each trace (up to MAX_PLOTTED_TRACES)."""
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
        if r.subtraction == "adaptive":
            axes[3 * i + 1].plot(t, r.matched, color="tab:red", lw=0.5, alpha=0.7, label="matched")
            axes[3 * i + 1].legend(loc="upper right", fontsize=7)
        energy = r.energy
        axes[3 * i].set_title(f"{r.trace_id}: lag {r.lag_samples / SAMPLING_RATE:g} s, operator "
                              f"{r.operator_samples / SAMPLING_RATE:g} s, {r.subtraction} subtraction; "
                              f"autocorrelation at lags >= lag {r.autocorrelation_reduction_db:.1f} dB lower, "
                              f"error / input {energy['trace_db']:.1f} dB", fontsize=8)
    axes[-1].set_xlabel(f"seconds after {shown[0].starttime}")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_surprisal(stream, surprisal, path: Path, title: str, ylabel: str = "nats / frame") -> None:
    """Each input trace (up to MAX_PLOTTED_TRACES) above its surprisal (or onset function) trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(zip(stream, surprisal))[:MAX_PLOTTED_TRACES]
    fig, axes = plt.subplots(2 * len(shown), 1, figsize=(10, 1.6 * 2 * len(shown)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for i, (trace, s) in enumerate(shown):
        axes[2 * i].plot(trace.times(), trace.data, color="black", lw=0.5)
        axes[2 * i].set_title(trace.id, fontsize=9, loc="left")
        axes[2 * i + 1].step(s.times(), s.data, where="post", color="tab:purple", lw=0.8)
        axes[2 * i + 1].set_ylabel(ylabel, fontsize=8)
    axes[-1].set_xlabel(f"seconds after {shown[0][0].stats.starttime}")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def surprisal_stream(stream, lm, codec, *, allow_clipped: bool = False, output: str = "surprisal"):
    """obspy Stream of one LM trace per input trace.

    output "surprisal": frame_surprisal (1 Hz, nats per frame, start = the first frame's start);
    "onset": onset_function (ONSET_GRIDS Hz, dB, sample i = the frame centred at its time, so the
    trace starts half a frame after the input; the NaN end of the later grids trimmed).
    """
    import obspy

    from .surprisal import ONSET_GRIDS, frame_surprisal, onset_function

    prepared = [(trace, trace_to_codec_input(trace, allow_clipped=allow_clipped)) for trace in stream]
    out = []
    for trace, samples in prepared:
        if output == "onset":
            values = onset_function(samples, lm, codec, label=trace_label(trace))
            values = values[: len(values) - np.argmax(np.isfinite(values[::-1]))]  # trailing NaN trimmed
            rate, start = float(ONSET_GRIDS), trace.stats.starttime + 0.5
        else:
            values = frame_surprisal(samples, lm, codec, label=trace_label(trace))
            rate, start = 1.0, trace.stats.starttime
        header = {k: trace.stats[k] for k in ("network", "station", "location", "channel")}
        out.append(obspy.Trace(values.astype(np.float64),
                               header={**header, "starttime": start, "sampling_rate": rate}))
    return obspy.Stream(out)


def _write_mseed(stream):
    return lambda tmp: stream.write(str(tmp), format="MSEED", encoding="FLOAT64")


def deconvolve_file(input: str, out: str, *, lag: float | None = None, operator_seconds: float = 1.0,
                    method: str = "wiener", subtraction: str | None = None, match_taps: int = DEFAULT_TAPS,
                    match_window_seconds: float = DEFAULT_WINDOW_SECONDS, period: float | None = None,
                    output: str = "error", lm_samples: int = LM_SAMPLES, seed: int = 0,
                    prediction_out: str | None = None, plot: str | None = None, allow_clipped: bool = False,
                    prewhitening: float = 100 * DEFAULT_PREWHITENING, design_window: float | None = None,
                    lm: str | None = None, codec: str | None = None) -> list:
    """`eqcodec deconvolve`: prediction-error (or surprisal) traces of every trace of a file, written as miniSEED.

    prewhitening is in percent; lm / codec are checkpoint folders for method "lm"
    and output "surprisal" (None: the shipped ones); subtraction None: default_subtraction(method).
    Prints a table per trace and returns the results (DeconvolvedTrace, or the
    surprisal obspy Traces); nothing is written when a trace fails.
    """
    if output not in OUTPUTS:
        raise UsageError(f"unknown --output {output!r}: choose from {', '.join(OUTPUTS)}")
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}: choose from {', '.join(METHODS)}")
    if plot and Path(plot).suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: expected a .png file name")
    if output in LM_TRACE_OUTPUTS:
        return _lm_trace_file(input, out, output, plot=plot, prediction_out=prediction_out,
                              allow_clipped=allow_clipped, lm=lm, codec=codec)
    subtraction = subtraction or default_subtraction(method)
    if subtraction not in SUBTRACTIONS:
        raise UsageError(f"unknown --subtraction {subtraction!r}: choose from {', '.join(SUBTRACTIONS)}")
    if lag is None:
        raise UsageError("--lag is required (the prediction distance, seconds), except with --output surprisal "
                         "or onset")
    if prewhitening < 0:
        raise InputError(f"--prewhitening must not be negative, got {prewhitening:g} %")
    if method != "lm" and (lm or codec):
        raise UsageError("--lm and --codec are used by --output surprisal / onset or --method lm only")
    if period is not None and method != "delay":
        raise UsageError("--period is used by --method delay only")
    if period is not None and period < lag:
        raise InputError(f"--period {period:g} s is shorter than --lag {lag:g} s: the delayed trace would use "
                         "samples closer than the lag")
    lag_samples = seconds_to_samples(lag, "--lag")
    matching = None
    if subtraction == "adaptive":
        if not isinstance(match_taps, (int, np.integer)) or match_taps < 1 or match_taps % 2 == 0:
            raise InputError(f"--match-taps must be an odd whole number >= 1, got {match_taps!r}")
        if match_taps // 2 >= lag_samples:
            raise InputError(f"--match-taps {match_taps} reads the prediction {match_taps // 2} samples ahead, "
                             f"not less than the lag ({lag_samples} samples): use fewer taps or a longer lag")
        matching = Matching(match_taps, seconds_to_samples(match_window_seconds, "--match-window-seconds"))
        if matching.window_samples < 2 * match_taps:
            raise InputError(f"--match-window-seconds {match_window_seconds:g} is too short for "
                             f"{match_taps} taps (at least {2 * match_taps} samples)")
    stream = read_stream(input)
    check_miniseed_ids(stream, input)  # the outputs are miniSEED with the input's ids
    model = coder = None
    if method == "lm":
        from .forecast import load_lm_and_codec

        model, coder = load_lm_and_codec(lm, codec)  # refuses a missing LM or one of another codec
    predictor = make_predictor(method, prewhitening / 100,
                               seconds_to_samples(design_window, "--design-window") if design_window else None,
                               lm=model, codec=coder, lm_samples=lm_samples, seed=seed,
                               period_samples=period * SAMPLING_RATE if period is not None else None)
    # Everything is computed before anything is written: a bad trace leaves no output.
    results = deconvolve_stream(stream, lag, operator_seconds, predictor, design_window_s=design_window,
                                allow_clipped=allow_clipped, matching=matching, period_s=period,
                                check_window_samples=seconds_to_samples(match_window_seconds,
                                                                        "--match-window-seconds"))
    writers = {Path(out): _write_mseed(to_stream(results))}
    if prediction_out:
        writers[Path(prediction_out)] = _write_mseed(to_stream(results, "prediction"))
    if plot:
        writers[Path(plot)] = lambda tmp: plot_deconvolution(
            results, tmp, f"{Path(input).name}: {method} predictive deconvolution, {subtraction} subtraction")
    written = write_all_or_nothing(writers)

    print("| trace | samples | lag s | operator s | subtraction | autocorr. reduction dB | error / input energy dB "
          "| worst window dB |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in results:
        energy = r.energy
        print(f"| {r.trace_id} | {len(r.samples)} | {r.lag_samples / SAMPLING_RATE:g} | "
              f"{r.operator_samples / SAMPLING_RATE:g} | {r.subtraction} | {r.autocorrelation_reduction_db:.1f} | "
              f"{energy['trace_db']:.1f} | {energy['max_window_db']:.1f} |")
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return results


def _lm_trace_file(input: str, out: str, output: str, *, plot: str | None, prediction_out: str | None,
                   allow_clipped: bool, lm: str | None, codec: str | None) -> list:
    """--output surprisal / onset: one LM trace per input trace (surprisal_stream)."""
    from .forecast import load_lm_and_codec

    if prediction_out:
        raise UsageError(f"--prediction-out goes with --output error: the {output} predicts nothing to write")
    stream = read_stream(input)
    check_miniseed_ids(stream, input)
    model, coder = load_lm_and_codec(lm, codec)  # refuses a missing LM or one of another codec
    traces = surprisal_stream(stream, model, coder, allow_clipped=allow_clipped, output=output)
    ylabel, title = LM_TRACE_OUTPUTS[output]
    writers = {Path(out): _write_mseed(traces)}
    if plot:
        writers[Path(plot)] = lambda tmp: plot_surprisal(stream, traces, tmp, f"{Path(input).name}: {title}", ylabel)
    written = write_all_or_nothing(writers)
    print(f"| trace | samples | median {ylabel} | max | at s after the trace's start |")
    print("|---|---:|---:|---:|---:|")
    for trace in traces:
        peak = int(np.nanargmax(trace.data))
        print(f"| {trace.id} | {trace.stats.npts} | {np.nanmedian(trace.data):.1f} | {trace.data[peak]:.1f} | "
              f"{peak / trace.stats.sampling_rate + (0.5 if output == 'onset' else 0.0):.2f} |")  # after the input's start
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return list(traces)
