"""benchmarks/lm_frame_edges.py's measure: frame-edge steps at each member's own frame grid, and the join."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from codec.metrics import frame_edge_ratio

REPO = Path(__file__).resolve().parents[1]


def _edge_and_join():
    spec = importlib.util.spec_from_file_location("lm_frame_edges", REPO / "benchmarks" / "lm_frame_edges.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.edge_and_join


def _blocky(offset: int, n: int = 400) -> np.ndarray:
    """A ramp inside 40-sample frames and a jump of 10 steps at each frame boundary of a grid `offset` early."""
    block = np.concatenate([np.arange(40.0) + 50 * k for k in range(n // 40 + 1)])  # frames of step 1, jumps 11
    return block[offset : offset + n]


def test_edges_are_read_on_each_members_own_grid():
    edge_and_join = _edge_and_join()
    plain, shifted = _blocky(0), _blocky(30)
    assert abs(frame_edge_ratio(plain) - 11) < 1e-9  # the codec metric on the plain grid
    context = np.array([plain[0] - 1.0])  # the member's first sample one ordinary step after the context
    edge, join = edge_and_join(context, np.stack([plain, plain]), [0])
    assert abs(edge - 11) < 1e-9 and abs(join - 1) < 1e-9
    # The shifted member read on its own grid shows its jumps; read on the plain grid it would show none.
    edge, _ = edge_and_join(context, np.stack([plain, shifted]), [0, 30])
    assert abs(edge - 11) < 1e-9
    edge, _ = edge_and_join(context, np.stack([shifted, shifted]), [0])
    assert edge < 1.0
    wave = np.sin(np.arange(400) / 7.0)  # no frames at all: edges like any other step
    edge, join = edge_and_join(np.array([np.sin(-1 / 7.0)]), wave[None], [0])
    assert 0.8 < edge < 1.2
    assert abs(join - abs(wave[0] - np.sin(-1 / 7.0)) / np.sqrt(np.mean(np.diff(wave) ** 2))) < 0.05
