"""`eqcodec deconvolve` v2: the delay predictor, adaptive subtraction, the LM's conditional mean, bad input.

Data: obspy's bundled example (BW.RJOB, 3 x 30 s at 100 Hz), a longer bundled recording
and seeded synthetic reverberations; the LM is the tiny random one tied to the shipped codec.
"""

from __future__ import annotations

import json

import numpy as np
import obspy
import pytest
import torch

from cli import main as cli
from codec.errors import InputError
from codec.preprocess import trace_to_codec_input
from lm.model import load_lm
from tasks import synthetic
from tasks.adaptive import window_energies, window_starts
from tasks.deconvolve import (Matching, deconvolve_samples, delay_periods, energy_check, lm_prediction,
                              make_predictor, pick_period)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tiny_lm_dir, codec):
    return load_lm(tiny_lm_dir), codec


def water_trace(drifting=False, seed=3, duration=120.0):
    return synthetic.make_trace(np.random.default_rng([seed, 0]), duration_s=duration, drifting=drifting)


# ------------------------------------------------------------------ delay predictor

def test_picked_period_is_the_water_layer_period():
    trace = water_trace()
    tau = trace.tau_samples[0]
    lag = int(tau - 10)
    assert abs(pick_period(trace.observed, lag, lag + 60) - tau) <= 1.0


def test_time_varying_period_follows_a_drift():
    trace = water_trace(drifting=True, seed=5, duration=180.0)
    tau = trace.tau_samples
    lag = int(tau.min() - 10)
    picked = delay_periods(trace.observed - trace.observed.mean(), lag, int(tau.max() - lag + 40), 2400)
    middle = slice(1200, len(tau) - 1200)
    assert np.median(np.abs(picked[middle] - tau[middle])) < 3


def test_delay_prediction_is_causal_at_the_lag():
    x = np.random.default_rng(0).normal(size=2000)
    predictor = make_predictor("delay")
    lag, operator = 100, 40
    base = predictor(x, lag, operator)
    changed = x.copy()
    changed[1500:] += 5.0
    # Changing samples from 1500 on leaves every prediction before 1500 + lag as it was
    # (the period is picked on the whole trace, so fix it to test the delay itself).
    fixed = make_predictor("delay", period_samples=120.5)
    np.testing.assert_array_equal(fixed(x, lag, operator)[: 1500 + lag], fixed(changed, lag, operator)[: 1500 + lag])
    assert base.shape == x.shape


def test_delay_with_adaptive_subtraction_removes_a_constant_water_layer():
    trace = water_trace()
    tau = int(trace.tau_samples[0])
    lag, operator = tau - 10, tau + 50
    start = 20 * 40
    _, _, error = deconvolve_samples(trace.observed, lag, operator, make_predictor("delay"), Matching())
    before = np.sum((trace.observed - trace.observed.mean() - trace.primaries)[start:] ** 2)
    after = np.sum((error - trace.primaries)[start:] ** 2)
    assert 10 * np.log10(before / after) > 8


def test_a_period_shorter_than_the_lag_is_refused():
    with pytest.raises(InputError, match="shorter than the lag"):
        make_predictor("delay", period_samples=30)(np.ones(1000), 40, 10)


# ------------------------------------------------------------------ energy check

def test_energy_check_counts_windows_and_flags_a_louder_window():
    x = np.random.default_rng(0).normal(size=2000)
    y = x.copy()
    y[:300] *= 2  # the first windows get louder, the trace as a whole too
    check = energy_check(x, y, 400)
    starts = window_starts(2000, 400)
    assert check["windows"] == len(starts)
    over = window_energies(y, starts, 400) > window_energies(x, starts, 400)
    assert check["windows_over"] == int(over.sum()) > 0 and check["max_window_db"] > 0
    assert energy_check(x, 0.5 * x, 400)["windows_over"] == 0


# ------------------------------------------------------------------ the LM's conditional mean

def test_lm_prediction_is_a_seeded_mean_of_many_samples_and_ignores_the_future(tiny):
    lm, codec = tiny
    x = trace_to_codec_input(obspy.read()[0])
    x = x - x.mean()
    one = lm_prediction(x, 40, 400, lm=lm, codec=codec, n_samples=4, seed=1)
    again = lm_prediction(x, 40, 400, lm=lm, codec=codec, n_samples=4, seed=1)
    np.testing.assert_array_equal(one, again)
    assert (one[: 11 * 40] == 0).all() and np.abs(one[11 * 40:]).max() > 0
    # Frame t is predicted from data ending a frame before it: samples from 25 s on do not change frames < 26.
    changed = x.copy()
    changed[25 * 40:] *= -3
    other = lm_prediction(changed, 40, 400, lm=lm, codec=codec, n_samples=4, seed=1)
    np.testing.assert_allclose(other[: 26 * 40], one[: 26 * 40])
    with pytest.raises(InputError, match="samples >= 1"):
        lm_prediction(x, 40, 400, lm=lm, codec=codec, n_samples=0)


def test_deconvolve_cli_lm_adaptive_is_never_louder_and_writes_everything(example_file, tiny_lm_dir, tmp_path,
                                                                          capsys):
    out, prediction, plot = tmp_path / "err.mseed", tmp_path / "pred.mseed", tmp_path / "fig.png"
    assert cli(["deconvolve", str(example_file), "--lag", "1", "--method", "lm", "--lm", str(tiny_lm_dir),
                "--lm-samples", "4", "--match-window-seconds", "10", "--out", str(out),
                "--prediction-out", str(prediction), "--plot", str(plot)]) == 0
    for e, original in zip(obspy.read(str(out)), obspy.read(str(example_file))):
        x = trace_to_codec_input(original)
        x = x - x.mean()
        assert energy_check(x, e.data, 400)["windows_over"] == 0
        assert np.sum(e.data**2) <= np.sum(x**2)
    assert len(obspy.read(str(prediction))) == 3 and plot.stat().st_size > 10_000
    assert "| adaptive |" in capsys.readouterr().out


# ------------------------------------------------------------------ the CLI

def test_deconvolve_cli_delay_method_adaptive_by_default(example_file, tmp_path, capsys):
    out, plot = tmp_path / "delay.mseed", tmp_path / "delay.png"
    assert cli(["deconvolve", str(example_file), "--lag", "0.5", "--operator-seconds", "2", "--method", "delay",
                "--match-window-seconds", "10", "--out", str(out), "--plot", str(plot)]) == 0
    result = obspy.read(str(out))
    assert [tr.id for tr in result] == [tr.id for tr in obspy.read(str(example_file))]
    for tr, original in zip(result, obspy.read(str(example_file))):
        assert tr.stats.sampling_rate == 40.0 and tr.stats.starttime == original.stats.starttime
        x = trace_to_codec_input(original)
        assert np.sum(tr.data**2) <= np.sum((x - x.mean()) ** 2)
    text = capsys.readouterr().out
    assert "| adaptive |" in text and "worst window dB" in text
    assert plot.stat().st_size > 10_000


def test_deconvolve_cli_wiener_can_be_subtracted_adaptively(example_file, tmp_path, capsys):
    direct, adaptive = tmp_path / "direct.mseed", tmp_path / "adaptive.mseed"
    common = ["deconvolve", str(example_file), "--lag", "0.5", "--match-window-seconds", "10"]
    assert cli([*common, "--out", str(direct)]) == 0
    assert "| direct |" in capsys.readouterr().out
    assert cli([*common, "--subtraction", "adaptive", "--out", str(adaptive)]) == 0
    assert "| adaptive |" in capsys.readouterr().out
    assert not np.allclose(obspy.read(str(direct))[0].data, obspy.read(str(adaptive))[0].data)


def test_deconvolve_cli_given_period(example_file, tmp_path):
    out = tmp_path / "delay.mseed"
    assert cli(["deconvolve", str(example_file), "--lag", "0.5", "--method", "delay", "--period", "0.8",
                "--match-window-seconds", "10", "--out", str(out)]) == 0
    assert len(obspy.read(str(out))) == 3


@pytest.mark.parametrize("arguments, message", [
    (["--lag", "0"], "--lag must be a positive"),
    (["--lag", "-2", "--method", "delay"], "--lag must be a positive"),
    (["--lag", "31", "--method", "delay"], "lag 31 s is not shorter than the trace"),
    (["--lag", "1", "--operator-seconds", "40"], "operator 40 s is longer than the data"),
    (["--lag", "1", "--method", "delay", "--match-window-seconds", "40"], "matching window 40 s is longer than the data"),
    (["--lag", "1", "--subtraction", "adaptive", "--match-window-seconds", "31"], "matching window 31 s is longer"),
    (["--lag", "1", "--method", "delay", "--period", "0.5"], "--period 0.5 s is shorter than --lag 1 s"),
    (["--lag", "1", "--method", "delay", "--period", "35", "--match-window-seconds", "10"],
     "period 35 s is not shorter than the trace"),
    (["--lag", "0.05", "--method", "delay", "--match-taps", "9"], "not less than the lag"),
    (["--lag", "1", "--method", "delay", "--match-taps", "4"], "odd whole number"),
    (["--lag", "1", "--method", "wiener", "--design-window", "1.5"], "design window 1.5 s must be longer"),
])
def test_deconvolve_cli_refuses_bad_input_and_writes_nothing(example_file, tmp_path, capsys, arguments, message):
    out, plot = tmp_path / "decon.mseed", tmp_path / "decon.png"
    assert cli(["deconvolve", str(example_file), "--out", str(out), "--plot", str(plot), *arguments]) == 1
    error = capsys.readouterr().err
    assert message in error, error
    assert "--" in error or "BW.RJOB" in error  # names the option or the trace
    assert sorted(tmp_path.iterdir()) == [example_file]


@pytest.mark.parametrize("arguments, message", [
    (["--method", "wiener"], "--lag is required"),
    (["--lag", "1", "--period", "2"], "--period is used by --method delay only"),
    (["--lag", "1", "--method", "delay", "--lm", "x"], "--output surprisal / onset or --method lm only"),
    (["--output", "surprisal", "--prediction-out", "{dir}/p.mseed"], "--prediction-out goes with --output error"),
])
def test_deconvolve_cli_refuses_contradicting_options(example_file, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        cli(["deconvolve", str(example_file), "--out", str(tmp_path / "d.mseed"),
             *[a.format(dir=tmp_path) for a in arguments]])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == [example_file]


def test_a_bad_trace_leaves_no_output_even_after_good_ones(example_stream, tmp_path, capsys):
    # The last trace is too short for the matching window: nothing is written, the trace is named.
    example_stream[2].data = example_stream[2].data[:1500]
    path = tmp_path / "mixed.mseed"
    example_stream.write(str(path), format="MSEED")
    out = tmp_path / "decon.mseed"
    assert cli(["deconvolve", str(path), "--lag", "1", "--method", "delay", "--match-window-seconds", "20",
                "--out", str(out)]) == 1
    assert "BW.RJOB..EHE" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == [path]


# ------------------------------------------------------------------ synthetic fine-tuning sets

def test_wavelet_families_are_drawn_seeded_and_recorded(tmp_path):
    traces = synthetic.make_set(12, 7, duration_s=40, wavelets=synthetic.WAVELETS)
    assert {t.parameters["wavelet"] for t in traces} == set(synthetic.WAVELETS)
    again = list(synthetic.iter_set(12, 7, duration_s=40, wavelets=synthetic.WAVELETS))
    assert all(np.array_equal(a.observed, b.observed) for a, b in zip(traces, again))
    # Ricker-only sets make no wavelet draw: they are the benchmark's sets of earlier versions.
    ricker_only = synthetic.make_trace(np.random.default_rng([0, 0]), duration_s=40)
    assert ricker_only.parameters["wavelet"] == "ricker"
    for t in traces:
        assert np.allclose(t.observed, t.primaries + t.reverberation + t.noise)
        assert 2.0 <= t.parameters["tau_start_s"] <= 8.0 and 0.3 <= t.parameters["reflection"] <= 0.7
    with pytest.raises(ValueError, match="unknown wavelet"):
        synthetic.make_trace(np.random.default_rng(0), wavelets=("sinc",))


def test_minimum_phase_and_berlage_wavelets():
    ricker = synthetic.wavelet("ricker", 3.0)
    minimum = synthetic.wavelet("minimum-phase", 3.0)
    spectrum = lambda w: np.abs(np.fft.rfft(w, 1024))  # noqa: E731
    np.testing.assert_allclose(spectrum(minimum) / spectrum(minimum).max(), spectrum(ricker) / spectrum(ricker).max(),
                               atol=1e-3)
    energy = np.cumsum(minimum**2) / np.sum(minimum**2)
    assert energy[len(minimum) // 2] > 0.9  # its energy up front
    berlage = synthetic.wavelet("berlage", 3.0)
    assert berlage[0] == 0 and np.abs(berlage).max() == pytest.approx(1.0)


def test_a_large_set_is_written_one_trace_at_a_time_with_its_recipe(tmp_path):
    recipe = {"n_traces": 30, "seed": 100, "wavelets": list(synthetic.WAVELETS)}
    made = []

    def traces():
        for trace in synthetic.iter_set(30, 100, duration_s=20, wavelets=synthetic.WAVELETS):
            made.append(trace.parameters["index"])
            yield trace

    manifest = synthetic.write_set(traces(), tmp_path / "set", recipe=recipe)
    stored = json.loads(manifest.read_text())
    assert stored["recipe"] == recipe and len(stored["traces"]) == 30 and made == list(range(30))
    assert len(list((tmp_path / "set" / "waveforms").iterdir())) == 30
