"""Decoding keeps nothing above a slower source's Nyquist (EncodedWaveform.source_rate).

A 20 Hz recording resampled to the codec's 40 Hz holds nothing between 10 and 20 Hz; its quantization noise
there is removed on decoding: by every decoder (v2 lapped, v1 neural, the block baseline), through the API
(the trace's rate) and through a corpus (its rows' sampling_rate; augmented copies excepted).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch


def twenty_hz_trace():
    """obspy's example event (100 Hz, Z) low-passed and decimated to 20 Hz: a real 20 Hz recording."""
    import obspy

    trace = obspy.read().select(component="Z")[0].copy()
    trace.detrend("linear")
    trace.resample(20.0)
    return trace


def power_above(samples: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples - samples.mean())) ** 2
    return float(spectrum[np.fft.rfftfreq(len(samples), 1 / 40.0) > hz].sum() / spectrum.sum())


@pytest.mark.parametrize("which", ["v2", "v1", "block"])
def test_every_decoder_drops_the_band_above_the_sources_nyquist(which, codec, codec_v1):
    from codec.baselines import GainShapeRVQ
    from codec.metrics import snr_db
    from codec.preprocess import trace_to_codec_input

    if which == "block":  # tiny codebooks fitted on white shapes: broadband noise in every frame
        from codec.lapped import fit_residual_codebooks

        books, _ = fit_residual_codebooks(torch.randn(4000, 40,
                                                      generator=torch.Generator().manual_seed(0)), 2, 16, 3, seed=0)
        coder = GainShapeRVQ(books, {})
    else:
        coder = codec if which == "v2" else codec_v1
    x = trace_to_codec_input(twenty_hz_trace())
    assert power_above(x, 10.5) < 1e-3  # the input: next to nothing above 10 Hz
    encoded = coder.encode(x)
    full = coder.decode(encoded, 2)[0].numpy()
    encoded.source_rate = 20.0
    limited = coder.decode(encoded, 2)[0].numpy()
    assert power_above(full, 10.5) > 1e-3  # quantization noise in the empty band
    # the lapped transform's coefficients are not a brick wall: a little leaks past 10 Hz, far below the input's
    assert power_above(limited, 10.5) < 0.1 * min(power_above(full, 10.5), power_above(x, 10.5))
    assert snr_db(x, limited) >= snr_db(x, full) - 1e-9  # only noise was removed
    assert abs(limited.mean() - full.mean()) < 1e-3 * x.std()  # the level is kept
    encoded.source_rate = 100.0  # a faster source: the full band
    np.testing.assert_allclose(coder.decode(encoded, 2)[0].numpy(), full)
    assert encoded[0].source_rate == 100.0  # selecting traces keeps it


def test_reconstruct_and_detokenize_use_the_sources_rate(codec, tmp_path):
    import obspy

    from codec.api import reconstruct_stream
    from tokenized_data import load_tokenized, tokenize
    from tokenized_data.detokenize import detokenize

    trace = twenty_hz_trace()
    decoded = reconstruct_stream(codec, obspy.Stream([trace]), 8)[0].data
    encoded = codec.encode(decoded)
    assert power_above(decoded, 10.5) < 0.1 * power_above(codec.decode(encoded, 8)[0].numpy(), 10.5)
    trace.write(str(tmp_path / "slow.mseed"), format="MSEED")
    tokenize([str(tmp_path / "slow.mseed")], tmp_path / "corpus", num_proc=1, progress=False)
    corpus = load_tokenized(tmp_path / "corpus")
    assert set(corpus.dataset["sampling_rate"]) == {20.0}
    (written,) = detokenize(corpus, codec, tmp_path / "out", progress=False)
    for tr in obspy.read(str(written)):
        assert power_above(tr.data.astype(np.float64), 10.5) < 0.1 * power_above(
            codec.decode(codec.encode(tr.data.astype(np.float64)), 8)[0].numpy(), 10.5)


def test_lm_continuations_of_a_slower_channel_stay_in_its_band(codec, tiny_lm_dir):
    import obspy

    from lm.generate import continue_array, generate_continuations
    from lm.model import load_lm

    lm = load_lm(tiny_lm_dir)
    trace = twenty_hz_trace()
    (continued,) = generate_continuations(obspy.Stream([trace]), lm, codec, context_seconds=20, seconds=8, seed=0)
    slow = continued[0].data
    from codec.preprocess import trace_to_codec_input

    x = trace_to_codec_input(trace)
    full = continue_array(x, lm, codec, 20, 8, seed=0)[0]  # the same, told nothing of the rate
    assert power_above(full, 10.5) > 1e-3  # a random LM's tokens fill the whole band
    assert power_above(slow, 10.5) < 0.1 * power_above(full, 10.5)
    told = continue_array(x, lm, codec, 20, 8, seed=0, source_rate=20.0)[0]  # the array API, told the rate
    assert power_above(told, 10.5) < 0.1 * power_above(full, 10.5)
