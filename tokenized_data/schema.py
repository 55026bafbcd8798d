"""What a token corpus holds: its columns, its metadata, and the LM's view of one window.

One row = one window of one channel. Columns (datasets.Features below):

    network, station, location, channel   str     SEED identity of the channel
    starttime      str       ISO UTC time of the window's first sample (40 Hz grid)
    sampling_rate  float64   the recording's original sampling rate (Hz)
    num_frames     int32     T: frames of 1 s in the window
    codes          [K, T]    int16 codebook indices 0..1023 (a list of K lists)
    gain           [T]       uint8 8-bit log-RMS gain levels (the codec's gain quantizer)
    scale, offset  float64   the codec's per-window side information
    source_file    str       the file (or SDS day file) the window comes from
    event_key      str       what `TokenCorpus.split(by="event")` keeps together
    segment        int32     index of the gap-free segment within the source
    window         int32     index of the window within its segment
    augmentation   str       what tokenized_data.augment applied to this copy ("" = the recording as it is)

Corpus metadata (codec identity and config, preprocessing, source, counts)
is a JSON object stored in the dataset's `info.description`, so it travels
with the Arrow files through `save_to_disk` / `load_from_disk`.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from datasets import Features, List, Value

from codec.gain import GAIN_LEVELS

#: Bumped when columns or metadata change meaning.
FORMAT = "eqcodec-tokens/2"

FEATURES = Features({
    "network": Value("string"),
    "station": Value("string"),
    "location": Value("string"),
    "channel": Value("string"),
    "starttime": Value("string"),
    "sampling_rate": Value("float64"),
    "num_frames": Value("int32"),
    "codes": List(List(Value("int16"))),
    "gain": List(Value("uint8")),
    "scale": Value("float64"),
    "offset": Value("float64"),
    "source_file": Value("string"),
    "event_key": Value("string"),
    "segment": Value("int32"),
    "window": Value("int32"),
    "augmentation": Value("string"),
})

STREAM_LAYOUT = """Token streams of one window, as the language model sees them: LongTensor [K+1, T].

    row 0        gain level g_t, 0..255 (the codec's log-RMS level of frame t)
    rows 1..K    residual-VQ codebook indices of stages 1..K, 0..codebook_size-1
                 (row 1 = the coarsest stage; decoding from the first k rows is valid)
    column t     frame t: seconds t..t+1 after the window's starttime

`to_streams(codes, gain)` builds it, `from_streams(streams)` takes it apart.
The vocabulary of row r is `stream_vocab_sizes(K, codebook_size)[r]`.
"""

#: Row of the gain level in the LM's streams, and its vocabulary size.
GAIN_ROW = 0
GAIN_VOCAB_SIZE = GAIN_LEVELS


def stream_vocab_sizes(num_codebooks: int, codebook_size: int) -> list[int]:
    """Vocabulary size of each of the K+1 stream rows: [GAIN_LEVELS (256), C, C, ..., C]."""
    return [GAIN_VOCAB_SIZE] + [codebook_size] * num_codebooks


def to_streams(codes, gain) -> torch.Tensor:
    """codes [K, T] and gain [T] (numpy or torch) -> LongTensor [K+1, T] (see STREAM_LAYOUT).

    Leading batch dimensions are kept: codes [B, K, T], gain [B, T] -> [B, K+1, T].
    """
    codes = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes).long()
    gain = torch.as_tensor(np.asarray(gain) if not torch.is_tensor(gain) else gain).long()
    if codes.shape[:-2] != gain.shape[:-1] or codes.shape[-1] != gain.shape[-1]:
        raise ValueError(f"codes {tuple(codes.shape)} and gain {tuple(gain.shape)} do not match "
                         "(expected [K, T] and [T])")
    return torch.cat([gain.unsqueeze(-2), codes], dim=-2)


def from_streams(streams) -> tuple[torch.Tensor, torch.Tensor]:
    """LongTensor [K+1, T] -> (codes LongTensor [K, T], gain LongTensor [T]); batch dims kept."""
    streams = torch.as_tensor(streams).long()
    if streams.ndim < 2 or streams.shape[-2] < 2:
        raise ValueError(f"streams must be [K+1, T] with K >= 1, got {tuple(streams.shape)}")
    return streams[..., GAIN_ROW + 1:, :], streams[..., GAIN_ROW, :]


def metadata_to_text(metadata: dict) -> str:
    """The JSON stored in `dataset.info.description`."""
    return json.dumps(metadata, indent=1, sort_keys=True)


def metadata_from_text(text: str | None, source: str) -> dict:
    """Parse `dataset.info.description`; a clear error when it is not an eqcodec corpus."""
    from codec.preprocess import InputError

    try:
        metadata = json.loads(text or "")
    except json.JSONDecodeError:
        metadata = None
    if isinstance(metadata, dict) and str(metadata.get("format", "")).startswith("eqcodec-tokens/") \
            and metadata["format"] != FORMAT:
        raise InputError(f"{source}: a token corpus of an older eqcodec (format {metadata['format']}, this "
                         f"version reads {FORMAT}); retokenize its waveforms with `eqcodec tokenize`")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise InputError(f"{source}: not an eqcodec token corpus (its dataset info carries no "
                         f"'{FORMAT}' metadata); make one with `eqcodec tokenize`")
    return metadata
