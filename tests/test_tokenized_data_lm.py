"""What the language model reads: splits of a corpus and fixed-length examples."""

from __future__ import annotations

import numpy as np
import obspy
import pytest
import torch

from codec.preprocess import InputError
from tokenized_data import LMExamples, Preprocessing, collate, from_streams, load_tokenized, tokenize

from test_tokenized_data import noise_trace, write

#: (station, event start) of the generated event files: events E1 and E2 are each
#: recorded by several stations whose windows overlap in time; E3..E6 by one each.
EVENT_FILES = [
    ("AAA", "2020-01-01T00:00:00"), ("BBB", "2020-01-01T00:00:07"), ("CCC", "2020-01-01T00:00:15"),  # E1
    ("AAA", "2020-02-01T00:00:00"), ("DDD", "2020-02-01T00:00:30"),  # E2
    ("BBB", "2020-03-01T00:00:00"), ("CCC", "2020-04-01T00:00:00"), ("DDD", "2020-05-01T00:00:00"),
    ("EEE", "2020-06-01T00:00:00"), ("EEE", "2020-07-01T00:00:00"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("events")
    for i, (station, start) in enumerate(EVENT_FILES):
        stream = obspy.Stream([noise_trace(station, channel=f"HH{c}", start=start, seconds=50, seed=10 * i + j)
                               for j, c in enumerate("ZNE")])
        write(stream, folder / f"XX_{station}_{obspy.UTCDateTime(start).strftime('%Y%m%d%H%M%S')}.mseed")
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    tokenize([str(folder)], out, prep=Preprocessing(window_seconds=30), progress=False)
    return load_tokenized(out)


def _rows(corpus):
    return [(r["source_file"], r["channel"], r["starttime"]) for r in
            corpus.dataset.select_columns(["source_file", "channel", "starttime"])]


@pytest.mark.parametrize("by", ["event", "station"])
def test_split_is_a_partition_that_keeps_groups_together(corpus, by):
    train, validation = corpus.split(by=by, eval_fraction=0.3, seed=0)
    a, b = _rows(train), _rows(validation)
    assert len(a) + len(b) == len(corpus) and not set(a) & set(b)
    assert len(b) >= 0.3 * len(corpus) and len(a) > 0
    if by == "station":
        assert not set(train.dataset["station"]) & set(validation.dataset["station"])
    else:
        # no source file on both sides, and no two files recorded at overlapping times either
        def spans(part):
            out = {}
            for r in part.dataset:
                start = obspy.UTCDateTime(r["starttime"])
                lo, hi = out.get(r["source_file"], (start, start))
                out[r["source_file"]] = (min(lo, start), max(hi, start + r["num_frames"]))
            return out

        train_spans, eval_spans = spans(train), spans(validation)
        assert not set(train_spans) & set(eval_spans)
        for t0, t1 in train_spans.values():
            assert all(t1 <= e0 or e1 <= t0 for e0, e1 in eval_spans.values())
    assert train.codec_id == corpus.codec_id and validation.metadata["split"]["part"] == "validation"
    examples = LMExamples(validation, length=30, random_crop=False)  # a split feeds the LM directly
    assert len(examples) == len(validation) and int(examples[len(examples) - 1]["mask"].sum()) in (20, 30)


def test_split_is_deterministic_and_seeded(corpus):
    first = _rows(corpus.split(seed=0)[1])
    assert first == _rows(corpus.split(seed=0)[1])
    assert any(_rows(corpus.split(seed=s)[1]) != first for s in range(1, 6))


def test_split_needs_two_groups(corpus):
    one_station = corpus.dataset.filter(lambda r: r["station"] == "AAA")
    from tokenized_data import TokenCorpus

    with pytest.raises(InputError, match="one station"):
        TokenCorpus(one_station, corpus.metadata).split(by="station")
    with pytest.raises(ValueError):
        corpus.split(by="magnitude")


def test_split_saves_as_a_corpus(corpus, tmp_path):
    train, validation = corpus.split()
    validation.save(tmp_path / "validation")
    again = load_tokenized(tmp_path / "validation")
    assert _rows(again) == _rows(validation)
    assert again.metadata["counts"]["windows"] == len(validation)
    assert "validation part" in (tmp_path / "validation" / "README.md").read_text()


def test_lm_examples_chunks_cover_every_frame_once(corpus):
    examples = LMExamples(corpus, length=20, random_crop=False)
    frames = list(corpus.dataset["num_frames"])  # 30 and 20 per 50-s file
    assert sorted(set(frames)) == [20, 30]
    assert len(examples) == sum(-(-f // 20) for f in frames)
    total = 0
    for i in range(len(examples)):
        item = examples[i]
        assert item["tokens"].shape == (9, 20) and item["tokens"].dtype == torch.long
        assert item["mask"].shape == (20,) and item["mask"].dtype == torch.bool
        real = int(item["mask"].sum())
        assert item["mask"][:real].all() and not item["mask"][real:].any()  # right padding
        assert (item["tokens"][:, real:] == 0).all()
        total += real
    assert total == sum(frames)
    # the first chunk of window 0 is its first 20 frames, in STREAM_LAYOUT
    row = corpus.dataset[0]
    codes, gain = from_streams(examples[0]["tokens"])
    assert torch.equal(codes, torch.as_tensor(row["codes"])[:, :20].long())
    assert torch.equal(gain, torch.as_tensor(row["gain"])[:20].long())


def test_lm_examples_random_crops(corpus):
    examples = LMExamples(corpus, length=16, random_crop=True, seed=3)
    row = corpus.dataset[0]
    codes = np.asarray(row["codes"])
    starts = set()
    for epoch in range(4):
        examples.set_epoch(epoch)
        item = examples[0]
        assert item["mask"].all()
        got = item["tokens"][1:].numpy()
        matches = [s for s in range(codes.shape[1] - 15) if np.array_equal(codes[:, s:s + 16], got)]
        assert matches  # a real crop of the window
        starts.add(matches[0])
    assert len(starts) > 1  # epochs differ
    examples.set_epoch(0)
    assert torch.equal(examples[0]["tokens"], LMExamples(corpus, 16, random_crop=True, seed=3)[0]["tokens"])
    long_crop = LMExamples(corpus, length=64)[0]  # window shorter than length: padded
    assert int(long_crop["mask"].sum()) == corpus.dataset[0]["num_frames"]


def test_lm_examples_with_dataloader(corpus):
    examples = LMExamples(corpus, length=24)
    for collate_fn in (collate, None):
        loader = torch.utils.data.DataLoader(examples, batch_size=4, shuffle=True, collate_fn=collate_fn)
        batch = next(iter(loader))
        assert batch["tokens"].shape == (4, 9, 24) and batch["mask"].shape == (4, 24)
        assert int(batch["tokens"][:, 0].max()) < 256 and int(batch["tokens"][:, 1:].max()) < 1024


def test_rereferenced_gains_are_those_of_the_context_coded_alone(codec):
    """rereference_gain(g, P) gives the levels the codec assigns when the loudest of the first P frames sets the scale."""
    from codec.preprocess import trace_to_codec_input
    from tokenized_data.examples import rereference_gain

    x = trace_to_codec_input(obspy.read()[0])  # quiet first seconds, then the event
    reference = codec.config.gain_reference_level
    own = codec.encode(x)
    gain = own.gain[0]
    for prefix in (3, 8, 20):
        context_scale = codec.quantizer.dequantize(gain[:prefix].max().reshape(1, 1), own.scale)[0]
        expected = codec.encode(x, scale=context_scale).gain[0]
        got = rereference_gain(gain, prefix, reference)
        assert int(got[:prefix].max()) == reference
        assert (got - expected).abs().max() <= 1  # the two roundings may differ by one step
    assert int(rereference_gain(gain, 3, reference).max()) > reference  # the later event rises above


def test_lm_examples_rereference_the_gain_stream(corpus):
    plain = LMExamples(corpus, length=16, random_crop=True, seed=3)
    shifted = LMExamples(corpus, length=16, random_crop=True, seed=3, gain_reference_frames=(2, 8))
    for i in range(6):
        a, b = plain[i]["tokens"], shifted[i]["tokens"]
        assert torch.equal(a[1:], b[1:])  # codes untouched
        assert (b[0] - a[0]).unique().numel() == 1  # one shift for the whole crop
        reference = shifted.reference_level
        assert int(b[0, :8].max()) >= reference >= int(b[0, :2].max())
    with pytest.raises(ValueError, match="gain_reference_frames"):
        LMExamples(corpus, length=16, gain_reference_frames=(5, 2))
