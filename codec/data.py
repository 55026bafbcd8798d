"""Real recordings for training and evaluation: the one event-wise split (files and corpora) and obspy's bundled data."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from .preprocess import InputError, read_stream, trace_to_codec_input

#: Real recordings shipped inside obspy's package (paths relative to the obspy
#: package), chosen by hand: at least 20 Hz, 60 s or longer, no synthetic test
#: signals. Teleseismic broadband, local short-period, volcano and strong motion.
OBSPY_RECORDINGS = [
    "clients/fdsn/tests/data/dataselect_example.mseed",
    "clients/fdsn/tests/data/dataselect_example_wildcards.mseed",
    "realtime/tests/data/II.TLY.BHZ.SAC",
    "io/mseed/tests/data/test.mseed",
    "io/mseed/tests/data/dataquality-m.mseed",
    "signal/tests/data/CRLZ.HHZ.10.NZ.SAC",
    "signal/tests/data/BW.UH1._.SHZ.D.2010.147.cut.slist.gz",
    "signal/tests/data/BW.UH2._.SHZ.D.2010.147.cut.slist.gz",
    "signal/tests/data/BW.UH3._.SHE.D.2010.147.cut.slist.gz",
    "signal/tests/data/BW.UH3._.SHN.D.2010.147.cut.slist.gz",
    "signal/tests/data/BW.UH3._.SHZ.D.2010.147.cut.slist.gz",
    "signal/tests/data/BW.UH4._.EHZ.D.2010.147.cut.slist.gz",
    "io/seisan/tests/data/9701-30-1048-54S.MVO_21_1",
    "io/seisan/tests/data/2005-07-23-1452-04S.CER___030",
    "io/seisan/tests/data/2001-01-13-1742-24S.KONO__004",
    "io/y/tests/data/YAYT_BHZ_20021223.124800",
    "io/kinemetrics/tests/data/BX456_MOLA-02351.evt",
    "io/gse2/tests/data/loc_RJOB20050831023349.z",
    "io/gse2/tests/data/loc_RNON20040609200559.z",
    "io/mseed/tests/data/fullseed.mseed",
    "io/dmx/tests/data/131114_090600.dmx",
    "io/win/tests/data/10030302.00",
]


def obspy_recordings() -> list[Path]:
    """Paths of the real recordings bundled with obspy (those present in this install)."""
    import obspy

    root = Path(obspy.__file__).parent
    return [root / rel for rel in OBSPY_RECORDINGS if (root / rel).is_file()]


def obspy_example_stream():
    """obspy.read()'s own example: 3 components of BW.RJOB, 100 Hz, 30 s, a local event."""
    import obspy

    return obspy.read()




def overlap_groups(spans: dict) -> dict:
    """{key: (start, end)} time spans -> {key: group name}: keys whose spans overlap (in a chain) form one group.

    Recordings of one event at different stations overlap in time; a split must
    keep them on one side. A group is named after its earliest key.
    """
    group_of, name, group_end = {}, None, -np.inf
    for key, (start, end) in sorted(spans.items(), key=lambda item: (item[1][0], item[1][1], str(item[0]))):
        if start >= group_end:  # no overlap with the current group: start a new one
            name, group_end = key, end
        else:
            group_end = max(group_end, end)
        group_of[key] = name
    return group_of


def held_out_groups(sizes: dict, eval_fraction: float, salt: str = "") -> set:
    """Whole groups, in the hash order of salt + name, held out until >= eval_fraction of the items are.

    sizes: {group name: items}. The last group in that order always stays in training,
    so neither side is empty. Deterministic: the same names give the same split.
    """
    order = sorted(sizes, key=lambda name: hashlib.sha256(f"{salt}{name}".encode()).hexdigest())
    target = int(np.ceil(eval_fraction * sum(sizes.values())))
    held, count = set(), 0
    for name in order[:-1]:
        if count >= target:
            break
        held.add(name)
        count += sizes[name]
    return held


def event_split(files, eval_fraction: float = 0.2) -> tuple[list[Path], list[Path]]:
    """Deterministic event-wise split of waveform files: (train files, held-out files).

    Files whose recording times overlap form one event (overlap_groups); whole
    events are held out in hash order until at least `eval_fraction` of the files are.
    """
    import obspy

    files = sorted(Path(f) for f in files)
    spans = {}
    for path in files:
        stream = obspy.read(str(path), headonly=True)
        spans[path.name] = (min(tr.stats.starttime for tr in stream).timestamp,
                            max(tr.stats.endtime for tr in stream).timestamp)
    group_of = overlap_groups(spans)
    sizes: dict = {}
    for name in group_of.values():
        sizes[name] = sizes.get(name, 0) + 1
    held = held_out_groups(sizes, eval_fraction)
    held_out = [f for f in files if group_of[f.name] in held]
    return [f for f in files if group_of[f.name] not in held], held_out


def nc_events_split(directory) -> tuple[list[Path], list[Path]]:
    """The project's fixed split of nc-events: (train files, held-out files)."""
    files = sorted(Path(directory).glob("*.mseed"))
    if not files:
        raise InputError(f"{directory}: no .mseed files found")
    return event_split(files, eval_fraction=0.2)


#: Stations of ../shared/data/public-recordings never trained on (its README's evaluation split,
#: taken by station: all of II.KAPI, not only its day 007).
PUBLIC_RECORDINGS_HELD_OUT_STATIONS = ("OXF", "KAPI", "ST09", "ST10")

#: Files of public-recordings that hold documentation, not waveforms.
_NOT_WAVEFORMS = {".md", ".txt", ".csv", ".json", ".png", ".xml", ".py"}


def public_recordings_split(directory) -> tuple[list[Path], list[Path]]:
    """The fixed by-station split of public-recordings: (train files, held-out files).

    A file is held out when any of its traces (read header-only) belongs to a
    held-out station; a file obspy cannot read goes to the training list,
    where tokenization reports it.
    """
    import obspy

    files = sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.suffix.lower() not in _NOT_WAVEFORMS
                   and p.name.lower() != "readme")
    if not files:
        raise InputError(f"{directory}: no waveform files found")
    train, held_out = [], []
    for path in files:
        try:
            stations = {tr.stats.station for tr in obspy.read(str(path), headonly=True)}
        except Exception:
            stations = set()
        (held_out if stations & set(PUBLIC_RECORDINGS_HELD_OUT_STATIONS) else train).append(path)
    return train, held_out


def load_traces(paths, include_obspy_example: bool = False) -> list[tuple[str, np.ndarray]]:
    """Read files and return (label, 40 Hz samples) per usable trace.

    Pieces of one channel separated by gaps are kept as separate traces;
    unusable traces are skipped with a warning naming them.
    """
    traces = []
    streams = [(str(p), read_stream(p)) for p in paths]
    if include_obspy_example:
        streams.append(("obspy.read() example", obspy_example_stream()))
    for source, stream in streams:
        for trace in stream:
            try:
                traces.append((f"{Path(source).name}:{trace.id}", trace_to_codec_input(trace)))
            except InputError as err:
                warnings.warn(f"skipping {source}: {err}")
    return traces
