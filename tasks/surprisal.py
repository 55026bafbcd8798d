"""Surprisal: what a trace's own past did not predict, frame by frame, in the token LM's terms.

frame_surprisal(samples_40hz, lm, codec) -> [T]: the LM's negative
log-likelihood (nats) of each 1-s frame's tokens given the frames before
it, summed over the S = K + 1 streams (the gain level and the K codebooks).
Quiet, stationary noise costs few nats per frame; an onset the past did not
announce costs many. `eqcodec deconvolve FILE --output surprisal` writes it
as a 1-Hz trace (sample t = frame t, starting at the frame's start), and
`eqcodec evaluate deconvolution --onsets` scores it as an onset detector
against analyst P picks beside obspy's STA/LTA.

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

import numpy as np
import torch
from torch.nn import functional as F

from codec.errors import InputError
from codec.preprocess import FRAME_LENGTH, SAMPLING_RATE, detrend_and_resample

#: Frames at the start of each window that set its gain reference (the LM's shortest context).
REFERENCE_FRAMES = 10
#: Windows per forward pass (bounds memory).
WINDOWS_PER_BATCH = 16


def token_nll(lm, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, S, T] frame-aligned tokens -> [B, S, T] negative log-likelihood (nats) of each token, teacher-forced.

    mask [B, T]: True where a frame is real; the others are laid out as empty
    (as training pads), so they neither are scored (0) nor inform the real ones.
    """
    inputs, labels = lm.prepare_batch(frames, mask)  # [B, S, T + S - 1] each, BOS first in inputs
    output = lm(inputs.to(lm.device))
    nll = torch.stack([F.cross_entropy(logits.float().transpose(1, 2), labels[:, s].to(lm.device),
                                       ignore_index=-100, reduction="none")
                       for s, logits in enumerate(output.logits)], dim=1)  # [B, S, T + S - 1]
    return lm.delay.revert(nll.cpu())  # token of stream s, frame t sat at step t + s


@torch.inference_mode()
def frame_surprisal(samples_40hz: np.ndarray, lm, codec, *, reference_frames: int = REFERENCE_FRAMES,
                    per_stream: bool = False, label: str = "trace") -> np.ndarray:
    """[T] nats per 1-s frame (all streams summed) of samples [N] at 40 Hz, T = ceil(N / 40); see the module docstring.

    per_stream: return [S, T] instead, stream 0 the gain level, 1..K the codebooks.
    lm: a SeismicLM; codec: the codec whose tokens it was trained on (CheckpointError otherwise).
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

    surprisal = np.full((streams.shape[0], T), np.nan)
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
            nll = token_nll(lm, frames, mask).numpy()  # [B, S, width]
            for i, a in enumerate(batch):
                scored_from = 0 if a == 0 else reference
                surprisal[:, a + scored_from : a + valid[i]] = nll[i, :, scored_from : valid[i]]
    finally:
        lm.train(was_training)
    return surprisal if per_stream else surprisal.sum(axis=0)
