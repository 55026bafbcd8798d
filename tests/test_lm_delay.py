"""The delay pattern (lm/delay.py): the layout of its docstring, what a step has seen, and the round trip."""

from __future__ import annotations

import pytest
import torch

from lm.delay import DelayPattern


def test_layout_is_the_docstring_table():
    """stream s shifted right by s steps, the corners filled with that stream's empty token."""
    a, b, c = [10, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33]
    pattern = DelayPattern([-1, -2, -3])
    delayed = pattern.build(torch.tensor([[a, b, c]]))
    assert delayed.tolist() == [[
        [10, 11, 12, 13, -1, -1],
        [-2, 20, 21, 22, 23, -2],
        [-3, -3, 30, 31, 32, 33],
    ]]
    assert pattern.delayed_length(4) == 6


def test_each_token_follows_the_coarser_tokens_of_its_frame_and_precedes_the_finer_ones():
    """A model reading steps 0..j-1 to predict step j has seen tokens 0..s-1 of the frame whose
    token s it predicts, and no token s..S-1 of that frame nor any token of a later frame in stream s."""
    B, S, T = 2, 9, 7
    empty = [-1 - s for s in range(S)]  # distinct from every token
    codes = torch.arange(B * S * T).view(B, S, T)  # every token unique
    delayed = DelayPattern(empty).build(codes)
    for batch in range(B):
        step_of = {}
        for s in range(S):
            for j, token in enumerate(delayed[batch, s].tolist()):
                if token >= 0:
                    assert token not in step_of
                    step_of[token] = j
        assert len(step_of) == S * T  # every token once, nothing else but empty tokens
        for s in range(S):
            assert set(delayed[batch, s].tolist()) - set(codes[batch, s].tolist()) <= {empty[s]}
            for t in range(T):
                j = step_of[int(codes[batch, s, t])]
                seen = set(delayed[batch, :, :j].flatten().tolist())
                assert {int(codes[batch, q, t]) for q in range(s)} <= seen, (s, t)
                assert not {int(codes[batch, q, t]) for q in range(s, S)} & seen, (s, t)
                assert not {int(codes[batch, s, u]) for u in range(t, T)} & seen, (s, t)
                if t:
                    assert step_of[int(codes[batch, s, t - 1])] == j - 1  # one frame per step in each stream


@pytest.mark.parametrize("seed", range(20))
def test_revert_returns_the_built_tokens_exactly(seed):
    gen = torch.Generator().manual_seed(seed)
    B, S = (int(v) for v in torch.randint(1, 7, (2,), generator=gen))
    T = int(torch.randint(0, 7, (1,), generator=gen))  # T = 0: S - 1 steps of empty tokens only
    vocab = [int(v) for v in torch.randint(2, 50, (S,), generator=gen)]
    pattern = DelayPattern(vocab)  # empty token of stream s = vocab[s], outside its 0..vocab-1 tokens
    codes = torch.stack([torch.randint(0, v, (B, T), generator=gen) for v in vocab], dim=1)
    delayed = pattern.build(codes)
    assert delayed.shape == (B, S, T + S - 1) and delayed.dtype == codes.dtype
    for s in range(S):  # the corners hold the empty token, the rest the stream's tokens in order
        assert (delayed[:, s, :s] == vocab[s]).all() and (delayed[:, s, s + T :] == vocab[s]).all()
        assert torch.equal(delayed[:, s, s : s + T], codes[:, s])
    reverted = pattern.revert(delayed)
    assert reverted.dtype == codes.dtype and torch.equal(reverted, codes)


def test_build_leaves_its_input_unchanged():
    codes = torch.randint(0, 5, (2, 3, 4))
    before = codes.clone()
    DelayPattern([5, 6, 7]).build(codes)
    assert torch.equal(codes, before)


def test_wrong_shapes_are_refused():
    pattern = DelayPattern([5, 5, 5])
    with pytest.raises(ValueError, match=r"\[B, 3, T\]"):
        pattern.build(torch.zeros(1, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, 3, T\]"):
        pattern.build(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 steps"):
        pattern.revert(torch.zeros(1, 3, 1, dtype=torch.long))
