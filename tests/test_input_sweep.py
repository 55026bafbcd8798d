"""Regressions found by running reconstruct, tokenize, forecast and deconvolve on every file in obspy's test data.

Each test reproduces one problem with the obspy file that showed it, or a
small generated Stream: good input that failed or came out wrong, and bad
input that crashed with a traceback instead of a clear InputError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import obspy
import pytest

from codec.api import reconstruct_stream
from cli import main as eqcodec
from codec.preprocess import InputError, check_sampling_rate, resample_to_codec_rate, trace_to_codec_input
from codec.reconstruct import reconstruct_file
from tokenized_data import Preprocessing, load_tokenized, tokenize
from tokenized_data.detokenize import detokenize
from tokenized_data.prepare import Report, prepare_stream


def bundled(relative: str) -> Path:
    """A file of obspy's own test data."""
    return Path(obspy.__file__).parent / relative


def noise_trace(seconds: float = 60.0, rate: float = 100.0, channel: str = "HHZ", offset: float = 0.0):
    rng = np.random.default_rng(0)
    data = offset + 100 * rng.standard_normal(int(seconds * rate))
    return obspy.Trace(data, header={"network": "XX", "station": "SWEEP", "channel": channel,
                                     "sampling_rate": rate, "starttime": obspy.UTCDateTime(2024, 1, 1)})


def prepared(stream) -> tuple[list, Report]:
    report = Report("x")
    return prepare_stream(stream, Preprocessing(), report), report


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# ------------------------------------------------------------------ samples that are not numbers
def test_text_samples_are_refused_not_a_type_error():
    """miniSEED 'ASCII' records (log channels) read as bytes: np.isfinite raised TypeError."""
    text = obspy.Trace(np.frombuffer(b"GPS lock ok; " * 400, dtype="S1").copy(),
                       header={"station": "LOG", "sampling_rate": 100.0})
    with pytest.raises(InputError, match="not numbers"):
        trace_to_codec_input(text)
    segments, report = prepared(obspy.Stream([text]))  # tokenize reports it and goes on
    assert segments == [] and any("not numbers" in failure for failure in report.failures)


def test_bundled_ascii_mseed_is_refused_with_the_file_named(codec):
    path = bundled("io/mseed/tests/data/encoding/fullASCII_bigEndian.mseed")
    with pytest.raises(InputError) as err:
        reconstruct_file(codec, path, [1])
    assert str(err.value).startswith(str(path))


# ------------------------------------------------------------------ sampling rates stored as float32 intervals
def test_rate_a_hair_below_20_hz_counts_as_20_hz(codec):
    """GSE2/SAC store the interval as float32: 20 Hz reads as 19.9999997 Hz and was refused."""
    path = bundled("io/gse2/tests/data/acc.gse")  # 6000 samples, 19.9999997 Hz
    (trace,) = obspy.read(str(path))
    assert trace.stats.sampling_rate < 20
    rows, originals, _ = reconstruct_file(codec, path, [1])
    assert len(rows) == 1 and len(originals[0]) == 2 * trace.stats.npts
    segments, report = prepared(obspy.Stream([trace]))
    assert report.failures == [] and len(segments[0].samples) == 2 * trace.stats.npts
    with pytest.raises(InputError, match="19.99999 Hz"):  # a real shortfall is refused, and shown as it is
        check_sampling_rate(19.99999, "XX.STA..HHZ")


# ------------------------------------------------------------------ resampling a trace far from zero
def test_resampling_does_not_ring_at_the_ends_of_an_offset_trace():
    """Raw counts around -25245 (std 29): the first 40 Hz sample came out at -17667 (zero padding)."""
    (trace,) = obspy.read(str(bundled("io/ascii/tests/data/miniseed_record.mseed")))  # 100 Hz, 4.2 s
    x = trace.data.astype(np.float64)
    y = trace_to_codec_input(trace)
    assert np.abs(y - x.mean()).max() <= np.abs(x - x.mean()).max()


@pytest.mark.parametrize("rate", [100.0, 75.19])  # polyphase FIR; FFT (no small rational ratio)
def test_resampling_keeps_offset_and_drift_at_the_ends(rate):
    rng = np.random.default_rng(1)
    n = int(30 * rate)
    drift = 1e4 + np.linspace(0, 50, n)
    y = resample_to_codec_rate(drift + rng.standard_normal(n), rate)
    expected = 1e4 + 50 * np.arange(len(y)) / 40 * rate / (n - 1)  # the drift at the 40 Hz sample times
    assert len(y) == 1200
    assert np.abs(y - expected).max() < 6  # the noise (std 1) after the low-pass, not 12 to 3000 of ringing


# ------------------------------------------------------------------ inconsistent headers
def test_header_that_disagrees_with_the_data_is_refused(codec):
    """TSPAIR header says 360671 samples, the file holds 422: tokenize reported 1 h read and made nothing."""
    path = bundled("io/ascii/tests/data/mseed2ascii_miniseed_record.txt")
    with pytest.raises(InputError, match="header says 360671 samples but the data hold 422") as err:
        reconstruct_file(codec, path, [1])
    assert str(path) in str(err.value)
    segments, report = prepared(obspy.read(str(path)))
    assert segments == [] and report.input_seconds == 0
    assert any("header says" in failure for failure in report.failures)


# ------------------------------------------------------------------ one channel in several pieces
def test_touching_pieces_of_a_channel_are_joined(codec, example_stream):
    """A channel stored as several touching records (rg16, Seismic Handler, quality-flagged miniSEED) was refused."""
    trace = example_stream[0]
    t0 = trace.stats.starttime
    first = trace.slice(endtime=t0 + 10 - trace.stats.delta)
    second = trace.slice(starttime=t0 + 10)
    empty = trace.copy()
    empty.data = empty.data[:0]
    whole = reconstruct_stream(codec, obspy.Stream([trace]), 4)
    joined = reconstruct_stream(codec, obspy.Stream([first, empty, second]), 4)
    assert [tr.id for tr in joined] == [trace.id] and joined[0].stats.starttime == t0
    np.testing.assert_array_equal(joined[0].data, whole[0].data)
    gappy = obspy.Stream([first, trace.slice(starttime=t0 + 12)])
    with pytest.raises(InputError, match="first gap after"):
        reconstruct_stream(codec, gappy, 4)


def test_bundled_file_of_many_records_reconstructs(codec):
    path = bundled("io/rg16/tests/data/one_channel_many_traces.fcnt")  # 10 touching 1-s traces of one channel
    rows, originals, recon = reconstruct_file(codec, path, [8])
    assert len(originals) == 1 and [tr.id for tr in recon[8]] == ["4.1.1.DP3"] and recon[8][0].stats.npts == 400


def test_channel_with_only_empty_pieces_is_refused_once(codec):
    """6540 empty traces of one channel: 'Can not write empty stream' in reconstruct, 6540 failures in tokenize."""
    empty = noise_trace()
    empty.data = empty.data[:0]
    stream = obspy.Stream([empty.copy() for _ in range(3)])
    with pytest.raises(InputError, match="trace is empty"):
        reconstruct_stream(codec, stream, 1)
    segments, report = prepared(stream)
    assert segments == [] and len(report.failures) == 1 and "trace is empty" in report.failures[0]


def test_empty_piece_beside_data_is_not_a_tokenize_failure():
    trace = noise_trace()
    empty = trace.copy()
    empty.data = empty.data[:0]
    empty.stats.starttime += 120
    segments, report = prepared(obspy.Stream([trace, empty]))
    assert report.failures == [] and len(segments) == 1


def test_forecast_refuses_empty_and_zero_rate_traces(codec, tiny_lm_dir):
    """IndexError (empty traces) and ZeroDivisionError (0 Hz log channel) came out of the pieces' merge."""
    from lm.generate import generate_continuations
    from lm.model import load_lm

    lm = load_lm(tiny_lm_dir)
    empty = noise_trace()
    empty.data = empty.data[:0]
    with pytest.raises(InputError, match="trace is empty"):
        generate_continuations(obspy.Stream([empty]), lm, codec, 10, 1)
    zero_rate = obspy.read(str(bundled("io/mseed/tests/data/rt130_sr0_cropped.mseed")))  # 5 pieces at 0 Hz
    with pytest.raises(InputError, match="sampling rate 0 Hz"):
        generate_continuations(zero_rate, lm, codec, 10, 1)


# ------------------------------------------------------------------ ids that miniSEED cannot hold
def test_reconstruct_refuses_ids_miniseed_would_cut(tmp_path, capsys):
    """WIN channels a100 and a101 were both written as a10; a 16-character reftek channel raised ValueError."""
    path = bundled("io/win/tests/data/10030302.00")
    out = tmp_path / "out"
    assert eqcodec(["reconstruct", str(path), "--out", str(out), "--codebooks", "1"]) == 1
    message = capsys.readouterr().err
    assert str(path) in message and "'a100'" in message and "at most 3" in message
    assert files_under(out) == []


def test_deconvolve_refuses_ids_miniseed_would_cut(tmp_path, capsys):
    source = tmp_path / "win.sac"
    noise_trace(channel="a100").write(str(source), format="SAC")
    out = tmp_path / "out"
    assert eqcodec(["deconvolve", str(source), "--lag", "0.5", "--out", str(out / "err.mseed")]) == 1
    assert "'a100'" in capsys.readouterr().err and files_under(out) == []


def test_detokenize_refuses_ids_miniseed_would_cut(tmp_path, codec):
    source = tmp_path / "win.sac"
    noise_trace(seconds=20, channel="a100").write(str(source), format="SAC")
    tokenize([str(source)], tmp_path / "corpus", progress=False)  # tokens keep the whole id
    with pytest.raises(InputError, match="'a100' has 4 characters"):
        detokenize(load_tokenized(tmp_path / "corpus"), codec, tmp_path / "out", progress=False)
    assert files_under(tmp_path / "out") == []


# ------------------------------------------------------------------ messages and outputs of `eqcodec reconstruct`
def test_reconstruct_names_the_file_of_a_bad_trace(tmp_path, codec):
    path = tmp_path / "dead.mseed"
    dead = noise_trace()
    dead.data = np.full(6000, 530, dtype=np.int32)
    dead.write(str(path), format="MSEED")
    with pytest.raises(InputError) as err:
        reconstruct_file(codec, path, [1])
    assert str(err.value).startswith(f"{path}: XX.SWEEP..HHZ")
    assert "every sample equals 530)" in str(err.value)  # not np.int32(530)


def test_reconstruct_refuses_two_inputs_with_one_output_name(tmp_path, example_stream, capsys):
    """Two inputs named alike wrote one output file, then failed half-way through renaming (FileNotFoundError)."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        example_stream.write(str(tmp_path / folder / "event.mseed"), format="MSEED")
    out = tmp_path / "out"
    argv = ["reconstruct", str(tmp_path / "a" / "event.mseed"), str(tmp_path / "b" / "event.mseed"), "--out", str(out)]
    assert eqcodec(argv) == 1
    assert "would both be written as k*/event.mseed" in capsys.readouterr().err
    assert files_under(out) == []
