"""The delay pattern: build/revert round trip, layout, and one-step columns."""

from __future__ import annotations

import pytest
import torch

from lm.delay import DelayPattern


@pytest.mark.parametrize("seed", range(20))
def test_revert_inverts_build_for_random_shapes(seed):
    gen = torch.Generator().manual_seed(seed)
    B, S, T = (int(v) for v in torch.randint(1, 7, (3,), generator=gen))
    vocab = [int(v) for v in torch.randint(2, 50, (S,), generator=gen)]
    pattern = DelayPattern(vocab)  # empty token of stream s = vocab[s]
    codes = torch.stack([torch.randint(0, v, (B, T), generator=gen) for v in vocab], dim=1)
    delayed = pattern.build(codes)
    assert delayed.shape == (B, S, T + S - 1)
    assert torch.equal(pattern.revert(delayed), codes)


def test_layout_shifts_stream_s_by_s_steps_and_fills_the_rest():
    S, T = 4, 5
    empty = [100, 101, 102, 103]
    pattern = DelayPattern(empty)
    codes = torch.arange(S * T).view(1, S, T)
    delayed = pattern.build(codes)[0]
    for s in range(S):
        for step in range(T + S - 1):
            frame = pattern.frame_at(s, step)
            expected = codes[0, s, frame] if 0 <= frame < T else empty[s]
            assert delayed[s, step] == expected
            if 0 <= frame < T:
                assert pattern.step_of(s, frame) == step


def test_build_rejects_wrong_number_of_streams():
    with pytest.raises(ValueError, match=r"\[B, 3, T\]"):
        DelayPattern([5, 5, 5]).build(torch.zeros(1, 2, 4, dtype=torch.long))
