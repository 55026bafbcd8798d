"""`eqcodec generate` and generate_continuations: timing, ids, physical units, outputs, refused inputs."""

from __future__ import annotations

import numpy as np
import obspy
import pytest
import torch

from cli import main as cli
from codec.errors import InputError
from lm.generate import MIN_CONTEXT_SECONDS, generate_continuations
from lm.model import load_lm

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm_dir(tiny_lm_dir):
    return tiny_lm_dir


@pytest.fixture(scope="module")
def lm(lm_dir):
    return load_lm(lm_dir)


def run(example_file, out, lm_dir, *extra):
    return cli(["generate", str(example_file), "--context-seconds", "20", "--seconds", "4",
                "--out", str(out), "--lm", str(lm_dir), "--seed", "0", *extra])


def test_continuations_start_where_the_input_ends(example_stream, lm, codec):
    samples = generate_continuations(example_stream, lm, codec, 20, 4, samples=3, seed=0)
    assert len(samples) == 3
    for continuation in samples:
        assert [tr.id for tr in continuation] == [tr.id for tr in example_stream]
        for tr, original in zip(continuation, example_stream):
            assert tr.stats.sampling_rate == 40.0 and tr.stats.npts == 4 * 40
            # 30 s at 100 Hz end at 29.99 s; at 40 Hz the last sample is at 29.975 s: the next one is 30.0 s.
            assert tr.stats.starttime == original.stats.starttime + 30.0
            assert np.isfinite(tr.data).all()
    assert not np.allclose(samples[0][0].data, samples[1][0].data)  # samples differ


def test_continuations_are_in_the_input_units(example_stream, lm, codec):
    """Tokens do not depend on the input's scale or offset; the decoded continuation carries both."""
    base = generate_continuations(example_stream, lm, codec, 20, 3, seed=1)[0]
    moved = example_stream.copy()
    for tr in moved:
        tr.data = tr.data.astype(np.float64) * 1000.0 + 5e4
    scaled = generate_continuations(moved, lm, codec, 20, 3, seed=1)[0]
    for a, b in zip(base, scaled):
        np.testing.assert_allclose(b.data, a.data * 1000.0 + 5e4, rtol=1e-6, atol=1e-3 * np.abs(b.data).max())


def test_seed_makes_generation_reproducible(example_stream, lm, codec):
    a = generate_continuations(example_stream, lm, codec, 15, 2, seed=3)[0]
    b = generate_continuations(example_stream, lm, codec, 15, 2, seed=3)[0]
    c = generate_continuations(example_stream, lm, codec, 15, 2, seed=4)[0]
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a, b))
    assert not all(np.array_equal(x.data, y.data) for x, y in zip(a, c))


def test_cli_writes_one_file_per_sample_and_a_plot(example_file, example_stream, lm_dir, tmp_path):
    out = tmp_path / "out" / "cont.mseed"
    assert run(example_file, out, lm_dir, "--samples", "2", "--top-k", "50", "--temperature", "0.8") == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["cont.png", "cont.s00.mseed", "cont.s01.mseed"]
    for name in ("cont.s00.mseed", "cont.s01.mseed"):
        read = obspy.read(str(out.parent / name))
        assert sorted(tr.id for tr in read) == sorted(tr.id for tr in example_stream)
        assert all(tr.stats.npts == 160 and tr.stats.starttime == example_stream[0].stats.starttime + 30.0
                   for tr in read)
    assert (out.parent / "cont.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    single = tmp_path / "single.mseed"
    assert run(example_file, single, lm_dir, "--plot", str(tmp_path / "plot.png")) == 0
    assert single.is_file() and (tmp_path / "plot.png").is_file() and len(obspy.read(str(single))) == 3


def _with(example_stream, tmp_path, change):
    stream = example_stream.copy()
    change(stream)
    path = tmp_path / "changed.mseed"
    stream.write(str(path), format="MSEED")
    return path


def assert_refused(capsys, out, *words):
    message = capsys.readouterr().err
    assert "error" in message
    for word in words:
        assert word in message, message
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_bad_input_is_refused_and_nothing_is_written(example_stream, example_file, lm_dir, tmp_path, capsys):
    out = tmp_path / "out" / "x.mseed"
    short = str(MIN_CONTEXT_SECONDS - 1)
    assert cli(["generate", str(example_file), "--context-seconds", short, "--seconds", "4",
                "--out", str(out), "--lm", str(lm_dir)]) == 1
    assert_refused(capsys, out, "shorter than the minimum")

    assert cli(["generate", str(example_file), "--context-seconds", "31", "--seconds", "4",
                "--out", str(out), "--lm", str(lm_dir)]) == 1  # the example is 30 s long
    assert_refused(capsys, out, "shorter than the 31 s context", "BW.RJOB..EHZ")
    assert cli(["generate", str(example_file), "--context-seconds", "40", "--seconds", "4",
                "--out", str(out), "--lm", str(lm_dir)]) == 1  # the tiny LM's window is 32 frames
    assert_refused(capsys, out, "longer than the LM's window")

    for bad in ("0", "-3"):
        with pytest.raises(SystemExit) as exit_info:
            run(example_file, out, lm_dir, "--seconds", bad)
        assert exit_info.value.code == 2

    def nan_in_context(stream):
        stream[1].data = stream[1].data.astype(np.float64)
        stream[1].data[-500] = np.nan

    assert run(_with(example_stream, tmp_path, nan_in_context), out, lm_dir) == 1
    assert_refused(capsys, out, "NaN", "BW.RJOB..EHN")

    def gap_in_context(stream):
        tr = stream[0]
        first, second = tr.slice(tr.stats.starttime, tr.stats.starttime + 20), tr.slice(
            tr.stats.starttime + 22, tr.stats.endtime)
        stream.remove(tr)
        stream += obspy.Stream([first, second])

    assert run(_with(example_stream, tmp_path, gap_in_context), out, lm_dir) == 1
    assert_refused(capsys, out, "gap", "BW.RJOB..EHZ")


def test_problems_before_the_context_do_not_matter(example_stream, lm, codec):
    stream = example_stream.copy()
    stream[0].data = stream[0].data.astype(np.float64)
    stream[0].data[:200] = np.nan  # first 2 s; the 20-s context is the last 20 s
    assert len(generate_continuations(stream, lm, codec, 20, 2, seed=0)[0]) == 3


def test_checkpoint_problems_are_refused(example_file, lm_dir, tmp_path, capsys):
    out = tmp_path / "out" / "x.mseed"
    other = load_lm(lm_dir)
    other.config.codec_id = "0000000000000000"
    other.save_pretrained(tmp_path / "other-codec")
    assert run(example_file, out, tmp_path / "other-codec") == 1
    assert_refused(capsys, out, "0000000000000000", "codec")

    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text((lm_dir / "config.json").read_text())
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"\x00" * 100)
    assert run(example_file, out, tmp_path / "corrupt") == 1
    assert_refused(capsys, out, "corrupt")

    assert cli(["generate", str(example_file), "--context-seconds", "20", "--seconds", "4",
                "--out", str(out), "--lm", str(lm_dir), "--codec", str(tmp_path / "no-codec")]) == 1
    assert_refused(capsys, out, "codec checkpoint")


def test_contexts_are_prepared_as_token_corpora_are(example_stream):
    """generate's context and tokenize's segments come from one function: same detrended 40 Hz samples."""
    from codec.preprocess import detrend_and_resample
    from lm.generate import RESAMPLING_MARGIN_SECONDS, context_samples
    from tokenized_data import Preprocessing
    from tokenized_data.prepare import Report, prepare_stream

    trace = example_stream.select(component="Z")[0].copy()
    ramp = np.linspace(0, 50 * trace.data.std(), trace.stats.npts)  # a strong linear trend
    trace.data = trace.data.astype(np.float64) + ramp
    seconds = 20
    tail = trace.slice(trace.stats.endtime - seconds - RESAMPLING_MARGIN_SECONDS + 1 / trace.stats.sampling_rate)
    (segment,) = prepare_stream(obspy.Stream([tail]), Preprocessing(window_seconds=10), Report("x"))
    context, _, level = context_samples(trace, seconds)
    np.testing.assert_allclose(context, segment.samples[-len(context):], rtol=1e-9, atol=1e-9 * ramp.max())
    samples, trend = detrend_and_resample(tail.data, tail.stats.sampling_rate)
    assert abs(np.polyfit(np.arange(len(samples)), samples, 1)[0]) < 1e-3 * abs(np.polyfit(np.arange(len(trend)), trend, 1)[0])
    assert level == pytest.approx(trend[-1])


def test_continuations_go_on_from_the_level_where_a_trending_context_ends(example_stream, lm, codec):
    trace = example_stream.select(component="Z")[0].copy()
    spread = trace.data.std()
    trace.data = trace.data.astype(np.float64) + np.linspace(0, 100 * spread, trace.stats.npts)
    (continuation,) = generate_continuations(obspy.Stream([trace]), lm, codec, 20, 5, seed=0)
    end_level = trace.data[-100:].mean()
    assert abs(continuation[0].data[:40].mean() - end_level) < 10 * spread


def test_array_api_continues_numpy_rows_as_the_obspy_api_does(example_stream, lm, codec):
    from lm.generate import continue_array

    trace = example_stream.select(component="Z")[0].copy()
    trace.resample(40.0)  # a 40 Hz trace: both APIs see the same samples
    streams = generate_continuations(obspy.Stream([trace]), lm, codec, 20, 3, samples=2, seed=5)
    single = continue_array(trace.data, lm, codec, 20, 3, samples=2, seed=5)
    assert single.shape == (2, 3 * 40)
    np.testing.assert_allclose(single, np.stack([s[0].data for s in streams]), rtol=1e-6, atol=1e-6)
    batch = continue_array(np.stack([trace.data, trace.data[::-1].copy()]), lm, codec, 20, 3, samples=2, seed=5)
    assert batch.shape == (2, 2, 3 * 40)
    with pytest.raises(InputError, match="shorter than the 20 s context"):
        continue_array(trace.data[:400], lm, codec, 20, 3)


def test_frame_grid_members_start_where_the_input_ends(monkeypatch, lm, codec):
    """Every grid's member is cut so that it starts one 40 Hz sample after the input, whatever its context's offset.

    A stand-in generator finds where each context lies in the input and "continues" it with the input's
    own sample positions: every member must then read N, N + 1, ... for an input of N samples.
    """
    from lm import generate

    rng = np.random.default_rng(0)
    x = rng.normal(size=40 * 30)
    seen_lengths = []

    def positions(contexts, levels, lm, codec, seconds, *, samples, source_rates=None, **sampling):
        out = []
        for context in contexts:
            n = len(context)
            match = [np.dot(context, x[e - n : e]) for e in range(n, len(x) + 1)]
            end = n + int(np.argmax(match))
            seen_lengths.append(n)
            out.append(np.repeat((end + np.arange(seconds * 40.0))[None], samples, axis=0))
        return np.stack(out)

    monkeypatch.setattr(generate, "_continue_prepared", positions)
    monkeypatch.setattr(generate, "_join_weights", lambda tail, length: np.zeros(length))  # no signal to join
    members = generate.continue_array(x, lm, codec, 20, 3, samples=8, frame_grids=4, seed=0)
    assert members.shape == (8, 120)
    np.testing.assert_array_equal(members, np.broadcast_to(len(x) + np.arange(120.0), (8, 120)))
    assert set(seen_lengths) == {20 * 40}  # a 30-s input holds a whole 20-s context for every grid
    assert generate.frame_grid_offsets(4) == [0, 10, 20, 30]


def test_shifted_grid_members_join_a_smooth_input_and_are_untouched_after_one_frame(monkeypatch, lm, codec):
    """A stand-in generator continues every context with a wrong constant. The plain grid's member keeps it;
    on a smooth input (a 4-s oscillation) each shifted member starts at the input's last sample; on white
    noise, whose last sample says nothing of the next, little is carried; after 1 s all are the constant."""
    from lm import generate

    def constant(contexts, levels, lm, codec, seconds, *, samples, source_rates=None, **sampling):
        return np.full((len(contexts), samples, seconds * 40), wrong)

    monkeypatch.setattr(generate, "_continue_prepared", constant)
    t = np.arange(40 * 30) / 40
    smooth = 3 * np.sin(2 * np.pi * t / 4 + 1.0)
    noise = np.random.default_rng(1).normal(size=t.size)
    wrong = 7.0
    for x, carried in ((smooth, (0.95, 1.0)), (noise, (-0.2, 0.2))):
        members = generate.continue_array(x, lm, codec, 20, 3, samples=8, frame_grids=4, seed=0)
        np.testing.assert_array_equal(members[:, 40:], wrong)
        np.testing.assert_array_equal(members[[0, 4]], wrong)  # grid 0 reads the input's last sample itself
        share = (wrong - members[[1, 2, 3, 5, 6, 7], 0]) / (wrong - x[-1])  # of the miss, carried to sample 1
        assert np.all((carried[0] < share) & (share < carried[1])), share


def test_frame_grids_come_from_the_lm_in_forecasts_and_are_checked(example_stream, lm, codec):
    from lm.generate import continue_array
    from tasks.forecast import forecast_samples

    trace = example_stream.select(component="Z")[0].copy()
    trace.resample(40.0)
    one = continue_array(trace.data, lm, codec, 20, 2, samples=4, seed=3, frame_grids=1)
    four = continue_array(trace.data, lm, codec, 20, 2, samples=4, seed=3, frame_grids=4)
    assert four.shape == one.shape and np.isfinite(four).all()
    assert not np.allclose(one[1:], four[1:])  # members 1-3 read shifted contexts
    np.testing.assert_allclose(continue_array(trace.data, lm, codec, 20, 2, samples=4, seed=3), one)  # default 1
    lm.generation_config.frame_grids = 4  # forecasts take the LM's own
    try:
        np.testing.assert_allclose(forecast_samples(trace.data, lm, codec, 20, 2, 4, seed=3), four)
    finally:
        del lm.generation_config.frame_grids
    short = trace.data[-10 * 40:]  # a 10-s input: the shifted grids would read less than the minimum
    np.testing.assert_allclose(continue_array(short, lm, codec, 10, 2, samples=4, seed=3, frame_grids=4),
                               continue_array(short, lm, codec, 10, 2, samples=4, seed=3, frame_grids=1))
    for bad in (0, 41, 2.5):
        with pytest.raises(InputError, match="frame grids"):
            continue_array(trace.data, lm, codec, 20, 2, frame_grids=bad)
