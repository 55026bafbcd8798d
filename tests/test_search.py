"""Similarity search (tasks.search, `eqcodec index` / `eqcodec search`): a real event injected into noise, off the 1-s grid."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from codec.errors import CheckpointError, InputError

FS = 100.0  # the noise trace's rate: the corpus and the template are both resampled to 40 Hz
SECONDS = 200
T0 = "2020-01-01T00:00:00"
OFFSETS = (0.0, 0.25, 0.35, 0.6)  # sub-second parts of the injection times (multiples of 25 ms: on a 40 Hz sample)


@pytest.fixture(autouse=True)
def one_thread():
    import faiss
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def event_snippet():
    """8 s of obspy's example event (BW.RJOB..EHZ, 100 Hz), P arrival included."""
    import obspy

    trace = obspy.read().select(component="Z")[0]
    trace.detrend("linear")
    return trace.slice(trace.stats.starttime + 2.5, trace.stats.starttime + 10.5)


def noise_with_event(path, inject_at: float, *, station="NOISE", seed=0, seconds=SECONDS):
    """Coloured noise at 100 Hz with the snippet added at `inject_at` s after T0; written to miniSEED."""
    import obspy

    snippet = event_snippet()
    rng = np.random.default_rng(seed)
    data = np.convolve(rng.standard_normal(int(seconds * FS)), np.ones(5) / 5, "same")
    data *= 0.02 * np.abs(snippet.data).max()
    if inject_at is not None:
        i = int(round(inject_at * FS))
        data[i:i + snippet.stats.npts] += snippet.data
    trace = obspy.Trace(data.astype(np.float32), header={
        "network": "XX", "station": station, "channel": "HHZ", "sampling_rate": FS,
        "starttime": obspy.UTCDateTime(T0)})
    trace.write(str(path), format="MSEED")
    return path


def make_corpus(tmp, name, inject_at, **kwargs):
    from tokenized_data import tokenize

    tmp.mkdir(parents=True, exist_ok=True)
    waveform = noise_with_event(tmp / f"{name}.mseed", inject_at, **kwargs)
    tokenize([str(waveform)], tmp / name, num_proc=1, progress=False)
    return tmp / name


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """One corpus and index per sub-second offset: the event at 70 + offset s."""
    from tasks.search import build_index

    root = tmp_path_factory.mktemp("search")
    made = {}
    for k, offset in enumerate(OFFSETS):
        corpus = make_corpus(root / f"o{k}", "corpus", 70 + offset, seed=k)
        build_index([corpus], root / f"o{k}" / "index", progress=False)
        made[offset] = (corpus, root / f"o{k}" / "index")
    snippet = event_snippet()
    snippet.write(str(root / "snippet.mseed"), format="MSEED")
    made["template"] = root / "snippet.mseed"
    made["root"] = root
    return made


def expected_time(offset):
    import obspy

    return obspy.UTCDateTime(T0) + 70 + offset


def run(module_name, argv):
    """A subcommand as the lead will register it: its build_parser and main."""
    import importlib

    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser()
    module.build_parser(parser)
    return module.main(parser.parse_args([str(a) for a in argv]))


# ---------------------------------------------------------------------------- finding the event
@pytest.mark.parametrize("offset", OFFSETS)
def test_top_match_is_the_injected_event_to_the_sample(archive, offset):
    import obspy

    from tasks.search import search

    matches = search(archive["template"], archive[offset][1], top=5)
    assert list(matches.columns[:5]) == ["rank", "trace_id", "starttime", "endtime", "score"]
    best = matches.iloc[0]
    assert best.trace_id == "XX.NOISE..HHZ"
    assert abs(obspy.UTCDateTime(best.starttime) - expected_time(offset)) <= 0.025 + 1e-6
    assert best.score > 0.9
    assert (matches.score.iloc[1:] < 0.6).all()  # nothing else looks like it
    assert any("resampled from 100 Hz" in note for note in matches.attrs["notes"])


def test_cli_cuts_the_template_and_writes_csv_and_figure(archive, tmp_path):
    import obspy
    import pandas as pd

    full = obspy.read().select(component="Z")
    full.write(str(tmp_path / "rjob.mseed"), format="MSEED")
    out, fig = tmp_path / "m" / "matches.csv", tmp_path / "m" / "matches.png"
    assert run("cli.search", [tmp_path / "rjob.mseed", "--index", archive[0.35][1], "--out", out,
                              "--start", "2.5", "--end", "10.5", "--top", "3", "--plot", fig]) == 0
    table = pd.read_csv(out)
    assert {"trace_id", "starttime", "score"} <= set(table.columns) and len(table) <= 3
    assert abs(obspy.UTCDateTime(table.starttime[0]) - expected_time(0.35)) <= 0.025 + 1e-6
    assert fig.stat().st_size > 10_000
    run("cli.search", [archive["template"], "--index", archive[0.35][1], "--out", out, "--min-score", "0.9"])
    assert len(pd.read_csv(out)) == 1


def test_template_shorter_than_a_window_still_finds_the_event(archive):
    import obspy

    from tasks.search import search

    snippet = event_snippet()
    short = snippet.slice(snippet.stats.starttime + 1.5, snippet.stats.starttime + 4.5)  # 3 s, the P onset
    matches = search(short, archive[0.6][1], top=3)
    assert abs(obspy.UTCDateTime(matches.starttime[0]) - (expected_time(0.6) + 1.5)) <= 0.025 + 1e-6
    assert any("zero-padded" in note for note in matches.attrs["notes"])


# ---------------------------------------------------------------------------- bad input
def test_bad_templates_are_refused_with_the_file_named(archive, tmp_path):
    import obspy

    from tasks.search import search

    index = archive[0.0][1]
    snippet = event_snippet()
    short = snippet.slice(snippet.stats.starttime, snippet.stats.starttime + 1.5)
    short.write(str(tmp_path / "short.mseed"), format="MSEED")
    with pytest.raises(InputError, match=r"short.mseed.*1.5\d* s long.*at least 2 s"):
        search(tmp_path / "short.mseed", index)
    nan = snippet.copy()
    nan.data = nan.data.astype(np.float64)
    nan.data[100] = np.nan
    with pytest.raises(InputError, match="NaN"):
        search(nan, index)
    gappy = obspy.Stream([snippet.slice(snippet.stats.starttime, snippet.stats.starttime + 3),
                          snippet.slice(snippet.stats.starttime + 4, snippet.stats.starttime + 8)])
    gappy.write(str(tmp_path / "gappy.mseed"), format="MSEED")
    with pytest.raises(InputError, match=r"gappy.mseed.*several pieces"):
        search(tmp_path / "gappy.mseed", index)
    long = noise_with_event(tmp_path / "long.mseed", None, seconds=SECONDS + 20)
    with pytest.raises(InputError, match=r"long.mseed.*longer than the longest gap-free piece"):
        search(long, index)
    with pytest.raises(InputError, match=r"none of the template's channels \(BW.RJOB..EHE, BW.RJOB..EHN, "
                                         r"BW.RJOB..EHZ\) is in the index"):
        search(obspy.read(), index)  # three channels: a network stack, on channels this index lacks
    with pytest.raises(InputError, match="no such file"):
        search(tmp_path / "missing.mseed", index)


def test_bad_indexes_are_refused_and_nothing_is_written(archive, tmp_path, monkeypatch, capsys):
    import cli

    from tasks.search import search

    template = archive["template"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty.*empty, not a search index"):
        search(template, empty)
    with pytest.raises(InputError, match="no such index folder"):
        search(template, tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(archive[0.0][1], broken)
    (broken / "quantizer.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(InputError, match=r"quantizer.faiss: corrupt FAISS quantizer"):
        search(template, broken)
    (broken / "quantizer.faiss").unlink()
    with pytest.raises(InputError, match=r"quantizer.faiss: missing"):
        search(template, broken)
    (broken / "index.json").write_text("{not json")
    with pytest.raises(InputError, match=r"index.json: corrupt"):
        search(template, broken)
    other = tmp_path / "other-codec"
    shutil.copytree(archive[0.0][1], other)
    meta = json.loads((other / "index.json").read_text())
    meta["codec_id"] = "0123456789abcdef"
    (other / "index.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"other-codec.*codec 0123456789abcdef"):
        search(template, other)
    # through the command line: a message naming the index, exit 1, no CSV
    monkeypatch.setitem(cli.COMMANDS, "search", ("cli.search", "similarity search"))
    out = tmp_path / "matches.csv"
    assert cli.main(["search", str(template), "--index", str(other), "--out", str(out)]) == 1
    assert "other-codec" in capsys.readouterr().err
    assert cli.main(["search", str(template), "--index", str(empty), "--out", str(out)]) == 1
    assert not out.exists() and not list(tmp_path.glob(".matches*"))


# ---------------------------------------------------------------------------- extending
def test_extending_an_index_adds_rows_and_refuses_another_codec(archive, tmp_path):
    import obspy

    from tasks.search import load_index, search
    from tokenized_data import load_tokenized

    first = archive[0.25][0]
    index = tmp_path / "index"
    assert run("cli.index", [first, "--out", index, "--no-progress"]) == 0
    before = load_index(index)
    with pytest.raises(InputError, match="already exists; pass --add"):
        run("cli.index", [first, "--out", index])
    with pytest.raises(InputError, match="already in the index"):
        run("cli.index", [first, "--out", index, "--add"])
    second = make_corpus(tmp_path / "b", "corpus-b", 120.6, station="OTHER", seed=9)
    assert run("cli.index", [second, "--out", index, "--add", "--no-progress"]) == 0
    after = load_index(index)
    assert len(after) > len(before) and len(after.metadata["corpora"]) == 2
    assert set(after.pieces.trace_id) == {"XX.NOISE..HHZ", "XX.OTHER..HHZ"}
    matches = search(archive["template"], index, top=2)
    found = {row.trace_id: obspy.UTCDateTime(row.starttime) for row in matches.itertuples()}
    assert abs(found["XX.NOISE..HHZ"] - expected_time(0.25)) <= 0.025 + 1e-6
    assert abs(found["XX.OTHER..HHZ"] - (obspy.UTCDateTime(T0) + 120.6)) <= 0.025 + 1e-6
    assert (matches.score > 0.9).all()
    # a corpus of another codec: refused, the index untouched
    foreign = load_tokenized(second)
    foreign.metadata = json.loads(json.dumps(foreign.metadata))
    foreign.metadata["codec"]["id"] = "fedcba9876543210"
    foreign.save(tmp_path / "foreign")
    with pytest.raises(InputError, match=r"foreign: tokenized with codec fedcba9876543210.*index"):
        run("cli.index", [tmp_path / "foreign", "--out", index, "--add"])
    assert len(load_index(index)) == len(after)
    assert not list(tmp_path.glob(".index*"))


def test_quantized_index_is_small_and_still_finds_the_event(tmp_path):
    import obspy

    from tasks.search import build_index, search

    corpus = make_corpus(tmp_path, "corpus", 900.35, seconds=1100, seed=3)
    with pytest.raises(InputError, match="needs at least 1024 vectors"):  # 8-bit codebooks: 256 centroids each
        build_index([corpus], tmp_path / "small-pq", index_type="pq", progress=False)
    index = build_index([corpus], tmp_path / "pqfs", index_type="pqfs", pq_bytes=8, progress=False)
    assert index.metadata["index_type"] == "pqfs" and index.metadata["code_size"] == 8
    assert len(index) == (1100 - 4) // 2 + 1  # a window every 2 s
    npy_header = 128
    assert index.metadata["bytes"]["codes.npy"] == 8 * len(index) + npy_header  # no id stored per vector
    codebooks = 48 * 16 * 4  # 16 sub-quantizers of 16 centroids over the 48 rotated values, float32
    rotation = 48 * 80 * 4 + 2 * 80 * 4  # the PCA-and-rotation matrix, its mean and eigenvalues
    assert index.metadata["bytes"]["quantizer.faiss"] < codebooks + rotation + 1000  # shared by all shards
    best = search(event_snippet(), tmp_path / "pqfs", top=1).iloc[0]
    assert abs(obspy.UTCDateTime(best.starttime) - (obspy.UTCDateTime(T0) + 900.35)) <= 0.025 + 1e-6
    assert best.score > 0.9
    # inverted lists: 1 byte of list number in each code, still no id stored
    with pytest.raises(InputError, match="needs at least 1024 vectors"):
        build_index([corpus], tmp_path / "ivf-small", index_type="ivfpqfs", progress=False)
    index = build_index([corpus], tmp_path / "ivf", index_type="ivfpqfs", hop=1, progress=False)
    assert index.metadata["code_size"] == 9 and index.metadata["nlist"] == 256
    assert index.metadata["bytes"]["codes.npy"] == 9 * len(index) + npy_header
    best = search(event_snippet(), tmp_path / "ivf", top=1).iloc[0]
    assert abs(obspy.UTCDateTime(best.starttime) - (obspy.UTCDateTime(T0) + 900.35)) <= 0.025 + 1e-6


def test_code_lookup_tables_score_codes_as_the_decoded_vectors_and_faiss_do(tmp_path):
    """SearchIndex.code_tables / code_scores (the scoring of proposals from the codes): for 8-bit (pq) and
    4-bit (pqfs) codes, the inner products of the decoded vectors with the queries, and FAISS's own scores
    of the windows it retrieves; index types without plain PQ codes have no tables."""
    from tasks.search import _gather_rows, build_index

    corpus = make_corpus(tmp_path, "corpus", 900.35, seconds=1100, seed=3)
    rng = np.random.default_rng(2)
    for kind, hop in (("pqfs", 2), ("pq", 1)):
        index = build_index([corpus], tmp_path / kind, index_type=kind, hop=hop, progress=False)
        queries = index.prepare_queries(rng.standard_normal((6, 80)).astype(np.float32))
        tables = index.code_tables(queries)
        codes = np.ascontiguousarray(index.codes(0))
        assert tables.shape == (6, codes.shape[1], 256)
        local = rng.integers(0, len(codes), 500)
        rows = rng.integers(0, 6, 500)
        assert np.array_equal(_gather_rows(codes, local), codes[local])
        decoded = np.einsum("nd,nd->n", index.searched_vectors(0, local, codes), queries[rows])
        np.testing.assert_allclose(index.code_scores(tables, rows, codes[local]), decoded, rtol=1e-4, atol=1e-5)
        scores, ids = index.shard_index(0).search(queries, 5)  # fast scan rounds its tables to 8 bits
        for r in range(6):
            np.testing.assert_allclose(index.code_scores(tables, np.full(5, r), codes[ids[r]]), scores[r],
                                       atol=0.02 * np.abs(scores[r]).max())
    flat = build_index([corpus], tmp_path / "flat", index_type="flat", progress=False)
    assert flat.code_tables(flat.prepare_queries(np.zeros((1, 80), np.float32))) is None


# ---------------------------------------------------------------------------- re-rank correlation, coarse decoding
def test_batched_correlation_equals_obspy_per_span():
    from obspy.signal.cross_correlation import correlate_template

    from tasks.search import ncc_best_batch

    rng = np.random.default_rng(5)
    spans = rng.standard_normal((40, 300)) * rng.uniform(0.1, 10, (40, 1)) + rng.uniform(-3, 3, (40, 1))
    spans[7] = 0.0  # no energy: scores 0, as obspy's nan_to_num'd correlation
    one = rng.standard_normal(220) + 2.0
    each = rng.standard_normal((40, 220))
    each[9] = 0.0
    for template in (one, each):
        lags, scores = ncc_best_batch(spans, template)
        for n in range(len(spans)):
            t = template if template.ndim == 1 else template[n]
            cc = np.nan_to_num(np.asarray(correlate_template(spans[n], t, mode="valid", normalize="full",
                                                             demean=True)))
            if not np.any(cc):
                assert scores[n] == 0.0
                continue
            assert lags[n] == int(np.argmax(cc))
            assert scores[n] == pytest.approx(cc.max(), abs=1e-9)


def test_coarse_codebooks_are_recorded_and_checked(archive, tmp_path):
    from tasks.search import COARSE_CODEBOOKS, build_index, load_index, search

    corpus = archive[0.0][0]
    assert load_index(archive[0.0][1]).params["coarse_codebooks"] == COARSE_CODEBOOKS == 8
    for bad in (0, 9, 2.5, True):
        with pytest.raises(InputError, match="coarse_codebooks must be a whole number from 1 to 8"):
            build_index([corpus], tmp_path / f"bad-{bad}", coarse_codebooks=bad, progress=False)
        assert not (tmp_path / f"bad-{bad}").exists()
    index = build_index([corpus], tmp_path / "k2", coarse_codebooks=2, progress=False)
    assert index.params["coarse_codebooks"] == 2
    full = load_index(archive[0.0][1])
    # the same windows, decoded from fewer codebooks: other vectors (the coarse stage sees another signal)
    assert len(index) == len(full)
    assert not np.allclose(index.decode(0, 0, 50), full.decode(0, 0, 50))
    best = search(archive["template"], tmp_path / "k2", top=1).iloc[0]
    assert best.score > 0.9  # the re-rank decodes all codebooks either way


def test_stretches_decode_from_their_frames_exactly_as_from_whole_rows(archive):
    """The re-rank decodes only the frames around each proposal (`_Decoder.spans`): the same samples as
    decoding the whole rows, at row edges and across rows, and also for a codec that states no context."""
    from tasks.search import _index_codec, _index_decoder, load_index

    index = load_index(archive[0.0][1])
    decoder = _index_decoder(index, _index_codec(index, None))
    piece = index.pieces.iloc[0]
    n = int(piece.num_samples)
    assert len(piece.rows) >= 2  # the span below crosses from one row into the next
    boundary = int(piece.offsets[1])
    rng = np.random.default_rng(3)
    requests = [(piece, 0, 100), (piece, n - 57, n), (piece, boundary - 400, boundary + 333), (piece, 0, n)]
    for _ in range(40):
        lo = int(rng.integers(0, n - 1))
        requests.append((piece, lo, int(rng.integers(lo + 1, min(n, lo + 2000) + 1))))
    whole = [decoder.span(p, lo, hi) for p, lo, hi in requests]
    for stretches in (decoder.spans(requests), _without_context(decoder).spans(requests)):
        for got, want in zip(stretches, whole):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def _without_context(decoder):
    """The same decoder with a codec that does not state its decode context (whole rows are decoded)."""
    import copy

    other = copy.copy(decoder)
    other.codec = copy.copy(decoder.codec)
    other.codec.decode_context_frames = None
    return other


def test_every_searched_anchor_count_finds_the_event_and_bad_counts_are_refused(archive):
    """Searching one anchor (the default) or all of them proposes the event; the others are scored from the
    codes either way, so the match and its score are the same."""
    import obspy

    from tasks.search import MAX_ANCHORS, SEARCHED_ANCHORS, search

    assert SEARCHED_ANCHORS == 1
    offset = OFFSETS[2]
    results = [search(archive["template"], archive[offset][1], top=1, searched_anchors=n).iloc[0]
               for n in (1, 2, MAX_ANCHORS)]
    for best in results:
        assert abs(obspy.UTCDateTime(best.starttime) - expected_time(offset)) <= 0.025 + 1e-6
        assert best.score == pytest.approx(results[0].score, abs=1e-9)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="searched_anchors must be a whole number >= 1"):
            search(archive["template"], archive[offset][1], searched_anchors=bad)


def test_a_long_shard_is_searched_a_stretch_of_windows_at_a_time(archive, monkeypatch):
    """Nearest windows are taken per QUERY_NEIGHBOURS_WINDOWS windows of a shard (a channel-day), so that a
    long shard keeps the recall of a day: here a stretch of 20 windows, with 1 neighbour each."""
    import obspy

    from tasks import search as search_module

    sizes = []
    original = search_module.SearchIndex.searchable

    def counting(self, codes):
        sizes.append(len(codes))
        return original(self, codes)

    monkeypatch.setattr(search_module.SearchIndex, "searchable", counting)
    monkeypatch.setattr(search_module, "QUERY_NEIGHBOURS_WINDOWS", 20)
    offset = OFFSETS[1]
    index = search_module.load_index(archive[offset][1])
    best = search_module.search(archive["template"], archive[offset][1], top=1, neighbours=1).iloc[0]
    assert sizes == [20] * (len(index) // 20) + ([len(index) % 20] if len(index) % 20 else [])
    assert abs(obspy.UTCDateTime(best.starttime) - expected_time(offset)) <= 0.025 + 1e-6
    assert best.score > 0.9


def test_partial_sort_of_proposals_equals_a_full_sort():
    from tasks.search import _largest

    rng = np.random.default_rng(1)
    values = rng.integers(0, 50, size=5000).astype(float)  # many ties
    for m in (1, 7, 300, 4999, 5000, 6000):
        np.testing.assert_array_equal(_largest(values, m), np.argsort(-values, kind="stable")[:m])


def test_a_band_passed_archive_is_searched_with_a_template_filtered_as_it_was(tmp_path, monkeypatch):
    """An index of corpora tokenized band-passed in its own band (`eqcodec tokenize --bandpass 1-8`) holds
    samples filtered twice (before coding, and after decoding): the template is filtered twice too, which
    scores the true match higher than filtering it once, and the notes say so."""
    import obspy

    import tasks.search as S
    from tokenized_data import tokenize
    from tokenized_data.prepare import Preprocessing

    waveform = noise_with_event(tmp_path / "day.mseed", 70.35)
    tokenize([str(waveform)], tmp_path / "corpus", prep=Preprocessing(bandpass=(1, 8)), num_proc=1, progress=False)
    S.build_index([tmp_path / "corpus"], tmp_path / "index", progress=False)
    snippet = event_snippet()
    snippet.write(str(tmp_path / "snippet.mseed"), format="MSEED")
    twice = S.search(tmp_path / "snippet.mseed", tmp_path / "index", top=3)
    assert "band-passed twice" in " ".join(twice.attrs["notes"])
    assert abs(obspy.UTCDateTime(twice.starttime[0]) - (obspy.UTCDateTime(T0) + 70.35)) <= 0.05
    # the same index read as if its corpora had not been band-passed: the template filtered once
    load = S.load_index

    def as_unfiltered(path):
        index = load(path)
        for corpus in index.metadata["corpora"]:
            corpus["bandpass"] = None
        return index
    monkeypatch.setattr(S, "load_index", as_unfiltered)
    once = S.search(tmp_path / "snippet.mseed", tmp_path / "index", top=3)
    assert "band-passed twice" not in " ".join(once.attrs["notes"])
    assert once.starttime[0] == twice.starttime[0] and twice.score[0] > once.score[0], (twice.score[0], once.score[0])
