"""The LM's per-frame surprisal (tasks.surprisal, `eqcodec deconvolve --output surprisal`).

A tiny random LM tied to the shipped codec (32-frame window) on obspy's bundled recordings:
the sliding windows are checked against one teacher-forced pass per window computed here.
"""

from __future__ import annotations

import numpy as np
import obspy
import pytest
import torch

from cli import main as cli
from codec.errors import CheckpointError, InputError
from codec.preprocess import SAMPLING_RATE, detrend_and_resample, trace_to_codec_input
from lm.model import load_lm
from tasks.surprisal import (FrameScores, frame_scores, frame_surprisal, grid_scores, interleave_grids, onset_function,
                             token_nll)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tiny_lm_dir, codec):
    return load_lm(tiny_lm_dir), codec


def long_samples() -> np.ndarray:
    """A real recording at 40 Hz longer than two tiny-LM windows: BW.RJOB EHZ, three times over (90 s)."""
    x = trace_to_codec_input(obspy.read()[0])
    return np.concatenate([x, x[::-1], x])


def reference_surprisal(x, lm, codec, reference):
    """Per frame: one teacher-forced pass over the window the module docstring assigns it."""
    from tokenized_data import to_streams
    from tokenized_data.examples import rereference_gain

    prepared, _ = detrend_and_resample(x, SAMPLING_RATE)
    encoded = codec.encode(prepared)
    streams = to_streams(encoded.codes[0], encoded.gain[0])
    T, L = streams.shape[-1], lm.config.max_frames
    out = np.full(T, np.nan)
    a = 0
    while True:
        window = streams[:, a : a + L].clone()
        window[0] = rereference_gain(window[0], reference, codec.config.gain_reference_level)
        with torch.inference_mode():
            nll = token_nll(lm, window[None]).sum(dim=1)[0].numpy()
        first = 0 if a == 0 else reference
        out[a + first : a + window.shape[-1]] = nll[first:]
        if a + L >= T:
            return out
        a += L - reference


def test_surprisal_has_one_value_per_frame_and_matches_window_by_window_passes(tiny):
    lm, codec = tiny
    x = long_samples()
    surprisal = frame_surprisal(x, lm, codec)
    assert surprisal.shape == (int(np.ceil(len(x) / 40)),)
    assert np.isfinite(surprisal).all() and (surprisal > 0).all()
    np.testing.assert_allclose(surprisal, reference_surprisal(x, lm, codec, 10), rtol=1e-4)
    per_stream = frame_surprisal(x, lm, codec, per_stream=True)
    assert per_stream.shape == (lm.config.num_streams, len(surprisal))
    np.testing.assert_allclose(per_stream.sum(axis=0), surprisal, rtol=1e-6)
    # A random LM spreads its probability evenly: about log(vocabulary) nats per token.
    uniform = np.log(lm.config.gain_levels) + lm.config.num_codebooks * np.log(lm.config.codebook_size)
    assert 0.5 * uniform < np.median(surprisal) < 1.5 * uniform


def test_surprisal_of_a_frame_does_not_depend_on_later_frames_beyond_the_codec_margin(tiny):
    lm, codec = tiny
    x = long_samples()
    changed = x.copy()
    changed[60 * 40:] = np.random.default_rng(0).normal(size=len(x) - 60 * 40) * x.std() * 50
    a, b = frame_surprisal(x, lm, codec), frame_surprisal(changed, lm, codec)
    # The trend removal and the codec's scale see the whole trace, but the window gain reference
    # removes the scale; the frames well before the change are scored alike.
    np.testing.assert_allclose(a[15:55], b[15:55], rtol=0.05)
    assert not np.allclose(a[61:], b[61:])


def test_frame_scores_gain_distribution_is_the_one_the_gain_token_was_scored_with(tiny):
    lm, codec = tiny
    x = long_samples()
    scores = frame_scores(x, lm, codec)
    np.testing.assert_allclose(scores.nll, frame_surprisal(x, lm, codec, per_stream=True), rtol=1e-6)
    T = scores.nll.shape[1]
    assert scores.gain_probabilities.shape == (T, lm.config.gain_levels) and scores.gain_level.shape == (T,)
    np.testing.assert_allclose(scores.gain_probabilities.sum(axis=1), 1, rtol=1e-6)
    # The gain token's NLL is -log of the probability the distribution gives the observed level: a
    # distribution taken one step off (another frame's) would not match it.
    observed = scores.gain_probabilities[np.arange(T), scores.gain_level]
    np.testing.assert_allclose(scores.nll[0], -np.log(observed), rtol=1e-4, atol=1e-5)
    # One-sided: P(gain >= observed) >= P(gain = observed), so the exceedance never exceeds the gain's NLL.
    assert ((0 <= scores.gain_exceedance) & (scores.gain_exceedance <= scores.nll[0] + 1e-5)).all()
    # A higher predicted quantile is a higher level: the rise over it is smaller or equal.
    assert (scores.gain_rise_db(0.95) <= scores.gain_rise_db(0.5)).all()
    assert (scores.gain_rise_db(0.5) > scores.gain_rise_db(0.95)).any()


def test_gain_tail_exceedance_and_rise_of_a_known_distribution():
    probabilities = np.zeros((3, 256))
    probabilities[:, 100:110] = 0.1  # levels 100..109 equally likely
    scores = FrameScores(np.zeros((9, 3)), np.array([105, 120, 0]), probabilities, gain_step_db=0.75)
    np.testing.assert_allclose(scores.gain_tail, [0.5, 0.0, 1.0], atol=1e-12)  # level 0 (silence): never louder
    assert scores.gain_exceedance[0] == pytest.approx(np.log(2)) and scores.gain_exceedance[2] == 0
    assert np.isfinite(scores.gain_exceedance[1]) and scores.gain_exceedance[1] > 100  # beyond all expectation
    # median: level 104 (CDF 0.5); 0.85-quantile: level 108 (CDF 0.9)
    np.testing.assert_allclose(scores.gain_rise_db(0.5)[:2], [0.75, 16 * 0.75])
    np.testing.assert_allclose(scores.gain_rise_db(0.85)[:2], [-3 * 0.75, 12 * 0.75])
    with pytest.raises(ValueError, match="quantile"):
        scores.gain_rise_db(1.0)


def test_onset_function_interleaves_frame_grids_a_fraction_of_a_frame_apart(tiny):
    lm, codec = tiny
    x = long_samples()
    rise = onset_function(x, lm, codec, quantile=0.84, grids=4)
    grids = [frame_scores(x[j * 10 :], lm, codec).gain_rise_db(0.84) for j in range(4)]  # 10 samples: 1/4 s
    assert rise.shape == (4 * len(grids[0]),)
    for j, grid in enumerate(grids):
        np.testing.assert_array_equal(rise[j : 4 * len(grid) : 4], grid)
    scores = grid_scores(x, lm, codec, grids=2)
    np.testing.assert_array_equal(scores[1].nll, frame_scores(x[20:], lm, codec).nll)
    np.testing.assert_array_equal(interleave_grids([np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0])]),
                                  [1, 4, 2, 5, 3, np.nan])  # the later grid ends a frame early: NaN there
    with pytest.raises(InputError, match="short-one: onsets need at least 2.75 s"):
        onset_function(x[:100], lm, codec, grids=4, label="short-one")
    with pytest.raises(ValueError, match="grids must divide"):
        grid_scores(x, lm, codec, grids=3)


def test_surprisal_refuses_an_lm_of_another_codec_and_bad_samples(tiny):
    lm, codec = tiny
    x = long_samples()
    original = lm.config.codec_id
    lm.config.codec_id = "0000000000000000"
    try:
        with pytest.raises(CheckpointError, match="0000000000000000"):
            frame_surprisal(x, lm, codec)
    finally:
        lm.config.codec_id = original
    with pytest.raises(InputError, match="constant"):
        frame_surprisal(np.ones(400), lm, codec)
    with pytest.raises(InputError, match="NaN"):
        frame_surprisal(np.r_[x[:400], np.nan], lm, codec)


def test_deconvolve_cli_writes_the_surprisal_as_a_1_hz_trace(example_file, tiny_lm_dir, tiny, tmp_path, capsys):
    out, plot = tmp_path / "surprisal.mseed", tmp_path / "surprisal.png"
    assert cli(["deconvolve", str(example_file), "--output", "surprisal", "--lm", str(tiny_lm_dir),
                "--out", str(out), "--plot", str(plot)]) == 0
    original, result = obspy.read(str(example_file)), obspy.read(str(out))
    assert [tr.id for tr in result] == [tr.id for tr in original]
    lm, codec = tiny
    for tr, source in zip(result, original):
        assert tr.stats.sampling_rate == 1.0 and tr.stats.npts == 30
        assert tr.stats.starttime == source.stats.starttime
        assert np.isfinite(tr.data).all()
    expected = frame_surprisal(trace_to_codec_input(original[0]), lm, codec)
    np.testing.assert_allclose(result[0].data, expected, rtol=1e-6)
    assert plot.stat().st_size > 10_000
    assert "nats / frame" in capsys.readouterr().out


def test_deconvolve_cli_writes_the_onset_function_at_four_hz(example_file, tiny_lm_dir, tiny, tmp_path, capsys):
    out, plot = tmp_path / "onset.mseed", tmp_path / "onset.png"
    assert cli(["deconvolve", str(example_file), "--output", "onset", "--lm", str(tiny_lm_dir),
                "--out", str(out), "--plot", str(plot)]) == 0
    original, result = obspy.read(str(example_file)), obspy.read(str(out))
    assert [tr.id for tr in result] == [tr.id for tr in original]
    lm, codec = tiny
    for tr, source in zip(result, original):
        assert tr.stats.sampling_rate == 4.0
        assert tr.stats.starttime == source.stats.starttime + 0.5  # sample i: the frame centred at its time
        assert np.isfinite(tr.data).all()  # the later grids' missing last frame is trimmed, not NaN
    expected = onset_function(trace_to_codec_input(original[0]), lm, codec)
    np.testing.assert_allclose(result[0].data, expected[: len(result[0].data)], rtol=1e-6)
    assert np.isnan(expected[len(result[0].data):]).all()
    assert plot.stat().st_size > 10_000
    assert "dB above forecast" in capsys.readouterr().out


def test_deconvolve_cli_surprisal_refuses_an_lm_of_another_codec(example_file, tiny_lm_dir, tmp_path, capsys):
    other = load_lm(tiny_lm_dir)
    other.config.codec_id = "0000000000000000"
    other.save_pretrained(tmp_path / "other-codec")
    out = tmp_path / "surprisal.mseed"
    assert cli(["deconvolve", str(example_file), "--output", "surprisal", "--lm", str(tmp_path / "other-codec"),
                "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "other-codec was trained on tokens of codec 0000000000000000" in err
    assert not out.exists()
