"""The shipped codecs (v2 lapped, v1 neural): tokens, side information, amplitude handling, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codec import CheckpointError, EQCodec, EQCodecConfig, load_codec
from codec import gain as gainlib
from codec.api import decode_trace, encode_trace, reconstruct_stream
from codec.metrics import segmental_snr_db, snr_db


@pytest.fixture(scope="module", params=["v2", "v1"])
def any_codec(request, codec, codec_v1):
    """Each shipped codec in turn: the default (v2) and codec/pretrained_v1."""
    return codec if request.param == "v2" else codec_v1


def test_bit_rates_count_the_gain():
    config = EQCodecConfig()
    assert config.bits_per_second == [10 * k + 8 for k in range(1, 9)]
    # the per-trace scale and offset (two float64) weigh on short traces only
    assert config.trace_bits_per_second(8, 90.0) == pytest.approx(88 + 128 / 90.0)
    assert config.trace_bits_per_second(1, 86400.0) - 18 < 0.002


def test_encode_shapes_and_token_ranges(any_codec, example_stream):
    x = example_stream[0].data.astype(np.float64)[:1234]
    encoded = any_codec.encode(x)
    T = int(np.ceil(1234 / 40))
    assert encoded.codes.shape == (1, 8, T)
    assert encoded.gain.shape == (1, T)
    assert encoded.codes.min() >= 0 and encoded.codes.max() < 1024
    assert encoded.gain.min() >= 0 and encoded.gain.max() < 256
    for k in (1, 4, 8):
        assert any_codec.decode(encoded, k).shape == (1, 1234)


def test_gain_levels_round_trip_within_half_a_step():
    rms = torch.tensor([[1e-6, 3e-3, 1.0, 42.0, 7e5]], dtype=torch.float64)
    scale = gainlib.choose_scale(rms)
    levels = gainlib.quantize_gain(rms, scale)
    assert levels.max() == gainlib.REFERENCE_LEVEL
    ratio = gainlib.dequantize_gain(levels, scale) / rms
    assert torch.all(torch.abs(torch.log2(ratio)) <= 0.5 / gainlib.STEPS_PER_OCTAVE + 1e-9)


def test_normalized_frames_have_unit_rms_across_six_orders_of_magnitude(codec_v1):
    rng = np.random.default_rng(0)
    x = np.concatenate([1e-3 * rng.standard_normal(400), 1e4 * rng.standard_normal(400)])
    unit, _, _, _ = codec_v1.normalize(torch.from_numpy(x)[None])
    rms = unit.pow(2).mean(1).sqrt()
    assert torch.all((rms > 0.9) & (rms < 1.1))


def test_quiet_seconds_reconstruct_as_well_as_the_event(any_codec, example_stream):
    """Real recording with 1e-4 quiet noise spliced before it: both parts keep their relative quality."""
    event = codec_input(example_stream[0])
    event = event - event.mean()  # one DC level throughout, as in a continuous recording
    rng = np.random.default_rng(1)
    quiet = np.convolve(rng.standard_normal(1200), np.ones(4) / 4, mode="same") * np.abs(event).max() * 1e-4
    x = np.concatenate([quiet, event])
    y = any_codec.decode(any_codec.encode(x), 8)[0].numpy()
    quiet_snr = segmental_snr_db(x[:1200], y[:1200])
    event_snr = segmental_snr_db(x[1200:], y[1200:])
    assert quiet_snr > 8 and event_snr > 8, (quiet_snr, event_snr)


def test_quality_improves_with_codebooks(any_codec, example_stream):
    x = codec_input(example_stream[0])
    encoded = any_codec.encode(x)
    snrs = [snr_db(x, any_codec.decode(encoded, k)[0].numpy()) for k in (1, 2, 4, 8)]
    assert snrs == sorted(snrs), snrs
    assert snrs[-1] > 10, snrs  # shipped any_codec: 13.2 dB on this trace


def test_trace_api_keeps_ids_start_times_and_units(any_codec, example_stream):
    trace = example_stream[1]  # 100 Hz
    encoded = encode_trace(any_codec, trace)
    out = decode_trace(any_codec, encoded, 8)
    assert out.id == trace.id
    assert out.stats.starttime == trace.stats.starttime
    assert out.stats.sampling_rate == 40.0
    assert out.stats.npts == int(round(trace.stats.npts * 0.4))
    # Physical units: same amplitude scale as the input (not normalized).
    ratio = np.std(out.data) / np.std(trace.data)
    assert 0.5 < ratio < 1.5
    stream = reconstruct_stream(any_codec, example_stream, 4)
    assert [tr.id for tr in stream] == [tr.id for tr in example_stream]


def test_save_and_load_round_trip(tmp_path, any_codec):
    any_codec.save_pretrained(tmp_path / "ckpt")
    loaded = load_codec(tmp_path / "ckpt")
    assert type(loaded) is type(any_codec) and loaded.identity() == any_codec.identity()
    x = np.random.default_rng(2).standard_normal(800)
    assert torch.equal(loaded.encode(x).codes, any_codec.encode(x).codes)


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        EQCodec.from_pretrained(tmp_path / "nowhere")


def test_corrupt_checkpoint_is_reported(tmp_path, codec_v1):
    codec_v1.save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        EQCodec.from_pretrained(tmp_path / "ckpt")


def test_checkpoint_of_another_kind_is_reported(tmp_path, codec_v1):
    codec_v1.save_pretrained(tmp_path / "ckpt")
    config = tmp_path / "ckpt" / "config.json"
    config.write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="not a valid EQcodec config"):
        EQCodec.from_pretrained(tmp_path / "ckpt")


def test_beam_search_lowers_the_full_rate_error(codec_v1, example_stream):
    """A beam of code sequences finds codes at least as good at k = 8 as the stage-by-stage search."""
    x = np.concatenate([codec_input(trace) for trace in example_stream])
    with torch.inference_mode():
        latent = codec_v1._encode_frames(*codec_v1.normalize(torch.as_tensor(x)[None])[:2])
        codebooks = codec_v1.quantizer.codebooks
        greedy = codec_v1._nearest_codes(latent, codebooks)
        beam = codec_v1._beam_codes(latent, codebooks, 8)
        assert torch.equal(codec_v1._beam_codes(latent, codebooks, 1), greedy)  # a beam of one is the greedy search

    def error(codes):  # [T] squared error of the k = 8 latent reconstruction
        return (latent - codec_v1._codes_to_latents(codes, codebooks)).pow(2).sum(1)[0]

    assert (beam != greedy).any()
    assert error(beam).sum() < 0.95 * error(greedy).sum()
    encoded = codec_v1.encode(x, beam_width=8)
    assert torch.equal(encoded.codes, beam)
    assert snr_db(x, codec_v1.decode(encoded, 8)[0].numpy()) > snr_db(x, codec_v1.decode(codec_v1.encode(x), 8)[0].numpy())


def test_bad_beam_width_is_refused(any_codec):
    for width in (0, -1, 2.5):
        with pytest.raises(ValueError, match="beam_width"):
            any_codec.encode(np.random.default_rng(3).standard_normal(400), beam_width=width)


def test_num_codebooks_outside_range_is_refused(any_codec):
    encoded = any_codec.encode(np.random.default_rng(3).standard_normal(400))
    for k in (0, 9, 2.5):
        with pytest.raises(ValueError, match="1..8"):
            any_codec.decode(encoded, k)


def codec_input(trace) -> np.ndarray:
    from codec.preprocess import trace_to_codec_input

    return trace_to_codec_input(trace)
