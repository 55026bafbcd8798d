"""Adaptive subtraction: fit a predicted trace to the data with short matching filters before subtracting it.

Demultiple practice does not subtract predicted multiples as they are: their
scale, polarity, timing and phase are never quite right. A short
least-squares matching filter f (a few taps centred on zero lag, so it can
shift the prediction by up to `taps // 2` samples either way, rescale it,
flip it and change its phase) is fitted in each of a series of sliding,
overlapping, tapered windows, and

    output = data - sum_k g_k * (f_k * prediction)

where `*` is convolution and g_k [N] are the windows' tapers, which sum to
one at every sample. All lengths are in samples (40 Hz in this project).

Windows: W samples long (W even), hop W / 2, the first starting W / 2 before
the data so that every sample lies in exactly two windows; the tapers are
periodic Hann windows (sin^2), which sum to one at 50 % overlap.

Energy guarantee: the output never holds more energy than the data, over the
whole trace and over the samples of every window (window_energies). Two
steps give it:

1. Each filter is fitted in the tapered domain: f_k minimizes
   sum_n g_k[n] (d[n] - (f_k * p)[n])^2 + ridge |f_k|^2 (weighted least
   squares; f = 0 is a candidate, so the weighted error is at most the
   weighted data energy). Because the g_k are non-negative and sum to one,
   |sum_k g_k e_k|^2 <= sum_k g_k |e_k|^2 at every sample (Jensen), so the
   blended output holds at most the data's energy over the whole trace.
2. Within one window the blend of neighbouring filters can still overshoot.
   Every window is checked; the filters of the windows that touch a failing
   one are halved (scaling a least-squares filter down by alpha in [0, 1]
   keeps step 1's bound), up to MAX_HALVINGS times, then set to zero, until
   every window passes. With the filters around a window at zero the output
   there is the data itself, so the loop ends and the guarantee is exact (no
   tolerance), whatever the prediction: noise, a trace 1000x too loud, a
   constant.

Causality: the filter reads prediction[n - j] for |j| <= taps // 2, so a
prediction made at least `lag` samples ahead is used at least
lag - taps // 2 samples ahead (adaptive_subtract refuses taps // 2 >= lag
when given the lag). The filters themselves are fitted on the data they
are subtracted from: the output is a least-squares residual, not a pure
prediction error; few taps over a long window keep it from fitting primaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lstsq
from scipy.signal.windows import hann

from codec.errors import InputError

#: Matching-filter taps (odd: centred on zero lag) and window length (s) of `eqcodec deconvolve`.
DEFAULT_TAPS = 7
DEFAULT_WINDOW_SECONDS = 24.0
#: Ridge of the normal equations, relative to their mean diagonal: light regularization
#: that keeps the solution bounded when the prediction is (nearly) constant or zero.
RIDGE = 1e-3
#: Halvings of the filters around a window that still holds more energy than the data, before they are zeroed.
MAX_HALVINGS = 6


@dataclass
class AdaptiveResult:
    """Adaptive subtraction of predictions from data [N].

    output:  [N] data - matched
    matched: [N] the blended, filtered predictions (what was subtracted)
    filters: [K, M, taps] matching filter of each window and prediction (after any scaling);
             filters[k, m, j] multiplies prediction m at shift j - taps // 2
    scales:  [K] factor each window's least-squares filter was multiplied by (1: as fitted, 0: zeroed)
    starts:  [K] first sample of each window (the first is negative); window k covers
             max(starts[k], 0) .. min(starts[k] + window, N)
    window:  window length in samples
    """

    output: np.ndarray
    matched: np.ndarray
    filters: np.ndarray
    scales: np.ndarray
    starts: np.ndarray
    window: int

    def windows(self) -> list[slice]:
        """The samples each window covers."""
        return window_slices(len(self.output), self.starts, self.window)


def window_starts(n_samples: int, window_samples: int) -> np.ndarray:
    """[K] starts of the matching windows: -W/2, 0, W/2, ... while they begin before the end of the data."""
    hop = window_samples // 2
    return np.arange(-hop, n_samples, hop)


def window_slices(n_samples: int, starts: np.ndarray, window_samples: int) -> list[slice]:
    """The part of each window inside the data [0, N)."""
    return [slice(max(int(s), 0), min(int(s) + window_samples, n_samples)) for s in starts]


def window_tapers(n_samples: int, starts: np.ndarray, window_samples: int) -> list[np.ndarray]:
    """Taper of each window over its slice (window_slices), normalized to sum to one at every sample."""
    shape = hann(window_samples, sym=False)  # sin^2: halves of neighbours sum to one
    slices = window_slices(n_samples, starts, window_samples)
    raw = [shape[sl.start - s : sl.stop - s] for sl, s in zip(slices, starts)]
    total = np.zeros(n_samples)
    for sl, g in zip(slices, raw):
        total[sl] += g
    return [g / total[sl] for sl, g in zip(slices, raw)]


def window_energies(x: np.ndarray, starts: np.ndarray, window_samples: int) -> np.ndarray:
    """[K] energy (sum of squares) of x [N] over the samples of each window."""
    x = np.asarray(x, dtype=np.float64)
    return np.array([np.sum(x[sl] ** 2) for sl in window_slices(len(x), starts, window_samples)])


def shifted_columns(predictions: np.ndarray, sl: slice, taps: int) -> np.ndarray:
    """[n, M * taps]: column m * taps + j holds prediction m shifted by j - taps // 2 (zero outside the data)."""
    half = taps // 2
    padded = np.pad(predictions, ((0, 0), (half, half)))
    columns = [padded[m, sl.start + 2 * half - j : sl.stop + 2 * half - j]
               for m in range(predictions.shape[0]) for j in range(taps)]
    return np.stack(columns, axis=1)


def fit_matching_filter(data: np.ndarray, columns: np.ndarray, taper: np.ndarray,
                        ridge: float = RIDGE) -> np.ndarray:
    """[C]: f minimizing sum taper * (data - columns @ f)^2 + lambda |f|^2 (scipy.linalg.lstsq).

    data [n], columns [n, C], taper [n] >= 0; lambda = ridge * the mean diagonal
    of the weighted normal matrix (0 for an all-zero prediction, whose filter is 0).
    """
    w = np.sqrt(taper)[:, None]
    weighted = columns * w
    scale = np.mean(np.sum(weighted**2, axis=0))
    if not scale > 0:
        return np.zeros(columns.shape[1])
    n_columns = columns.shape[1]
    system = np.vstack([weighted, np.sqrt(ridge * scale) * np.eye(n_columns)])
    target = np.concatenate([data * w[:, 0], np.zeros(n_columns)])
    solution, *_ = lstsq(system, target, lapack_driver="gelsd")
    return solution


def adaptive_subtract(data: np.ndarray, prediction: np.ndarray, *, taps: int = DEFAULT_TAPS,
                      window_samples: int, lag_samples: int | None = None, ridge: float = RIDGE,
                      label: str = "trace") -> AdaptiveResult:
    """Subtract prediction [N] (or M predictions [M, N], one filter each, fitted jointly) from data [N].

    See the module docstring for the windows, the fit and the energy
    guarantee. taps: odd number of filter coefficients; window_samples:
    matching-window length (rounded up to even); lag_samples: the prediction
    distance, given to refuse filters reaching past it. InputError naming
    `label` for lengths that do not fit or non-finite inputs.
    """
    data = np.asarray(data, dtype=np.float64)
    predictions = np.atleast_2d(np.asarray(prediction, dtype=np.float64))
    n = len(data)
    if data.ndim != 1 or predictions.shape[1] != n:
        raise InputError(f"{label}: prediction {predictions.shape} does not match the data ({n} samples)")
    if not isinstance(taps, (int, np.integer)) or taps < 1 or taps % 2 == 0:
        raise InputError(f"{label}: matching filter taps must be an odd whole number >= 1, got {taps!r}")
    window_samples = int(window_samples) + int(window_samples) % 2
    if window_samples < 2 * taps:
        raise InputError(f"{label}: matching window of {window_samples} samples is too short for a "
                         f"{taps}-tap filter (at least {2 * taps} samples)")
    if window_samples > n:
        raise InputError(f"{label}: matching window ({window_samples} samples) is longer than the data "
                         f"({n} samples)")
    if lag_samples is not None and taps // 2 >= lag_samples:
        raise InputError(f"{label}: a {taps}-tap matching filter reads the prediction {taps // 2} samples "
                         f"ahead, not less than the lag ({lag_samples} samples): use fewer taps or a longer lag")
    if not (np.isfinite(data).all() and np.isfinite(predictions).all()):
        raise InputError(f"{label}: data or prediction holds NaN or infinite values")

    starts = window_starts(n, window_samples)
    slices = window_slices(n, starts, window_samples)
    tapers = window_tapers(n, starts, window_samples)
    fitted, filtered = [], []  # per window: the least-squares filter and the filtered predictions on its slice
    for sl, taper in zip(slices, tapers):
        columns = shifted_columns(predictions, sl, taps)
        f = fit_matching_filter(data[sl], columns, taper, ridge)
        fitted.append(f)
        filtered.append(columns @ f)

    scales = np.ones(len(starts))
    halvings = np.zeros(len(starts), dtype=int)
    energy_in = window_energies(data, starts, window_samples)
    while True:
        matched = np.zeros(n)
        for sl, taper, m, scale in zip(slices, tapers, filtered, scales):
            if scale:
                matched[sl] += scale * taper * m
        output = data - matched
        failing = np.flatnonzero(window_energies(output, starts, window_samples) > energy_in)
        if not len(failing):
            break
        touched = np.unique(np.clip(np.concatenate([failing - 1, failing, failing + 1]), 0, len(starts) - 1))
        touched = touched[scales[touched] > 0]
        assert len(touched), "a window with every filter around it at zero holds the data itself"
        halvings[touched] += 1
        scales[touched] = np.where(halvings[touched] > MAX_HALVINGS, 0.0, scales[touched] / 2)
    filters = np.stack(fitted) * scales[:, None]
    return AdaptiveResult(output=output, matched=matched, filters=filters.reshape(len(starts), -1, taps),
                          scales=scales, starts=starts, window=window_samples)
