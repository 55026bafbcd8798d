"""Scores for forecasts and for predictive deconvolution, shared by every benchmark.

Forecasts (truth [H] against a deterministic forecast [H] or S sampled
continuations [S, H], all at 40 Hz):

- relative_mse:        sum (truth - forecast)^2 / sum truth^2 (1 for a zero forecast)
- log_envelope_rmse:   RMSE of log10 per-second RMS (the envelope, in decades)
- log_psd_error:       RMSE of log10 Welch PSD over 0-16 Hz (the spectrum, in decades)
- crps_ensemble:       continuous ranked probability score per sample point,
                       averaged; equals the MAE for one member
- band_coverage:       fraction of points inside the members' 5-95 % band
- horizon_scores:      all of the above over the first h seconds, for each h

Deconvolution:

- autocorrelation_reduction_db: energy of the normalized autocorrelation at
                       lags [lag, lag + L] before / after, in dB (real data:
                       how much predictable energy at those lags was removed)
- multiple_suppression_db: energy of what is not primary before / after, in dB
                       (synthetic data, where the primaries are known)
- primary_correlation: correlation coefficient with the true primaries
"""

from __future__ import annotations

import numpy as np
from scipy.signal import welch

from codec.preprocess import FRAME_LENGTH, SAMPLING_RATE

from .classical import autocorrelation

#: Frequency band of the log-PSD error: the codec's band at 40 Hz.
PSD_BAND_HZ = (0.0, 16.0)

#: Amplitude floor of the log scores, relative to the truth's RMS over the
#: scored window (-60 dB): keeps log10 finite for a zero forecast and for
#: silent seconds. A zero forecast's log scores measure mostly this floor.
RELATIVE_LOG_FLOOR = 1e-3


def _as_members(forecast: np.ndarray) -> np.ndarray:
    """A deterministic forecast [H] becomes an ensemble of one member [1, H]."""
    return np.atleast_2d(np.asarray(forecast, dtype=np.float64))


def _log_floor(truth: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(truth))))
    return RELATIVE_LOG_FLOOR * rms if rms > 0 else 1e-12


def relative_mse(truth: np.ndarray, forecast: np.ndarray) -> float:
    """sum (truth - forecast)^2 / sum truth^2; an ensemble [S, H] is scored by its mean."""
    truth = np.asarray(truth, dtype=np.float64)
    point = _as_members(forecast).mean(axis=0)
    energy = np.sum(truth**2)
    return float(np.sum((truth - point) ** 2) / energy) if energy > 0 else float("nan")


def log_envelope(x: np.ndarray, floor: float, frame: int = FRAME_LENGTH) -> np.ndarray:
    """[..., T]: log10 of the RMS of each whole second (frame) of x [..., N], floored."""
    x = np.asarray(x, dtype=np.float64)
    n = (x.shape[-1] // frame) * frame
    rms = np.sqrt(np.mean(x[..., :n].reshape(*x.shape[:-1], -1, frame) ** 2, axis=-1))
    return np.log10(np.maximum(rms, floor))


def log_envelope_rmse(truth: np.ndarray, forecast: np.ndarray) -> float:
    """RMSE (decades) between the truth's log envelope and the forecast's.

    For an ensemble the forecast envelope is the median of the members' log
    envelopes (the typical member, not the envelope of the mean, which random
    phases would shrink).
    """
    floor = _log_floor(truth)
    reference = log_envelope(truth, floor)
    predicted = np.median(log_envelope(_as_members(forecast), floor), axis=0)
    return float(np.sqrt(np.mean((reference - predicted) ** 2)))


def log_psd(x: np.ndarray, floor: float, sampling_rate: float = SAMPLING_RATE):
    """(frequencies [F], log10 Welch PSD [..., F]) in PSD_BAND_HZ; segments of up to 4 s."""
    x = np.asarray(x, dtype=np.float64)
    nperseg = min(x.shape[-1], 4 * int(sampling_rate))
    freqs, psd = welch(x, fs=sampling_rate, nperseg=nperseg, axis=-1)
    band = (freqs > PSD_BAND_HZ[0]) & (freqs <= PSD_BAND_HZ[1])
    # The floor is an amplitude; a PSD is amplitude^2 per Hz.
    return freqs[band], np.log10(np.maximum(psd[..., band], floor**2 / sampling_rate))


def log_psd_error(truth: np.ndarray, forecast: np.ndarray) -> float:
    """RMSE (decades) of log10 Welch PSDs over the band; ensembles: median member log-PSD."""
    floor = _log_floor(truth)
    _, reference = log_psd(truth, floor)
    _, predicted = log_psd(_as_members(forecast), floor)
    return float(np.sqrt(np.mean((reference - np.median(predicted, axis=0)) ** 2)))


def crps_ensemble(truth: np.ndarray, members: np.ndarray) -> float:
    """Mean over sample points of the fair ensemble CRPS, E|X - y| - E|X - X'| / 2.

    truth [H], members [S, H] (or [H] for a deterministic forecast, whose CRPS
    is then the mean absolute error). E|X - X'| is averaged over the S (S - 1)
    pairs of distinct members (Ferro 2014's fair CRPS): an unbiased estimate of
    the CRPS of the distribution the members are drawn from, whatever S, so
    ensembles of different sizes compare fairly (over all S^2 pairs, self-pairs
    included, a small ensemble is penalized by E|X - X'| / 2S). With sorted
    members, sum over distinct pairs |x_i - x_j| = 2 sum_i (2 i - S - 1) x_(i).
    """
    truth = np.asarray(truth, dtype=np.float64)
    members = np.sort(_as_members(members), axis=0)
    s = members.shape[0]
    accuracy = np.mean(np.abs(members - truth), axis=0)
    if s == 1:
        return float(np.mean(accuracy))
    ranks = 2 * np.arange(1, s + 1) - s - 1
    spread = 2.0 / (s * (s - 1)) * np.tensordot(ranks, members, axes=(0, 0))
    return float(np.mean(accuracy - 0.5 * spread))


def crps_gaussian(truth: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """Closed-form CRPS of N(mean, std^2) forecasts, averaged over points (Gneiting et al. 2005)."""
    from scipy.stats import norm

    truth, mean, std = (np.asarray(a, dtype=np.float64) for a in (truth, mean, std))
    z = (truth - mean) / std
    crps = std * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    return float(np.mean(crps))


def ensemble_quantiles(members: np.ndarray, probabilities) -> np.ndarray:
    """Pointwise quantiles [P, H] of an ensemble [S, H] at the Weibull plotting positions p (S + 1) (Hyndman
    and Fan's type 6): for S exchangeable members, a new draw falls below the p quantile with probability p,
    so the 5-95 % band holds 90 % of draws for any S >= 19 (below, it is the members' range: (S - 1) / (S + 1)).
    numpy's default (linear, type 7) narrows the band of small ensembles: 0.9 (S - 1) / (S + 1), 0.84 for
    S = 32."""
    return np.quantile(np.asarray(members, dtype=np.float64), probabilities, axis=0, method="weibull")


def band_coverage(truth: np.ndarray, members: np.ndarray,
                  lower: float = 0.05, upper: float = 0.95) -> float:
    """Fraction of points of truth [H] inside the members' [S, H] lower-upper quantile band
    (ensemble_quantiles)."""
    members = _as_members(members)
    low, high = ensemble_quantiles(members, [lower, upper])
    truth = np.asarray(truth, dtype=np.float64)
    return float(np.mean((truth >= low) & (truth <= high)))


def horizon_scores(truth: np.ndarray, forecast: np.ndarray, horizons_s,
                   sampling_rate: float = SAMPLING_RATE) -> dict[float, dict[str, float]]:
    """Scores over the first h seconds of the continuation, for each h in `horizons_s`.

    truth [H]; forecast [H] (deterministic) or [S, H] (S >= 2 sampled
    continuations). Coverage is NaN for a deterministic forecast (it has no band).
    Returns {h: {"relative_mse", "log_envelope_rmse", "log_psd_error", "crps", "coverage_90"}}.
    """
    members = _as_members(forecast)
    scores = {}
    for h in horizons_s:
        n = int(round(h * sampling_rate))
        if n > len(truth) or n > members.shape[1]:
            raise ValueError(f"horizon {h} s is longer than the forecast or the truth")
        y, f = truth[:n], members[:, :n]
        scores[h] = {
            "relative_mse": relative_mse(y, f),
            "log_envelope_rmse": log_envelope_rmse(y, f),
            "log_psd_error": log_psd_error(y, f),
            "crps": crps_ensemble(y, f),
            "coverage_90": band_coverage(y, f) if members.shape[0] > 1 else float("nan"),
        }
    return scores


# ----------------------------------------------------------- deconvolution

def autocorrelation_energy(x: np.ndarray, lag: int, operator_length: int) -> float:
    """sum of rho[k]^2 for k in [lag, lag + L], rho the autocorrelation normalized by rho[0]."""
    r = autocorrelation(np.asarray(x, dtype=np.float64) - np.mean(x), lag + operator_length)
    if r[0] == 0:
        return 0.0
    rho = r / r[0]
    return float(np.sum(rho[lag : lag + operator_length + 1] ** 2))


def autocorrelation_reduction_db(before: np.ndarray, after: np.ndarray,
                                 lag: int, operator_length: int) -> float:
    """10 log10 of the autocorrelation energy at lags [lag, lag + L] before / after deconvolution."""
    energy_before = autocorrelation_energy(before, lag, operator_length)
    energy_after = autocorrelation_energy(after, lag, operator_length)
    if energy_after == 0:
        return float("inf")
    return float(10 * np.log10(energy_before / energy_after))


def multiple_suppression_db(observed: np.ndarray, deconvolved: np.ndarray, primaries: np.ndarray) -> float:
    """10 log10( sum (observed - primaries)^2 / sum (deconvolved - primaries)^2 ).

    Everything that is not primary counts: multiples and noise. Offsets are
    removed from each trace first (the deconvolution removes the mean).
    """
    observed, deconvolved, primaries = (np.asarray(a, dtype=np.float64) - np.mean(a)
                                        for a in (observed, deconvolved, primaries))
    before = np.sum((observed - primaries) ** 2)
    after = np.sum((deconvolved - primaries) ** 2)
    if after == 0:
        return float("inf")
    return float(10 * np.log10(before / after))


def primary_correlation(x: np.ndarray, primaries: np.ndarray) -> float:
    """Pearson correlation coefficient of a trace with the true primaries."""
    return float(np.corrcoef(np.asarray(x, dtype=np.float64), np.asarray(primaries, dtype=np.float64))[0, 1])
