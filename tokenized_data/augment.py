"""Seeded waveform augmentation for LM training corpora: more kinds of signal from the same recordings.

`eqcodec tokenize --augment-copies R` writes, beside each prepared 40 Hz
segment, R - 1 augmented copies of it (copy 0 is the original), each with its
own draw of:

    band-pass      p = 0.5: zero-phase Butterworth (order 4), low corner log-uniform in
                   [0.02, 2] Hz, high corner in [3, 18] Hz (other sensors, other paths)
    time stretch   factor log-uniform in [0.8, 1.25] by polyphase resampling: durations and
                   frequencies scale together (other source sizes, other distances)
    polarity       p = 0.5: sign flipped
    amplitude      a factor log-uniform in [1e-3, 1e3] (the gain-shape codec is scale-free
                   but its float arithmetic and the stored scale are not)
    noise          p = 0.5 when `noise_files` are given: a piece of real noise drawn from
                   them, added at a signal-to-noise ratio uniform in [0, 30] dB

The draws depend only on (seed, the unit's key, segment index, copy), so a
corpus is reproducible and a resumed run equals an uninterrupted one. The
copies are drawn once, when the corpus is written, not at every training
step: the LM reads token datasets, and this keeps the codec out of the
training loop. The `augmentation` column of every row says what was applied
("" for the original). Copies keep the original's `event_key`, so an
event-wise split keeps them on the same side.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from codec.preprocess import SAMPLING_RATE

#: Time-stretch factors are rounded to a ratio with at most this denominator (polyphase resampling).
STRETCH_DENOMINATOR = 16


@dataclass(frozen=True)
class Augmentation:
    """How many copies of each segment, and the ranges of the random transforms (see the module docstring)."""

    copies: int = 1  # 1: originals only
    seed: int = 0
    bandpass_probability: float = 0.5
    low_corner_hz: tuple[float, float] = (0.02, 2.0)
    high_corner_hz: tuple[float, float] = (3.0, 18.0)
    stretch: tuple[float, float] = (0.8, 1.25)
    flip_probability: float = 0.5
    amplitude: tuple[float, float] = (1e-3, 1e3)
    noise_probability: float = 0.5
    noise_snr_db: tuple[float, float] = (0.0, 30.0)
    noise_files: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if not isinstance(self.copies, (int, np.integer)) or self.copies < 1:
            raise ValueError(f"augmentation copies must be a whole number >= 1, got {self.copies!r}")

    def describe(self) -> dict:
        return asdict(self)

    def rng(self, unit_key: str, segment: int, copy: int) -> np.random.Generator:
        digest = hashlib.sha256(f"{self.seed}|{unit_key}|{segment}|{copy}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def bandpass(samples: np.ndarray, low_hz: float, high_hz: float, rate: float = SAMPLING_RATE) -> np.ndarray:
    """Zero-phase order-4 Butterworth band-pass of [N] samples."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [low_hz, min(high_hz, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    if len(samples) <= 3 * (2 * len(sos) + 1):
        return samples.copy()
    return sosfiltfilt(sos, samples)


def time_stretch(samples: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
    """[N] samples played `factor` times longer (factor > 1: slower, lower frequencies) -> ([~N factor], factor used)."""
    from scipy.signal import resample_poly

    ratio = Fraction(factor).limit_denominator(STRETCH_DENOMINATOR)
    if ratio == 1:
        return samples.copy(), 1.0
    return resample_poly(samples, ratio.numerator, ratio.denominator), float(ratio)


class NoisePool:
    """Real noise to add under signals: 40 Hz samples of `files`, read once (lazily) per process."""

    def __init__(self, files: tuple[str, ...]):
        self.files = files
        self._pieces: list[np.ndarray] | None = None

    def pieces(self) -> list[np.ndarray]:
        if self._pieces is None:
            from codec.preprocess import contiguous_pieces, read_stream, trace_to_codec_input

            self._pieces = []
            for path in self.files:
                for trace in contiguous_pieces(read_stream(path), str(path)):
                    self._pieces.append(trace_to_codec_input(trace))
        return self._pieces

    def draw(self, rng: np.random.Generator, length: int) -> np.ndarray | None:
        """A random stretch of `length` samples of noise (tiled if a piece is shorter), or None if no noise."""
        pieces = self.pieces()
        if not pieces:
            return None
        piece = pieces[int(rng.integers(len(pieces)))]
        if len(piece) < length:
            piece = np.tile(piece, -(-length // len(piece)))
        start = int(rng.integers(0, len(piece) - length + 1))
        noise = piece[start : start + length]
        return noise - noise.mean()


_NOISE_POOLS: dict[tuple[str, ...], NoisePool] = {}


def augment(samples: np.ndarray, settings: Augmentation, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One random augmented copy of [N] 40 Hz samples -> (samples [N'], description of what was applied)."""
    x = np.asarray(samples, dtype=np.float64)
    applied = []
    if rng.random() < settings.bandpass_probability:
        low, high = _log_uniform(rng, settings.low_corner_hz), rng.uniform(*settings.high_corner_hz)
        x = bandpass(x, low, high)
        applied.append(f"bandpass {low:.3g}-{high:.3g} Hz")
    x, factor = time_stretch(x, _log_uniform(rng, settings.stretch))
    if factor != 1.0:
        applied.append(f"stretch {factor:.4g}")
    if settings.noise_files and rng.random() < settings.noise_probability:
        pool = _NOISE_POOLS.setdefault(settings.noise_files, NoisePool(settings.noise_files))
        noise = pool.draw(rng, len(x))
        signal_rms, noise_rms = np.sqrt(np.mean(x**2)), np.sqrt(np.mean(noise**2)) if noise is not None else 0.0
        if noise is not None and signal_rms > 0 and noise_rms > 0:
            snr_db = rng.uniform(*settings.noise_snr_db)
            x = x + noise * (signal_rms / noise_rms) * 10 ** (-snr_db / 20)
            applied.append(f"noise at {snr_db:.1f} dB SNR")
    if rng.random() < settings.flip_probability:
        x = -x
        applied.append("polarity flipped")
    amplitude = _log_uniform(rng, settings.amplitude)
    applied.append(f"amplitude x{amplitude:.3g}")
    return x * amplitude, ", ".join(applied)
