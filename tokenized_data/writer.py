"""Tokenize waveform files or an SDS archive into a corpus folder (resumable, multi-process).

How a run works, for `tokenize(inputs, out)`:

1. The inputs are expanded into *units*, sorted: one per waveform file (or one
   per channel and day in an SDS archive). Inputs that hold no waveform file
   are reported as failures.
2. Work happens in `<out>.partial/`. `run.json` there records the codec
   identity, the preprocessing and the list of units; a restart with other
   settings is refused rather than mixing two corpora.
3. Each unit is read, prepared (tokenized_data.prepare) and encoded window by
   window; its rows go to `units/<hash>.arrow.tmp` (datasets' ArrowWriter,
   written in batches, so memory holds one file, never the corpus), which is
   renamed to `.arrow` when complete; then `units/<hash>.json` (what happened:
   windows, skips, failures) is written the same way. A unit is done when its
   JSON exists. Several processes (`num_proc`) each take whole units.
4. An interrupted run leaves only complete shards (and maybe `.tmp` files,
   removed on restart); the same command again skips the done units. Shards
   depend only on their unit, so the result equals an uninterrupted run's.
5. When all units are done, the shards are concatenated in unit order and
   saved with `save_to_disk` to a temporary folder beside `out`, with the
   metadata and a dataset card, then renamed to `out`; `<out>.partial` is removed.

Corpora larger than one machine: run the same command on each machine with
`--shard I/N` (machine I of N takes every N-th unit of the sorted list, into
its own output folder), then merge: `load_tokenized([dir0, dir1, ...])`
concatenates them (`datasets.concatenate_datasets`, refusing mixed codecs) and
`.save(path)` writes the merged corpus; or keep the parts and pass the list
of folders to training. Each part is itself a complete, valid corpus. To
spread reading over machines in training, each takes
`corpus.dataset.shard(num_shards=N, index=i)` (datasets' own sharding).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from codec.files import expand_inputs, write_atomically
from codec.preprocess import InputError, read_stream

from .augment import augment
from .prepare import Preprocessing, Report, prepare_stream, window_skip_reason, window_spans
from .schema import FEATURES, FORMAT

#: Files a directory scan passes over: documentation, tables, metadata, images.
#: A file named explicitly on the command line is always tried.
#: Windows encoded together (one [B, N] batch): bounds memory, amortizes the codec's overhead.
ENCODE_BATCH = 64

#: At most this many failure messages are kept in a corpus's metadata (all are counted).
MAX_LISTED_FAILURES = 1000


# ---------------------------------------------------------------------------- units of work
@dataclass(frozen=True)
class Unit:
    """One piece of input: a waveform file, or one channel-day of an SDS archive.

    key: unique, sorts the corpus; source: the `source_file` column of its rows.
    """

    key: str
    source: str
    path: str | None = None  # a waveform file
    sds_root: str | None = None  # or an SDS channel-day: root, NET.STA.LOC.CHA, [start, end)
    seed_id: str | None = None
    start: str | None = None
    end: str | None = None

    @property
    def shard_name(self) -> str:
        return hashlib.sha1(self.key.encode()).hexdigest()[:16]

    def read(self):
        """The unit's obspy Stream (InputError if unreadable)."""
        if self.path is not None:
            return read_stream(self.path)
        from obspy import UTCDateTime
        from obspy.clients.filesystem.sds import Client

        net, sta, loc, cha = self.seed_id.split(".")
        try:
            stream = Client(self.sds_root).get_waveforms(
                net, sta, loc, cha, UTCDateTime(self.start), UTCDateTime(self.end) - 1e-6, merge=None)
        except Exception as err:
            raise InputError(f"{self.source}: cannot read SDS data ({type(err).__name__}: {err})") from None
        if len(stream) == 0:
            raise InputError(f"{self.source}: no data between {self.start} and {self.end}")
        return stream


def file_units(inputs: list[str], failures: list[Report]) -> list[Unit]:
    """Files, directories (recursive) and glob patterns -> sorted units, one per file.

    An input that yields no waveform file is reported in `failures`.
    """
    paths, problems = expand_inputs(inputs)
    for given, problem in problems:
        report = Report(source=given)
        report.fail(problem)
        failures.append(report)
    return [Unit(key=path, source=path, path=path) for path in paths]


def sds_units(root: str, start: str, end: str, seed_id: str = "*") -> list[Unit]:
    """One unit per channel and UTC day of an SDS archive between start and end.

    Windows therefore never cross midnight (720 windows of 120 s fill a day).
    """
    import fnmatch

    from obspy import UTCDateTime
    from obspy.clients.filesystem.sds import Client

    if not Path(root).is_dir():
        raise InputError(f"{root}: SDS root is not a directory")
    t0, t1 = UTCDateTime(start), UTCDateTime(end)
    if t1 <= t0:
        raise InputError(f"--end {t1} is not after --start {t0}")
    client = Client(root)
    units = []
    day = UTCDateTime(t0.date)
    while day < t1:
        lo, hi = max(day, t0), min(day + 86400, t1)
        for nslc in sorted(client.get_all_nslc(sds_type="D", datetime=day)):
            trace_id = ".".join(nslc)
            if not fnmatch.fnmatchcase(trace_id, seed_id):
                continue
            net, sta, loc, cha = nslc
            source = Client.FMTSTR.format(year=day.year, doy=day.julday, network=net, station=sta,
                                          location=loc, channel=cha, sds_type="D")
            units.append(Unit(key=f"{source}@{lo}", source=source, sds_root=str(root),
                              seed_id=trace_id, start=str(lo), end=str(hi)))
        day += 86400
    return sorted(units, key=lambda unit: unit.key)


# ---------------------------------------------------------------------------- one unit
def tokenize_unit(unit: Unit, codec, prep: Preprocessing, shard_dir: Path) -> Report:
    """Read, prepare and encode one unit; write its shard (if it has windows) and its report.

    Files appear only under their final names, each renamed from a `.tmp` once complete.
    """
    from datasets.arrow_writer import ArrowWriter

    report = Report(source=unit.source)
    shard = shard_dir / f"{unit.shard_name}.arrow"
    tmp = shard.with_name(shard.name + ".tmp")
    writer = None
    try:
        stream = unit.read()
    except InputError as err:
        report.fail(str(err).removeprefix(f"{unit.source}: "))
        stream = None
    segments = prepare_stream(stream, prep, report) if stream is not None else []
    for segment_index, segment in enumerate(segments):
        for rows in _segment_rows(codec, segment, segment_index, unit, prep, report):
            if writer is None:
                writer = ArrowWriter(features=FEATURES, path=str(tmp))
            for row in rows:
                writer.write(row)
            report.windows += len(rows)
            report.frames += sum(row["num_frames"] for row in rows)
    if writer is not None:
        writer.finalize()
        writer.close()
        tmp.replace(shard)
    _write_json(shard.with_suffix(".json"), report.to_dict())
    return report


def _segment_rows(codec, segment, segment_index: int, unit: Unit, prep: Preprocessing, report: Report):
    """Yield lists of rows: the segment's windows, then those of its augmented copies (prep.augmentation).

    A segment with a clipped window gets no copies: clipping is only seen on the original samples.
    """
    clipped_before = report.skipped_windows["clipped"]
    yield from _encoded_windows(codec, segment, segment_index, unit, prep, report)
    if report.skipped_windows["clipped"] > clipped_before:
        return
    for copy in range(1, prep.augmentation.copies):
        samples, applied = augment(segment.samples, prep.augmentation,
                                   prep.augmentation.rng(unit.key, segment_index, copy))
        yield from _encoded_windows(codec, segment, segment_index, unit, prep, report,
                                    samples=samples, augmentation=applied)


def _encoded_windows(codec, segment, segment_index: int, unit: Unit, prep: Preprocessing, report: Report,
                     samples: np.ndarray | None = None, augmentation: str = ""):
    """Yield lists of rows: the segment's windows, encoded in batches of equal length.

    samples: an augmented copy of the segment's 40 Hz samples (tokenized_data.augment) to
    window instead; its windows are checked for constant samples only.
    """
    augmented = samples is not None
    samples = segment.samples if samples is None else samples
    by_length: dict[int, list[tuple[int, tuple[int, int]]]] = {}
    for index, span in enumerate(window_spans(len(samples), prep)):
        if augmented:
            window = samples[span[0]:span[1]]
            reason = "constant" if np.all(window == window[0]) else None
        else:
            reason = window_skip_reason(segment, span, prep)
        if reason is not None:
            report.skipped_windows[reason] += 1
            continue
        by_length.setdefault(span[1] - span[0], []).append((index, span))
    batches = [group[i:i + ENCODE_BATCH] for group in by_length.values() for i in range(0, len(group), ENCODE_BATCH)]
    for batch in sorted(batches, key=lambda b: b[0][0]):
        encoded = codec.encode(np.stack([samples[lo:hi] for _, (lo, hi) in batch]))  # [B, N]
        codes = encoded.codes.cpu().numpy().astype(np.int16)  # [B, K, T]
        gain = encoded.gain.cpu().numpy().astype(np.uint8)  # [B, T]
        rows = []
        for b, (index, (lo, _)) in enumerate(batch):
            rows.append({
                "network": segment.network, "station": segment.station,
                "location": segment.location, "channel": segment.channel,
                "starttime": str(segment.starttime + lo / codec.config.sampling_rate),
                "sampling_rate": segment.sampling_rate,
                "num_frames": codes.shape[-1],
                "codes": codes[b], "gain": gain[b],
                "scale": float(encoded.scale[b]), "offset": float(encoded.offset[b]),
                "source_file": unit.source, "event_key": unit.source,
                "segment": segment_index, "window": index, "augmentation": augmentation,
            })
        yield rows


def _write_json(path: Path, values: dict) -> None:
    write_atomically(lambda tmp: tmp.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n"), path)


# ---------------------------------------------------------------------------- worker processes
_WORKER: dict = {}


@contextmanager
def one_torch_thread():
    """Run the codec on one thread: parallelism comes from processes, and the small
    convolutions gain nothing from more threads (on a busy machine they lose a lot)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _start_worker(codec, prep: Preprocessing, shard_dir: str) -> None:
    """Pool initializer: one thread per process (as in DataLoader workers, this also makes
    forking safe after the parent used torch's thread pool)."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process stops the pool
    torch.set_num_threads(1)
    _WORKER.update(codec=codec, prep=prep, shard_dir=Path(shard_dir))


def _work(unit: Unit) -> dict:
    return tokenize_unit(unit, _WORKER["codec"], _WORKER["prep"], _WORKER["shard_dir"]).to_dict()


def _run_units(units: list[Unit], codec, prep: Preprocessing, shard_dir: Path, num_proc: int):
    """Yield each unit's report (as a dict) as it finishes."""
    if num_proc <= 1 or len(units) <= 1:
        with one_torch_thread():  # the same arithmetic as in worker processes: identical tokens
            for unit in units:
                yield tokenize_unit(unit, codec, prep, shard_dir).to_dict()
        return
    # fork: workers start at once with the modules and the codec already loaded (spawn where
    # fork does not exist: they import everything and receive the codec pickled).
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with context.Pool(min(num_proc, len(units)), initializer=_start_worker,
                      initargs=(codec, prep, str(shard_dir))) as pool:
        yield from pool.imap_unordered(_work, units)


# ---------------------------------------------------------------------------- the whole run
@dataclass
class Summary:
    """Totals of a run, printed at its end and stored in the corpus metadata."""

    files: int = 0  # files read, plus inputs that held no waveform file
    files_failed: int = 0
    failures: list[str] = field(default_factory=list)
    windows: int = 0
    channel_hours: float = 0.0
    input_channel_hours: float = 0.0
    skipped_windows: Counter = field(default_factory=Counter)
    short_segment_seconds: float = 0.0
    corpus: str | None = None

    def add(self, report: Report) -> None:
        """Count one file's (or one failed input's) report."""
        self.files += 1
        self.files_failed += bool(report.failures)
        self.failures.extend(report.failures)
        self.windows += report.windows
        self.channel_hours += report.frames / 3600
        self.input_channel_hours += report.input_seconds / 3600
        self.skipped_windows.update(report.skipped_windows)
        self.short_segment_seconds += report.short_segment_seconds

    def to_metadata(self) -> dict:
        values = asdict(self)
        values.pop("corpus")
        values["failures"] = self.failures[:MAX_LISTED_FAILURES]
        values["skipped_windows"] = dict(sorted(self.skipped_windows.items()))
        values["channel_hours"] = round(self.channel_hours, 6)
        values["input_channel_hours"] = round(self.input_channel_hours, 6)
        return values

    def format(self) -> str:
        lines = [f"files read: {self.files - self.files_failed} ok, {self.files_failed} with problems "
                 f"(of {self.files})",
                 f"windows: {self.windows}  ({self.channel_hours:.3f} channel-hours tokenized "
                 f"of {self.input_channel_hours:.3f} usable)"]
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped_windows.items()))
        lines.append(f"windows skipped: {skipped or 'none'}; "
                     f"{self.short_segment_seconds:.1f} s in segments shorter than one window")
        for failure in self.failures:
            lines.append(f"  problem: {failure}")
        if self.corpus:
            lines.append(f"corpus: {self.corpus}")
        return "\n".join(lines)


def tokenize(inputs: list[str] | None, out, *, codec_path=None, prep: Preprocessing | None = None,
             sds: dict | None = None, num_proc: int = 1, shard: tuple[int, int] | None = None,
             overwrite: bool = False, progress: bool = True) -> Summary:
    """Tokenize `inputs` (files, directories, globs) or an SDS archive into the corpus folder `out`.

    sds: {"root", "start", "end"} to read an SDS archive (prep.seed_id selects channels).
    shard: (I, N) to take only units I, I+N, I+2N, ... (one machine of N).
    Returns the run's Summary (corpus is None when no window could be tokenized).
    Raises InputError for a bad setting; per-file problems are in the Summary.
    """
    from tqdm.auto import tqdm

    from codec import load_codec

    from .reader import TokenCorpus

    prep = prep or Preprocessing()
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder made beforehand
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    if overwrite:
        shutil.rmtree(partial, ignore_errors=True)  # start again; an existing `out` goes at the end
    codec = load_codec(codec_path)

    input_failures: list[Report] = []
    if sds is not None:
        units = sds_units(sds["root"], sds["start"], sds["end"], prep.seed_id)
        if not units:
            input_failures.append(Report(source=str(sds["root"]), failures=[
                f"{sds['root']}: no SDS day files match {prep.seed_id} between {sds['start']} and {sds['end']}"]))
    else:
        units = file_units(list(inputs or []), input_failures)
    if shard is not None:
        index, count = shard
        units = units[index::count]

    shard_dir = partial / "units"
    settings = {"format": FORMAT, "codec_id": codec.identity(), "preprocessing": prep.describe(),
                "units": hashlib.sha256("\n".join(u.key for u in units).encode()).hexdigest(),
                "num_units": len(units)}
    _prepare_work_folder(partial, settings)

    done = {p.stem for p in shard_dir.glob("*.json")}
    todo = [unit for unit in units if unit.shard_name not in done]
    started, hours = time.monotonic(), 0.0
    bar = tqdm(total=len(units), initial=len(units) - len(todo), unit="file", desc="tokenize",
               disable=not progress, dynamic_ncols=True, mininterval=1.0)
    try:
        with bar:
            for report in _run_units(todo, codec, prep, shard_dir, num_proc):
                hours += report["frames"] / 3600
                bar.update(1)
                bar.set_postfix_str(f"{hours / max(time.monotonic() - started, 1e-9):.2f} channel-h/s",
                                    refresh=False)
    except KeyboardInterrupt:
        _remove_temporary_files(partial)  # the workers are stopped: their unfinished files go
        raise

    summary = Summary()
    for report in input_failures:
        summary.add(report)
    for unit in units:
        summary.add(Report.from_dict(json.loads((shard_dir / f"{unit.shard_name}.json").read_text())))
    shards = [shard_dir / f"{u.shard_name}.arrow" for u in units if (shard_dir / f"{u.shard_name}.arrow").exists()]
    if not shards:
        shutil.rmtree(partial)
        return summary

    from datasets import Dataset, concatenate_datasets

    dataset = concatenate_datasets([Dataset.from_file(str(path)) for path in shards])
    metadata = {
        "format": FORMAT,
        "codec": {"id": settings["codec_id"], "config": asdict(codec.config),
                  "checkpoint": str(codec_path) if codec_path else "shipped default (codec/pretrained)"},
        "preprocessing": prep.describe(),
        "source": {"inputs": list(inputs or []), "sds": sds, "shard": list(shard) if shard else None,
                   "units": len(units)},
        "run": summary.to_metadata(),
        "command": _command_line(inputs, sds, prep, codec_path, shard),
        "software": _software_versions(),
    }
    if out.exists():  # --overwrite: the old corpus is replaced only now that the new one is ready
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    TokenCorpus(dataset, metadata).save(out)
    shutil.rmtree(partial)
    summary.corpus = str(out)
    return summary


def _prepare_work_folder(partial: Path, settings: dict) -> None:
    """Create `<out>.partial` or check that it belongs to this run; drop half-written files."""
    run_file = partial / "run.json"
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise InputError(
                f"{partial} holds an unfinished run with other settings (differs in: {', '.join(changed)}); "
                "rerun the same command to finish it, or pass --overwrite to start again")
    elif partial.exists():
        shutil.rmtree(partial)  # no run.json: nothing usable was written
    (partial / "units").mkdir(parents=True, exist_ok=True)
    _remove_temporary_files(partial)  # left by a run that was killed
    if not run_file.exists():
        _write_json(run_file, settings)


def _remove_temporary_files(partial: Path) -> None:
    for leftover in partial.rglob("*.tmp"):
        leftover.unlink(missing_ok=True)


def _command_line(inputs, sds, prep: Preprocessing, codec_path, shard) -> str:
    """The `eqcodec tokenize` options that rebuild this corpus (output folder and --num-proc aside)."""
    import shlex

    words = ["eqcodec", "tokenize"]
    if sds is not None:
        words += ["--sds", str(sds["root"]), "--start", str(sds["start"]), "--end", str(sds["end"])]
    else:
        words += list(inputs or [])
    words += ["--window-seconds", str(prep.window_seconds), "--hop-seconds", str(prep.hop_seconds),
              "--min-window-seconds", str(prep.min_window_seconds), "--seed-id", prep.seed_id]
    if prep.allow_clipped:
        words.append("--allow-clipped")
    if prep.augmentation.copies > 1:
        words += ["--augment-copies", str(prep.augmentation.copies), "--augment-seed", str(prep.augmentation.seed)]
        if prep.augmentation.noise_files:
            words += ["--noise-files", *prep.augmentation.noise_files]
    if codec_path:
        words += ["--codec", str(codec_path)]
    if shard:
        words += ["--shard", f"{shard[0]}/{shard[1]}"]
    return shlex.join(words + ["--out", "OUT"])


def _software_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("eqcodec", "obspy", "scipy", "numpy", "torch", "datasets"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
