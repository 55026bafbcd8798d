"""The classical baselines: gain-shape residual VQ (k-means) and the Steim2 lossless size."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from codec import baselines
from codec.baselines import GainShapeRVQ, gain_shape_frames, kmeans, steim2_bytes, steim2_integers
from codec.metrics import snr_db
from codec.model import CheckpointError, EQCodecConfig
from codec.preprocess import trace_to_codec_input


@pytest.fixture(scope="module")
def example_traces():
    """obspy.read()'s example (BW.RJOB, 3 components, a local event) at 40 Hz."""
    import obspy

    return [trace_to_codec_input(tr) for tr in obspy.read()]


@pytest.fixture(scope="module")
def small_baseline(example_traces):
    """A small baseline (4 stages x 16 entries) fitted on the example's frames at every offset."""
    torch.manual_seed(0)
    return GainShapeRVQ.fit(example_traces, num_codebooks=4, codebook_size=16, iters=5, seed=0)


def test_gain_side_info_is_eqcodecs(codec_v1, example_traces):
    """Same demeaning, framing and 8-bit gain (codec/gain.py) as EQCodec.normalize."""
    x = torch.as_tensor(np.stack(example_traces))
    shapes, gain, scale, offset = gain_shape_frames(x)
    unit, codec_gain, codec_scale, codec_offset = codec_v1.normalize(x)
    assert torch.equal(gain, codec_gain)
    assert torch.equal(scale, codec_scale)
    assert torch.equal(offset, codec_offset)
    torch.testing.assert_close(shapes, unit.transpose(1, 2))
    # The loudest frame sits at the reference level; every shape has unit RMS within a 1/8 octave.
    assert (gain.amax(-1) == 192).all()
    rms = shapes.double().pow(2).mean(-1).sqrt()
    assert ((rms > 2 ** -0.126) & (rms < 2 ** 0.126)).all()


def test_bit_rate_matches_eqcodec():
    assert GainShapeRVQ(torch.zeros(8, 1024, 40)).bits_per_second == EQCodecConfig().bits_per_second


def test_snr_grows_with_codebooks(small_baseline, example_traces):
    encoded = small_baseline.encode(np.stack(example_traces))
    assert encoded.codes.shape == (3, 4, 30) and encoded.codes.max() < 16
    for i, x in enumerate(example_traces):
        snrs = [snr_db(x, small_baseline.decode(encoded[i], k)[0].numpy()) for k in range(1, 5)]
        assert snrs[0] > 1.0, snrs
        assert all(b > a for a, b in zip(snrs, snrs[1:])), snrs
    stage_snr = small_baseline.fit_info["training_shape_snr_db"]
    assert all(b > a for a, b in zip(stage_snr, stage_snr[1:]))


def test_fit_is_deterministic(example_traces, small_baseline):
    # Stage s depends only on the data, the seed and stages < s: two stages reproduce the first two.
    again = GainShapeRVQ.fit(example_traces, num_codebooks=2, codebook_size=16, iters=5, seed=0)
    assert torch.equal(again.codebooks, small_baseline.codebooks[:2])
    other = GainShapeRVQ.fit(example_traces, num_codebooks=1, codebook_size=16, iters=5, seed=1)
    assert not torch.equal(other.codebooks[0], small_baseline.codebooks[0])


def test_residual_search_in_blocks_matches_one_pass_and_a_beam_of_one(small_baseline, example_traces):
    from codec import rvq
    from codec.baselines import gain_shape_frames

    shapes = gain_shape_frames(torch.as_tensor(example_traces[0])[None])[0].reshape(-1, 40)
    one_pass = rvq.greedy_codes(shapes, small_baseline.codebooks, rows=4096)
    assert torch.equal(rvq.greedy_codes(shapes, small_baseline.codebooks, rows=7), one_pass)
    assert torch.equal(rvq.beam_codes(shapes, small_baseline.codebooks, width=1, rows=7), one_pass)
    residual = shapes.clone()  # each stage's code is the nearest vector to what the earlier stages left
    for q, book in enumerate(small_baseline.codebooks):
        assert torch.equal(torch.cdist(residual, book).argmin(-1), one_pass[q])
        residual -= book[one_pass[q]]
    wide = rvq.beam_codes(shapes, small_baseline.codebooks, width=8)
    error = lambda codes: (shapes - rvq.sum_codes(codes.T, small_baseline.codebooks)).pow(2).sum()
    assert error(wide) <= error(one_pass)
    encoded = small_baseline.encode(example_traces[0])
    assert torch.equal(encoded.codes[0], one_pass)
    decoded = small_baseline.decode(encoded, 4)
    assert decoded.shape == (1, len(example_traces[0])) and decoded.dtype == torch.float64


def test_decode_rejects_bad_k(small_baseline, example_traces):
    encoded = small_baseline.encode(example_traces[0])
    for k in (0, 5, 2.0):
        with pytest.raises(ValueError):
            small_baseline.decode(encoded, k)


def test_kmeans_finds_separated_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = 10 * torch.eye(6)[:4]
    labels = torch.arange(400) % 4
    vectors = centres[labels] + 0.1 * torch.randn(400, 6, generator=generator)
    centroids, index = kmeans(vectors, 4, iters=10, seed=0)
    # Each found cluster holds exactly one true cluster.
    assert len(set(zip(labels.tolist(), index.tolist()))) == 4
    assert torch.cdist(centroids, centres).amin(0).max() < 0.1


def test_kmeans_reseeds_empty_clusters(monkeypatch):
    """Start with all centroids on one point: the others are empty and must be re-seeded."""
    monkeypatch.setattr(baselines, "kmeans_plus_plus", lambda v, c, g: v[:1].repeat(c, 1))
    generator = torch.Generator().manual_seed(1)
    centres = 10 * torch.eye(6)[:4]
    labels = torch.arange(400) % 4
    vectors = centres[labels] + 0.1 * torch.randn(400, 6, generator=generator)
    _, index = kmeans(vectors, 4, iters=10, seed=0)
    assert torch.bincount(index, minlength=4).min() > 0
    assert len(set(zip(labels.tolist(), index.tolist()))) == 4


def test_save_load_roundtrip(small_baseline, example_traces, tmp_path):
    path = tmp_path / "baseline.safetensors"
    small_baseline.save(path)
    loaded = GainShapeRVQ.load(path)
    assert torch.equal(loaded.codebooks, small_baseline.codebooks)
    assert loaded.fit_info == small_baseline.fit_info
    assert torch.equal(loaded.encode(example_traces[1]).codes, small_baseline.encode(example_traces[1]).codes)
    with pytest.raises(CheckpointError, match="missing"):
        GainShapeRVQ.load(tmp_path / "nothing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        GainShapeRVQ.load(tmp_path / "junk.safetensors")


def test_steim2_rounds_floats():
    assert steim2_integers(np.array([0.4, 1.6, -2.6, 7.0])).tolist() == [0, 2, -3, 7]
    with pytest.raises(ValueError):
        steim2_integers(np.array([0.0, 2.0**30]))


def test_steim2_is_lossless_and_compresses_a_real_recording():
    """NL.HGN BHZ from obspy's test data: 40 Hz integer counts, about 5 minutes."""
    import obspy

    from codec.data import obspy_recordings

    path = next(p for p in obspy_recordings() if p.name == "test.mseed")
    trace = obspy.read(str(path))[0]
    samples = trace_to_codec_input(trace)  # already 40 Hz: the counts, as float64
    integers = steim2_integers(samples)
    np.testing.assert_array_equal(integers, trace.data)
    data = steim2_bytes(integers)
    read_back = obspy.read(io.BytesIO(data))[0]
    assert read_back.stats.mseed.encoding == "STEIM2"
    np.testing.assert_array_equal(read_back.data, integers)
    assert len(data) < 4 * len(integers)  # smaller than raw int32
    seconds = len(integers) / 40.0
    assert baselines.steim2_bits_per_second(integers) == pytest.approx(8 * len(data) / seconds)


def test_untrained_identity_skip_codec_is_the_gain_shape_baseline(small_baseline, example_traces):
    """identity_skip + the baseline's codebooks: the same tokens and samples before any training."""
    from codec.model import EQCodec

    config = EQCodecConfig(latent_dim=40, num_codebooks=4, codebook_size=16, hidden_channels=16,
                           residual_layers=2, identity_skip=True)
    codec = EQCodec(config).eval()
    codec.init_codebooks(small_baseline.codebooks)
    x = np.stack(example_traces)
    ours, theirs = codec.encode(x), small_baseline.encode(x)
    assert torch.equal(ours.codes, theirs.codes)
    for k in (1, 4):
        torch.testing.assert_close(codec.decode(ours, k), small_baseline.decode(theirs, k))
    with pytest.raises(ValueError, match="do not fit"):
        codec.init_codebooks(small_baseline.codebooks[:, :8])
    with pytest.raises(ValueError, match="latent_dim == frame_length"):
        EQCodec(EQCodecConfig(latent_dim=32, identity_skip=True))
