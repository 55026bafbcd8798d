"""Shared fixtures: small real recordings from obspy's package, the shipped codec, a tiny LM."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", category=UserWarning, module="obspy")


@pytest.fixture(scope="session")
def codec():
    from codec import load_codec

    return load_codec()


@pytest.fixture()
def example_stream():
    """obspy.read()'s example: BW.RJOB EHZ/EHN/EHE, 100 Hz, 30 s, a local event (real data)."""
    import obspy

    return obspy.read()


@pytest.fixture()
def example_file(example_stream, tmp_path):
    """example_stream written as miniSEED: tmp_path / example.mseed."""
    path = tmp_path / "example.mseed"
    example_stream.write(str(path), format="MSEED")
    return path


@pytest.fixture(scope="session")
def tiny_lm_dir(codec, tmp_path_factory):
    """A tiny randomly initialised LM (lm/configs/tiny.json) that reads the shipped codec's tokens: fast to sample and fine-tune."""
    import torch

    from lm.model import SeismicLM, load_config

    config = load_config("tiny")
    config.codec_id = codec.identity()
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("lm") / "tiny"
    SeismicLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def codec_v1():
    """EQcodec v1, the neural block codec (codec/pretrained_v1): for tests of codec.model itself."""
    from codec import EQCodec

    return EQCodec.from_pretrained()
