"""Loading a codec checkpoint of either kind: the one entry point the upper layers use.

    codec = load_codec()              # the shipped default, codec/pretrained (no network)
    codec = load_codec("my/codec")    # a folder written by save_pretrained

A checkpoint folder holds config.json and model.safetensors; config.json's
`model_type` says which class reads it:

    "eqcodec-lapped"  codec.lapped.LappedGainShapeRVQ  EQcodec v2: MDCT frames, gain-shape residual VQ
    "eqcodec"         codec.model.EQCodec              EQcodec v1: 1-s blocks, convolutional networks

Both give encode(x) -> EncodedWaveform, decode(encoded, k), identity(),
check_num_codebooks(k), bits_per_second and config (with sampling_rate,
frame_length, num_codebooks, codebook_size, gain_reference_level,
trace_bits_per_second).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from .errors import CheckpointError
from .lapped import MODEL_TYPE as LAPPED_MODEL_TYPE
from .lapped import LappedCodecConfig, LappedGainShapeRVQ
from .model import CONFIG_NAME, EQCodec, EQCodecConfig

#: The shipped default codec.
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
#: The v1 neural codec, kept to read and compare with v1 token corpora.
PRETRAINED_V1_DIR = Path(__file__).parent / "pretrained_v1"

Codec = Union[LappedGainShapeRVQ, EQCodec]
CodecConfig = Union[LappedCodecConfig, EQCodecConfig]

CLASSES = {LAPPED_MODEL_TYPE: LappedGainShapeRVQ, "eqcodec": EQCodec}


def load_codec(directory: str | Path | None = None) -> Codec:
    """The codec saved in `directory` (None: the shipped default), of the class its config.json names."""
    directory = Path(directory) if directory is not None else PRETRAINED_DIR
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: codec checkpoint file is missing")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type", "eqcodec")
    except (ValueError, AttributeError) as err:
        raise CheckpointError(f"{config_path}: not a valid codec config ({err})") from None
    if model_type not in CLASSES:
        raise CheckpointError(f"{config_path}: unknown codec model_type {model_type!r} "
                              f"(known: {', '.join(sorted(CLASSES))})")
    return CLASSES[model_type].from_pretrained(directory)


def codec_config_from_dict(values: dict) -> CodecConfig:
    """A codec config saved as a dict (config.json, a corpus's metadata) as its config class."""
    if values.get("model_type", "eqcodec") == LAPPED_MODEL_TYPE:
        return LappedCodecConfig.from_dict(values)
    return EQCodecConfig.from_dict(values)


def codec_version(config: CodecConfig) -> str:
    """'v2' for the lapped codec, 'v1' for the neural block codec: for messages and cards."""
    return "v2" if isinstance(config, LappedCodecConfig) else "v1"


#: Identities of codecs this project shipped, for messages about tokens of another codec.
SHIPPED_CODECS = {
    "d4eeb4b2864fd3e7": "EQcodec v1, the neural block codec (now codec/pretrained_v1)",
}


def retokenize_hint(codec_id: str) -> str:
    """A sentence for errors about tokens (corpus, LM, index) of codec `codec_id` that the codec given cannot read."""
    known = SHIPPED_CODECS.get(codec_id)
    if known is None:
        return "pass --codec with the checkpoint that made them"
    return (f"they come from {known}: retokenize the waveforms with the current default "
            "(`eqcodec tokenize FILES --out CORPUS`, then retrain or fine-tune the LM / rebuild the index), "
            "or pass --codec codec/pretrained_v1 to keep using v1 tokens")
