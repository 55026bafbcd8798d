"""EQcodec: a codec that turns 40 Hz seismic waveforms into 8 tokens per second. The bottom layer.

    from codec import load_codec
    codec = load_codec()                       # the shipped default (EQcodec v2), no network
    encoded = codec.encode(samples_40hz)       # codes [B, 8, T], 8-bit gains [B, T]
    samples = codec.decode(encoded, 4)         # from the first 4 codebooks: 48 bits/s

obspy users: `codec.api.encode_stream`, `codec.api.reconstruct_stream`.

Modules: checkpoints (load_codec: either kind from its folder), lapped
(EQcodec v2: LappedGainShapeRVQ, LappedCodecConfig, the gain quantizer), mdct
(the lapped transform), rvq (residual VQ search), model (EQcodec v1: EQCodec,
EQCodecConfig, the neural block codec), modules (v1's network blocks), gain
(v1's 8-bit frame gains), preprocess (checks, resampling, contiguous pieces), api (obspy
Streams <-> tokens), reconstruct (`eqcodec reconstruct`), metrics (SNR,
segmental SNR, frame-edge ratio), baselines (gain-shape RVQ, Steim2), data
(development corpora and their event split), fit (fit_lapped_codec: `eqcodec
train-codec`, EQcodec v2 fitted on recordings), train (TrainCodecConfig,
train_codec: v1, `--kind neural`), trainer (the training core shared with lm.train), files (inputs;
atomic outputs), errors (InputError, CheckpointError, UsageError).
"""

from .checkpoints import load_codec
from .errors import CheckpointError, InputError, UsageError
from .lapped import LappedCodecConfig, LappedGainShapeRVQ
from .model import EncodedWaveform, EQCodec, EQCodecConfig

__all__ = ["load_codec", "LappedGainShapeRVQ", "LappedCodecConfig", "EQCodec", "EQCodecConfig", "EncodedWaveform",
           "CheckpointError", "InputError", "UsageError"]
