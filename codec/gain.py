"""Per-frame 8-bit log-RMS gain: how the codec spans seismic amplitude ranges.

Seismic amplitudes span more than six orders of magnitude, often inside one
window (quiet noise, then an earthquake). Every 1-s frame therefore carries an
8-bit gain level g_t, its log2 RMS relative to a per-trace reference, in steps
of 1/4 octave (1.5 dB):

    g_t = clip(round(4 * log2(rms_t / scale)) + 192, 0, 255)
    G_t = scale * 2 ** ((g_t - 192) / 4)

`scale` is the largest frame RMS of the trace (one float per trace), so the
loudest frame sits at level 192: 48 octaves (289 dB) below it and 16 octaves
(96 dB) of headroom above it, which a forecast may need when an event arrives
after a quiet context. The networks see each frame divided by G_t (unit RMS
within +-9 %), so quiet seconds and the event are coded with the same
relative precision. The gain costs 8 bits/s, counted in every reported rate.
"""

from __future__ import annotations

import torch

GAIN_LEVELS = 256
STEPS_PER_OCTAVE = 4
REFERENCE_LEVEL = 192
GAIN_BITS_PER_FRAME = 8


def frame_rms(frames: torch.Tensor) -> torch.Tensor:
    """[..., T, F] frames -> [..., T] RMS (float64)."""
    return frames.double().pow(2).mean(-1).sqrt()


def choose_scale(rms: torch.Tensor) -> torch.Tensor:
    """[B, T] frame RMS -> [B] reference amplitude (largest frame RMS, 1 if all zero)."""
    scale = rms.amax(-1)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_gain(rms: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[B, T] frame RMS and [B] scale -> [B, T] gain levels (long, 0..255)."""
    ratio = (rms / scale[..., None]).clamp_min(1e-300)
    levels = torch.round(STEPS_PER_OCTAVE * torch.log2(ratio)) + REFERENCE_LEVEL
    levels = torch.where(rms > 0, levels, torch.zeros_like(levels))
    return levels.clamp(0, GAIN_LEVELS - 1).long()


def dequantize_gain(levels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[B, T] gain levels and [B] scale -> [B, T] linear gains G_t (float64)."""
    exponent = (levels.double() - REFERENCE_LEVEL) / STEPS_PER_OCTAVE
    return scale.double()[..., None] * torch.exp2(exponent)


def gain_context(levels: torch.Tensor) -> torch.Tensor:
    """[B, T] gain levels -> [B, 2, T] conditioning for the networks.

    The change in gain to the previous and to the next frame, in octaves / 8,
    clipped to [-1, 1]: it tells the networks how neighbouring unit-RMS frames
    relate in amplitude, which the per-frame normalization hides.
    """
    octaves = levels.float() / STEPS_PER_OCTAVE
    to_prev = torch.zeros_like(octaves)
    to_next = torch.zeros_like(octaves)
    to_prev[..., 1:] = octaves[..., 1:] - octaves[..., :-1]
    to_next[..., :-1] = octaves[..., 1:] - octaves[..., :-1]
    return (torch.stack([to_prev, to_next], dim=-2) / 8).clamp(-1, 1)
