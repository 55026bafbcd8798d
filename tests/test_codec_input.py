"""Bad input to the codec: each case gets a clear error naming the trace or file, and the CLI exits non-zero."""

from __future__ import annotations

import numpy as np
import obspy
import pytest

from cli import main as eqcodec
from codec.preprocess import (
    InputError,
    check_no_gaps,
    is_clipped,
    read_stream,
    resample_to_codec_rate,
    trace_to_codec_input,
)


def make_trace(data, sampling_rate=100.0, station="TEST"):
    return obspy.Trace(np.asarray(data), header={"network": "XX", "station": station, "channel": "HHZ",
                                                 "sampling_rate": sampling_rate})


@pytest.mark.parametrize(
    "data, rate, message",
    [
        (np.array([], dtype=np.float64), 100.0, "empty"),
        (np.r_[np.ones(500), np.nan, np.ones(500)] * np.arange(1001), 100.0, "NaN or infinite"),
        (np.r_[np.random.default_rng(0).standard_normal(500), np.inf], 100.0, "NaN or infinite"),
        (np.full(1000, 7.0), 100.0, "constant"),
        (np.random.default_rng(0).standard_normal(200), 10.0, "below the minimum"),
        (np.random.default_rng(0).standard_normal(50), 100.0, "shorter than one codec frame"),
    ],
)
def test_bad_traces_are_refused_with_the_trace_named(data, rate, message):
    with pytest.raises(InputError, match=message) as err:
        trace_to_codec_input(make_trace(data, rate))
    assert "XX.TEST..HHZ" in str(err.value)


def test_clipped_trace_is_refused_unless_allowed():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000) * 100
    x[2000:2100] += 5000 * np.sin(np.linspace(0, 6 * np.pi, 100))
    clipped = np.clip(x, -2000, 2000)
    assert is_clipped(clipped) and not is_clipped(x)
    with pytest.raises(InputError, match="clipped"):
        trace_to_codec_input(make_trace(clipped))
    assert len(trace_to_codec_input(make_trace(clipped), allow_clipped=True)) == 1600


def test_quiet_integer_trace_is_not_mistaken_for_clipped():
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal(4000)).astype(np.int32)  # values -3..3 repeat naturally
    assert not is_clipped(x)


def test_gaps_are_refused_with_the_time_of_the_first_gap(example_stream):
    trace = example_stream[0]
    first, second = trace.slice(endtime=trace.stats.starttime + 10), trace.slice(starttime=trace.stats.starttime + 15)
    with pytest.raises(InputError, match="several pieces") as err:
        check_no_gaps(obspy.Stream([first, second]), "gappy.mseed")
    assert "gappy.mseed" in str(err.value) and trace.id in str(err.value)


def test_resampling_is_anti_aliased():
    t = np.arange(10000) / 100.0
    tone_in_band = np.sin(2 * np.pi * 5 * t)
    tone_above_nyquist = np.sin(2 * np.pi * 30 * t)  # would alias to 10 Hz without filtering
    y_in = resample_to_codec_rate(tone_in_band, 100.0)
    y_out = resample_to_codec_rate(tone_above_nyquist, 100.0)
    assert len(y_in) == 4000
    assert np.std(y_in[200:-200]) > 0.69
    assert np.std(y_out[200:-200]) < 0.01


def test_unreadable_and_unknown_files_are_reported(tmp_path):
    garbage = tmp_path / "garbage.mseed"
    garbage.write_bytes(b"this is not a waveform\n" * 20)
    with pytest.raises(InputError, match="garbage.mseed"):
        read_stream(garbage)
    with pytest.raises(InputError, match="no such file"):
        read_stream(tmp_path / "missing.mseed")


def test_cli_exits_non_zero_and_writes_only_the_good_files_on_bad_input(tmp_path, example_stream, capsys):
    good = tmp_path / "good.mseed"
    example_stream.write(str(good), format="MSEED")
    bad = tmp_path / "nan.mseed"
    tr = example_stream[0].copy()
    tr.data = tr.data.astype(np.float64)
    tr.data[100] = np.nan
    tr.write(str(bad), format="MSEED")
    out = tmp_path / "out"
    assert eqcodec(["reconstruct", str(good), str(bad), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "nan.mseed" in captured.err and "NaN" in captured.err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.mseed"))
    assert written == [f"k{k}/good.mseed" for k in (1, 2, 4, 8)]
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_cli_refuses_codebooks_outside_range(tmp_path, example_stream):
    good = tmp_path / "good.mseed"
    example_stream.write(str(good), format="MSEED")
    assert eqcodec(["reconstruct", str(good), "--out", str(tmp_path / "o"), "--codebooks", "0,9"]) == 1
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_missing_codec_checkpoint(tmp_path, example_stream):
    good = tmp_path / "good.mseed"
    example_stream.write(str(good), format="MSEED")
    assert eqcodec(["reconstruct", str(good), "--out", str(tmp_path / "o"), "--codec", str(tmp_path / "none")]) == 1
