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

from .errors import InputError

#: The codec's sampling rate (Hz) and frame length (samples): 1 frame = 1 s.
SAMPLING_RATE = 40.0
FRAME_LENGTH = 40

#: Lowest input sampling rate accepted. Data at 20-40 Hz is upsampled (its band
#: lies entirely inside the codec's); below 20 Hz a trace holds less than half
#: of the band the codec was trained on (0-16 Hz) and is refused.
MIN_SAMPLING_RATE = 20.0

#: Shortest trace accepted, in samples at 40 Hz (one frame).
MIN_SAMPLES = FRAME_LENGTH

#: Relative difference up to which a sampling rate counts as its nominal value:
#: formats that store the sample interval as float32 give 19.9999997 Hz for
#: 20 Hz. Treating such a rate as nominal shifts the last sample of a day-long
#: trace by less than 10 ms (under half a sample at 40 Hz).
RATE_TOLERANCE = 1e-7

#: Longest network, station, location and channel codes miniSEED (2.x) holds;
#: obspy's writer cuts longer codes without a word.
MINISEED_CODE_LENGTHS = {"network": 2, "station": 5, "location": 2, "channel": 3}


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


def check_trace_header(trace) -> None:
    """Reject a Trace whose header disagrees with its data (a damaged or inconsistent file)."""
    if trace.stats.npts != len(trace.data):
        raise InputError(f"{trace_label(trace)}: the header says {trace.stats.npts} samples but the data hold "
                         f"{len(trace.data)}; the file is inconsistent")


def check_numeric_samples(data: np.ndarray, label: str) -> None:
    """Reject samples that are not finite numbers: text, gaps (masked), none at all, NaN or inf."""
    if np.ma.isMaskedArray(data) and np.ma.is_masked(data):
        raise InputError(f"{label}: contains gaps (masked samples); split it at the gaps first")
    data = np.asarray(data)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise InputError(f"{label}: samples are not numbers (data type {data.dtype}: text, "
                         "e.g. a log channel); nothing to code")
    if data.size == 0:
        raise InputError(f"{label}: trace is empty")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argmax(bad))
        raise InputError(f"{label}: {int(bad.sum())} NaN or infinite samples (first at sample {first})")


def check_samples(data: np.ndarray, label: str, *, allow_clipped: bool = False) -> None:
    """Reject samples the codec cannot code: not numbers, empty, non-finite, constant, clipped."""
    check_numeric_samples(data, label)
    data = np.asarray(data)
    if np.all(data == data.flat[0]):
        raise InputError(f"{label}: trace is constant (every sample equals {data.flat[0].item()!r}); "
                         "nothing to code")
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


def check_sampling_rate(sampling_rate: float, label: str) -> None:
    """Refuse rates below MIN_SAMPLING_RATE (within RATE_TOLERANCE: 19.9999997 Hz is 20 Hz)."""
    if not sampling_rate >= MIN_SAMPLING_RATE * (1 - RATE_TOLERANCE):
        raise InputError(
            f"{label}: sampling rate {sampling_rate:.10g} Hz is below the minimum of "
            f"{MIN_SAMPLING_RATE:g} Hz (the codec codes 0-16 Hz at 40 Hz)"
        )


def resample_to_codec_rate(data: np.ndarray, sampling_rate: float, label: str = "trace") -> np.ndarray:
    """Anti-aliased resampling of `data` (float64) to 40 Hz.

    Rational rate ratios (100, 200, 50, 20 Hz ...; within RATE_TOLERANCE) use a
    polyphase FIR filter (scipy's resample_poly, Kaiser window), which keeps
    the first sample's time; other rates fall back to FFT resampling. Both
    would ring at the ends of a trace with an offset (raw counts often sit far
    from zero): the mean is taken out and put back, and the filter continues
    the trace beyond its ends by a straight line instead of zeros.
    """
    from scipy.signal import resample, resample_poly

    check_sampling_rate(sampling_rate, label)
    data = np.asarray(data, dtype=np.float64)
    ratio = Fraction(SAMPLING_RATE / sampling_rate).limit_denominator(1000)
    if abs(float(ratio) * sampling_rate / SAMPLING_RATE - 1) <= RATE_TOLERANCE:
        if ratio == 1:
            return data.copy()
        mean = data.mean()
        return resample_poly(data - mean, ratio.numerator, ratio.denominator, padtype="line") + mean
    # FFT resampling treats the trace as one period of a periodic signal: the line through its
    # first and last samples is taken out (so that the ends meet) and put back at the new times.
    n_out = int(round(len(data) * SAMPLING_RATE / sampling_rate))
    span = max(len(data) - 1, 1)
    ends = data[0] + (data[-1] - data[0]) * np.arange(len(data)) / span
    times_out = np.arange(n_out) * len(data) / n_out  # in input samples
    return resample(data - ends, n_out) + data[0] + (data[-1] - data[0]) * times_out / span


def detrend_and_resample(data: np.ndarray, sampling_rate: float, label: str = "trace") -> tuple[np.ndarray, np.ndarray]:
    """The one preparation of gap-free samples for token corpora and LM contexts.

    The least-squares line is removed at the original rate (as scipy.signal.detrend
    "linear"), then the samples are resampled to 40 Hz (resample_to_codec_rate).
    Returns (samples, trend), both [N] at 40 Hz: trend is the removed line at the
    same times, so samples + trend is the input at 40 Hz. tokenize prepares each
    segment so, and generate / forecast / deconvolve prepare their contexts the
    same way: the LM reads at inference what it was trained on.
    """
    x = np.asarray(data, dtype=np.float64)
    t = np.arange(len(x), dtype=np.float64)
    slope, intercept = np.polyfit(t, x, 1) if len(x) > 1 else (0.0, float(x.mean()) if len(x) else 0.0)
    samples = resample_to_codec_rate(x - (slope * t + intercept), sampling_rate, label)
    times = np.arange(len(samples)) * (sampling_rate / SAMPLING_RATE)  # 40 Hz sample times in input samples
    return samples, slope * times + intercept


def trace_to_codec_input(trace, *, allow_clipped: bool = False) -> np.ndarray:
    """Check an obspy Trace and return its samples at 40 Hz as float64."""
    label = trace_label(trace)
    check_trace_header(trace)
    check_sampling_rate(trace.stats.sampling_rate, label)
    check_samples(trace.data, label, allow_clipped=allow_clipped)
    data = resample_to_codec_rate(trace.data, trace.stats.sampling_rate, label)
    if len(data) < MIN_SAMPLES:
        raise InputError(
            f"{label}: {len(data)} samples at 40 Hz is shorter than one codec frame ({MIN_SAMPLES} samples)"
        )
    return data


def contiguous_pieces(stream, source: str = "stream") -> list:
    """Gap-free pieces of every channel, in the stream's order of channels, then time; gaps are kept.

    Files often hold a channel in several pieces (records, blocks) that touch;
    obspy's Stream.merge(method=-1) joins them (and overlaps with identical
    samples) without filling anything, and empty pieces beside others are
    dropped. What is left apart by a gap stays apart. Single pieces are
    returned as they are, joined pieces as new Traces.
    """
    import obspy

    pieces: dict[str, list] = {}
    for trace in stream:
        pieces.setdefault(trace.id, []).append(trace)
    traces = []
    for trace_id, group in pieces.items():
        group = [tr for tr in group if tr.stats.npts > 0] or group[:1]  # an empty piece holds nothing
        if len(group) == 1:
            traces.append(group[0])  # (an empty one is refused when it is coded)
            continue
        for trace in group:  # merging needs usable rates, and gives a less clear message
            check_sampling_rate(trace.stats.sampling_rate, trace_label(trace))
        merged = obspy.Stream([tr.copy() for tr in group])
        try:
            merged.merge(method=-1)
        except Exception as err:  # e.g. pieces with different sampling rates or data types
            raise InputError(f"{source}: the pieces of {trace_id} cannot be joined ({err})") from None
        traces.extend(sorted(merged, key=lambda tr: tr.stats.starttime))
    return traces


def contiguous_traces(stream, source: str = "stream") -> list:
    """One Trace per channel id (contiguous_pieces); a channel with a gap or a conflicting overlap: InputError."""
    import obspy

    traces = contiguous_pieces(stream, source)
    check_no_gaps(obspy.Stream(traces), source)
    return traces


def miniseed_code_problem(codes) -> str | None:
    """What miniSEED cannot hold of {network, station, location, channel: code} (a dict or obspy Stats), or None."""
    for field, longest in MINISEED_CODE_LENGTHS.items():
        code = str(codes[field])
        if len(code) > longest:
            return (f"{field} code {code!r} has {len(code)} characters but miniSEED holds at most {longest}, "
                    f"so the output would carry another id; give it a shorter code first "
                    f"(obspy: trace.stats.{field} = ...)")
    return None


def check_miniseed_ids(stream, source: str = "stream") -> None:
    """Raise InputError if a trace's codes do not fit miniSEED, whose writer would cut them.

    Cut codes can make two channels one (WIN channels a100 and a101 both become a10).
    """
    for trace in stream:
        problem = miniseed_code_problem(trace.stats)
        if problem is not None:
            raise InputError(f"{source}: trace {trace.id}: {problem}")


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
