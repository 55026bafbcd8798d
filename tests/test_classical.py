"""Classical forecasting and predictive deconvolution: baselines, metrics, synthetic set, `eqcodec deconvolve`."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from tasks import synthetic
from tasks.classical import (apply_prediction_filter, ar_forecast, fit_ar_burg, persistence_forecast,
                          pick_reverberation_period, time_varying_wiener_prediction_error, wiener_prediction_error,
                          wiener_prediction_filter, zero_forecast)
from tasks.scores import (autocorrelation_reduction_db, band_coverage, crps_ensemble, crps_gaussian,
                                 horizon_scores, multiple_suppression_db, primary_correlation, relative_mse)

TAU, REFLECTION = 160, 0.6  # 4 s at 40 Hz


def reverberating_wavelet(kind: str, n: int = 6000):
    """(observed, primaries): one Ricker primary shorter than TAU, through the water layer.

    x[n] = p[n] - r x[n - tau] (simple) exactly, and p is uncorrelated with
    x[:n - tau + 1], so the prediction-error filter at lag tau must return p.
    """
    wavelet = synthetic.ricker(3.0)
    primaries = np.zeros(n)
    primaries[: len(wavelet)] = wavelet
    return synthetic.water_layer(primaries, TAU, REFLECTION, kind), primaries


def test_water_layer_matches_its_recursive_filter():
    x = np.random.default_rng(0).normal(size=2000)
    denominator = np.zeros(TAU + 1)
    denominator[[0, TAU]] = 1.0, REFLECTION
    assert np.allclose(synthetic.water_layer(x, TAU, REFLECTION, "simple"), lfilter([1.0], denominator, x))
    assert np.allclose(synthetic.water_layer(x, TAU, REFLECTION, "backus"),
                       lfilter([1.0], np.convolve(denominator, denominator), x))


@pytest.mark.parametrize("kind, operator_length", [("simple", 3), ("backus", TAU + 3)])
def test_wiener_filter_removes_a_pure_reverberation_train(kind, operator_length):
    observed, primaries = reverberating_wavelet(kind)
    # Without pre-whitening the answer is exact (up to rounding in the Toeplitz solve);
    # the default 0.1 % pre-whitening biases it slightly.
    _, error = wiener_prediction_error(observed, TAU, operator_length, prewhitening=0.0)
    assert multiple_suppression_db(observed, error, primaries) > 50
    _, error = wiener_prediction_error(observed, TAU, operator_length)
    assert multiple_suppression_db(observed, error, primaries) > 35
    assert primary_correlation(error, primaries) > 0.999
    # The wrong lag cannot predict the multiples: almost nothing is removed.
    _, error = wiener_prediction_error(observed, TAU + 20, 3)
    assert multiple_suppression_db(observed, error, primaries) < 3


def test_wiener_operator_is_the_water_layer_coefficient():
    observed, _ = reverberating_wavelet("simple")
    operator = wiener_prediction_filter(observed - observed.mean(), TAU, 3, prewhitening=0.0)
    assert np.allclose(operator, [-REFLECTION, 0, 0], atol=1e-3)


def test_wiener_prediction_uses_only_samples_at_least_lag_back():
    x = np.random.default_rng(1).normal(size=1000)
    operator = wiener_prediction_filter(x, 50, 10)
    changed = x.copy()
    changed[600:] += 100.0
    before, after = apply_prediction_filter(x, operator, 50), apply_prediction_filter(changed, operator, 50)
    assert np.allclose(before[:650], after[:650])  # a change at 600 reaches the prediction at 600 + lag
    assert not np.allclose(before[650:], after[650:])
    assert np.all(before[:50] == 0)  # nothing to predict from before the data starts


def test_time_varying_wiener_follows_a_drifting_period():
    trace = synthetic.make_trace(np.random.default_rng(3), duration_s=240.0, drifting=True)
    tau = trace.tau_samples
    lag = int(tau.min()) - 10
    operator = int(2 * tau.max()) - lag + 40
    _, fixed = wiener_prediction_error(trace.observed, lag, operator)
    _, varying = time_varying_wiener_prediction_error(trace.observed, lag, operator, 2400)
    fixed_db = multiple_suppression_db(trace.observed, fixed, trace.primaries)
    varying_db = multiple_suppression_db(trace.observed, varying, trace.primaries)
    assert abs(tau[-1] - tau[0]) > 4  # this seed drifts by several samples
    assert varying_db > fixed_db + 2


def test_pick_reverberation_period_finds_tau():
    trace = synthetic.make_trace(np.random.default_rng(4), duration_s=120.0)
    tau = int(trace.tau_samples[0])
    assert abs(pick_reverberation_period(trace.observed, 60, 360) - tau) <= 1


def ar2(n: int, seed: int) -> np.ndarray:
    return lfilter([1.0], [1.0, -1.6, 0.8], np.random.default_rng(seed).normal(size=n))


def test_ar_recovers_a_known_ar2_process():
    for seed in range(3):
        model = fit_ar_burg(ar2(8000, seed))
        assert model.order >= 2
        assert np.allclose(model.coefficients[:3], [1.0, -1.6, 0.8], atol=0.05)
        # AIC may add a few orders (it is not a consistent order estimator); they stay small.
        assert np.all(np.abs(model.coefficients[3:]) < 0.1)
        assert model.innovation_variance == pytest.approx(1.0, rel=0.1)


def test_ar_forecasts_ar2_better_than_persistence_and_zero():
    ar_error, persistence_error, zero_error = [], [], []
    # The process forgets its past within ~20 samples (poles at radius 0.89): score 10 samples ahead.
    for seed in range(30):
        x = ar2(1210, seed)
        context, truth = x[:1200], x[1200:]
        ar_error.append(np.mean((ar_forecast(context, 10) - truth) ** 2))
        persistence_error.append(np.mean((persistence_forecast(context, 10) - truth) ** 2))
        zero_error.append(np.mean((zero_forecast(context, 10) - truth) ** 2))
    assert np.mean(ar_error) < 0.75 * np.mean(zero_error)  # theory: ~0.6 over the first 10 samples
    assert np.mean(ar_error) < 0.5 * np.mean(persistence_error)


def test_crps_of_a_perfect_ensemble_is_zero_and_of_one_member_is_the_mae():
    truth = np.random.default_rng(0).normal(size=200)
    assert crps_ensemble(truth, np.tile(truth, (10, 1))) == pytest.approx(0.0, abs=1e-12)
    forecast = truth + 0.3
    assert crps_ensemble(truth, forecast) == pytest.approx(0.3)


def test_crps_matches_the_gaussian_closed_form():
    # Known value at the mean of N(0, 1): (sqrt(2) - 1) / sqrt(pi).
    assert crps_gaussian(np.zeros(1), np.zeros(1), np.ones(1)) == pytest.approx((np.sqrt(2) - 1) / np.sqrt(np.pi))
    rng = np.random.default_rng(1)
    truth = np.array([-1.5, 0.0, 0.4, 2.0])
    members = rng.normal(0.0, 2.0, (40000, 1)) * np.ones(4)
    assert crps_ensemble(truth, members) == pytest.approx(crps_gaussian(truth, 0.0, 2.0), rel=0.02)


def test_crps_of_a_small_ensemble_is_unbiased():
    # 8 members per point, 20,000 points: the fair CRPS averages to the distribution's own CRPS, where the
    # estimator over all S^2 pairs would exceed it by E|X - X'| / 2S = (2 / sqrt(pi)) / 16
    rng = np.random.default_rng(3)
    truth, members = rng.standard_normal(20000), rng.standard_normal((8, 20000))
    expected = crps_gaussian(truth, 0.0, 1.0)
    assert crps_ensemble(truth, members) == pytest.approx(expected, abs=0.01)
    all_pairs = np.abs(members[:, None] - members[None]).mean(axis=(0, 1))  # self-pairs included
    biased = float(np.mean(np.abs(members - truth).mean(axis=0) - 0.5 * all_pairs))
    assert biased - expected == pytest.approx((2 / np.sqrt(np.pi)) / 16, abs=0.01)


def test_coverage_of_the_90_percent_band():
    rng = np.random.default_rng(2)
    members = rng.normal(size=(500, 4000))
    assert band_coverage(rng.normal(size=4000), members) == pytest.approx(0.90, abs=0.02)
    assert band_coverage(rng.normal(0.0, 3.0, size=4000), members) < 0.5  # overconfident ensemble


def test_horizon_scores():
    truth = np.random.default_rng(3).normal(size=400)
    scores = horizon_scores(truth, np.zeros(400), [1, 10])
    assert set(scores) == {1, 10}
    assert scores[10]["relative_mse"] == pytest.approx(1.0)
    assert scores[10]["crps"] == pytest.approx(np.mean(np.abs(truth)))
    assert np.isnan(scores[10]["coverage_90"])
    perfect = horizon_scores(truth, truth, [10])[10]
    assert perfect["relative_mse"] == 0 and perfect["log_envelope_rmse"] == 0 and perfect["log_psd_error"] == 0
    ensemble = horizon_scores(truth, np.random.default_rng(4).normal(size=(50, 400)), [10])[10]
    assert 0.8 < ensemble["coverage_90"] <= 1.0
    assert relative_mse(truth, 2 * truth) == pytest.approx(1.0)


def test_autocorrelation_reduction_after_deconvolution():
    observed, _ = reverberating_wavelet("simple")
    _, error = wiener_prediction_error(observed, TAU, 3)
    assert autocorrelation_reduction_db(observed, error, TAU, 3) > 20
    assert autocorrelation_reduction_db(observed, observed, TAU, 3) == pytest.approx(0.0)


def test_synthetic_set_is_seeded_and_returns_its_parts(tmp_path):
    constant = synthetic.make_set(3, seed=7, duration_s=60.0)
    again = synthetic.make_set(3, seed=7, duration_s=60.0)
    for a, b in zip(constant, again):
        assert np.array_equal(a.observed, b.observed)
        assert np.allclose(a.observed, a.primaries + a.reverberation + a.noise)
        assert np.all(np.diff(a.tau_samples) == 0)
        lo, hi = synthetic.TAU_RANGE_S
        assert lo * 40 <= a.tau_samples[0] <= hi * 40
    assert not np.array_equal(constant[0].observed, constant[1].observed)
    drifting = synthetic.make_set(2, seed=7, drifting=True, duration_s=60.0)
    assert all(t.tau_samples[0] != t.tau_samples[-1] for t in drifting)

    manifest = synthetic.write_set(constant, tmp_path / "set")
    loaded = synthetic.load_set(manifest.parent)
    assert len(loaded) == 3 and loaded[1].parameters == constant[1].parameters
    scale = np.abs(constant[1].observed).max()
    assert np.allclose(loaded[1].observed, constant[1].observed, atol=1e-6 * scale)
    assert np.allclose(loaded[1].primaries, constant[1].primaries, atol=1e-6 * scale)
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["manifest.json", "truth", "waveforms"]
    with pytest.raises(FileExistsError):
        synthetic.write_set(constant, tmp_path / "set")


# ------------------------------------------------------------ eqcodec deconvolve

def test_deconvolve_cli_writes_a_valid_miniseed(example_file, tmp_path, capsys):
    import obspy
    from cli import main

    out, plot = tmp_path / "decon.mseed", tmp_path / "decon.png"
    assert main(["deconvolve", str(example_file), "--lag", "0.5", "--operator-seconds", "1",
                 "--out", str(out), "--plot", str(plot)]) == 0
    original, result = obspy.read(str(example_file)), obspy.read(str(out))
    assert [tr.id for tr in result] == [tr.id for tr in original]
    for before, after in zip(original, result):
        assert after.stats.starttime == before.stats.starttime
        assert after.stats.sampling_rate == 40.0 and after.stats.npts == 1200
        assert np.all(np.isfinite(after.data))
        # The error is not the input and keeps less energy (part of it was predictable).
        x = before.copy().resample(40.0).data
        assert 0 < np.sum(after.data**2) < np.sum((x - x.mean()) ** 2)
    assert plot.stat().st_size > 10_000
    assert "autocorr. reduction" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["--lag", "0"], "--lag must be a positive"),
    (["--lag", "-1"], "--lag must be a positive"),
    (["--lag", "45"], "lag 45 s is not shorter than the trace"),
    (["--lag", "1", "--operator-seconds", "40"], "operator 40 s is longer than the data"),
    (["--lag", "10", "--operator-seconds", "6"], "trace too short"),
])
def test_deconvolve_cli_refuses_bad_lags(example_file, tmp_path, capsys, arguments, message):
    from cli import main

    out = tmp_path / "decon.mseed"
    assert main(["deconvolve", str(example_file), "--out", str(out), *arguments]) == 1
    error = capsys.readouterr().err
    assert message in error
    assert "--lag" in error or "BW.RJOB" in error  # names the option or the trace
    assert not out.exists() and list(tmp_path.iterdir()) == [example_file]
