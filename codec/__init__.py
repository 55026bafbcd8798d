"""EQcodec: a neural codec that turns 40 Hz seismic waveforms into 8 tokens per second.

    from codec import EQCodec
    codec = EQCodec.from_pretrained()          # the shipped default, no network
    encoded = codec.encode(samples_40hz)       # codes [B, 8, T], 8-bit gains [B, T]
    samples = codec.decode(encoded, 4)         # from the first 4 codebooks: 48 bits/s

obspy users: `codec.api.encode_stream`, `codec.api.reconstruct_stream`.
"""

from .model import CheckpointError, EncodedWaveform, EQCodec, EQCodecConfig
from .preprocess import InputError

__all__ = ["EQCodec", "EQCodecConfig", "EncodedWaveform", "CheckpointError", "InputError"]
