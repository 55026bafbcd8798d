"""Delayed interleaving of parallel token streams (the MusicGen "delay pattern").

The LM reads S parallel streams per 1-s frame (stream 0: the codec's gain
level, streams 1..8: the 8 codebooks). Predicting all S tokens of a frame at
once would make them independent given the past; predicting them one after
the other would make sequences S times longer. The delay pattern sits in
between: stream s is shifted right by s steps,

    step:      0    1    2    3   ...
    stream 0:  a0   a1   a2   a3  ...        (gain level of frame t at step t)
    stream 1:  .    b0   b1   b2  ...        (codebook 1 of frame t at step t + 1)
    stream 2:  .    .    c0   c1  ...        (codebook 2 of frame t at step t + 2)

so at step t + s, when the LM predicts token s of frame t, it has already
seen the coarser tokens 0..s-1 of that frame. T frames take T + S - 1 steps;
the corners where a stream has nothing yet (or nothing any more) hold the
stream's `empty` token ("." above).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class DelayPattern:
    """Build and revert the delayed layout of S streams.

    empty_tokens: one id per stream, written where that stream holds no frame.
    """

    def __init__(self, empty_tokens: Sequence[int]):
        self.empty_tokens = [int(token) for token in empty_tokens]
        self.num_streams = len(self.empty_tokens)

    def delayed_length(self, num_frames: int) -> int:
        """Steps needed for `num_frames` frames: T + S - 1."""
        return num_frames + self.num_streams - 1

    def build(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, S, T] frame-aligned tokens -> [B, S, T + S - 1] delayed tokens.

        delayed[:, s, t + s] = codes[:, s, t]; every other entry of stream s is empty_tokens[s].
        """
        self._check_streams(codes)
        B, S, T = codes.shape
        empty = torch.tensor(self.empty_tokens, device=codes.device, dtype=codes.dtype)
        delayed = empty.view(1, S, 1).expand(B, S, self.delayed_length(T)).clone()
        for s in range(S):
            delayed[:, s, s : s + T] = codes[:, s]
        return delayed

    def revert(self, delayed: torch.Tensor) -> torch.Tensor:
        """[B, S, L] delayed tokens -> [B, S, L - S + 1] frame-aligned tokens (inverse of build)."""
        self._check_streams(delayed)
        T = delayed.shape[-1] - self.num_streams + 1
        if T < 0:
            raise ValueError(f"a delayed sequence of {self.num_streams} streams needs at least "
                             f"{self.num_streams - 1} steps, got {delayed.shape[-1]}")
        return torch.stack([delayed[:, s, s : s + T] for s in range(self.num_streams)], dim=1)

    def _check_streams(self, tokens: torch.Tensor) -> None:
        if tokens.ndim != 3 or tokens.shape[1] != self.num_streams:
            raise ValueError(f"expected tokens [B, {self.num_streams}, T], got shape {tuple(tokens.shape)}")
