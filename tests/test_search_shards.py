"""Sharded search indexes (tasks.search, `eqcodec index --shard-by`): the same matches as one shard, one shard in
memory at a time, an interrupted build resumed, old formats and damaged shards refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_search import T0, event_snippet, noise_with_event, one_thread, run  # noqa: F401  (autouse fixture)

from codec.errors import InputError

#: station -> injection time (s after T0) of the event snippet, off the 1-s grid
EVENTS = {"AAA": 70.35, "BBB": 120.6, "CCC": 40.85}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two corpora: stations AAA and BBB in one, CCC in the other."""
    from tokenized_data import tokenize

    root = tmp_path_factory.mktemp("shards")
    files = {s: str(noise_with_event(root / f"{s}.mseed", t, station=s, seed=k)) for k, (s, t) in
             enumerate(EVENTS.items())}
    tokenize([files["AAA"], files["BBB"]], root / "ab", num_proc=1, progress=False)
    tokenize([files["CCC"]], root / "c", num_proc=1, progress=False)
    return root


def build(corpora, out, **kwargs):
    from tasks.search import build_index

    lines = []
    index = build_index([corpora / "ab", corpora / "c"], out, progress=False, log=lines.append, **kwargs)
    return index, lines


def found(matches):
    import obspy

    return {row.trace_id: (obspy.UTCDateTime(row.starttime), row.score) for row in matches.itertuples()}


def test_station_shards_give_the_matches_and_pairs_of_one_shard(corpora, tmp_path):
    from tasks.search import all_pairs, search

    one, _ = build(corpora, tmp_path / "one", shard_by="corpus")
    three, _ = build(corpora, tmp_path / "three", shard_by="station")
    assert [s["name"] for s in one.shards] == ["0000", "0001"]
    assert [s["name"] for s in three.shards] == ["0000-XX.AAA", "0000-XX.BBB", "0001-XX.CCC"]
    assert np.array_equal(np.concatenate([one.codes(s) for s in range(2)]),
                          np.concatenate([three.codes(s) for s in range(3)]))
    a, b = search(event_snippet(), tmp_path / "one", top=3), search(event_snippet(), tmp_path / "three", top=3)
    assert found(a) == found(b)
    for station, t in EVENTS.items():
        when, score = found(b)[f"XX.{station}..HHZ"]
        assert abs(when - (__import__("obspy").UTCDateTime(T0) + t)) <= 0.025 + 1e-6 and score > 0.9
    pairs_a, pairs_b = all_pairs(tmp_path / "one", top=5), all_pairs(tmp_path / "three", top=5)
    columns = ["trace_id_a", "starttime_a", "trace_id_b", "starttime_b", "score"]
    assert len(pairs_b) >= 3
    assert pairs_a[columns].equals(pairs_b[columns])


def test_a_search_holds_one_shard_at_a_time(corpora, tmp_path, monkeypatch):
    """Memory bounded by a shard: every FAISS index the search makes holds one shard's vectors, and each is
    dropped before the next is made (counted by the objects alive, not by time)."""
    import gc
    import weakref

    from tasks import search as search_module

    index, _ = build(corpora, tmp_path / "index", shard_by="station")
    made, alive_at_creation, sizes = [], [], []
    original = search_module.SearchIndex.searchable

    def counting(self, codes):
        gc.collect()
        alive_at_creation.append(sum(ref() is not None for ref in made))
        shard = original(self, codes)
        made.append(weakref.ref(shard))
        sizes.append(shard.ntotal)
        return shard

    monkeypatch.setattr(search_module.SearchIndex, "searchable", counting)
    search_module.search(event_snippet(), tmp_path / "index", top=3)
    # these shards are shorter than a day: one FAISS index each, holding its shard
    assert sizes == [shard["vectors"] for shard in index.shards] and max(sizes) < len(index)
    assert alive_at_creation == [0, 0, 0]


def test_an_interrupted_build_resumes_keeping_completed_shards(corpora, tmp_path, monkeypatch):
    from tasks import search as search_module

    out = tmp_path / "index"
    original = search_module._piece_vectors
    calls = {"n": 0}

    def failing(decoder, pieces, params):
        calls["n"] += 1
        if calls["n"] == 2:  # the second shard: the machine goes down
            raise KeyboardInterrupt
        yield from original(decoder, pieces, params)

    monkeypatch.setattr(search_module, "_piece_vectors", failing)
    with pytest.raises(KeyboardInterrupt):
        build(corpora, out, shard_by="station")
    assert not out.exists()  # no half-written index under its name
    building = tmp_path / ".index.building"
    done = building / "shards" / "0000-XX.AAA" / "codes.npy"
    assert done.is_file() and not (building / "shards" / "0000-XX.BBB").exists()
    stamp = done.stat().st_mtime_ns
    monkeypatch.setattr(search_module, "_piece_vectors", original)
    index, lines = build(corpora, out, shard_by="station")
    assert any("resumed an interrupted build: 1 of 3 shards were complete and kept" in line for line in lines)
    assert (out / "shards" / "0000-XX.AAA" / "codes.npy").stat().st_mtime_ns == stamp
    assert not building.exists() and len(index.shards) == 3
    reference, _ = build(corpora, tmp_path / "reference", shard_by="station")
    for s in range(3):
        assert np.array_equal(index.codes(s), reference.codes(s))


def test_an_interrupted_build_with_other_settings_starts_again(corpora, tmp_path):
    building = tmp_path / ".index.building"
    (building / "shards" / "0000-XX.AAA").mkdir(parents=True)
    (building / "build.json").write_text(json.dumps({"format": "something else"}))
    index, lines = build(corpora, tmp_path / "index")
    assert any("other settings or corpora: started again" in line for line in lines)
    assert len(index.shards) == 3


def test_add_writes_new_shards_only(corpora, tmp_path):
    from tasks.search import load_index, search

    out = tmp_path / "index"
    assert run("cli.index", [corpora / "ab", "--out", out, "--no-progress", "--shard-by", "station"]) == 0
    stamp = (out / "shards" / "0000-XX.AAA" / "codes.npy").stat().st_mtime_ns
    assert run("cli.index", [corpora / "c", "--out", out, "--add", "--no-progress"]) == 0
    index = load_index(out)
    assert [s["name"] for s in index.shards] == ["0000-XX.AAA", "0000-XX.BBB", "0001-XX.CCC"]
    assert (out / "shards" / "0000-XX.AAA" / "codes.npy").stat().st_mtime_ns == stamp
    assert set(found(search(event_snippet(), out, top=3))) == {f"XX.{s}..HHZ" for s in EVENTS}


def test_old_format_and_damaged_shards_are_refused_naming_the_file(corpora, tmp_path):
    from tasks.search import load_index, search

    good, _ = build(corpora, tmp_path / "good", shard_by="station")
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "good", old)
    meta = json.loads((old / "index.json").read_text())
    meta["format"] = "eqcodec-search-index/1"
    (old / "index.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"old/index.json: a search index of an older format.*build it again"):
        load_index(old)
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "good", damaged)
    codes = damaged / "shards" / "0000-XX.BBB" / "codes.npy"
    codes.write_bytes(codes.read_bytes()[:200])
    with pytest.raises(InputError, match=r"0000-XX.BBB/codes.npy: corrupt shard codes"):
        search(event_snippet(), damaged)
    (damaged / "shards" / "0001-XX.CCC" / "shard.json").unlink()
    with pytest.raises(InputError, match=r"0001-XX.CCC/shard.json: missing"):
        load_index(damaged)
    (damaged / "quantizer.faiss").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"quantizer.faiss: corrupt FAISS quantizer"):
        load_index(damaged)


def test_indexes_built_apart_are_searched_together(corpora, tmp_path):
    """Several machines: each indexes its corpora; one search over all their indexes merges the matches by
    score, as one index of everything would list them."""
    import pandas as pd

    from tasks.search import build_index, search

    for name in ("ab", "c"):
        build_index([corpora / name], tmp_path / f"index-{name}", progress=False, log=lambda line: None)
    build(corpora, tmp_path / "all")
    merged = search(event_snippet(), [tmp_path / "index-ab", tmp_path / "index-c"], top=3)
    assert list(merged["rank"]) == [1, 2, 3] and merged.score.is_monotonic_decreasing
    assert found(merged) == found(search(event_snippet(), tmp_path / "all", top=3))
    out = tmp_path / "m.csv"
    assert run("cli.search", [_snippet_file(tmp_path), "--index",
                              tmp_path / "index-ab", tmp_path / "index-c", "--out", out, "--top", "3"]) == 0
    assert set(pd.read_csv(out).trace_id) == {f"XX.{s}..HHZ" for s in EVENTS}


def _snippet_file(tmp_path):
    path = tmp_path / "snippet.mseed"
    event_snippet().write(str(path), format="MSEED")
    return path
