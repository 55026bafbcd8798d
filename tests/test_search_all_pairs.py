"""All-pairs mode of the similarity search (tasks.search.all_pairs, `eqcodec search --all-pairs`):
one waveform repeated at known times off the 1-s grid in the noise of two stations, found as pairs with
their lag to the sample."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_search import FS, T0, event_snippet, one_thread, run  # noqa: F401  (one_thread: autouse fixture)

from codec.errors import CheckpointError, InputError

SECONDS = 240
#: injection times (s after T0) per station, off the 1-s grid, on 25-ms samples
REPEATS = {"REP": (40.35, 110.6, 185.1), "REQ": (60.85,)}
SAMPLE = 1 / 40


def noise_with_repeats(path, times, *, station, channel="HHZ", seconds=SECONDS, seed=1):
    """Coloured noise at 100 Hz with the 8-s event snippet added at each of `times`; written to miniSEED."""
    import obspy

    snippet = event_snippet()
    rng = np.random.default_rng(seed)
    data = np.convolve(rng.standard_normal(int(seconds * FS)), np.ones(5) / 5, "same")
    data *= 0.02 * np.abs(snippet.data).max()
    for t in times:
        i = int(round(t * FS))
        data[i:i + snippet.stats.npts] += snippet.data
    trace = obspy.Trace(data.astype(np.float32), header={
        "network": "XX", "station": station, "channel": channel, "sampling_rate": FS,
        "starttime": obspy.UTCDateTime(T0)})
    trace.write(str(path), format="MSEED")
    return path


@pytest.fixture(scope="module")
def repeats(tmp_path_factory):
    from tasks.search import build_index
    from tokenized_data import tokenize

    root = tmp_path_factory.mktemp("all-pairs")
    waveforms = [str(noise_with_repeats(root / f"{station}.mseed", times, station=station, seed=seed))
                 for seed, (station, times) in enumerate(REPEATS.items(), start=1)]
    tokenize(waveforms, root / "corpus", num_proc=1, progress=False)
    build_index([root / "corpus"], root / "index", progress=False)
    return root / "index"


def expected_pairs(min_separation=4.0):
    """{((station a, time a), (station b, time b)): lag}: a the earlier on one trace, else the smaller station."""
    events = sorted((station, t) for station, times in REPEATS.items() for t in times)
    return {(a, b): b[1] - a[1] for i, a in enumerate(events) for b in events[i + 1:]
            if a[0] != b[0] or b[1] - a[1] >= min_separation}


def test_every_repeat_pair_is_found_once_with_its_lag_to_the_sample(repeats):
    import obspy

    from tasks.search import all_pairs

    pairs = all_pairs(repeats)
    assert list(pairs.columns[:7]) == ["rank", "trace_id_a", "starttime_a", "endtime_a", "trace_id_b",
                                       "starttime_b", "lag_seconds"]
    assert list(pairs.score) == sorted(pairs.score, reverse=True)
    strong = pairs[pairs.score > 0.8]
    assert len(strong) == len(expected_pairs()) == 6  # one row per repeat pair: runs and (b, a) merged
    t0 = obspy.UTCDateTime(T0)
    ta = np.array([obspy.UTCDateTime(t) - t0 for t in strong.starttime_a])
    tb = np.array([obspy.UTCDateTime(t) - t0 for t in strong.starttime_b])
    for ((sa, a), (sb, b)), lag in expected_pairs().items():
        # window a lies within the snippet (8 s) at a; b is where a's first sample aligns near b
        hit = ((strong.trace_id_a == f"XX.{sa}..HHZ") & (strong.trace_id_b == f"XX.{sb}..HHZ")
               & (ta > a - 4) & (ta < a + 8) & (tb > b - 4) & (tb < b + 8)).to_numpy()
        assert hit.sum() == 1, (sa, a, sb, b, strong)
        row = strong[hit].iloc[0]
        assert abs(row.lag_seconds - lag) < SAMPLE / 2 + 1e-6, (row.lag_seconds, lag)  # the exact sample
        assert abs((tb[hit][0] - ta[hit][0]) - lag) < SAMPLE / 2 + 1e-6
        assert row.score > 0.9


def test_self_overlaps_are_excluded_and_options_apply(repeats):
    import obspy

    from tasks.search import all_pairs

    for separation in (None, 12.0):
        pairs = all_pairs(repeats, min_separation=separation)
        one_trace = pairs[pairs.trace_id_a == pairs.trace_id_b]
        lags = np.array([obspy.UTCDateTime(b) - obspy.UTCDateTime(a)
                         for a, b in zip(one_trace.starttime_a, one_trace.starttime_b)])
        assert len(lags) > 10 and (lags >= (separation or 4.0) - 1e-6).all()  # no self-match, no shift of one
        assert (pairs.trace_id_a <= pairs.trace_id_b).all()
    top = all_pairs(repeats, top=2, min_score=0.5)
    assert len(top) == 2 and (top.score >= 0.5).all()
    assert len(all_pairs(repeats, min_score=0.8)) == len(expected_pairs())
    # a separation longer than the repeats' lags on one trace: the pair 145 s apart and those across stations
    far = all_pairs(repeats, min_separation=100, min_score=0.8)
    assert len(far) == len(expected_pairs(100)) == 4
    one_trace = far[far.trace_id_a == far.trace_id_b]
    assert len(one_trace) == 1
    assert abs(one_trace.lag_seconds.iloc[0] - (185.1 - 40.35)) < SAMPLE / 2 + 1e-6


def test_the_same_arrival_on_another_channel_of_the_station_is_not_a_pair(tmp_path):
    """Two components of one station hold the event at the same times: their same-moment pair is the same
    arrival, not a repeat (dropped within the separation); the repeat across components (another time) and
    the near-simultaneous arrival at another station are listed."""
    import obspy

    from tasks.search import all_pairs, build_index
    from tokenized_data import tokenize

    layout = (("REP", "HHZ", (40.35, 110.6)), ("REP", "HHN", (40.35, 110.6)), ("REQ", "HHZ", (42.35,)))
    files = [str(noise_with_repeats(tmp_path / f"{station}.{channel}.mseed", times, station=station,
                                    channel=channel, seed=seed))
             for seed, (station, channel, times) in enumerate(layout, start=1)]
    tokenize(files, tmp_path / "corpus", num_proc=1, progress=False)
    build_index([tmp_path / "corpus"], tmp_path / "index", progress=False)
    pairs = all_pairs(tmp_path / "index", min_score=0.8)
    station = lambda ids: ids.str.split(".").str[1]  # noqa: E731
    same_station = (station(pairs.trace_id_a) == station(pairs.trace_id_b)).to_numpy()
    assert (np.abs(pairs.lag_seconds.to_numpy()[same_station]) >= 4.0 - 1e-6).all(), pairs
    t0 = obspy.UTCDateTime(T0)
    ta = np.array([obspy.UTCDateTime(t) - t0 for t in pairs.starttime_a])

    def listed(id_a, id_b, a, lag):
        return bool(((pairs.trace_id_a == id_a) & (pairs.trace_id_b == id_b) & (ta > a - 4) & (ta < a + 8)
                     & (np.abs(pairs.lag_seconds - lag) < SAMPLE / 2 + 1e-6)).any())

    assert listed("XX.REP..HHN", "XX.REP..HHZ", 40.35, 110.6 - 40.35)  # the repeat, across components
    assert listed("XX.REP..HHN", "XX.REP..HHN", 40.35, 110.6 - 40.35)
    assert listed("XX.REP..HHZ", "XX.REQ..HHZ", 40.35, 2.0)  # another station, 2 s later: kept
    assert not listed("XX.REP..HHN", "XX.REP..HHZ", 40.35, 0.0)


def test_cli_writes_the_pairs_csv(repeats, tmp_path):
    import pandas as pd

    out = tmp_path / "out" / "pairs.csv"
    assert run("cli.search", ["--all-pairs", "--index", repeats, "--out", out, "--min-score", "0.8",
                              "--min-separation", "4"]) == 0
    table = pd.read_csv(out)
    assert {"trace_id_a", "starttime_a", "trace_id_b", "starttime_b", "score"} <= set(table.columns)
    assert len(table) == len(expected_pairs())
    assert table.starttime_a.str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").all()


def test_bad_input_is_refused_and_nothing_is_written(repeats, tmp_path, monkeypatch, capsys):
    import cli

    from tasks.search import all_pairs

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty, not a search index"):
        all_pairs(empty)
    broken = tmp_path / "broken"
    shutil.copytree(repeats, broken)
    (broken / "quantizer.faiss").write_bytes(b"garbage")
    with pytest.raises(InputError, match="quantizer.faiss: corrupt FAISS quantizer"):
        all_pairs(broken)
    other = tmp_path / "other-codec"
    shutil.copytree(repeats, other)
    meta = json.loads((other / "index.json").read_text())
    meta["codec_id"] = "0123456789abcdef"
    (other / "index.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"other-codec.*codec 0123456789abcdef"):
        all_pairs(other)
    for bad in ({"min_separation": 0}, {"min_separation": float("nan")}, {"min_separation": -3},
                {"top": 0}, {"min_score": 1.5}, {"neighbours": 0}, {"candidates": 2.5}):
        with pytest.raises(InputError, match=next(iter(bad))):
            all_pairs(repeats, **bad)
    monkeypatch.setitem(cli.COMMANDS, "search", ("cli.search", "similarity search"))
    out = tmp_path / "pairs.csv"
    for argv, named in ((["--index", str(other)], "other-codec"), (["--index", str(empty)], "empty"),
                        (["--index", str(broken)], "quantizer.faiss")):
        assert cli.main(["search", "--all-pairs", *argv, "--out", str(out)]) == 1
        assert named in capsys.readouterr().err
    # bad option values, a template together with --all-pairs or neither, template options with --all-pairs
    for argv in (["--all-pairs", "--min-separation", "0"], ["--all-pairs", "--min-separation", "x"],
                 ["--all-pairs", "--top", "0"], ["--all-pairs", "--min-score", "2"],
                 [str(tmp_path / "t.mseed"), "--all-pairs"], [],
                 ["--all-pairs", "--plot", str(tmp_path / "p.png")], ["--all-pairs", "--start", "2"],
                 [str(tmp_path / "t.mseed"), "--min-separation", "5"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["search", *argv, "--index", str(repeats), "--out", str(out)])
        assert exit_info.value.code == 2, argv
        assert "error:" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".pairs*")) and not (tmp_path / "p.png").exists()


def test_a_repeat_an_odd_number_of_samples_off_the_grid_keeps_its_coarse_score(tmp_path):
    """Window a is taken at every 40-Hz sample of half a hop: a repeat 70 s + 9 samples later meets a shifted
    window within half a sample, so its coarse score is about its re-ranked correlation (a vector shifted in
    50-ms steps stays 25 ms off and loses much of it)."""
    import obspy

    from tasks.search import build_index
    from tokenized_data import tokenize

    times = (40.375, 110.6)  # lag 70.225 s: 9 samples past the 1-s grid
    tokenize([str(noise_with_repeats(tmp_path / "odd.mseed", times, station="ODD", seed=7))], tmp_path / "corpus",
             num_proc=1, progress=False)
    build_index([tmp_path / "corpus"], tmp_path / "index", progress=False)
    from tasks.search import all_pairs

    best = all_pairs(tmp_path / "index").iloc[0]
    assert abs(best.lag_seconds - (times[1] - times[0])) < SAMPLE / 2 + 1e-6
    assert obspy.UTCDateTime(best.starttime_a) - obspy.UTCDateTime(T0) == pytest.approx(times[0], abs=8)
    assert best.score > 0.9
    assert best.coarse_score > best.score - 0.02, (best.coarse_score, best.score)  # 50-ms steps: 0.04 below


def test_pair_clusters_are_the_single_linkage_of_all_pairs():
    """_cluster_pairs (binned, vectorized) equals single linkage over every two pairs, brute force; a
    cluster's label is its first pair."""
    from tasks.search import _cluster_pairs

    rng = np.random.default_rng(11)
    for width, offset_width in ((1.0, 1.0), (8.0, 0.1), (2.0, None)):
        n = 400
        ca, cb = rng.integers(0, 3, n), rng.integers(0, 2, n)
        ta = np.round(rng.uniform(0, 60, n) * 4) / 4
        dt = np.round(rng.uniform(-20, 20, n) * 40) / 40
        ow = width if offset_width is None else offset_width
        linked = ((ca[:, None] == ca[None]) & (cb[:, None] == cb[None])
                  & (np.abs(ta[:, None] - ta[None]) <= width + 1e-6) & (np.abs(dt[:, None] - dt[None]) <= ow + 1e-6))
        label = np.arange(n)
        for _ in range(n):  # propagate the smallest index along links until nothing changes
            new = np.where(linked, label[None], n).min(axis=1)
            if np.array_equal(new, label):
                break
            label = new
        assert np.array_equal(_cluster_pairs(ca, cb, ta, dt, width, offset_width), label)
        assert len(np.unique(label)) > 10  # not one cluster: the test can tell


def test_best_partners_equals_a_plain_loop_over_each_window():
    """_best_partners (row-wise, vectorized): per window, partners on its own trace within the separation
    and missing ones (-1) dropped, each partner once at its best score, the best `neighbours` kept, best
    first and the smaller partner first among equal scores: as a plain loop over windows does it."""
    from tasks.search import _best_partners, _best_partners_by_lexsort

    rng = np.random.default_rng(5)
    windows = np.arange(30, 90)
    partners = rng.integers(-1, 120, (len(windows), 40))
    scores = np.round(rng.uniform(-0.2, 1.0, partners.shape), 1).astype(np.float32)  # ties on purpose
    time_of = lambda v: np.asarray(v, np.float64) % 50  # noqa: E731  (two traces of 50 windows, 1 s apart)
    trace_of = lambda v: np.asarray(v) // 50  # noqa: E731
    neighbours, separation = 6, 4.0
    got = _best_partners(windows, partners, scores, lambda v: (trace_of(v), time_of(v)), separation, neighbours)
    # the path for partners numbered beyond 32 bits gives the same
    other = _best_partners_by_lexsort(windows, partners, scores, lambda v: (trace_of(v), time_of(v)), separation,
                                      neighbours)
    assert all(np.array_equal(x, y) for x, y in zip(got, other))
    want = []
    for w, row_b, row_s in zip(windows, partners, scores):
        best: dict = {}
        for b, s in zip(row_b, row_s):
            if b < 0 or (trace_of(b) == trace_of(w) and abs(time_of(b) - time_of(w)) < separation - 1e-6):
                continue
            best[int(b)] = max(best.get(int(b), -np.inf), float(s))
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:neighbours]
        want += [(int(w), b, s) for b, s in ranked]
    assert [(int(a), int(b), float(s)) for a, b, s in zip(got[0], got[1], got[2])] == want
    assert np.array_equal(got[3], time_of(got[0])) and np.array_equal(got[4], time_of(got[1]))
    assert np.array_equal(got[5], trace_of(got[0])) and np.array_equal(got[6], trace_of(got[1]))
    assert len(want) > 100  # some windows lost partners to the rules, most kept six


def test_best_of_clusters_takes_the_best_pairs_of_the_clusters_with_most_evidence():
    """_best_of_clusters: up to PAIR_RERANK_PER_CLUSTER best pairs of each of the `wanted` clusters with the
    largest sum of (positive) coarse scores, ties between clusters by their best pair; as a dict loop."""
    from tasks.search import PAIR_RERANK_PER_CLUSTER, _best_of_clusters

    rng = np.random.default_rng(6)
    labels = rng.integers(0, 80, 600)
    scores = np.round(rng.uniform(-0.3, 1.0, 600), 1).astype(np.float32)  # clusters of equal evidence too
    for wanted in (1, 25, 1000):
        best: dict = {}
        for i in np.argsort(-scores, kind="stable"):
            members = best.setdefault(int(labels[i]), [])
            if len(members) < PAIR_RERANK_PER_CLUSTER:
                members.append(int(i))
        evidence = np.bincount(labels, weights=np.clip(scores, 0, None).astype(np.float64))
        ranked = sorted(best.items(), key=lambda item: -evidence[item[0]])[:wanted]
        chosen, clusters = _best_of_clusters(labels, scores, wanted)
        assert clusters == len(best)
        assert chosen.tolist() == [i for _, members in ranked for i in members]


def test_all_pairs_through_inverted_lists_of_the_codes_finds_what_the_scan_of_every_code_finds(
        repeats, tmp_path, monkeypatch):
    """A pqfs shard of more than PAIR_LISTS_MIN windows is searched through k-means lists of its own codes
    (SearchIndex.pair_searchable): a neighbour found through them scores as in the scan of every code (the
    same codes), most queries find the scan's best neighbour, and all pairs finds every repeat pair."""
    import tasks.search as S

    S.build_index([repeats.parent / "corpus"], tmp_path / "index", index_type="pqfs", hop=1, progress=False)
    index = S.load_index(tmp_path / "index")
    monkeypatch.setattr(S, "PAIR_LISTS_MIN", 100)
    monkeypatch.setattr(S, "PAIR_PROBES", 2)
    n = int(index.shards[0]["vectors"])
    lists, scan = index.pair_searchable(0), index.shard_index(0)
    assert n > 100 and lists.nlist >= 4 * lists.nprobe and lists.ntotal == scan.ntotal == n
    rng = np.random.default_rng(3)
    vectors = index.decode(0, 0, n)
    queries = index.prepare_queries(vectors + 0.3 * rng.standard_normal(vectors.shape) / np.sqrt(vectors.shape[1]))
    s_lists, i_lists = lists.search(queries, 5)
    s_all, i_all = scan.search(queries, n)
    score_of = np.full((n, n), np.nan, np.float32)
    np.put_along_axis(score_of, i_all, s_all, axis=1)
    found = i_lists >= 0
    assert found[:, 0].all()
    assert np.allclose(s_lists[found], np.take_along_axis(score_of, np.where(found, i_lists, 0), axis=1)[found],
                       atol=0.02)
    assert np.mean(i_lists[:, 0] == i_all[:, 0]) > 0.8
    pairs = S.all_pairs(tmp_path / "index")
    assert "through inverted lists" in " ".join(pairs.attrs["notes"])
    strong = pairs[pairs.score > 0.8]
    assert len(strong) == len(expected_pairs())
    for (sa, a), (sb, b) in expected_pairs():
        assert (np.abs(strong.lag_seconds[(strong.trace_id_a == f"XX.{sa}..HHZ")
                                          & (strong.trace_id_b == f"XX.{sb}..HHZ")] - (b - a)) < SAMPLE).any()


def test_significance_tells_repeats_from_the_chance_likenesses_of_narrow_band_noise(repeats, tmp_path):
    """significance = score / MAD of window a's correlation with its hour of the archive: the repeats of a
    broadband waveform in noise stand far above their MAD; windows of narrow-band noise (a coda, a hum) pass
    a score of 0.8 by chance at many lags, each a few MADs only. The same archive gives the same values."""
    import obspy
    from tasks.search import all_pairs, build_index
    from tokenized_data import tokenize

    pairs = all_pairs(repeats)
    strong = pairs[pairs.score > 0.8]
    assert len(strong) == len(expected_pairs()) and (strong.significance >= 8).all(), strong.significance
    assert (pairs.significance.dropna() > 0).all()
    rng = np.random.default_rng(5)
    hum = obspy.Trace(rng.standard_normal(int(SECONDS * FS)).astype(np.float32), header={
        "network": "XX", "station": "HUM", "channel": "HHZ", "sampling_rate": FS, "starttime": obspy.UTCDateTime(T0)})
    hum.filter("bandpass", freqmin=1.1, freqmax=1.4, corners=4, zerophase=True)
    hum.write(str(tmp_path / "hum.mseed"), format="MSEED")
    tokenize([str(tmp_path / "hum.mseed")], tmp_path / "corpus", num_proc=1, progress=False)
    build_index([tmp_path / "corpus"], tmp_path / "index", progress=False)
    likenesses = all_pairs(tmp_path / "index")
    chance = likenesses[likenesses.score > 0.8]
    assert len(chance) >= 5 and (chance.significance < 8).all(), chance.significance.describe()
    assert all_pairs(tmp_path / "index").significance.equals(likenesses.significance)
    # min_significance lists what is left, best first; top counts the pairs left
    assert len(all_pairs(tmp_path / "index", min_significance=8)) == 0
    significant = all_pairs(repeats, min_significance=8)
    assert list(significant.score) == list(pairs.score[pairs.significance >= 8])
    assert list(significant["rank"]) == list(range(1, len(significant) + 1))
    assert list(all_pairs(repeats, min_significance=8, top=2).score) == list(significant.score[:2])
    with pytest.raises(InputError, match="min_significance"):
        all_pairs(repeats, min_significance=-1.0)
