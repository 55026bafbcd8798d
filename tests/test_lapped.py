"""The MDCT (codec.mdct) and the lapped gain-shape RVQ coder (codec.lapped): exactness, continuity, rate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from codec import mdct as mdctlib
from codec.baselines import GainShapeRVQ, gain_shape_frames
from codec.lapped import GainQuantizer, LappedGainShapeRVQ, fit_residual_codebooks, lapped_shapes
from codec.metrics import frame_edge_ratio, snr_db

torch.set_num_threads(1)

LENGTHS = [1, 2, 17, 39, 40, 41, 79, 80, 81, 123, 400, 1001]


# ---------------------------------------------------------------------- MDCT
@pytest.mark.parametrize("length", LENGTHS)
def test_mdct_perfect_reconstruction(length):
    x = torch.randn(3, length, dtype=torch.float64, generator=torch.Generator().manual_seed(length))
    coeffs = mdctlib.mdct(x)
    assert coeffs.shape == (3, math.ceil(length / 40), 40)  # no extra frame
    y = mdctlib.imdct(coeffs, length)
    assert y.shape == x.shape
    assert (y - x).abs().max() < 1e-11


@pytest.mark.parametrize("length", [40, 80, 400, 4000])
def test_mdct_is_orthogonal(length):
    """Parseval: the lapped transform with its start / stop windows keeps the energy."""
    x = torch.randn(2, length, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    coeffs = mdctlib.mdct(x)
    assert torch.allclose(coeffs.pow(2).sum((1, 2)), x.pow(2).sum(-1), rtol=1e-12)


def test_mdct_interior_frame_matches_the_textbook_formula():
    """X_t[k] = sqrt(2/M) sum_n w[n] x[40 t - 20 + n] cos(pi/M (n + 1/2 + M/2)(k + 1/2)), sine window."""
    M, t = 40, 3
    x = torch.randn(1, 400, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    segment = x[0, 40 * t - 20 : 40 * t + 60].numpy()
    n, k = np.arange(2 * M)[:, None], np.arange(M)[None, :]
    w = np.sin(np.pi * (np.arange(2 * M) + 0.5) / (2 * M))
    expected = np.sqrt(2 / M) * ((w * segment)[:, None] * np.cos(np.pi / M * (n + 0.5 + M / 2) * (k + 0.5))).sum(0)
    assert np.allclose(mdctlib.mdct(x)[0, t].numpy(), expected, atol=1e-12)
    assert np.allclose(w[:M] ** 2 + w[M:] ** 2, 1)  # Princen-Bradley


def test_mdct_and_imdct_are_linear():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 2, 333, dtype=torch.float64, generator=g)
    a, b = 2.5, -0.75
    assert torch.allclose(mdctlib.mdct(a * x + b * y), a * mdctlib.mdct(x) + b * mdctlib.mdct(y), atol=1e-12)
    cx, cy = mdctlib.mdct(x), mdctlib.mdct(y)
    assert torch.allclose(mdctlib.imdct(a * cx + b * cy, 333), a * mdctlib.imdct(cx, 333) + b * mdctlib.imdct(cy, 333),
                          atol=1e-12)


def test_imdct_rejects_a_length_the_frames_cannot_hold():
    with pytest.raises(ValueError):
        mdctlib.imdct(torch.zeros(1, 3, 40, dtype=torch.float64), 200)


def test_a_coefficient_reaches_half_a_second_into_each_neighbour_only():
    """Token t describes samples [40 t - 20, 40 t + 60): the synthesis of one interior coefficient."""
    coeffs = torch.zeros(1, 10, 40, dtype=torch.float64)
    coeffs[0, 4, 7] = 1.0
    y = mdctlib.imdct(coeffs, 400)[0]
    support = torch.nonzero(y.abs() > 1e-12).flatten()
    assert support.min() >= 160 - 20 and support.max() < 200 + 20 + 40


# ---------------------------------------------------------------------- gain quantizer
def test_gain_quantizer_round_trip_within_half_a_step():
    q = GainQuantizer()
    assert q.reference_level == 202 and q.floor_db == pytest.approx(-150.75)
    scale = torch.tensor([3.0, 1e-4])
    db = torch.linspace(q.floor_db + 0.01, 39.7, 5001, dtype=torch.float64)
    rms = scale[:, None].double() * 10 ** (db / 20)
    levels = q.quantize(rms, scale)
    assert levels.min() >= 1 and levels.max() <= 255
    back = q.dequantize(levels, scale)
    error_db = 20 * torch.log10(back / rms)
    assert error_db.abs().max() <= q.step_db / 2 + 1e-9
    assert (q.quantize(scale[:, None].double(), scale) == q.reference_level).all()


def test_gain_quantizer_silence_and_clipping():
    q = GainQuantizer()
    scale = torch.tensor([1.0])
    rms = torch.tensor([[0.0, 10 ** (-160 / 20), 10 ** (60 / 20)]], dtype=torch.float64)
    levels = q.quantize(rms, scale)
    assert levels.tolist() == [[0, 0, 255]]  # silence, below range, clipped at +40 dB
    assert q.dequantize(levels, scale)[0, :2].tolist() == [0.0, 0.0]


def test_shapes_are_divided_by_the_quantized_gain():
    x = np.random.default_rng(4).normal(size=4000) * np.repeat(10.0 ** np.linspace(0, 3, 100), 40)
    shapes, gain, scale, _ = lapped_shapes(x)
    rms_db = 20 * torch.log10(shapes[0].double().pow(2).mean(-1).sqrt())
    assert rms_db.abs().max() <= GainQuantizer().step_db / 2 + 1e-6  # unit RMS within half a step
    assert gain[0].max() == GainQuantizer().reference_level


# ---------------------------------------------------------------------- fitted coders
def synthetic_traces(n: int, length: int, seed: int, wander: float = 0.03) -> list[np.ndarray]:
    """Low-pass noise (0-6 Hz, like microseism + local events) with a slowly varying envelope
    (a random walk of `wander` nepers per sample in log amplitude; 0: stationary)."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    sos = butter(4, 6.0, fs=40.0, output="sos")
    traces = []
    for _ in range(n):
        x = sosfilt(sos, rng.normal(size=length + 200))[200:]
        envelope = np.exp(np.cumsum(rng.normal(scale=wander, size=length)))
        traces.append(1e3 * x * envelope)
    return traces


def real_traces() -> list[np.ndarray]:
    import obspy

    from codec.preprocess import trace_to_codec_input

    return [trace_to_codec_input(tr) for tr in obspy.read()]


@pytest.fixture(scope="module")
def coders():
    """Lapped and block coder fitted with the same budget: 4 x 32 entries, 10 iterations, the same traces."""
    torch.manual_seed(0)
    train = synthetic_traces(24, 2400, seed=10) + real_traces()
    lapped = LappedGainShapeRVQ.fit(train, num_codebooks=4, codebook_size=32, iters=10)
    shapes = [gain_shape_frames(torch.as_tensor(x)[None])[0][0] for x in train]
    books, _ = fit_residual_codebooks(torch.cat(shapes), 4, 32, 10)
    return lapped, GainShapeRVQ(books)


def test_bits_per_second(coders):
    lapped, block = coders
    assert lapped.bits_per_second == [5.0 * k + 8 for k in range(1, 5)]  # 32 entries: 5 bits
    assert lapped.bits_per_second == block.bits_per_second


@pytest.mark.parametrize("length", [2400, 2401, 2439])
def test_encoded_shapes_and_length(coders, length):
    lapped, _ = coders
    x = synthetic_traces(2, length, seed=5)
    encoded = lapped.encode(np.stack(x))
    T = math.ceil(length / 40)
    assert encoded.codes.shape == (2, 4, T) and encoded.gain.shape == (2, T)
    assert lapped.decode(encoded, 2).shape == (2, length)


def test_decode_is_the_inverse_transform_of_the_summed_codewords_times_the_gain(coders):
    """The decoder's one-lookup sum of the first k codewords (embedding_bag) against the definition: the
    codewords added one by one, times the dequantized gain, inverse-transformed."""
    lapped, _ = coders
    length = 1000
    encoded = lapped.encode(np.stack(synthetic_traces(2, length, seed=6)))
    for k in (1, 3, 4):
        shapes = sum(lapped.codebooks[q][encoded.codes[:, q]].double() for q in range(k))  # [B, T, 40]
        coefficients = shapes * lapped.quantizer.dequantize(encoded.gain, encoded.scale)[..., None]
        expected = mdctlib.imdct(coefficients, length) + encoded.offset.double()[:, None]
        assert torch.allclose(lapped.decode(encoded, k), expected, rtol=1e-9, atol=1e-9 * expected.abs().max())


def test_decoded_output_has_no_steps_at_frame_edges(coders):
    lapped, block = coders
    x = synthetic_traces(1, 20000, seed=20, wander=0.0)[0]  # stationary: 500 frame edges
    assert frame_edge_ratio(x) == pytest.approx(1.0, abs=0.1)
    for k in (1, 2, 4):
        lapped_ratio = frame_edge_ratio(lapped.decode(lapped.encode(x), k)[0].numpy())
        block_ratio = frame_edge_ratio(block.decode(block.encode(x), k)[0].numpy())
        assert 0.8 < lapped_ratio < 1.2, (k, lapped_ratio)
        assert block_ratio > 1.5, (k, block_ratio)


def test_frame_edge_ratio_sees_steps():
    smooth = np.sin(2 * np.pi * 0.3 * np.arange(4000) / 40)
    assert frame_edge_ratio(smooth) == pytest.approx(1.0, abs=0.01)
    steps = smooth + np.repeat(np.random.default_rng(0).normal(size=100), 40)
    assert frame_edge_ratio(steps) > 5


def test_snr_grows_with_k(coders):
    lapped, _ = coders
    traces = synthetic_traces(6, 2000, seed=30) + real_traces()
    snr = np.array([[snr_db(x, lapped.decode(e, k)[0].numpy()) for k in range(1, 5)]
                    for x, e in ((x, lapped.encode(x)) for x in traces)])
    medians = np.median(snr, 0)
    assert np.all(np.diff(medians) > 0.5), medians
    assert np.all(np.diff(snr, axis=1) > -0.5)  # and for (almost) every trace


def test_chunked_encode_and_decode_equal_one_pass(coders):
    lapped, _ = coders
    x = synthetic_traces(1, 40 * 500 + 13, seed=40)[0]
    one = lapped.encode(x)
    chunked = lapped.encode(x, chunk_frames=7)
    assert torch.equal(one.codes, chunked.codes) and torch.equal(one.gain, chunked.gain)
    assert torch.equal(one.scale, chunked.scale) and torch.equal(one.offset, chunked.offset)
    assert torch.allclose(lapped.decode(one, 3), lapped.decode(one, 3, chunk_frames=11), rtol=0, atol=1e-9)


def test_batch_equals_single_traces(coders):
    lapped, _ = coders
    x = np.stack(synthetic_traces(3, 1234, seed=50))
    batch = lapped.encode(x)
    for i in range(3):
        single = lapped.encode(x[i])
        assert torch.equal(batch.codes[i], single.codes[0]) and torch.equal(batch.gain[i], single.gain[0])
        assert torch.allclose(lapped.decode(batch, 4)[i], lapped.decode(single, 4)[0])


def test_silent_frames_decode_to_silence(coders):
    lapped, _ = coders
    signal = synthetic_traces(1, 1600, seed=60)[0]
    x = np.concatenate([np.zeros(400), signal - signal.mean()])  # zero mean: the zeros stay zeros
    encoded = lapped.encode(x)
    # frame t covers samples [40 t - 20, 40 t + 60): frames 0..8 see only zeros
    assert (encoded.gain[0, :9] == 0).all() and (encoded.gain[0, 9:] > 0).all()
    y = lapped.decode(encoded, 4)[0].numpy() - encoded.offset.item()
    assert np.abs(y[:340]).max() == 0


def test_fixed_scale_puts_the_loudest_frame_above_the_reference(coders):
    """A forecast's gains are relative to its context's scale; louder frames use the headroom."""
    lapped, _ = coders
    x = synthetic_traces(1, 2000, seed=70)[0]
    own = lapped.encode(x)
    quieter = lapped.encode(x, scale=own.scale / 10)  # 20 dB of the headroom used
    steps = round(20 / lapped.quantizer.step_db)
    assert abs(int(quieter.gain.max()) - (lapped.quantizer.reference_level + steps)) <= 1
    assert snr_db(x, lapped.decode(quieter, 4)[0].numpy()) == pytest.approx(
        snr_db(x, lapped.decode(own, 4)[0].numpy()), abs=0.5)


def test_save_and_load_round_trip(coders, tmp_path):
    lapped, _ = coders
    path = tmp_path / "lapped.safetensors"
    lapped.save(path)
    loaded = LappedGainShapeRVQ.load(path)
    assert torch.equal(loaded.codebooks, lapped.codebooks) and loaded.quantizer == lapped.quantizer
    assert loaded.fit_info == lapped.fit_info
    x = synthetic_traces(1, 800, seed=80)[0]
    assert torch.equal(loaded.decode(loaded.encode(x), 4), lapped.decode(lapped.encode(x), 4))


def test_load_rejects_another_format(tmp_path):
    from codec.model import CheckpointError

    path = tmp_path / "block.safetensors"
    GainShapeRVQ(torch.zeros(1, 4, 40)).save(path)
    with pytest.raises(CheckpointError):
        LappedGainShapeRVQ.load(path)


# ---------------------------------------------------------------------- beam search
def coefficient_error(lapped, x, encoded, k):
    """Per-frame squared error of the coded MDCT coefficients with the first k codebooks: [T]."""
    from codec import rvq

    shapes, gain, scale, _ = lapped_shapes(x, lapped.quantizer)
    assert torch.equal(gain, encoded.gain)
    G = lapped.quantizer.dequantize(gain, scale)[0, :, None]
    coded = rvq.sum_codes(encoded.codes[0, :k].T, lapped.codebooks).double()
    return ((shapes[0].double() - coded) * G).pow(2).sum(-1)


def test_beam_width_1_is_the_greedy_search(coders):
    from codec import rvq

    lapped, _ = coders
    x = synthetic_traces(1, 4000, seed=90)[0]
    greedy = lapped.encode(x)
    assert torch.equal(lapped.encode(x, beam_width=1).codes, greedy.codes)
    shapes, _, _, _ = lapped_shapes(x, lapped.quantizer)
    beam1 = rvq.beam_codes(shapes.reshape(-1, 40), lapped.codebooks, 1)  # the beam search itself at width 1
    assert torch.equal(beam1.reshape(-1, 1, shapes.shape[1]).transpose(0, 1), greedy.codes)


def test_a_wider_beam_lowers_the_coefficient_error_with_all_codebooks(coders):
    lapped, _ = coders
    x = np.concatenate(synthetic_traces(2, 8000, seed=91) + real_traces())
    errors = {w: coefficient_error(lapped, x, lapped.encode(x, beam_width=w), 4) for w in (1, 2, 4, 16)}
    totals = [errors[w].sum().item() for w in (1, 2, 4, 16)]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(totals, totals[1:])), totals
    assert totals[-1] < 0.97 * totals[0], totals  # and by a margin: the search matters
    # frame by frame a beam is not guaranteed to keep the greedy path; it almost always does as well
    assert (errors[16] <= errors[1] * (1 + 1e-6) + 1e-12).double().mean() > 0.99
    # the samples' error is the coefficients' (orthonormal transform)
    encoded = lapped.encode(x, beam_width=4)
    sample_error = ((x - encoded.offset.item()) - (lapped.decode(encoded, 4)[0].numpy() - encoded.offset.item()))
    assert np.sum(sample_error ** 2) == pytest.approx(errors[4].sum().item(), rel=1e-6)


def test_beam_width_must_be_a_positive_integer(coders):
    lapped, _ = coders
    for width in (0, -1, 2.0, True):
        with pytest.raises(ValueError):
            lapped.encode(np.ones(400), beam_width=width)


# ---------------------------------------------------------------------- checkpoint folders (EQcodec v2)
def test_save_pretrained_and_load_codec_round_trip(coders, tmp_path):
    from codec import load_codec
    from codec.checkpoints import codec_config_from_dict

    lapped, _ = coders
    lapped.save_pretrained(tmp_path / "v2")
    loaded = load_codec(tmp_path / "v2")
    assert isinstance(loaded, LappedGainShapeRVQ)
    assert loaded.identity() == lapped.identity() and loaded.config == lapped.config
    assert torch.equal(loaded.codebooks, lapped.codebooks) and loaded.fit_info == lapped.fit_info
    config = codec_config_from_dict(json.loads((tmp_path / "v2" / "config.json").read_text()))
    assert config.gain_reference_level == lapped.quantizer.reference_level
    assert config.bits_per_second == lapped.bits_per_second


def test_identity_changes_with_codebooks_and_gain_quantizer(coders):
    lapped, _ = coders
    books = lapped.codebooks.clone()
    books[0, 0, 0] += 1e-3
    assert LappedGainShapeRVQ(books, lapped.quantizer).identity() != lapped.identity()
    other_step = GainQuantizer(step_db=0.5)
    assert LappedGainShapeRVQ(lapped.codebooks, other_step).identity() != lapped.identity()


def test_load_codec_refuses_broken_folders(coders, tmp_path):
    from codec import CheckpointError, load_codec

    with pytest.raises(CheckpointError, match="missing"):
        load_codec(tmp_path / "nothing")
    lapped, _ = coders
    lapped.save_pretrained(tmp_path / "v2")
    config = json.loads((tmp_path / "v2" / "config.json").read_text())
    (tmp_path / "v2" / "config.json").write_text(json.dumps({**config, "model_type": "wav2vec"}))
    with pytest.raises(CheckpointError, match="unknown codec model_type"):
        load_codec(tmp_path / "v2")
    (tmp_path / "v2" / "config.json").write_text(json.dumps({**config, "num_codebooks": 6}))
    with pytest.raises(CheckpointError, match="shape"):
        load_codec(tmp_path / "v2")
    (tmp_path / "v2" / "config.json").write_text(json.dumps(config))
    (tmp_path / "v2" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_codec(tmp_path / "v2")


def test_check_num_codebooks(coders):
    lapped, _ = coders
    assert lapped.check_num_codebooks(None) == 4 and lapped.check_num_codebooks(2) == 2
    for bad in (0, 5, 1.5, True, "2"):
        with pytest.raises(ValueError):
            lapped.check_num_codebooks(bad)
