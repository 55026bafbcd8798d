"""Token corpora: schema, preprocessing, writing, reading, and the way back to waveforms.

Real data: obspy's bundled recordings; small generated signals written to tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import obspy
import pytest
import torch

from codec.api import reconstruct_stream
from codec.metrics import snr_db
from codec.preprocess import InputError
from tokenized_data import (FEATURES, Preprocessing, from_streams, load_tokenized, stream_vocab_sizes,
                            to_streams, tokenize)
from tokenized_data.detokenize import detokenize
from tokenized_data.prepare import Report, prepare_stream, window_spans
from tokenized_data.writer import one_torch_thread


def noise_trace(station="SYN", channel="HHZ", start="2020-01-01T00:00:00", seconds=60.0, rate=100.0,
                seed=0, network="XX"):
    """Coloured noise with an event-like burst, in counts."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    data = np.convolve(rng.standard_normal(n), np.hanning(9), mode="same") * 50
    burst = slice(n // 3, n // 3 + int(5 * rate))
    data[burst] += 2000 * rng.standard_normal(burst.stop - burst.start) * np.exp(-np.linspace(0, 4, burst.stop - burst.start))
    return obspy.Trace(data.astype(np.float64) + 1000.0, header={
        "network": network, "station": station, "channel": channel,
        "starttime": obspy.UTCDateTime(start), "sampling_rate": rate})


def write(stream_or_trace, path, fmt="MSEED"):
    stream = stream_or_trace if isinstance(stream_or_trace, obspy.Stream) else obspy.Stream([stream_or_trace])
    stream.write(str(path), format=fmt)
    return path


def obspy_file(relative):
    root = Path(obspy.__file__).parent
    path = root / relative
    if not path.is_file():
        pytest.skip(f"obspy install lacks {relative}")
    return path


# ---------------------------------------------------------------------------- streams for the LM
def test_streams_round_trip_and_layout():
    codes = torch.randint(0, 1024, (8, 17))
    gain = torch.randint(0, 256, (17,))
    streams = to_streams(codes.numpy().astype(np.int16), gain.numpy().astype(np.uint8))
    assert streams.shape == (9, 17) and streams.dtype == torch.long
    assert torch.equal(streams[0], gain) and torch.equal(streams[1:], codes)
    back_codes, back_gain = from_streams(streams)
    assert torch.equal(back_codes, codes) and torch.equal(back_gain, gain)
    batched = to_streams(codes[None].repeat(3, 1, 1), gain[None].repeat(3, 1))
    assert batched.shape == (3, 9, 17)
    with pytest.raises(ValueError):
        to_streams(codes, gain[:-1])
    assert stream_vocab_sizes(8, 1024) == [256] + [1024] * 8


# ---------------------------------------------------------------------------- windows
@pytest.mark.parametrize("seconds, window, hop, minimum, expected", [
    (250, 120, 120, 10, [(0, 120), (120, 240), (240, 250)]),
    (245, 120, 120, 10, [(0, 120), (120, 240)]),  # 5-s tail dropped
    (250, 120, 60, 10, [(0, 120), (60, 180), (120, 240), (180, 250)]),
    (30, 120, 120, 10, [(0, 30)]),
    (9, 120, 120, 10, []),
])
def test_window_spans(seconds, window, hop, minimum, expected):
    prep = Preprocessing(window_seconds=window, hop_seconds=hop, min_window_seconds=minimum)
    spans = window_spans(seconds * 40 + 13, prep)  # 13 extra samples: never a whole frame
    assert spans == [(a * 40, b * 40) for a, b in expected]


def test_preprocessing_rejects_fractional_windows():
    with pytest.raises(InputError, match="whole number"):
        Preprocessing(window_seconds=2.5)
    with pytest.raises(InputError, match="longer than"):
        Preprocessing(window_seconds=10, min_window_seconds=20)


def test_gap_ends_segment_and_no_window_spans_it():
    trace = noise_trace(seconds=100, rate=100)
    first = trace.slice(trace.stats.starttime, trace.stats.starttime + 40 - 0.01)
    second = trace.slice(trace.stats.starttime + 55, trace.stats.endtime)  # 15-s gap
    report = Report("test")
    segments = prepare_stream(obspy.Stream([second.copy(), first.copy()]), Preprocessing(window_seconds=20), report)
    assert not report.failures
    assert [s.starttime for s in segments] == [first.stats.starttime, second.stats.starttime]
    for segment, piece in zip(segments, (first, second)):
        assert len(segment.samples) == pytest.approx(piece.stats.npts * 0.4, abs=1)
        assert abs(segment.samples.mean()) < 1e-3 * piece.data.mean()  # detrended: the offset of 1000 is gone


def test_conflicting_overlap_is_cut_out_and_reported():
    trace = noise_trace(seconds=100, rate=100)
    t0 = trace.stats.starttime
    a = trace.slice(t0, t0 + 60).copy()
    b = trace.slice(t0 + 50, t0 + 100).copy()
    b.data = b.data + 5.0  # the overlap 50-60 s disagrees
    report = Report("f.mseed")
    segments = prepare_stream(obspy.Stream([a, b]), Preprocessing(window_seconds=20), report)
    assert len(report.failures) == 1 and "conflicting" in report.failures[0]
    assert len(segments) == 2
    assert segments[0].starttime == t0 and len(segments[0].raw) == 5000  # up to 50 s
    assert segments[1].starttime > t0 + 60  # after the conflict
    # identical overlaps are merged silently
    report = Report("g.mseed")
    same = prepare_stream(obspy.Stream([trace.slice(t0, t0 + 60).copy(), trace.slice(t0 + 50, t0 + 100).copy()]),
                          Preprocessing(window_seconds=20), report)
    assert not report.failures and len(same) == 1 and len(same[0].raw) == trace.stats.npts


# ---------------------------------------------------------------------------- tokenize -> corpus
def test_tokenize_obspy_example(tmp_path, codec, example_stream):
    source = write(example_stream, tmp_path / "rjob.mseed")
    summary = tokenize([str(source)], tmp_path / "corpus", progress=False)
    assert summary.corpus and summary.files == 1 and not summary.failures
    corpus = load_tokenized(tmp_path / "corpus")
    ds = corpus.dataset
    assert len(ds) == 3 and summary.windows == 3
    assert ds.features == FEATURES
    assert corpus.codec_id == codec.identity()
    assert corpus.num_codebooks == 8 and corpus.codebook_size == 1024
    assert corpus.metadata["codec"]["config"]["num_codebooks"] == 8
    assert corpus.metadata["preprocessing"]["window_seconds"] == 120
    row = ds[0]
    trace = example_stream.select(id=f"{row['network']}.{row['station']}.{row['location']}.{row['channel']}")[0]
    assert obspy.UTCDateTime(row["starttime"]) == trace.stats.starttime
    assert row["sampling_rate"] == 100.0 and row["num_frames"] == 30
    assert np.asarray(row["codes"]).shape == (8, 30) and len(row["gain"]) == 30
    assert row["source_file"] == str(source) and row["segment"] == 0 and row["window"] == 0
    # the stored tokens are the codec's tokens of the preprocessed window
    segment = prepare_stream(obspy.Stream([trace]), Preprocessing(), Report("x"))[0]
    encoded = codec.encode(segment.samples[:1200])
    assert np.array_equal(np.asarray(row["codes"]), encoded.codes[0].numpy())
    assert np.array_equal(np.asarray(row["gain"]), encoded.gain[0].numpy())
    assert row["scale"] == pytest.approx(float(encoded.scale[0]))
    assert row["offset"] == pytest.approx(float(encoded.offset[0]))
    card = (tmp_path / "corpus" / "README.md").read_text()
    assert "BW.RJOB" in card and codec.identity() in card and "| windows | 3 |" in card
    assert not (tmp_path / "corpus.partial").exists()


@pytest.fixture()
def one_thread():
    """The codec's small convolutions run fastest on one thread (much faster on a busy machine)."""
    with one_torch_thread():
        yield


def test_detokenize_matches_reconstruct_stream(tmp_path, codec, one_thread):
    """SNR of detokenized vs the 40 Hz original equals reconstruct_stream's on the same input."""
    path = obspy_file("signal/tests/data/CRLZ.HHZ.10.NZ.SAC")  # 328 s at 100 Hz: 3 windows of <= 120 s
    tokenize([str(path)], tmp_path / "corpus", progress=False)
    corpus = load_tokenized(tmp_path / "corpus")
    assert len(corpus) == 3
    segment = prepare_stream(obspy.read(str(path)), Preprocessing(), Report("x"))[0]
    reference = obspy.Trace(segment.samples, header={
        "network": segment.network, "station": segment.station, "location": segment.location,
        "channel": segment.channel, "starttime": segment.starttime, "sampling_rate": 40.0})
    for k in (1, 8):
        written = detokenize(corpus, codec, tmp_path / f"k{k}", k, progress=False)
        assert [p.name for p in written] == ["CRLZ.HHZ.10.NZ.mseed"]
        (decoded,) = obspy.read(str(written[0]))  # windows joined into one trace
        assert decoded.id == segment.trace_id and decoded.stats.starttime == segment.starttime
        assert decoded.stats.sampling_rate == 40.0
        n = decoded.stats.npts
        assert n == len(segment.samples) // 40 * 40
        ours = snr_db(segment.samples[:n], decoded.data)
        theirs = snr_db(segment.samples[:n], reconstruct_stream(codec, obspy.Stream([reference]), k)[0].data[:n])
        # windows are coded separately (own scale, edges): measured differences stay below 0.35 dB
        assert ours == pytest.approx(theirs, abs=0.5), (k, ours, theirs)
        # each window, in physical units and at its time, is what reconstruct_stream makes of that window
        for lo in range(0, n, 4800):
            window = reference.copy()
            window.data = segment.samples[lo:min(lo + 4800, n)]
            window.stats.starttime = segment.starttime + lo / 40
            expected = reconstruct_stream(codec, obspy.Stream([window]), k)[0].data
            np.testing.assert_allclose(decoded.data[lo:lo + 4800], expected,
                                       rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_detokenize_single_window_equals_decode(tmp_path, codec, example_stream, one_thread):
    """A window that is the whole trace decodes to exactly reconstruct_stream's samples (float32)."""
    source = write(example_stream, tmp_path / "rjob.mseed")
    tokenize([str(source)], tmp_path / "corpus", progress=False)
    written = detokenize(load_tokenized(tmp_path / "corpus"), codec, tmp_path / "out", 4, progress=False)
    decoded = obspy.read(str(written[0]))
    for segment in prepare_stream(example_stream, Preprocessing(), Report("x")):
        reference = obspy.Trace(segment.samples, header={"station": segment.station, "network": segment.network,
                                                         "channel": segment.channel, "sampling_rate": 40.0,
                                                         "starttime": segment.starttime})
        expected = reconstruct_stream(codec, obspy.Stream([reference]), 4)[0].data
        got = decoded.select(id=segment.trace_id)[0].data
        np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-3 * np.abs(expected).max())


def test_tokenize_cli_directories_globs_and_windows(tmp_path):
    from cli import main

    archive = tmp_path / "archive" / "deep"
    archive.mkdir(parents=True)
    write(noise_trace("AAA", seconds=250), archive / "a.mseed")
    write(noise_trace("BBB", rate=50, seconds=90, seed=1), archive / "b.sac", fmt="SAC")
    (archive / "notes.md").write_text("not a waveform")  # passed over in directory scans
    write(noise_trace("CCC", seconds=45, seed=2), tmp_path / "c.mseed")
    code = main(["tokenize", str(tmp_path / "archive"), str(tmp_path / "*.mseed"), "--out", str(tmp_path / "corpus"),
                 "--window-seconds", "60", "--num-proc", "1", "--no-progress"])
    assert code == 0
    ds = load_tokenized(tmp_path / "corpus").dataset
    frames = {}
    for row in ds.select_columns(["station", "num_frames", "window", "starttime"]):
        frames.setdefault(row["station"], []).append(row["num_frames"])
    assert frames == {"AAA": [60, 60, 60, 60, 10], "BBB": [60, 30], "CCC": [45]}
    starts = [obspy.UTCDateTime(r["starttime"]) for r in ds if r["station"] == "AAA"]
    assert [s - starts[0] for s in starts] == [0, 60, 120, 180, 240]
    assert sorted(set(ds["source_file"])) == sorted(
        [str(archive / "a.mseed"), str(archive / "b.sac"), str(tmp_path / "c.mseed")])


def test_hop_shorter_than_window_overlaps(tmp_path):
    write(noise_trace(seconds=100), tmp_path / "a.mseed")
    tokenize([str(tmp_path / "a.mseed")], tmp_path / "corpus", progress=False,
             prep=Preprocessing(window_seconds=40, hop_seconds=20))
    ds = load_tokenized(tmp_path / "corpus").dataset
    assert list(ds["num_frames"]) == [40, 40, 40, 40]  # 0-40, 20-60, 40-80, 60-100
    codes = [np.asarray(c) for c in ds["codes"]]
    assert codes[0].shape == (8, 40)


def test_sds_archive(tmp_path):
    """SDS mode: day files per channel, a seed-id filter, windows never cross midnight."""
    root = tmp_path / "sds"
    for station, seed in (("STA1", 0), ("STA2", 1)):
        trace = noise_trace(station, start="2021-03-01T23:58:00", seconds=240, rate=50, seed=seed)
        for day_start in (obspy.UTCDateTime("2021-03-01"), obspy.UTCDateTime("2021-03-02")):
            piece = trace.slice(day_start, day_start + 86400 - 0.02)
            path = root / str(day_start.year) / "XX" / station / "HHZ.D" / \
                f"XX.{station}..HHZ.D.{day_start.year}.{day_start.julday:03d}"
            path.parent.mkdir(parents=True, exist_ok=True)
            write(piece, path)
    write(noise_trace("STA1", channel="HHN", start="2021-03-01T23:58:00", seconds=60, rate=50),
          _mkdir(root / "2021/XX/STA1/HHN.D") / "XX.STA1..HHN.D.2021.060")
    from cli import main

    code = main(["tokenize", "--sds", str(root), "--start", "2021-03-01T12:00:00", "--end", "2021-03-03",
                 "--seed-id", "XX.*..HHZ", "--window-seconds", "60", "--out", str(tmp_path / "corpus"),
                 "--num-proc", "1", "--no-progress"])
    assert code == 0
    ds = load_tokenized(tmp_path / "corpus").dataset
    assert set(ds["channel"]) == {"HHZ"} and set(ds["station"]) == {"STA1", "STA2"}
    midnight = obspy.UTCDateTime("2021-03-02")
    for row in ds:
        start = obspy.UTCDateTime(row["starttime"])
        assert start >= midnight or start + row["num_frames"] <= midnight
    assert sum(r["num_frames"] for r in ds) == 2 * 240
    assert "2021/XX/STA1/HHZ.D/XX.STA1..HHZ.D.2021.061" in set(ds["source_file"])


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_load_tokenized_merges_same_codec_and_refuses_mixed(tmp_path):
    from codec import EQCodec, EQCodecConfig

    write(noise_trace("AAA", seconds=30), tmp_path / "a.mseed")
    write(noise_trace("BBB", seconds=30, seed=1), tmp_path / "b.mseed")
    tokenize([str(tmp_path / "a.mseed")], tmp_path / "one", progress=False)
    tokenize([str(tmp_path / "b.mseed")], tmp_path / "two", progress=False)
    merged = load_tokenized([tmp_path / "one", tmp_path / "two"])
    assert len(merged) == 2 and set(merged.dataset["station"]) == {"AAA", "BBB"}
    assert merged.codec_id == load_tokenized(tmp_path / "one").codec_id
    other_codec = tmp_path / "other-codec"
    torch.manual_seed(1)
    EQCodec(EQCodecConfig()).save_pretrained(other_codec)
    tokenize([str(tmp_path / "b.mseed")], tmp_path / "three", progress=False, codec_path=other_codec)
    other_id = load_tokenized(tmp_path / "three").codec_id
    with pytest.raises(InputError) as err:
        load_tokenized([tmp_path / "one", tmp_path / "three"])
    assert merged.codec_id in str(err.value) and other_id in str(err.value)
    # decoding with the wrong codec is refused too
    from codec import CheckpointError

    with pytest.raises(CheckpointError, match=other_id):
        detokenize(load_tokenized(tmp_path / "three"), EQCodec.from_pretrained(), tmp_path / "w", progress=False)


def test_load_tokenized_rejects_non_corpus(tmp_path):
    import datasets

    with pytest.raises(InputError, match="not a token corpus"):
        load_tokenized(tmp_path)
    datasets.Dataset.from_dict({"a": [1]}).save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(InputError, match="not an eqcodec token corpus"):
        load_tokenized(tmp_path / "plain")


def test_metadata_records_rebuild_command(tmp_path):
    write(noise_trace(seconds=30), tmp_path / "a.mseed")
    tokenize([str(tmp_path / "a.mseed")], tmp_path / "corpus", progress=False,
             prep=Preprocessing(window_seconds=20, allow_clipped=True))
    metadata = load_tokenized(tmp_path / "corpus").metadata
    assert "--window-seconds 20" in metadata["command"] and "--allow-clipped" in metadata["command"]
    assert metadata["counts"]["windows"] == 2 and metadata["counts"]["stations"] == ["XX.SYN"]
    info = json.loads((tmp_path / "corpus" / "dataset_info.json").read_text())
    assert json.loads(info["description"])["codec"]["id"] == metadata["codec"]["id"]


def test_cli_detokenize_and_usage_errors(tmp_path, example_stream, capsys):
    from cli import main

    source = write(example_stream, tmp_path / "rjob.mseed")
    assert main(["tokenize", str(source), "--out", str(tmp_path / "corpus"), "--no-progress"]) == 0
    assert main(["detokenize", str(tmp_path / "corpus"), "--out", str(tmp_path / "wav"), "--codebooks", "2",
                 "--no-progress"]) == 0
    decoded = obspy.read(str(tmp_path / "wav" / "rjob.mseed"))
    assert sorted(tr.id for tr in decoded) == sorted(tr.id for tr in example_stream)
    assert "2 codebooks" in capsys.readouterr().out
    assert main(["detokenize", str(tmp_path / "nothing"), "--out", str(tmp_path / "w2")]) == 1
    assert "not a token corpus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse-style usage error
        main(["tokenize", str(source), "--sds", str(tmp_path), "--out", str(tmp_path / "x")])
    assert main(["tokenize", str(source), "--out", str(tmp_path / "corpus"), "--no-progress"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_numpy_rows_read_the_same_rows_from_an_arrow_table_and_from_a_selected_dataset():
    """tokenized_data.detokenize.arrow_table: a corpus's own table, or its rows in order when the dataset maps
    indices (a selection); numpy_rows reads the same rows from either as from the dataset itself."""
    from tokenized_data.detokenize import arrow_table, numpy_rows
    from tokenized_data.random_corpus import random_token_corpus

    dataset = random_token_corpus(12, 20, seed=3).dataset
    picked = dataset.select([9, 2, 5, 11])  # an index mapping over the same table
    for source in (dataset, picked):
        rows = [3, 0, 2] if source is picked else [7, 1, 10]
        expected = [source[i] for i in rows]
        for given in (arrow_table(source), source, source.with_format("arrow")):
            got = numpy_rows(given, rows)
            for k, row in enumerate(expected):
                assert np.array_equal(got["codes"][k], np.asarray(row["codes"]))
                assert np.array_equal(got["gain"][k], np.asarray(row["gain"]))
                assert got["starttime"][k] == row["starttime"]
    assert arrow_table(dataset) is dataset.data.table and arrow_table(picked).num_rows == 4


def test_table_rows_read_the_rows_numpy_rows_reads_without_copying():
    """TableRows (the search's scattered reads): the same codes, gains and decoding columns as numpy_rows,
    from a table of several chunks, from a sliced one and from a selection; codes and gains are views."""
    import pyarrow as pa

    from tokenized_data.detokenize import TableRows, arrow_table, numpy_rows
    from tokenized_data.random_corpus import random_token_corpus

    dataset = random_token_corpus(12, 20, seed=4).dataset
    table = arrow_table(dataset)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=5))  # 3 chunks
    sliced = pa.concat_tables([table.slice(3, 4), table.slice(9, 3)])  # chunks that do not start at offset 0
    picked = arrow_table(dataset.select([9, 2, 5, 11]))
    for given in (table, chunked, sliced, picked):
        reader = TableRows(given)
        assert len(reader) == given.num_rows
        rows = [given.num_rows - 1, 0, 2, 2]
        want, got = numpy_rows(given, rows), reader.rows(rows)
        for k in range(len(rows)):
            assert np.array_equal(got["codes"][k], want["codes"][k]) and got["codes"][k].shape == want["codes"][k].shape
            assert np.array_equal(got["gain"][k], want["gain"][k])
        for name in TableRows.COLUMNS:
            if name in want:
                assert np.array_equal(np.asarray(got[name]), np.asarray(want[name]))
    assert chunked.column("codes").num_chunks == 3
    assert TableRows(chunked).codes(7).base is not None  # a view into the chunk's values


def test_a_band_passed_corpus_keeps_a_weak_band_that_plain_tokens_lose(tmp_path):
    """Preprocessing(bandpass=...) (`eqcodec tokenize --bandpass 1-8`): on a trace whose 1-8 Hz content lies
    about 45 dB under a strong swell (as on a quiet broadband station under microseisms), tokens of the trace
    itself carry little of that band, tokens of the band-passed trace carry it; the corpus records the band,
    and a band outside the codec's Nyquist is refused."""
    from codec import load_codec
    from tokenized_data import tokenize
    from tokenized_data.augment import bandpass

    rng = np.random.default_rng(2)
    t = np.arange(600 * 40) / 40.0
    weak = bandpass(rng.standard_normal(len(t)), 1.0, 8.0)
    swell = 180.0 * weak.std() * np.sin(2 * np.pi * 0.2 * t) + 60.0 * weak.std() * np.sin(2 * np.pi * 0.13 * t + 1)
    trace = obspy.Trace((swell + weak).astype(np.float32), header={
        "network": "XX", "station": "QUIET", "channel": "BHZ", "sampling_rate": 40.0,
        "starttime": obspy.UTCDateTime("2020-01-01")})
    trace.write(str(tmp_path / "quiet.mseed"), format="MSEED")
    codec = load_codec()
    snr = {}
    for name, prep in (("plain", None), ("band", Preprocessing(bandpass=(1, 8)))):
        tokenize([str(tmp_path / "quiet.mseed")], tmp_path / name, prep=prep, num_proc=1, progress=False)
        corpus = load_tokenized(tmp_path / name)
        assert corpus.metadata["preprocessing"]["bandpass"] == (None if prep is None else [1.0, 8.0])
        [path] = detokenize(corpus, codec, tmp_path / f"{name}-decoded", progress=False)
        decoded = obspy.read(str(path))[0].data.astype(np.float64)
        n = min(len(decoded), len(weak))
        got = bandpass(decoded[:n], 1.0, 8.0)
        snr[name] = snr_db(weak[200:n - 200], got[200:n - 200])
    assert snr["plain"] < 5.0 and snr["band"] > snr["plain"] + 10.0, snr
    with pytest.raises(InputError, match="Nyquist"):
        Preprocessing(bandpass=(1, 25))
    with pytest.raises(InputError, match="low, high"):
        Preprocessing(bandpass=(1,))
