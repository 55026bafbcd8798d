"""EQcodec: a neural codec that turns 40 Hz seismic waveforms into 8 tokens per second.

    from codec import EQCodec
    codec = EQCodec.from_pretrained()          # the shipped default, no network
    encoded = codec.encode(samples_40hz)       # codes [B, 8, T], 8-bit gains [B, T]
    samples = codec.decode(encoded, 4)         # from the first 4 codebooks: 48 bits/s

obspy users: `codec.api.encode_stream`, `codec.api.reconstruct_stream`.
"""

import importlib

#: Public names and the submodule that defines them. They are imported on first
#: use, so that `eqcodec --help` (codec.cli) does not pay for importing torch.
_EXPORTS = {"EQCodec": ".model", "EQCodecConfig": ".model", "EncodedWaveform": ".model",
            "CheckpointError": ".model", "InputError": ".preprocess"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
