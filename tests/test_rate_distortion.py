"""The Gaussian rate-distortion reference of benchmarks/codec_rate_distortion.py against closed forms."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("codec_rate_distortion",
                                                  REPO / "benchmarks" / "codec_rate_distortion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_white_spectrum_gives_six_db_per_bit(bench):
    rates = np.array([0.25, 1.0, 2.0])
    snr = bench.gaussian_rd_snr_db(np.full(129, 3.7), rates)
    np.testing.assert_allclose(snr, 20 * math.log10(2) * rates, atol=1e-6)


def test_two_level_spectrum_codes_only_the_strong_half_at_low_rate(bench):
    strong, weak, rate = 100.0, 1.0, 0.5
    spectrum = np.r_[np.full(64, strong), np.full(64, weak)]
    # Water level between the two: R = 1/2 * 1/2 log2(strong / theta), D = (theta + weak) / 2.
    theta = strong * 2 ** (-4 * rate)
    expected = 10 * math.log10(spectrum.mean() / ((theta + weak) / 2))
    assert theta > weak
    assert bench.gaussian_rd_snr_db(spectrum, [rate])[0] == pytest.approx(expected, abs=1e-6)


def test_reference_on_a_real_trace_rises_with_rate(bench):
    from codec.data import obspy_example_stream
    from codec.preprocess import trace_to_codec_input

    x = trace_to_codec_input(obspy_example_stream()[0])
    snr = bench.trace_bounds(x, np.array([0.25, 0.5, 1.0, 2.0]))
    assert np.all(np.diff(snr) > 0)
    assert snr[0] > 0
