"""Fixed-length training examples for the token language model.

    examples = LMExamples(corpus, length=64, random_crop=True, seed=0)
    item = examples[i]        # {"tokens": LongTensor [K+1, 64], "mask": BoolTensor [64]}
    loader = torch.utils.data.DataLoader(examples, batch_size=16, shuffle=True, collate_fn=collate)

A window of T frames gives ceil(T / length) items, so one pass over the
examples covers about as many frames as the corpus holds:
  random_crop=False: the items are the window's consecutive chunks
      [0, length), [length, 2 length), ... (every frame exactly once; for evaluation);
  random_crop=True: each item is a crop of `length` frames at a random start
      (drawn from seed, epoch and item index: reproducible; call set_epoch(e)
      between epochs for new crops).
Windows (or last chunks) shorter than `length` are right-padded with token 0
and mask False; mask True marks real frames.

gain_reference_frames=P or (P_min, P_max): shift each item's gain stream so
that the loudest of its first P frames sits at the codec's reference level
(the gain_reference_level of the corpus's codec config), P drawn per item from [P_min, P_max]. A corpus
window's gains are relative to its loudest frame, usually the event; but when
an LM continues a trace, the context is encoded alone and its own loudest frame
sits at the reference level. Without the shift, an LM never sees quiet noise at
the reference level and reads a quiet context as an event (and the window's
scale would tell it, before the event, how loud the event will be).
"""

from __future__ import annotations

import numpy as np
import torch

from codec.checkpoints import codec_config_from_dict
from codec.gain import GAIN_LEVELS

from .schema import to_streams


class LMExamples(torch.utils.data.Dataset):
    """torch Dataset of {"tokens": LongTensor [K+1, length], "mask": BoolTensor [length]} (layout: STREAM_LAYOUT)."""

    def __init__(self, corpus, length: int, *, random_crop: bool = True, seed: int = 0,
                 gain_reference_frames: int | tuple[int, int] | None = None):
        if not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"length must be a positive number of frames, got {length!r}")
        if isinstance(gain_reference_frames, (int, np.integer)):
            gain_reference_frames = (int(gain_reference_frames),) * 2
        if gain_reference_frames is not None and not 1 <= gain_reference_frames[0] <= gain_reference_frames[1]:
            raise ValueError(f"gain_reference_frames must be P >= 1 or (P_min, P_max), got {gain_reference_frames!r}")
        self.gain_reference_frames = gain_reference_frames
        self.reference_level = codec_config_from_dict(corpus.metadata["codec"]["config"]).gain_reference_level
        self.length = int(length)
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0
        self.num_streams = corpus.num_codebooks + 1
        self._rows = corpus.dataset.with_format("numpy", columns=["codes", "gain"])
        frames = corpus.dataset.select_columns(["num_frames"]).with_format("numpy")[:]["num_frames"]
        self._frames = frames = np.asarray(frames, dtype=np.int64)  # [W] frames per window
        chunks = np.maximum(1, -(-frames // self.length))  # ceil(T / length), at least 1
        self._first_item = np.concatenate([[0], np.cumsum(chunks)])  # [W + 1]

    def __len__(self) -> int:
        return int(self._first_item[-1])

    def set_epoch(self, epoch: int) -> None:
        """New random crops for another epoch (random_crop=True)."""
        self.epoch = int(epoch)

    def window_of(self, index: int) -> tuple[int, int]:
        """(row of the corpus, chunk number within it) of item `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range 0..{len(self) - 1}")
        window = int(np.searchsorted(self._first_item, index, side="right") - 1)
        return window, index - int(self._first_item[window])

    def __getitem__(self, index: int) -> dict:
        window, chunk = self.window_of(int(index))
        frames = int(self._frames[window])
        if self.random_crop:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            start = int(rng.integers(0, frames - self.length + 1)) if frames > self.length else 0
        else:
            start = chunk * self.length
        row = self._rows[window]
        streams = to_streams(row["codes"], row["gain"])[:, start:start + self.length]  # [K+1, <= length]
        if self.gain_reference_frames is not None:
            lo, hi = self.gain_reference_frames
            frames = lo if lo == hi else int(np.random.default_rng([self.seed, self.epoch, int(index), 1]).integers(lo, hi + 1))
            streams[0] = rereference_gain(streams[0], frames, self.reference_level)
        tokens = torch.zeros(self.num_streams, self.length, dtype=torch.long)
        mask = torch.zeros(self.length, dtype=torch.bool)
        tokens[:, :streams.shape[1]] = streams
        mask[:streams.shape[1]] = True
        return {"tokens": tokens, "mask": mask}


def rereference_gain(gain: torch.Tensor, frames: int, reference_level: int) -> torch.Tensor:
    """[T] gain levels -> the same shifted so the loudest of the first `frames` is at `reference_level`.

    Level 0 (digital silence, or below the gain's range) stays 0; shifted
    levels are clipped to 1..255.
    """
    gain = torch.as_tensor(gain)
    head = gain[:frames]
    if not (head > 0).any():
        return gain
    shifted = (gain + (reference_level - int(head.max()))).clamp(1, GAIN_LEVELS - 1)
    return torch.where(gain > 0, shifted, torch.zeros_like(gain))


def collate(items: list[dict]) -> dict:
    """Stack items: {"tokens": LongTensor [B, K+1, length], "mask": BoolTensor [B, length]}."""
    return {"tokens": torch.stack([item["tokens"] for item in items]),
            "mask": torch.stack([item["mask"] for item in items])}
