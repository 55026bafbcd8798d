"""Classical predictors for 40 Hz traces: the baselines the token LM must beat.

Forecasting (continue a trace past the end of its context). Every forecaster has
the same signature,

    forecast(context: np.ndarray[N], horizon_samples: int) -> np.ndarray[H]

and a probabilistic forecaster returns S sampled continuations,

    sample_forecasts(context[N], horizon_samples, n_samples, rng) -> np.ndarray[S, H]

- zero_forecast:        the context mean (zero for a trace with its offset removed)
- persistence_forecast: the last second of the context, repeated
- ar_forecast:          AR(p) linear predictor fitted to the context by Burg's
                        method, order p chosen by AIC (see fit_ar_burg)
- ar_sample_forecasts:  the same AR(p) model driven by Gaussian innovations of
                        the fitted variance: S continuations
- noise_sample_forecasts: Gaussian white noise with the context's mean and
                        standard deviation (the "nothing happens" ensemble)

Predictive deconvolution (remove the part of a trace predictable from its past
at a given lag). `wiener_prediction_error` is the Wiener prediction-error filter
of Peacock and Treitel (1969): a least-squares operator of L coefficients that
predicts x[n] from x[n - lag - L + 1 .. n - lag]; what it cannot predict (the
error) keeps the primaries and drops the reverberations. The time-varying
variant designs one operator per overlapping window; pick_reverberation_period
finds the lag from the trace's autocorrelation.

All lengths here are in samples at the codec rate (40 Hz); callers convert
seconds with codec.preprocess.SAMPLING_RATE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.signal import correlate, lfilter, lfiltic
from scipy.signal.windows import hann

from codec.preprocess import FRAME_LENGTH

#: Highest AR order tried by AIC: 50 samples = 1.25 s at 40 Hz, long enough to
#: model the dominant microseism and local-event spectra, short enough to fit
#: on a 20 s context (800 samples) without over-fitting.
DEFAULT_MAX_AR_ORDER = 50

#: Pre-whitening of the Wiener normal equations: 0.1 % added to the zero-lag
#: autocorrelation (white noise of that relative power), which keeps the
#: Toeplitz system well conditioned for band-limited data.
DEFAULT_PREWHITENING = 0.001


# ----------------------------------------------------------------- forecasting

def zero_forecast(context: np.ndarray, horizon_samples: int) -> np.ndarray:
    """[H]: the context mean, i.e. "nothing more happens" about the trace's offset."""
    return np.full(horizon_samples, float(np.mean(context)))


def persistence_forecast(context: np.ndarray, horizon_samples: int,
                         period_samples: int = FRAME_LENGTH) -> np.ndarray:
    """[H]: the last `period_samples` (default one second) of the context, repeated."""
    context = np.asarray(context, dtype=np.float64)
    last = context[-period_samples:]
    repeats = int(np.ceil(horizon_samples / len(last)))
    return np.tile(last, repeats)[:horizon_samples]


@dataclass
class ARModel:
    """An AR(p) process x[n] + a[1] x[n-1] + ... + a[p] x[n-p] = e[n] about `mean`.

    coefficients: [p + 1] prediction-error filter, coefficients[0] == 1
    innovation_variance: variance of e[n] (Burg's final prediction-error power)
    mean: offset removed before fitting
    """

    coefficients: np.ndarray
    innovation_variance: float
    mean: float

    @property
    def order(self) -> int:
        return len(self.coefficients) - 1


def fit_ar_burg(x: np.ndarray, max_order: int = DEFAULT_MAX_AR_ORDER) -> ARModel:
    """Fit AR(p) to `x` [N] by Burg's method, choosing p in 0..max_order by AIC.

    Burg's recursion estimates each reflection coefficient from forward and
    backward prediction errors together, which gives a stable (minimum-phase)
    model and, unlike Yule-Walker, no bias from windowing a short record. Each
    stage m also yields the prediction-error power E_m, so all orders come out
    of one pass and AIC(m) = N ln E_m + 2 m picks the order.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    x = x - mean
    max_order = min(max_order, len(x) // 3)  # keep at least 3 samples per coefficient
    power = float(np.mean(x**2))
    if power == 0.0:
        return ARModel(np.array([1.0]), 0.0, mean)

    a = np.array([1.0])
    forward, backward = x[1:].copy(), x[:-1].copy()
    best = (len(x) * np.log(power), a, power)  # order 0
    for order in range(1, max_order + 1):
        denominator = forward @ forward + backward @ backward
        if denominator <= 0:
            break
        k = -2.0 * (forward @ backward) / denominator
        extended = np.append(a, 0.0)
        a = extended + k * extended[::-1]  # Levinson update of the filter
        power *= 1.0 - k * k
        if power <= 0:
            break
        aic = len(x) * np.log(power) + 2 * order
        if aic < best[0]:
            best = (aic, a.copy(), power)
        forward, backward = (forward + k * backward)[1:], (backward + k * forward)[:-1]
    _, coefficients, variance = best
    return ARModel(coefficients, variance, mean)


def ar_continue(model: ARModel, context: np.ndarray, innovations: np.ndarray) -> np.ndarray:
    """Run the AR recursion past the end of `context` [N], driven by `innovations` [S, H].

    Returns [S, H]. Zero innovations give the deterministic (conditional mean) forecast.
    """
    innovations = np.atleast_2d(innovations)
    if model.order == 0:
        return model.mean + innovations
    past = np.asarray(context, dtype=np.float64)[::-1][: model.order] - model.mean
    state = lfiltic([1.0], model.coefficients, past)  # filter state holding the last p samples
    state = np.tile(state, (innovations.shape[0], 1))
    continuation, _ = lfilter([1.0], model.coefficients, innovations, axis=-1, zi=state)
    return model.mean + continuation


def ar_forecast(context: np.ndarray, horizon_samples: int,
                max_order: int = DEFAULT_MAX_AR_ORDER) -> np.ndarray:
    """[H]: conditional-mean forecast of the AR(p) model fitted to the context."""
    model = fit_ar_burg(context, max_order)
    return ar_continue(model, context, np.zeros((1, horizon_samples)))[0]


def ar_sample_forecasts(context: np.ndarray, horizon_samples: int, n_samples: int,
                        rng: np.random.Generator, max_order: int = DEFAULT_MAX_AR_ORDER) -> np.ndarray:
    """[S, H]: continuations of the fitted AR(p) model with Gaussian innovations."""
    model = fit_ar_burg(context, max_order)
    noise = rng.normal(0.0, np.sqrt(model.innovation_variance), (n_samples, horizon_samples))
    return ar_continue(model, context, noise)


def noise_sample_forecasts(context: np.ndarray, horizon_samples: int, n_samples: int,
                           rng: np.random.Generator) -> np.ndarray:
    """[S, H]: white Gaussian noise with the context's mean and standard deviation."""
    context = np.asarray(context, dtype=np.float64)
    return rng.normal(context.mean(), context.std(), (n_samples, horizon_samples))


#: Deterministic forecasters, by the name benchmarks and reports use.
FORECASTERS = {
    "zero": zero_forecast,
    "persistence": persistence_forecast,
    "ar": ar_forecast,
}

#: Probabilistic forecasters (S sampled continuations), by name.
SAMPLE_FORECASTERS = {
    "noise-ensemble": noise_sample_forecasts,
    "ar-ensemble": ar_sample_forecasts,
}


# -------------------------------------------------- predictive deconvolution

def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """[max_lag + 1]: biased autocorrelation r[k] = sum_n x[n] x[n+k] / N, k = 0..max_lag.

    The biased estimate makes the Toeplitz matrix of the normal equations
    positive definite.
    """
    x = np.asarray(x, dtype=np.float64)
    full = correlate(x, x, mode="full", method="fft")
    return full[len(x) - 1 : len(x) + max_lag] / len(x)


def pick_reverberation_period(x: np.ndarray, min_lag: int, max_lag: int) -> int:
    """Lag (samples) in [min_lag, max_lag] where |normalized autocorrelation| peaks.

    A water layer of two-way time tau leaves a strong (negative) autocorrelation
    peak at tau: the usual way to choose the prediction lag from the data.
    """
    x = np.asarray(x, dtype=np.float64)
    r = autocorrelation(x - x.mean(), max_lag)
    return int(min_lag + np.argmax(np.abs(r[min_lag : max_lag + 1])))


def wiener_prediction_filter(x: np.ndarray, lag: int, operator_length: int,
                             prewhitening: float = DEFAULT_PREWHITENING) -> np.ndarray:
    """[L]: least-squares operator a predicting x[n] by sum_j a[j] x[n - lag - j].

    Solves the normal equations (Peacock and Treitel 1969)
        sum_j a[j] r[i - j] = r[i + lag],  i = 0..L-1,
    with r[0] raised by the fraction `prewhitening`. Needs len(x) > lag + L - 1.
    """
    if lag < 1:
        raise ValueError(f"prediction lag must be at least 1 sample, got {lag}")
    if operator_length < 1:
        raise ValueError(f"operator length must be at least 1 sample, got {operator_length}")
    if lag + operator_length > len(x):
        raise ValueError(f"lag + operator length ({lag} + {operator_length} samples) "
                         f"exceeds the data ({len(x)} samples)")
    r = autocorrelation(x, lag + operator_length - 1)
    if r[0] == 0:
        return np.zeros(operator_length)  # silent data: nothing to predict
    column = r[:operator_length].copy()
    column[0] *= 1.0 + prewhitening
    return solve_toeplitz(column, r[lag : lag + operator_length])


def apply_prediction_filter(x: np.ndarray, operator: np.ndarray, lag: int) -> np.ndarray:
    """[N]: prediction[n] = sum_j operator[j] x[n - lag - j] (zero before the data starts)."""
    x = np.asarray(x, dtype=np.float64)
    prediction = np.zeros_like(x)
    prediction[lag:] = lfilter(operator, [1.0], x)[: len(x) - lag]
    return prediction


def wiener_prediction_error(x: np.ndarray, lag: int, operator_length: int,
                            prewhitening: float = DEFAULT_PREWHITENING) -> tuple[np.ndarray, np.ndarray]:
    """Predictive deconvolution of `x` [N] (offset removed first): returns (prediction [N], error [N]).

    prediction[n] uses x up to n - lag only; error = x - prediction is the
    deconvolved trace. One operator is designed on the whole trace.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    operator = wiener_prediction_filter(x, lag, operator_length, prewhitening)
    prediction = apply_prediction_filter(x, operator, lag)
    return prediction, x - prediction


def time_varying_wiener_prediction_error(x: np.ndarray, lag: int, operator_length: int,
                                         window_samples: int,
                                         prewhitening: float = DEFAULT_PREWHITENING
                                         ) -> tuple[np.ndarray, np.ndarray]:
    """Like wiener_prediction_error, with one operator per design window.

    Windows of `window_samples` overlap by half; each window's operator
    predicts the whole trace and the predictions are blended with Hann
    weights centred on the windows, so the operator changes smoothly along
    the trace (for reverberation periods that drift with time). A window must
    hold more than lag + operator_length samples; twice that or more gives
    stable operators.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    if window_samples <= lag + operator_length:
        raise ValueError(f"design window ({window_samples} samples) must be longer than "
                         f"lag + operator length ({lag} + {operator_length} samples)")
    if window_samples >= len(x):
        return wiener_prediction_error(x, lag, operator_length, prewhitening)
    hop = window_samples // 2
    starts = list(range(0, len(x) - window_samples + 1, hop))
    if starts[-1] + window_samples < len(x):
        starts.append(len(x) - window_samples)  # last window flush with the end
    weights = hann(window_samples, sym=False) + 1e-3  # floor: the trace ends get weight too
    blended, total_weight = np.zeros_like(x), np.zeros_like(x)
    for start in starts:
        window = slice(start, start + window_samples)
        operator = wiener_prediction_filter(x[window], lag, operator_length, prewhitening)
        blended[window] += weights * apply_prediction_filter(x, operator, lag)[window]
        total_weight[window] += weights
    prediction = blended / total_weight
    return prediction, x - prediction
