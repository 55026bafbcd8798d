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
from tasks.surprisal import frame_surprisal, token_nll

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tiny_lm_dir, codec):
    return load_lm(tiny_lm_dir), codec


@pytest.fixture()
def example_file(example_stream, tmp_path):
    path = tmp_path / "example.mseed"
    example_stream.write(str(path), format="MSEED")
    return path


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
    assert "nats/frame" in capsys.readouterr().out


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
