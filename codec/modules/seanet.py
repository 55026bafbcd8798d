"""SEANet-style convolutional encoder and decoder (as in Encodec), run at the frame rate.

Encodec downsamples audio with a chain of strided convolutions. At 40 Hz with
a 40-sample hop, that chain spends most of its time on tiny convolutions at
the full sample rate; measured on a 2-core CPU it was about 5x too slow for the
codec's speed target. Here the strides are collapsed into one step: each 1-s
frame of 40 samples is a 40-channel vector (a strided convolution with
kernel = stride = 40), and the residual convolution stack runs at 1 frame/s,
where the work is a few dense matrix products per frame.

All convolutions are non-causal with zero padding, so the output for a frame
depends only on its neighbours within the receptive field: long traces can be
processed in overlapping chunks with the same result as one pass.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualUnit(nn.Module):
    """x + conv1x1(elu(conv3_dilated(elu(x)))), with a bottleneck of half the channels."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        hidden = channels // 2
        self.block = nn.Sequential(
            nn.ELU(),
            nn.Conv1d(channels, hidden, 3, dilation=dilation, padding=dilation),
            nn.ELU(),
            nn.Conv1d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class FrameConvNet(nn.Module):
    """[B, C_in, T] -> [B, C_out, T]: conv3, residual units with dilations 1, 2, 4, ..., ELU, conv1x1.

    Used as encoder (C_in = frame samples + conditioning, C_out = latent) and
    as decoder (C_in = latent + conditioning, C_out = frame samples).
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, residual_layers: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(in_channels, hidden_channels, 3, padding=1)]
        layers += [ResidualUnit(hidden_channels, dilation=2**j) for j in range(residual_layers)]
        layers += [nn.ELU(), nn.Conv1d(hidden_channels, out_channels, 1)]
        self.model = nn.Sequential(*layers)
        #: Frames on each side that influence one output frame.
        self.receptive_radius = 1 + sum(2**j for j in range(residual_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
