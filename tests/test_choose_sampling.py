"""benchmarks/choose_sampling.py's rule: the one-standard-error choice of sampling settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("choose_sampling", REPO / "benchmarks" / "choose_sampling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_within_one_standard_error_are_chosen_by_the_point_forecast():
    choose = _module().one_standard_error_choice
    sharp = {"name": "sharp", "crps": 0.650, "crps_standard_error": 0.01, "relative_mse": 1.1}
    flat = {"name": "flat", "crps": 0.645, "crps_standard_error": 0.01, "relative_mse": 9.0}
    far = {"name": "far", "crps": 0.700, "crps_standard_error": 0.01, "relative_mse": 0.9}
    assert choose([flat, sharp, far])["name"] == "sharp"  # flat's lead is within its error; far's is not
    precise = dict(flat, crps_standard_error=0.001)
    assert choose([precise, sharp, far])["name"] == "flat"  # a lead beyond the error wins


def test_bootstrap_standard_error_shrinks_with_more_cases():
    error = _module().bootstrap_standard_error
    rng = np.random.default_rng(0)
    few = {"a": rng.normal(size=10), "b": rng.normal(size=10)}
    many = {"a": rng.normal(size=1000), "b": rng.normal(size=1000)}
    assert error(many) < error(few) / 3
    assert error({"a": np.ones(20)}) == 0.0
