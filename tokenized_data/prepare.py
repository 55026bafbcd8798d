"""From an obspy Stream to gap-free 40 Hz segments and the windows cut from them.

The steps, in order (recorded in every corpus's metadata by `Preprocessing.describe`):

1. keep traces whose NET.STA.LOC.CHA matches `seed_id` (fnmatch pattern);
2. merge pieces of one channel that are contiguous or overlap with identical
   samples (obspy `Stream.merge(method=-1)`); nothing is filled or interpolated,
   so every gap ends a segment and no window spans one;
3. where pieces still overlap, their samples conflict: that time span is cut
   out of every piece (we cannot tell which piece is right) and reported;
4. per segment: refuse unusable samples (empty, NaN/inf, constant, below 20 Hz)
   with codec.preprocess's checks, remove the linear trend (and so the mean)
   and resample to 40 Hz with codec.preprocess.detrend_and_resample
   (anti-aliased polyphase FIR), the preparation LM contexts get too;
5. cut windows of `window_seconds` every `hop_seconds`, whole 1-s frames only;
   a last shorter window is kept when it has at least `min_window_seconds`;
6. per window, on the original samples: skip windows that are constant (a
   dead channel) or clipped (unless `allow_clipped`); both are counted;
7. with `augmentation.copies` R > 1, each segment also gives R - 1 augmented
   copies (tokenized_data.augment), windowed the same way; a segment with a
   clipped window gets no copies.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from codec.preprocess import (FRAME_LENGTH, MIN_SAMPLING_RATE, SAMPLING_RATE, InputError, check_numeric_samples,
                              check_samples, check_sampling_rate, check_trace_header, detrend_and_resample,
                              is_clipped, trace_label)

from .augment import Augmentation, bandpass


@dataclass(frozen=True)
class Preprocessing:
    """Everything that decides which windows a corpus holds (besides the codec).

    Defaults: 120-s windows hold a local or regional event with its coda, and
    fit an LM context of 120 frames; hop = window so that no token appears
    twice in the corpus; a last window of 10 s or more is kept so that short
    event files and segment ends are not thrown away.
    """

    window_seconds: int = 120
    hop_seconds: int | None = None  # None: the window length
    min_window_seconds: int = 10
    allow_clipped: bool = False
    seed_id: str = "*"
    augmentation: Augmentation = Augmentation()  # copies: 1 = the recordings only
    # (low, high) Hz: every segment band-passed at 40 Hz before encoding. For a search corpus: on a quiet
    # broadband station the search band (1-8 Hz) can hold 40-50 dB less power than the microseisms, under the
    # codec's error, and only tokens of the band-passed trace keep it (docs/search.md). None for LM corpora.
    bandpass: tuple | None = None

    def __post_init__(self):
        if self.hop_seconds is None:
            object.__setattr__(self, "hop_seconds", self.window_seconds)
        for name in ("window_seconds", "hop_seconds", "min_window_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name.replace('_', '-')} must be a whole number of seconds >= 1 "
                                 f"(1 codec frame = 1 s), got {value!r}")
        if self.min_window_seconds > self.window_seconds:
            raise InputError(f"min-window-seconds ({self.min_window_seconds}) is longer than "
                             f"window-seconds ({self.window_seconds})")
        if self.bandpass is not None:
            try:
                low, high = (float(v) for v in self.bandpass)
            except (TypeError, ValueError):
                raise InputError(f"bandpass must be (low, high) in Hz, got {self.bandpass!r}") from None
            if not (0 < low < high < SAMPLING_RATE / 2):
                raise InputError(f"bandpass must satisfy 0 < low < high < {SAMPLING_RATE / 2:g} Hz (the codec's "
                                 f"Nyquist), got {low:g}-{high:g} Hz")
            object.__setattr__(self, "bandpass", (low, high))

    def describe(self) -> dict:
        """The parameters and the fixed steps, as stored in the corpus metadata (JSON types only)."""
        return {
            **json.loads(json.dumps(asdict(self))),
            "sampling_rate": SAMPLING_RATE,
            "frame_length": FRAME_LENGTH,
            "min_input_sampling_rate": MIN_SAMPLING_RATE,
            "merge": "obspy Stream.merge(method=-1): contiguous or identical-overlap pieces only, "
                     "no gap filling; a gap ends a segment",
            "conflicting_overlaps": "time span cut out of every piece and reported",
            "detrend": "linear (least-squares line) per segment at the original rate "
                       "(codec.preprocess.detrend_and_resample)",
            "resample": "codec.preprocess.resample_to_codec_rate: scipy resample_poly "
                        "(Kaiser FIR, mean removed, line padding) for rational ratios, FFT otherwise",
            "windows": "whole frames; start at multiples of hop within a segment; "
                       "a last shorter window kept if >= min_window_seconds",
            "window_checks": "constant windows skipped; clipped windows skipped unless allow_clipped",
            "band_pass": "none" if self.bandpass is None else
                         "zero-phase 4-pole Butterworth (tokenized_data.augment.bandpass) of every segment at 40 Hz, "
                         "before windows are cut",
        }


@dataclass
class Report:
    """What happened to one input (a file or an SDS day file); saved as JSON beside its shard."""

    source: str
    failures: list[str] = field(default_factory=list)  # "source: reason", one per problem
    windows: int = 0
    frames: int = 0  # tokenized channel-seconds
    input_seconds: float = 0.0  # channel-seconds of usable segments read
    skipped_windows: Counter = field(default_factory=Counter)  # reason -> count
    short_segment_seconds: float = 0.0  # segments too short for one window

    def fail(self, reason: str) -> None:
        self.failures.append(f"{self.source}: {reason}")

    def to_dict(self) -> dict:
        return {**asdict(self), "skipped_windows": dict(self.skipped_windows)}

    @classmethod
    def from_dict(cls, values: dict) -> "Report":
        return cls(**{**values, "skipped_windows": Counter(values["skipped_windows"])})


@dataclass
class Segment:
    """A gap-free piece of one channel.

    raw:     [n] float64 samples at the original rate (for per-window checks)
    samples: [N] float64 detrended samples at 40 Hz, first sample at `starttime`
    """

    network: str
    station: str
    location: str
    channel: str
    starttime: object  # obspy UTCDateTime
    sampling_rate: float
    raw: np.ndarray
    samples: np.ndarray

    @property
    def trace_id(self) -> str:
        return f"{self.network}.{self.station}.{self.location}.{self.channel}"


def prepare_stream(stream, prep: Preprocessing, report: Report) -> list[Segment]:
    """Stream -> gap-free 40 Hz segments (steps 1-4 of the module docstring).

    Problems are recorded in `report` (the trace is left out, the rest goes on).
    Segments are ordered by channel id, then time.
    """
    import obspy

    selected = []
    for trace in stream:
        if not fnmatch.fnmatchcase(trace.id, prep.seed_id):
            continue
        try:
            check_trace_header(trace)
        except InputError as err:
            report.fail(str(err))
            continue
        selected.append(trace)
    with_samples = {tr.id for tr in selected if tr.stats.npts > 0}
    reported_empty = set()
    by_channel: dict[tuple[str, float], list] = {}
    for trace in selected:
        if trace.stats.npts == 0:  # an empty piece holds nothing; a channel with no sample at all is reported once
            if trace.id not in with_samples and trace.id not in reported_empty:
                report.fail(f"{trace_label(trace)}: trace is empty")
                reported_empty.add(trace.id)
            continue
        by_channel.setdefault((trace.id, float(trace.stats.sampling_rate)), []).append(trace)

    segments = []
    for (trace_id, rate), traces in sorted(by_channel.items()):
        try:
            check_sampling_rate(rate, trace_id)
        except InputError as err:
            report.fail(str(err))
            continue
        merged = obspy.Stream([tr.copy() for tr in traces])
        try:
            merged.merge(method=-1)
        except Exception as err:  # e.g. mixed data types within one channel
            report.fail(f"{trace_id}: cannot merge its pieces ({err})")
            continue
        for piece in _cut_conflicting_overlaps(list(merged), report):
            try:
                segment = _segment_from_piece(piece, prep, report)
            except InputError as err:
                report.fail(str(err))
                continue
            if segment is not None:
                segments.append(segment)
    return segments


def _segment_from_piece(piece, prep: Preprocessing, report: Report) -> Segment | None:
    """Check, detrend and resample one gap-free piece; None if too short for a window."""
    label, stats = trace_label(piece), piece.stats
    data = np.asarray(piece.data)
    check_numeric_samples(data, label)  # text, empty, NaN/inf: with the codec's wording
    duration = stats.npts / stats.sampling_rate
    if duration < prep.min_window_seconds:  # a fragment between gaps: counted, not an error
        report.short_segment_seconds += duration
        return None
    check_samples(data, label, allow_clipped=True)  # constant trace; clipping is checked per window
    raw = data.astype(np.float64)
    samples, _ = detrend_and_resample(raw, stats.sampling_rate, label)
    if prep.bandpass is not None:
        samples = bandpass(samples, *prep.bandpass)
    report.input_seconds += duration
    return Segment(stats.network, stats.station, stats.location, stats.channel,
                   stats.starttime, float(stats.sampling_rate), raw, samples)


def _cut_conflicting_overlaps(pieces: list, report: Report) -> list:
    """Remove every time span covered by two pieces of one channel (they disagree there)."""
    pieces = sorted(pieces, key=lambda tr: tr.stats.starttime)
    conflicts = []  # (start, end) UTCDateTime spans, merged when they touch
    covered_until = None
    for piece in pieces:
        start, end = piece.stats.starttime, piece.stats.endtime
        if covered_until is not None and start <= covered_until:
            span = (start, min(end, covered_until))
            if conflicts and span[0] <= conflicts[-1][1]:
                conflicts[-1] = (conflicts[-1][0], max(conflicts[-1][1], span[1]))
            else:
                conflicts.append(span)
        covered_until = end if covered_until is None else max(covered_until, end)
    if not conflicts:
        return pieces
    for start, end in conflicts:
        report.fail(f"{pieces[0].id}: overlapping pieces with conflicting samples from {start} to {end}; "
                    "that span was left out")
    kept = []
    tiny = 1e-6  # seconds: keeps only samples strictly outside a conflict span
    for piece in pieces:
        lo, piece_end = piece.stats.starttime, piece.stats.endtime
        for start, end in conflicts:  # sorted and disjoint
            if end < lo or start > piece_end:
                continue
            if start > lo:
                kept.append(piece.slice(lo, start - tiny, nearest_sample=False))
            lo = end + tiny
        if lo <= piece_end:
            kept.append(piece.slice(lo, piece_end, nearest_sample=False))
    kept = [part for part in kept if part.stats.npts > 0]
    return kept


def window_spans(num_samples: int, prep: Preprocessing) -> list[tuple[int, int]]:
    """[start, stop) sample spans at 40 Hz of the windows of a segment of `num_samples` samples."""
    width = prep.window_seconds * FRAME_LENGTH
    hop = prep.hop_seconds * FRAME_LENGTH
    shortest = prep.min_window_seconds * FRAME_LENGTH
    spans = []
    for start in range(0, num_samples, hop):
        stop = min(start + width, num_samples)
        stop = start + (stop - start) // FRAME_LENGTH * FRAME_LENGTH  # whole frames
        if stop - start >= shortest:
            spans.append((start, stop))
        if start + width >= num_samples:
            break
    return spans


def window_skip_reason(segment: Segment, span: tuple[int, int], prep: Preprocessing) -> str | None:
    """'constant' or 'clipped' when the window's original samples cannot be coded, else None."""
    ratio = segment.sampling_rate / SAMPLING_RATE
    lo = int(math.floor(span[0] * ratio))
    hi = min(int(math.ceil(span[1] * ratio)), len(segment.raw))
    raw = segment.raw[lo:hi]
    if raw.size == 0 or np.all(raw == raw[0]):
        return "constant"
    if not prep.allow_clipped and is_clipped(raw):
        return "clipped"
    return None
