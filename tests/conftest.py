"""Shared fixtures: small real recordings from obspy's package and the shipped codec."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", category=UserWarning, module="obspy")


@pytest.fixture(scope="session")
def codec():
    from codec import EQCodec

    return EQCodec.from_pretrained()


@pytest.fixture()
def example_stream():
    """obspy.read()'s example: BW.RJOB EHZ/EHN/EHE, 100 Hz, 30 s, a local event (real data)."""
    import obspy

    return obspy.read()
