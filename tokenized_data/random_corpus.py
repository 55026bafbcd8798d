"""Synthetic token corpora for tests and benchmarks (no codec, no waveforms).

The tokens are random but learnable, with the two kinds of structure the
delayed LM is built for:
  in time:    the gain level takes a random walk; codebook 1 drifts from its
              previous value by the frame's gain level (mod 7) 80 % of the time;
  in a frame: codebook k > 1 is codebook k - 1 plus 37 k (mod size) 70 % of the
              time, which only a model that sees the coarser codebooks of the
              same frame (the delay pattern) can predict.
Everything else is uniform noise. The corpus has the schema of
tokenized_data (one row per window) and saves like a real one.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np


def random_token_windows(num_windows: int, num_frames: int, *, num_codebooks: int = 8,
                         codebook_size: int = 1024, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """codes [W, K, T] int16 and gain [W, T] uint8 with the structure of the module docstring."""
    rng = np.random.default_rng(seed)
    W, K, T, V = num_windows, num_codebooks, num_frames, codebook_size
    steps = rng.integers(-2, 3, size=(W, T))
    gain = np.clip(rng.integers(100, 200, size=(W, 1)) + np.cumsum(steps, axis=1), 0, 255)
    codes = rng.integers(0, V, size=(W, K, T))
    for t in range(1, T):
        follow = rng.random(W) < 0.8
        drifted = (codes[:, 0, t - 1] + gain[:, t] % 7) % V
        codes[:, 0, t] = np.where(follow, drifted, codes[:, 0, t])
    for k in range(1, K):
        follow = rng.random((W, T)) < 0.7
        codes[:, k] = np.where(follow, (codes[:, k - 1] + 37 * (k + 1)) % V, codes[:, k])
    return codes.astype(np.int16), gain.astype(np.uint8)


def random_token_corpus(num_windows: int, num_frames: int, *, codec_id: str = "synthetic",
                        num_codebooks: int = 8, codebook_size: int = 1024, stations: int = 5, seed: int = 0):
    """A tokenized_data.TokenCorpus of synthetic windows (save it with `.save(path)`).

    Window i belongs to station S{i % stations} and to its own event (start times 1000 s apart),
    so both event-wise and station-wise splits work.
    """
    from datasets import Dataset
    from obspy import UTCDateTime

    from codec.model import EQCodecConfig
    from tokenized_data import FEATURES, TokenCorpus
    from tokenized_data.schema import FORMAT

    codes, gain = random_token_windows(num_windows, num_frames, num_codebooks=num_codebooks,
                                       codebook_size=codebook_size, seed=seed)
    t0 = UTCDateTime(2024, 1, 1)
    columns = {
        "network": ["XX"] * num_windows,
        "station": [f"S{i % stations:02d}" for i in range(num_windows)],
        "location": [""] * num_windows,
        "channel": ["HHZ"] * num_windows,
        "starttime": [str(t0 + 1000 * i) for i in range(num_windows)],
        "sampling_rate": [100.0] * num_windows,
        "num_frames": [num_frames] * num_windows,
        "codes": codes.tolist(),
        "gain": gain.tolist(),
        "scale": [1.0] * num_windows,
        "offset": [0.0] * num_windows,
        "source_file": [f"synthetic-{i}" for i in range(num_windows)],
        "event_key": [f"synthetic-{i}" for i in range(num_windows)],
        "segment": [0] * num_windows,
        "window": [0] * num_windows,
        "augmentation": [""] * num_windows,
    }
    config = asdict(EQCodecConfig(num_codebooks=num_codebooks, codebook_size=codebook_size))
    metadata = {"format": FORMAT, "codec": {"id": codec_id, "config": config, "checkpoint": "none (synthetic)"},
                "source": {"inputs": [f"tokenized_data.random_corpus(seed={seed})"]}, "command": "tokenized_data.random_corpus"}
    return TokenCorpus(Dataset.from_dict(columns, features=FEATURES), metadata)


def save_random_token_corpus(path, num_windows: int, num_frames: int, **kwargs) -> Path:
    """Write a synthetic corpus folder readable by tokenized_data.load_tokenized."""
    return random_token_corpus(num_windows, num_frames, **kwargs).save(path)
