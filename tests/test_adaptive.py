"""Adaptive subtraction (tasks.adaptive): matching filters that fix a prediction's scale, shift and polarity,
and the guarantee that the output never holds more energy than the data, in any matching window.

Data: white noise, obspy's bundled real recordings at 40 Hz (codec.preprocess), and predictions
of pure garbage (independent noise, a prediction 1000x too loud, a constant, zero).
"""

from __future__ import annotations

import numpy as np
import pytest

from codec.errors import InputError
from codec.preprocess import trace_to_codec_input
from tasks.adaptive import (adaptive_subtract, window_energies, window_slices, window_starts, window_tapers)

WINDOW = 400  # 10 s at 40 Hz


def assert_never_louder(data: np.ndarray, result) -> None:
    """Output energy <= input energy in every window (its own windows and, independently, recomputed) and overall."""
    before = window_energies(data, result.starts, result.window)
    after = window_energies(result.output, result.starts, result.window)
    assert np.all(after <= before), f"windows {np.flatnonzero(after > before)} hold more energy than the data"
    for sl in window_slices(len(data), window_starts(len(data), result.window), result.window):
        assert np.sum(result.output[sl] ** 2) <= np.sum(data[sl] ** 2)
    assert np.sum(result.output**2) <= np.sum(data**2)
    np.testing.assert_allclose(result.output + result.matched, data, rtol=0, atol=1e-9 * np.abs(data).max())


def real_recordings() -> list[np.ndarray]:
    """obspy.read()'s three traces (BW.RJOB, 100 Hz) at 40 Hz, offset removed."""
    import obspy

    traces = [trace_to_codec_input(tr) for tr in obspy.read()]
    return [x - x.mean() for x in traces]


def garbage(data: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"independent noise": rng.normal(size=len(data)) * data.std(),
            "1000x too loud": 1000 * np.roll(data, 37) + 1000 * rng.normal(size=len(data)) * data.std(),
            "constant": np.full(len(data), 3.0 * data.std()),
            "zero": np.zeros(len(data)),
            "impulses": np.where(rng.random(len(data)) < 0.01, 1e6, 0.0)}


def test_tapers_cover_every_sample_twice_and_sum_to_one():
    for n in (400, 401, 1000, 1234):
        starts = window_starts(n, WINDOW)
        tapers = window_tapers(n, starts, WINDOW)
        total, count = np.zeros(n), np.zeros(n)
        for sl, g in zip(window_slices(n, starts, WINDOW), tapers):
            assert np.all(g >= 0)
            total[sl] += g
            count[sl] += 1
        np.testing.assert_allclose(total, 1.0, atol=1e-12)
        assert np.all(count == 2)


@pytest.mark.parametrize("seed", range(3))
def test_white_noise_with_garbage_predictions_is_never_louder(seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=3000)
    for name, prediction in garbage(data, rng).items():
        result = adaptive_subtract(data, prediction, window_samples=WINDOW, taps=7)
        assert_never_louder(data, result)
        # Nothing in the prediction explains the data: (almost) nothing is removed.
        assert np.sum(result.output**2) > 0.9 * np.sum(data**2), name


def test_real_recordings_with_garbage_and_with_their_own_past_are_never_louder():
    rng = np.random.default_rng(0)
    for data in real_recordings():
        predictions = {**garbage(data, rng), "the trace 1 s earlier": np.roll(data, 40),
                       "the trace itself, 0.5 s late and flipped": -np.roll(data, 20)}
        for name, prediction in predictions.items():
            for taps, window in ((7, WINDOW), (11, 960), (1, 200)):
                assert_never_louder(data, adaptive_subtract(data, prediction, window_samples=window, taps=taps))


def test_a_blend_that_overshoots_is_scaled_down_until_every_window_passes():
    # Loud data then near silence; the prediction is the data where it is loud and loud noise
    # where the data is quiet: the filter fitted across the boundary would add that noise.
    rng = np.random.default_rng(1)
    data = rng.normal(size=4000)
    data[2000:] *= 1e-3
    prediction = data.copy()
    prediction[2000:] = rng.normal(size=2000)
    result = adaptive_subtract(data, prediction, window_samples=800, taps=7)
    assert_never_louder(data, result)
    assert result.scales.min() < 1  # the fallback acted
    assert result.scales.max() == 1  # ... only where needed
    assert np.sum(result.output[:1500] ** 2) < 1e-4 * np.sum(data[:1500] ** 2)  # the loud part is still removed


def test_matching_fixes_scale_polarity_and_a_sub_frame_shift():
    rng = np.random.default_rng(2)
    primaries = np.where(rng.random(4000) < 0.01, rng.normal(size=4000), 0.0)
    multiples = np.convolve(rng.normal(size=4000), np.hanning(9), mode="same")
    data = primaries + multiples
    # The prediction of the multiples: 3 samples early, 5x too loud and of the wrong polarity.
    prediction = -5 * np.roll(multiples, -3)
    result = adaptive_subtract(data, prediction, window_samples=WINDOW, taps=7)
    assert_never_louder(data, result)
    residual = result.output - primaries
    assert 10 * np.log10(np.sum(multiples**2) / np.sum(residual**2)) > 20
    assert np.corrcoef(result.output, primaries)[0, 1] > 0.95
    # Direct subtraction of the same prediction makes things worse.
    assert np.sum((data - prediction) ** 2) > np.sum(data**2)


def test_several_predictions_are_fitted_jointly():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=3000), rng.normal(size=3000)
    data = 0.5 * a - 2.0 * b + 0.01 * rng.normal(size=3000)
    result = adaptive_subtract(data, np.stack([a, b]), window_samples=WINDOW, taps=3)
    assert result.filters.shape == (len(result.starts), 2, 3)
    assert np.sum(result.output**2) < 1e-3 * np.sum(data**2)
    np.testing.assert_allclose(np.median(result.filters[:, :, 1], axis=0), [0.5, -2.0], atol=0.01)


@pytest.mark.parametrize("kwargs, message", [
    ({"window_samples": 5000}, "matching window (5000 samples) is longer than the data (3000 samples)"),
    ({"window_samples": 400, "taps": 6}, "must be an odd whole number"),
    ({"window_samples": 10, "taps": 7}, "too short for a 7-tap filter"),
    ({"window_samples": 400, "taps": 9, "lag_samples": 4}, "not less than the lag"),
])
def test_bad_lengths_are_refused_naming_the_trace(kwargs, message):
    data = np.random.default_rng(0).normal(size=3000)
    with pytest.raises(InputError, match="XX.STA") as info:
        adaptive_subtract(data, data, label="XX.STA..BHZ", **kwargs)
    assert message in str(info.value)


def test_non_finite_predictions_are_refused():
    data = np.random.default_rng(0).normal(size=3000)
    prediction = data.copy()
    prediction[7] = np.nan
    with pytest.raises(InputError, match="NaN"):
        adaptive_subtract(data, prediction, window_samples=WINDOW)
