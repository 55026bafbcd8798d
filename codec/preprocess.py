"""Waveform preparation shared by the codec, the tokenizer and the LM.

Everything that turns an obspy Trace into the 40 Hz float array the codec
reads lives here, with the checks that reject input the codec cannot code
faithfully. Each check raises :class:`InputError` naming the trace and the
problem, so command-line tools can report it and exit non-zero.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

#: The codec's sampling rate (Hz) and frame length (samples): 1 frame = 1 s.
SAMPLING_RATE = 40.0
FRAME_LENGTH = 40

#: Lowest input sampling rate accepted. Data at 20-40 Hz is upsampled (its band
#: lies entirely inside the codec's); below 20 Hz a trace holds less than half
#: of the band the codec was trained on (0-16 Hz) and is refused.
MIN_SAMPLING_RATE = 20.0

#: Shortest trace accepted, in samples at 40 Hz (one frame).
MIN_SAMPLES = FRAME_LENGTH


class InputError(ValueError):
    """Input the toolkit cannot process; the message names the trace or file."""


def trace_label(trace) -> str:
    """'NET.STA.LOC.CHA starting at T' for error messages."""
    return f"{trace.id} starting {trace.stats.starttime}"


def read_stream(path):
    """Read any obspy-readable file, turning obspy's errors into InputError."""
    import obspy

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a waveform file")
    try:
        stream = obspy.read(str(path))
    except TypeError as err:  # obspy's "Unknown format for file ..."
        raise InputError(f"{path}: unknown or unreadable waveform format ({err})") from None
    except Exception as err:  # corrupt files raise many different exceptions
        raise InputError(f"{path}: cannot read waveform file ({type(err).__name__}: {err})") from None
    if len(stream) == 0:
        raise InputError(f"{path}: contains no traces")
    return stream


def check_samples(data: np.ndarray, label: str, *, allow_clipped: bool = False) -> None:
    """Reject samples the codec cannot code: empty, non-finite, constant, clipped."""
    if np.ma.isMaskedArray(data) and np.ma.is_masked(data):
        raise InputError(f"{label}: contains gaps (masked samples); split it at the gaps first")
    data = np.asarray(data)
    if data.size == 0:
        raise InputError(f"{label}: trace is empty")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argmax(bad))
        raise InputError(f"{label}: {int(bad.sum())} NaN or infinite samples (first at sample {first})")
    if np.all(data == data.flat[0]):
        raise InputError(f"{label}: trace is constant (every sample equals {data.flat[0]!r}); nothing to code")
    if not allow_clipped and is_clipped(data):
        raise InputError(
            f"{label}: trace looks clipped (flat runs at its extreme value {np.abs(data).max():g}); "
            "pass allow_clipped=True (--allow-clipped) to code it anyway"
        )


def is_clipped(data: np.ndarray, min_run: int = 4) -> bool:
    """True when the trace sits at its extreme value for runs of `min_run` samples or more.

    A digitizer that saturates holds its full-scale value for consecutive
    samples; a real peak does not. The peak must also stand well above the
    median amplitude so that quiet integer traces (values -3..3, say) whose
    maximum naturally repeats are not flagged.
    """
    data = np.asarray(data, dtype=np.float64)
    centered = data - np.median(data)
    peak = np.abs(centered).max()
    if peak == 0 or peak < 20 * np.median(np.abs(centered)):
        return False
    at_peak = np.abs(centered) >= peak * (1 - 1e-9)
    # Longest run of consecutive samples at the extreme.
    edges = np.diff(np.concatenate(([0], at_peak.astype(np.int8), [0])))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return bool(runs.max(initial=0) >= min_run)


def resample_to_codec_rate(data: np.ndarray, sampling_rate: float, label: str = "trace") -> np.ndarray:
    """Anti-aliased resampling of `data` (float64) to 40 Hz.

    Rational rate ratios (100, 200, 50, 20 Hz ...) use a polyphase FIR filter
    (scipy's resample_poly, Kaiser window), which keeps the first sample's
    time; other rates fall back to FFT resampling.
    """
    from scipy.signal import resample, resample_poly

    if sampling_rate < MIN_SAMPLING_RATE:
        raise InputError(
            f"{label}: sampling rate {sampling_rate:g} Hz is below the minimum of "
            f"{MIN_SAMPLING_RATE:g} Hz (the codec codes 0-16 Hz at 40 Hz)"
        )
    data = np.asarray(data, dtype=np.float64)
    if sampling_rate == SAMPLING_RATE:
        return data.copy()
    ratio = Fraction(SAMPLING_RATE / sampling_rate).limit_denominator(1000)
    if abs(float(ratio) - SAMPLING_RATE / sampling_rate) < 1e-9:
        return resample_poly(data, ratio.numerator, ratio.denominator)
    n_out = int(round(len(data) * SAMPLING_RATE / sampling_rate))
    return resample(data, n_out)


def trace_to_codec_input(trace, *, allow_clipped: bool = False) -> np.ndarray:
    """Check an obspy Trace and return its samples at 40 Hz as float64."""
    label = trace_label(trace)
    check_samples(trace.data, label, allow_clipped=allow_clipped)
    data = resample_to_codec_rate(trace.data, trace.stats.sampling_rate, label)
    if len(data) < MIN_SAMPLES:
        raise InputError(
            f"{label}: {len(data)} samples at 40 Hz is shorter than one codec frame ({MIN_SAMPLES} samples)"
        )
    return data


def check_no_gaps(stream, source: str = "stream") -> None:
    """Raise InputError if any trace id occurs in several pieces (gaps or overlaps)."""
    ids: dict[str, int] = {}
    for trace in stream:
        ids[trace.id] = ids.get(trace.id, 0) + 1
    split = [tid for tid, count in ids.items() if count > 1]
    if split:
        gaps = stream.get_gaps()
        first = f"; first gap after {gaps[0][4]}" if gaps else ""
        raise InputError(
            f"{source}: {', '.join(split)} come in several pieces (gaps or overlaps{first}); "
            "the codec needs contiguous traces (use `eqcodec tokenize`, which splits at gaps)"
        )
