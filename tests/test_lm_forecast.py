"""LM forecasts (tasks.forecast, `eqcodec forecast`) and LM predictive deconvolution (`eqcodec deconvolve --method lm`).

Uses the shipped LM and codec on obspy's bundled example recording (BW.RJOB, 30 s at 100 Hz).
"""

from __future__ import annotations

import json

import numpy as np
import obspy
import pytest
import torch

from cli import main as cli
from codec.preprocess import InputError, trace_to_codec_input
from tasks.forecast import forecast_samples, output_paths, per_second_rms
from lm.model import load_lm

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm():
    return load_lm()


def test_forecast_samples_shape_and_amplitude(example_stream, lm, codec):
    samples = trace_to_codec_input(example_stream[0])  # [1200] at 40 Hz
    members = forecast_samples(samples, lm, codec, context_seconds=20, horizon_seconds=5, n_samples=4, seed=0)
    assert members.shape == (4, 5 * 40)
    assert np.isfinite(members).all()
    assert not np.allclose(members[0], members[1])  # the members are samples, not copies
    context_rms = per_second_rms(samples[-20 * 40:] - samples[-20 * 40:].mean()).mean()
    ratio = per_second_rms(members - samples[-20 * 40:].mean()) / context_rms  # [S, 5]
    assert (ratio > 1e-3).all() and (ratio < 1e3).all()
    # Same seed, same forecast.
    again = forecast_samples(samples, lm, codec, context_seconds=20, horizon_seconds=5, n_samples=4, seed=0)
    np.testing.assert_array_equal(members, again)


@pytest.mark.parametrize("context, horizon, data, message", [
    (20, 0, None, "horizon"),
    (5, 5, None, "shorter than the minimum"),
    (1000, 5, "long", "longer than the LM's window"),
    (20, 5, "nan", "NaN"),
])
def test_forecast_samples_refuses_bad_arguments(example_stream, lm, codec, context, horizon, data, message):
    samples = trace_to_codec_input(example_stream[0])
    if data == "long":
        samples = np.tile(samples, 40)
    if data == "nan":
        samples[-10] = np.nan
    with pytest.raises(InputError, match=message):
        forecast_samples(samples, lm, codec, context, horizon, n_samples=2, seed=0)


def test_forecast_cli_writes_mean_median_band_envelope_and_plot(example_file, example_stream, tmp_path, capsys):
    out = tmp_path / "fc.mseed"
    assert cli(["forecast", str(example_file), "--context-seconds", "20", "--seconds", "6", "--samples", "8",
                "--out", str(out)]) == 0
    paths = output_paths(out)
    for path in (*paths.values(), out.with_suffix(".png")):
        assert path.is_file() and path.stat().st_size > 0
    median, low, high = (obspy.read(str(paths[name])) for name in ("median", "q05", "q95"))
    assert [tr.id for tr in median] == [tr.id for tr in example_stream]
    for tr, original, lo, hi in zip(median, example_stream, low, high):
        # The input's last sample at 40 Hz is at 29.975 s: the forecast starts one 40 Hz sample later.
        assert tr.stats.starttime == original.stats.starttime + 30.0
        assert tr.stats.sampling_rate == 40.0 and tr.stats.npts == 6 * 40
        assert (lo.data <= tr.data).all() and (tr.data <= hi.data).all()
        assert (hi.data > lo.data).any()
    # OUT is the point forecast: the members' mean (between the band's edges, and not the median)
    mean = obspy.read(str(out))
    assert [tr.id for tr in mean] == [tr.id for tr in median]
    for m, med, lo, hi in zip(mean, median, low, high):
        assert m.stats.starttime == med.stats.starttime and m.stats.npts == med.stats.npts
        assert (lo.data <= m.data + 1e-9).all() and (m.data <= hi.data + 1e-9).all()
        assert not np.allclose(m.data, med.data)
    envelope = json.loads(paths["json"].read_text())
    assert len(envelope["traces"]) == 3
    for e in envelope["traces"]:
        assert len(e["rms_median"]) == len(e["rms_q05"]) == len(e["rms_q95"]) == 6
        assert all(a <= b <= c for a, b, c in zip(e["rms_q05"], e["rms_median"], e["rms_q95"]))
        assert len(e["context_rms_per_second"]) == 20
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("arguments, message", [
    (["--seconds", "0", "--context-seconds", "20"], "--seconds"),
    (["--seconds", "5", "--context-seconds", "5"], "minimum"),
    (["--seconds", "5", "--context-seconds", "500"], "window"),
])
def test_forecast_cli_refuses_bad_arguments_and_writes_nothing(example_file, tmp_path, capsys, arguments, message):
    out = tmp_path / "fc.mseed"
    assert cli(["forecast", str(example_file), "--out", str(out), *arguments]) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [example_file]


def test_forecast_cli_refuses_nan(example_stream, tmp_path, capsys):
    example_stream[0].data = example_stream[0].data.astype(np.float64)
    example_stream[0].data[-50] = np.nan
    path = tmp_path / "nan.mseed"
    example_stream.write(str(path), format="MSEED")
    assert cli(["forecast", str(path), "--context-seconds", "20", "--seconds", "3", "--out",
                str(tmp_path / "fc.mseed")]) == 1
    assert "BW.RJOB" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [path]


def test_deconvolve_cli_lm_method_writes_a_valid_miniseed(example_file, example_stream, tmp_path, capsys):
    out, prediction_out = tmp_path / "decon.mseed", tmp_path / "prediction.mseed"
    assert cli(["deconvolve", str(example_file), "--lag", "1", "--operator-seconds", "1", "--method", "lm",
                "--subtraction", "direct",  # error + prediction = input (the default, adaptive, matches it first)
                "--out", str(out), "--prediction-out", str(prediction_out)]) == 0
    error, prediction = obspy.read(str(out)), obspy.read(str(prediction_out))
    assert [tr.id for tr in error] == [tr.id for tr in example_stream]
    for e, p, original in zip(error, prediction, example_stream):
        assert e.stats.starttime == original.stats.starttime and e.stats.sampling_rate == 40.0
        assert e.stats.npts == 1200 and np.isfinite(e.data).all()
        centred = trace_to_codec_input(original) - trace_to_codec_input(original).mean()
        np.testing.assert_allclose(e.data + p.data, centred, rtol=1e-9, atol=1e-9 * np.abs(centred).max())
        # 10 s of context + 1 frame of gap: nothing is predicted in the first 11 s, something after.
        assert (p.data[: 11 * 40] == 0).all()
        assert np.abs(p.data[11 * 40:]).max() > 0
        # The prediction is a mean of LM samples of the trace's own level, not a blow-up.
        assert np.sqrt(np.mean(p.data[11 * 40:] ** 2)) < 10 * np.sqrt(np.mean(centred**2))
