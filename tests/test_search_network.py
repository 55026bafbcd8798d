"""A template of several channels searched as a network matched filter (tasks.search.run_network_search,
`eqcodec search` given a multi-channel template): two components of one station hold the event with a fixed
moveout between them; the stack finds every repeat at its time, to the sample, and scores a look-alike on one
component only about half as high."""

from __future__ import annotations

import numpy as np
import pytest
from test_search import FS, T0, one_thread  # noqa: F401  (one_thread: autouse fixture)

from codec.errors import InputError

SECONDS = 220
REPEATS = (40.35, 130.6)  # the event on both components (N 0.5 s after Z), s after T0
ONLY_Z = 175.2  # the Z component's waveform alone
MOVEOUT = 0.5


def component(name: str):
    """8 s of one component of obspy's example event (100 Hz)."""
    import obspy

    trace = obspy.read().select(component=name)[0]
    trace.detrend("linear")
    return trace.slice(trace.stats.starttime + 2.5, trace.stats.starttime + 10.5).data


def write_channel(path, channel: str, events, seed: int):
    """Coloured noise at 100 Hz with (time, waveform) events added; written to miniSEED."""
    import obspy

    rng = np.random.default_rng(seed)
    data = np.convolve(rng.standard_normal(int(SECONDS * FS)), np.ones(5) / 5, "same")
    data *= 0.03 * max(np.abs(w).max() for _, w in events)
    for t, waveform in events:
        i = int(round(t * FS))
        data[i:i + len(waveform)] += waveform
    trace = obspy.Trace(data.astype(np.float32), header={
        "network": "XX", "station": "NET", "channel": channel, "sampling_rate": FS,
        "starttime": obspy.UTCDateTime(T0)})
    trace.write(str(path), format="MSEED")
    return str(path)


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    from tasks.search import build_index
    from tokenized_data import tokenize

    root = tmp_path_factory.mktemp("network")
    z, n = component("Z"), component("N")
    files = [write_channel(root / "z.mseed", "HHZ", [(t, z) for t in (*REPEATS, ONLY_Z)], seed=1),
             write_channel(root / "n.mseed", "HHN", [(t + MOVEOUT, n) for t in REPEATS], seed=2)]
    tokenize(files, root / "corpus", num_proc=1, progress=False)
    build_index([root / "corpus"], root / "index", progress=False)
    import obspy

    # each channel cut around its own arrival: N starts MOVEOUT later, and the stack keeps that delay
    t0 = obspy.UTCDateTime(T0) + REPEATS[0]
    template = (obspy.read(files[0]).trim(t0, t0 + 7.5)
                + obspy.read(files[1]).trim(t0 + MOVEOUT, t0 + MOVEOUT + 7.5))
    template.write(str(root / "template.mseed"), format="MSEED")
    return root


def seconds_after_t0(times):
    import obspy

    return np.array([obspy.UTCDateTime(t) - obspy.UTCDateTime(T0) for t in times])


def test_every_repeat_is_found_on_both_channels_at_its_time(network):
    from tasks.search import search

    matches = search(network / "template.mseed", network / "index", top=5)
    assert list(matches.columns) == ["rank", "trace_id", "starttime", "endtime", "score", "channels",
                                     "channel_scores", "corpus"]
    assert matches.trace_id.iloc[0] == "XX.NET..HHN,XX.NET..HHZ"
    best = matches.iloc[:2]
    starts = np.sort(seconds_after_t0(best.starttime))
    assert np.abs(starts - np.array(REPEATS)).max() < 1 / 80  # to the 40 Hz sample
    assert (best.score > 0.9).all() and (best.channels == 2).all()
    for text in best.channel_scores:  # each channel's own correlation at the stack's lag
        scores = dict(item.split(":") for item in text.split(";"))
        assert set(scores) == {"XX.NET..HHN", "XX.NET..HHZ"} and min(map(float, scores.values())) > 0.85
    # the Z waveform alone: its channel matches, the other does not; the stack halves it
    alone = matches[np.abs(seconds_after_t0(matches.starttime) - ONLY_Z) < 0.5]
    assert len(alone) == 1 and 0.3 < alone.score.iloc[0] < 0.7, matches
    assert list(matches.score) == sorted(matches.score, reverse=True)


def test_cli_stacks_a_multi_channel_template_and_one_channel_stays_a_single_search(network, tmp_path):
    import pandas as pd

    from cli import main

    out = tmp_path / "matches.csv"
    assert main(["search", str(network / "template.mseed"), "--index", str(network / "index"),
                 "--out", str(out), "--top", "3", "--plot", str(tmp_path / "m.png")]) == 0
    stacked = pd.read_csv(out)
    assert stacked.channels.iloc[0] == 2 and (tmp_path / "m.png").stat().st_size > 0
    # --seed-id picks one channel: the single-channel search, over every channel of the archive
    assert main(["search", str(network / "template.mseed"), "--seed-id", "*HHZ", "--index", str(network / "index"),
                 "--out", str(out), "--top", "3"]) == 0
    single = pd.read_csv(out)
    assert "channels" not in single.columns and single.trace_id.iloc[0] == "XX.NET..HHZ"
    assert main(["search", str(network / "template.mseed"), "--seed-id", "*HHN", "--index", str(network / "index"),
                 "--out", str(out), "--top", "5", "--same-channel"]) == 0
    own = pd.read_csv(out)
    assert len(own) == 5 and (own.trace_id == "XX.NET..HHN").all()


def test_template_channels_missing_from_the_index(network, tmp_path):
    import obspy

    from tasks.search import prepare_templates, run_network_search

    templates = prepare_templates(network / "template.mseed")
    other = obspy.read(str(network / "template.mseed"))
    for trace in other:
        trace.stats.station = "ELSE"
    result = run_network_search(templates + prepare_templates(other), network / "index", top=2)
    assert result.matches.trace_id.iloc[0] == "XX.NET..HHN,XX.NET..HHZ"
    assert any("XX.ELSE..HHZ is not in the index" in note for note in result.notes)
    with pytest.raises(InputError, match="none of the template's channels"):
        run_network_search(prepare_templates(other), network / "index")


def test_templates_are_cut_relative_to_the_earliest_channel(network):
    import obspy

    from tasks.search import prepare_templates

    z, n = prepare_templates(network / "template.mseed", start=1.0, end=6.0)  # ids in order: HHN, HHZ
    assert (z.trace_id, n.trace_id) == ("XX.NET..HHN", "XX.NET..HHZ")
    first = obspy.UTCDateTime(T0) + REPEATS[0]  # HHZ starts there, HHN MOVEOUT later
    assert abs(n.starttime - (first + 1.0)) < 1e-6 and abs(z.starttime - (first + 1.0)) < 1e-6
    assert len(n.samples) == len(z.samples) and abs(len(z.samples) - 200) <= 1  # 5 s at 40 Hz (ends included)
    with pytest.raises(InputError, match="no trace matches"):
        prepare_templates(network / "template.mseed", seed_id="XX.NET..BHZ")


def test_a_channel_search_scans_its_own_windows_only(network):
    from tasks.search import _channel_ranges, load_index

    index = load_index(network / "index")
    ids = np.asarray(index.pieces.trace_id, dtype=str)
    covered = []
    for trace_id in ("XX.NET..HHN", "XX.NET..HHZ"):
        ranges = _channel_ranges(index, 0, ids == trace_id)
        vectors = np.concatenate([np.arange(a, b) for a, b in ranges])
        # every vector of the channel's runs lies in one of its pieces, and all of them are there
        assert (ids[index.piece_of(vectors + index.offsets[0])] == trace_id).all()
        assert len(vectors) == int(np.asarray(index.pieces.num_vectors)[ids == trace_id].sum())
        covered.append(vectors)
    assert not set(covered[0]) & set(covered[1])
    assert _channel_ranges(index, 0, ids == "XX.ELSE..HHZ") == []


def test_a_channel_that_cannot_be_a_template_is_left_out_with_a_note(network, tmp_path):
    import obspy

    from tasks.search import prepare_templates, run_network_search

    stream = obspy.read(str(network / "template.mseed"))
    flat = stream[0].copy()
    flat.stats.channel = "HHE"
    flat.data = np.full(flat.stats.npts, 7.0, dtype=np.float32)  # a dead component
    templates = prepare_templates(stream + flat)
    assert [t.trace_id for t in templates] == ["XX.NET..HHN", "XX.NET..HHZ"]
    result = run_network_search(templates, network / "index", top=2)
    assert any("channel left out of the template" in note and "XX.NET..HHE" in note for note in result.notes)
    assert result.matches.channels.iloc[0] == 2 and result.matches.score.iloc[0] > 0.9
    other = flat.copy()
    other.stats.channel = "HH1"
    with pytest.raises(InputError, match="XX.NET..HH1.*constant"):  # nothing usable: the first channel's error
        prepare_templates(obspy.Stream([flat, other]))


def test_significance_is_the_score_over_the_background_mad_and_thresholds(network):
    from tasks.search import search

    for kwargs in ({}, {"seed_id": "*HHZ", "same_channel": True}):  # the stack, and one channel
        listed = search(network / "template.mseed", network / "index", top=6, min_significance=0, **kwargs)
        assert "significance" in listed.columns
        mad = listed.score / listed.significance
        assert np.allclose(mad, mad.iloc[0], rtol=1e-3) and 0 < mad.iloc[0] < 0.3  # one MAD per query
        repeats = listed[np.abs(seconds_after_t0(listed.starttime)[:, None] - np.array(REPEATS)).min(axis=1) < 0.05]
        assert len(repeats) == 2 and (repeats.significance > 8).all()
        strong = search(network / "template.mseed", network / "index", top=6, min_significance=8, **kwargs)
        assert len(strong) >= 2 and (strong.significance >= 8).all()
        assert len(strong) == int((listed.significance >= 8).sum())  # the same matches, cut at 8 MADs
    plain = search(network / "template.mseed", network / "index", top=3)
    assert "significance" not in plain.columns
    with pytest.raises(InputError, match="min_significance"):
        search(network / "template.mseed", network / "index", min_significance=-1)
