"""Chunked encoding and decoding equal one pass (README: "Long traces ... the tokens equal those of one pass").

EQCodec.encode/decode run long traces in chunks of `chunk_frames` frames, each with a
margin of real context (EQCodec._chunks). These tests run traces many chunks long with
small chunks and compare with one pass over the whole trace (chunk_frames larger than it):
the codes and gains must be identical, the decoded samples equal to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec import EQCodec, EQCodecConfig
from codec import gain as gainlib
from codec.preprocess import trace_to_codec_input

ONE_PASS = 10**6  # frames: more than any trace here

torch.set_num_threads(1)


def long_real_trace(stream) -> np.ndarray:
    """obspy's example event (3 components at 40 Hz), each at three amplitude levels: 270 s, gain jumps of 40-80 dB."""
    parts = [trace_to_codec_input(trace) for trace in stream]
    return np.concatenate([part * level for level in (1.0, 1e-2, 1e2) for part in parts])


def per_frame_gain_noise(seconds: int, seed: int) -> np.ndarray:
    """White noise whose amplitude jumps every 1-s frame by up to +-6 octaves: every frame has a gain context."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(seconds * 40) * np.repeat(2.0 ** rng.uniform(-6, 6, seconds), 40)


def random_codec(seed: int) -> EQCodec:
    """A small untrained codec: random networks (no identity skip) and random residual codebooks 1024 x 8.

    Its networks weigh the edges of their receptive field far more than the shipped codec's,
    and its later codebooks are fine, so an input frame a chunk gets wrong shows up in its codes.
    """
    torch.manual_seed(seed)
    codec = EQCodec(EQCodecConfig(latent_dim=8, hidden_channels=32, residual_layers=3)).eval()
    codec.init_codebooks(0.3 * torch.randn(8, 1024, 8) * (0.5 ** torch.arange(8.0))[:, None, None])
    return codec


def assert_same_encoding(one, chunked, label: str) -> None:
    differ = one.codes != chunked.codes
    assert not differ.any(), (f"{label}: {int(differ.sum())} of {differ.numel()} codes differ from one pass "
                              f"(per codebook {differ.sum((0, 2)).tolist()}, frames "
                              f"{torch.nonzero(differ.any(1))[:10, -1].tolist()} ...)")
    assert torch.equal(one.gain, chunked.gain), label
    assert torch.equal(one.scale, chunked.scale) and torch.equal(one.offset, chunked.offset), label
    assert chunked.length == one.length, label


def max_error_in_gains(codec, encoded, chunk_frames: int) -> float:
    """Largest |chunked - one-pass decoded sample| over all samples, in units of the sample's frame gain G_t."""
    whole = codec.decode(encoded, chunk_frames=ONE_PASS)
    chunked = codec.decode(encoded, chunk_frames=chunk_frames)
    assert whole.shape == chunked.shape == (encoded.codes.shape[0], encoded.length)
    G = gainlib.dequantize_gain(encoded.gain, encoded.scale).repeat_interleave(40, -1)[:, : encoded.length]
    return float(((chunked - whole).abs() / G).max())


@pytest.mark.parametrize("chunk_frames", [16, 37, 1024])
def test_shipped_codec_chunked_encoding_gives_the_tokens_of_one_pass(codec, example_stream, chunk_frames):
    x = long_real_trace(example_stream)
    if chunk_frames == 1024:  # the default chunk, on a trace 2.5 chunks long
        x = np.tile(x, 10)[: 2500 * 40 + 17]  # the last frame partial
    one = codec.encode(x, chunk_frames=ONE_PASS)
    assert one.codes.shape[-1] > 2 * chunk_frames  # at least 3 chunks, interior ones among them
    assert_same_encoding(one, codec.encode(x, chunk_frames=chunk_frames), f"chunk_frames={chunk_frames}")


def test_shipped_codec_chunked_decoding_gives_the_samples_of_one_pass(codec, example_stream):
    encoded = codec.encode(long_real_trace(example_stream))
    for chunk_frames in (16, 37):
        # float32 networks: chunks of another length may round differently (measured <= 2.4e-7 G_t)
        error = max_error_in_gains(codec, encoded, chunk_frames)
        assert error < 1e-5, (chunk_frames, error)


@pytest.mark.parametrize("seed", range(3))
def test_chunk_edges_see_the_same_inputs_as_one_pass(seed):
    """Codes and decoded samples at every chunk edge, where a chunk's margin must supply all the
    context a frame sees in one pass (receptive field and the gain change to the neighbouring frame)."""
    codec = random_codec(seed)
    x = per_frame_gain_noise(300, seed)
    one = codec.encode(x, chunk_frames=ONE_PASS)
    for chunk_frames in (1, 5, 16):
        assert_same_encoding(one, codec.encode(x, chunk_frames=chunk_frames), f"chunk_frames={chunk_frames}")
        error = max_error_in_gains(codec, one, chunk_frames)
        assert error < 1e-5, (chunk_frames, error)  # measured <= 1.2e-7; a frame of wrong context: > 4e-4


def test_batch_of_traces_chunks_like_single_traces(codec, example_stream):
    """Chunking along time with B traces at once gives each trace its own one-pass tokens."""
    x = long_real_trace(example_stream)
    batch = np.stack([x, x[::-1].copy() * 3.0, np.roll(x, 1234)])
    chunked = codec.encode(batch, chunk_frames=23)
    for b in range(3):
        assert_same_encoding(codec.encode(batch[b], chunk_frames=ONE_PASS), chunked[b], f"trace {b}")
