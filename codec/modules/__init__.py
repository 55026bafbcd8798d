"""Neural building blocks of the codec."""

from .seanet import FrameConvNet, ResidualUnit

__all__ = ["FrameConvNet", "ResidualUnit"]
