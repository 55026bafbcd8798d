"""Real recordings for training and evaluation: event-wise splits and obspy's bundled data."""

from __future__ import annotations

import hashlib
import re
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


_TIME_IN_NAME = re.compile(r"_(\d{14})")


def event_groups(files: list[Path], max_separation_s: float = 120.0) -> list[list[Path]]:
    """Group event-window files (NET_STA_YYYYMMDDHHMMSScc.mseed) whose start times lie close together.

    Windows of one event at different stations start within travel-time
    differences of each other; a split must keep them on one side.
    """
    from obspy import UTCDateTime

    dated = []
    for path in files:
        match = _TIME_IN_NAME.search(path.name)
        if match is None:
            dated.append((float("inf"), path))  # unknown time: a group of its own
            continue
        dated.append((UTCDateTime(match.group(1)).timestamp, path))
    dated.sort(key=lambda item: (item[0], item[1].name))
    groups: list[list[Path]] = []
    last = None
    for time, path in dated:
        if groups and last is not None and time - last <= max_separation_s:
            groups[-1].append(path)
        else:
            groups.append([path])
        last = time
    return groups


def event_split(files, eval_fraction: float = 0.2) -> tuple[list[Path], list[Path]]:
    """Deterministic event-wise split: whole event groups go to evaluation, in hash order,
    until at least `eval_fraction` of the files are held out."""
    files = sorted(Path(f) for f in files)
    groups = event_groups(files)
    groups.sort(key=lambda g: hashlib.sha256(g[0].name.encode()).hexdigest())
    held_out: list[Path] = []
    target = int(np.ceil(eval_fraction * len(files)))
    for group in groups:
        if len(held_out) >= target:
            break
        held_out.extend(group)
    held = set(held_out)
    return [f for f in files if f not in held], sorted(held_out)


def nc_events_split(directory) -> tuple[list[Path], list[Path]]:
    """The project's fixed split of nc-events: (train files, held-out files)."""
    files = sorted(Path(directory).glob("*.mseed"))
    if not files:
        raise InputError(f"{directory}: no .mseed files found")
    return event_split(files, eval_fraction=0.2)


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
