"""Surprisal: what a trace's own past did not predict, frame by frame, in the token LM's terms.

frame_surprisal(samples_40hz, lm, codec) -> [T]: the LM's negative
log-likelihood (nats) of each 1-s frame's tokens given the frames before
it, summed over the S = K + 1 streams (the gain level and the K codebooks).
Quiet, stationary noise costs few nats per frame; an onset the past did not
announce costs many. `eqcodec deconvolve FILE --output surprisal` writes it
as a 1-Hz trace (sample t = frame t, starting at the frame's start).

frame_scores(...) -> FrameScores: the same pass, per stream, and the LM's
predictive distribution of each frame's gain level beside the observed
level. As an onset detector the summed surprisal is poor: the K codebook
streams' NLL is high and noise-like in every frame and buries the gain's
rise. What detects onsets is the gain alone, one-sided (a rise, not a
fall): FrameScores.gain_rise_db, the dB by which a frame's level exceeds a
high quantile of the level the LM predicted for it (an STA/LTA whose LTA is
the LM's forecast). onset_function reads it on several frame grids a
fraction of a frame apart (grid_scores: the same trace with its first
samples dropped), so an onset is placed to better than the 1-s frame.
`eqcodec evaluate deconvolution --onsets` scores these against analyst P
picks beside obspy's STA/LTA and picks the quantile and the number of grids
on the training split of nc-events (ONSET_QUANTILE, ONSET_GRIDS record that choice).

How (teacher forcing, no sampling):
1. The samples are prepared as token corpora are (linear trend removed,
   codec.preprocess.detrend_and_resample) and encoded once by the codec:
   codes [K, T] and gain [T] (lm's stream layout: tokenized_data.to_streams).
2. Windows of L = lm.config.max_frames frames slide with hop L - P
   (P = REFERENCE_FRAMES): each window's gain stream is shifted so that the
   loudest of its first P frames sits at the codec's reference level, as the
   LM's training crops are (tokenized_data.examples.rereference_gain), so
   the gains a frame is read with come from its past, not from a louder
   frame ahead.
3. One forward pass per window over the delayed streams (lm/delay.py: BOS,
   then stream s shifted by s steps; SeismicLM.prepare_batch) gives the
   cross-entropy of every token; reverting the delay puts them back on their
   frames. The first window scores its frames from frame 0 (predicted from
   BOS alone); every later window scores its frames P .. L - 1, so each frame
   is scored once, with at least P frames of context (the first P frames of a
   trace with less, and with a gain reference that includes a few frames
   after them).

What a frame's score may still see of later samples: the codec's encoder
reads a few neighbouring frames (its receptive field), so the surprisal of
frame t may rise a frame early at a sharp onset; the trend removed and the
codec's per-trace scale come from the whole trace, but the per-window gain
reference takes that scale out again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from codec.errors import InputError
from codec.preprocess import FRAME_LENGTH, SAMPLING_RATE, detrend_and_resample

#: Frames at the start of each window that set its gain reference (the LM's shortest context).
REFERENCE_FRAMES = 10
#: Windows per forward pass (bounds memory).
WINDOWS_PER_BATCH = 16
#: The predictive quantile onset_function compares the observed gain with: the one the nc-events
#: training split picks (`eqcodec evaluate deconvolution --nc-events DIR --onsets` reports its choice).
ONSET_QUANTILE = 0.99
#: Frame grids onset_function reads the trace on (a frame / ONSET_GRIDS apart): the training split's choice too.
ONSET_GRIDS = 4


def token_nll(lm, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, S, T] frame-aligned tokens -> [B, S, T] negative log-likelihood (nats) of each token, teacher-forced.

    mask [B, T]: True where a frame is real; the others are laid out as empty
    (as training pads), so they neither are scored (0) nor inform the real ones.
    """
    return _teacher_forced(lm, frames, mask)[0]


def _teacher_forced(lm, frames: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """token_nll's pass -> (nll [B, S, T], log-probabilities of the gain stream's levels [B, T, gain vocabulary])."""
    inputs, labels = lm.prepare_batch(frames, mask)  # [B, S, T + S - 1] each, BOS first in inputs
    output = lm(inputs.to(lm.device))
    nll = torch.stack([F.cross_entropy(logits.float().transpose(1, 2), labels[:, s].to(lm.device),
                                       ignore_index=-100, reduction="none")
                       for s, logits in enumerate(output.logits)], dim=1)  # [B, S, T + S - 1]
    # The gain is stream 0, delayed by 0 steps: step t predicts frame t's level.
    gain = F.log_softmax(output.logits[0].float(), dim=-1)[:, : frames.shape[-1]]
    return lm.delay.revert(nll.cpu()), gain.cpu()  # token of stream s, frame t sat at step t + s


@dataclass
class FrameScores:
    """Per 1-s frame, what the LM expected of it given the frames before (see frame_scores).

    Gain levels are those of the window a frame was scored in (its gain
    reference, step 2 of the module docstring); every figure below compares
    the observed level with the predicted ones of the same window, so the
    reference drops out.
    """

    nll: np.ndarray  # [S, T] nats per token: stream 0 the gain level, 1..K the codebooks
    gain_level: np.ndarray  # [T] observed gain level (int)
    gain_probabilities: np.ndarray  # [T, G] P(gain level = g | past) for g = 0 .. G - 1
    gain_step_db: float  # dB per gain level (the codec's quantizer)

    @property
    def surprisal(self) -> np.ndarray:
        """[T] nats per frame, all streams summed (frame_surprisal)."""
        return self.nll.sum(axis=0)

    @property
    def gain_tail(self) -> np.ndarray:
        """[T] P(gain level >= the observed one | past): small where the frame is louder than expected."""
        # Summed from the top, not 1 - CDF: far in the tail that difference would cancel to 0.
        upper = np.cumsum(self.gain_probabilities[:, ::-1], axis=1)[:, ::-1]
        tail = np.clip(np.take_along_axis(upper, self.gain_level[:, None], axis=1)[:, 0], 0.0, 1.0)
        return np.where(self.gain_level > 0, tail, 1.0)  # every level is >= 0: exactly 1, not a rounded sum

    @property
    def gain_exceedance(self) -> np.ndarray:
        """[T] -log P(gain >= observed | past): the gain's surprisal, counted only when it is louder than expected.

        One-sided because an onset is a rise: a frame quieter than predicted (a
        coda decaying faster than expected) costs nats too, but is no onset.
        """
        return -np.log(np.clip(self.gain_tail, 1e-300, 1.0))

    def gain_rise_db(self, quantile: float = 0.5) -> np.ndarray:
        """[T] dB by which the observed gain exceeds the predicted gain's `quantile` (0.5: its median).

        An STA/LTA in the LM's terms: the frame's level (a 1-s STA) over the
        level its past announced; a higher quantile discounts frames whose
        level the LM was unsure of.
        """
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        # The predicted quantile: the first level whose CDF reaches it.
        predicted = (np.cumsum(self.gain_probabilities, axis=1) < quantile).sum(axis=1)
        return (self.gain_level - predicted) * self.gain_step_db


@torch.inference_mode()
def frame_surprisal(samples_40hz: np.ndarray, lm, codec, *, reference_frames: int = REFERENCE_FRAMES,
                    per_stream: bool = False, label: str = "trace") -> np.ndarray:
    """[T] nats per 1-s frame (all streams summed) of samples [N] at 40 Hz, T = ceil(N / 40); see the module docstring.

    per_stream: return [S, T] instead, stream 0 the gain level, 1..K the codebooks.
    lm: a SeismicLM; codec: the codec whose tokens it was trained on (CheckpointError otherwise).
    """
    scores = frame_scores(samples_40hz, lm, codec, reference_frames=reference_frames, label=label)
    return scores.nll if per_stream else scores.surprisal


@torch.inference_mode()
def frame_scores(samples_40hz: np.ndarray, lm, codec, *, reference_frames: int = REFERENCE_FRAMES,
                 label: str = "trace") -> FrameScores:
    """FrameScores of samples [N] at 40 Hz (T = ceil(N / 40) frames) from the passes of the module docstring.

    The gain's predictive distribution of a frame is over the levels of its
    window's reference (step 2); the tail probability and the rise are
    differences to the observed level of the same window, so that shift drops out.
    """
    from lm.generate import check_lm_codec
    from tokenized_data import to_streams
    from tokenized_data.examples import rereference_gain

    check_lm_codec(lm, codec)
    x = np.asarray(samples_40hz, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2 * FRAME_LENGTH:
        raise InputError(f"{label}: surprisal needs at least 2 s of samples at 40 Hz, got {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(f"{label}: samples hold NaN or infinite values")
    if np.all(x == x[0]):
        raise InputError(f"{label}: trace is constant; nothing to score")
    prepared, _ = detrend_and_resample(x, SAMPLING_RATE, label)
    encoded = codec.encode(prepared)
    streams = to_streams(encoded.codes[0], encoded.gain[0]).cpu()  # [S, T]
    T = streams.shape[-1]
    length = int(lm.config.max_frames)
    reference = max(1, min(int(reference_frames), length // 2))
    hop = length - reference
    starts = list(range(0, max(T - reference, 1), hop))
    level = int(codec.config.gain_reference_level)

    nll_out = np.full((streams.shape[0], T), np.nan)
    observed_out = np.zeros(T, dtype=np.int64)
    probabilities_out = np.full((T, lm.config.vocab_sizes[0]), np.nan)
    was_training = lm.training
    lm.eval()
    try:
        for first in range(0, len(starts), WINDOWS_PER_BATCH):
            batch = starts[first : first + WINDOWS_PER_BATCH]
            width = min(length, T - batch[0])
            frames = torch.zeros(len(batch), streams.shape[0], width, dtype=torch.long)  # [B, S, width]
            mask = torch.zeros(len(batch), width, dtype=torch.bool)
            valid = []
            for i, a in enumerate(batch):
                window = streams[:, a : a + width].clone()
                window[0] = rereference_gain(window[0], reference, level)
                frames[i, :, : window.shape[-1]] = window
                mask[i, : window.shape[-1]] = True
                valid.append(window.shape[-1])
            nll, gain_logp = _teacher_forced(lm, frames, mask)  # [B, S, width], [B, width, G]
            probabilities = gain_logp.double().exp().numpy()
            for i, a in enumerate(batch):
                scored = slice(0 if a == 0 else reference, valid[i])
                into = slice(a + scored.start, a + valid[i])
                nll_out[:, into] = nll[i, :, scored].numpy()
                observed_out[into], probabilities_out[into] = frames[i, 0, scored].numpy(), probabilities[i, scored]
    finally:
        lm.train(was_training)
    return FrameScores(nll_out, observed_out, probabilities_out, float(codec.config.gain_step_db))


def grid_scores(samples_40hz: np.ndarray, lm, codec, *, grids: int = ONSET_GRIDS,
                label: str = "trace") -> list[FrameScores]:
    """FrameScores of the samples on `grids` frame grids, grid j starting j / grids of a frame (j FRAME_LENGTH //
    grids samples) after the trace's start: the samples without their first j FRAME_LENGTH // grids.

    The codec's frames are 1 s long, so one grid places an onset only to
    within a frame; the later grids' frames straddle the first grid's frame
    edges.
    """
    if grids < 1 or FRAME_LENGTH % grids:
        raise ValueError(f"grids must divide the frame's {FRAME_LENGTH} samples, got {grids}")
    x = np.asarray(samples_40hz)
    needed = 2 * FRAME_LENGTH + (grids - 1) * (FRAME_LENGTH // grids)
    if x.ndim != 1 or len(x) < needed:
        raise InputError(f"{label}: onsets need at least {needed / SAMPLING_RATE:g} s of samples at 40 Hz, "
                         f"got {x.shape}")
    step = FRAME_LENGTH // grids
    return [frame_scores(x[j * step :], lm, codec, label=label if j == 0 else f"{label} (grid {j})")
            for j in range(grids)]


def interleave_grids(values: list[np.ndarray]) -> np.ndarray:
    """[T_j] values of each of n grids (grid_scores order, T_j <= T_0) -> [n T_0], grid j's frame t at sample
    n t + j (NaN where a later grid ends early): sample i stands for the frame centred (i / n + 1/2) s after
    the trace's start."""
    n, T = len(values), len(values[0])
    out = np.full(n * T, np.nan)
    for j, grid in enumerate(values):
        if len(grid) > T:
            raise ValueError(f"grid {j} ({len(grid)} frames) is longer than grid 0 ({T})")
        out[j : n * len(grid) : n] = grid
    return out


def onset_function(samples_40hz: np.ndarray, lm, codec, *, quantile: float = ONSET_QUANTILE,
                   grids: int = ONSET_GRIDS, label: str = "trace") -> np.ndarray:
    """[grids T] at `grids` Hz: dB by which each frame's gain exceeds the LM's predicted `quantile` of it, on
    `grids` frame grids (grid_scores, interleave_grids); sample i is the frame centred at (i / grids + 1/2) s.

    The onset characteristic function of `eqcodec evaluate deconvolution --onsets`: the codebook streams
    and frames quieter than expected are left out (see FrameScores.gain_rise_db).
    """
    scores = grid_scores(samples_40hz, lm, codec, grids=grids, label=label)
    return interleave_grids([s.gain_rise_db(quantile) for s in scores])
