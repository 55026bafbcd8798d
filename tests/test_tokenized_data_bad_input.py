"""Bad input, interrupted runs and parallel runs of `eqcodec tokenize`.

Every problem is reported with its file and reason, the rest is tokenized,
the exit status is 1 (0 with --allow-failures), and no half-written file is
left behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import obspy
import pytest

from cli import main
from codec.preprocess import InputError
from tokenized_data import Preprocessing, load_tokenized, tokenize
from tokenized_data import writer as writer_module

from test_tokenized_data import noise_trace, write


def leftovers(*folders: Path) -> list[Path]:
    """Temporary files anywhere under the folders (and their .partial siblings)."""
    found = []
    for folder in folders:
        for root in (folder, folder.with_name(folder.name + ".partial")):
            if root.exists():
                found += [p for p in root.rglob("*") if p.name.endswith((".tmp", ".saving"))]
        found += list(folder.parent.glob(f".{folder.name}.saving"))
    return found


@pytest.fixture()
def bad_inputs(tmp_path):
    """A good file and one file (or folder) per kind of problem."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = write(noise_trace("GOOD", seconds=40), inputs / "good.mseed")
    corrupt = inputs / "corrupt.mseed"
    corrupt.write_bytes(good.read_bytes()[:700] + b"\x00garbage" * 50)  # truncated and overwritten
    unknown = inputs / "table.dat"
    unknown.write_text("time,value\n1,2\n")
    empty = write(obspy.Trace(np.array([], dtype=np.float32), header={"station": "EMPTY", "sampling_rate": 100}),
                  inputs / "empty.sac", fmt="SAC")
    all_nan = noise_trace("NAN", seconds=30)
    all_nan.data = np.full(all_nan.stats.npts, np.nan, dtype=np.float32)
    nan_file = write(all_nan, inputs / "nan.mseed")
    trace = noise_trace("OVER", seconds=60, seed=3)
    t0 = trace.stats.starttime
    a, b = trace.slice(t0, t0 + 40).copy(), trace.slice(t0 + 20, t0 + 60).copy()
    b.data = b.data * 2  # 20-40 s recorded twice, differently
    overlap = write(obspy.Stream([a, b]), inputs / "overlap.mseed")
    slow = write(noise_trace("SLOW", seconds=600, rate=10), inputs / "slow.mseed")
    no_waveforms = tmp_path / "docs"
    no_waveforms.mkdir()
    (no_waveforms / "README.md").write_text("nothing here")
    problems = {corrupt: "cannot read", unknown: "unknown", empty: "empty", nan_file: "NaN",
                overlap: "conflicting", slow: "below the minimum", no_waveforms: "no waveform files"}
    return [good, *problems], problems


def test_each_bad_input_is_reported_and_the_rest_tokenized(tmp_path, bad_inputs, capsys):
    inputs, problems = bad_inputs
    out = tmp_path / "corpus"
    args = ["tokenize", *map(str, inputs), "--out", str(out), "--num-proc", "1", "--no-progress"]
    assert main(args) == 1
    printed = capsys.readouterr()
    for path, reason in problems.items():
        lines = [line for line in printed.out.splitlines() if "problem:" in line and str(path) in line]
        assert lines and reason in lines[0], (path, reason, printed.out)
    assert "--allow-failures" in printed.err
    ds = load_tokenized(out).dataset
    assert sorted(set(ds["station"])) == ["GOOD", "OVER"]  # overlap file: its clean parts are kept
    over = [(obspy.UTCDateTime(r["starttime"]) - obspy.UTCDateTime("2020-01-01"), r["num_frames"])
            for r in ds if r["station"] == "OVER"]
    assert over == [(0.0, 20)] or all(start + frames <= 20 or start >= 40 for start, frames in over)
    metadata = load_tokenized(out).metadata
    assert metadata["run"]["files_failed"] == len(problems)
    assert not leftovers(out) and not out.with_name("corpus.partial").exists()
    # --allow-failures: same corpus, exit 0
    assert main(args[:-5] + ["--out", str(tmp_path / "again"), "--allow-failures", "--no-progress"]) == 0


def test_no_waveforms_at_all_writes_nothing(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    out = tmp_path / "corpus"
    assert main(["tokenize", str(tmp_path / "docs"), "--out", str(out), "--no-progress"]) == 1
    assert "no waveform files" in capsys.readouterr().out
    assert not out.exists() and not out.with_name("corpus.partial").exists()


def test_real_file_with_a_low_rate_channel(tmp_path, capsys):
    """obspy's KONO recording: a 20 Hz channel is tokenized, its 1 Hz channels are reported."""
    path = Path(obspy.__file__).parent / "io/seisan/tests/data/2001-01-13-1742-24S.KONO__004"
    if not path.is_file():
        pytest.skip("obspy install lacks the KONO recording")
    summary = tokenize([str(path)], tmp_path / "corpus", progress=False)
    assert summary.files_failed == 1 and len(summary.failures) == 3
    assert all("1 Hz is below the minimum" in f and str(path) in f for f in summary.failures)
    assert set(load_tokenized(tmp_path / "corpus").dataset["channel"]) == {"B0Z"}


def test_clipped_and_dead_windows_are_skipped_and_counted(tmp_path):
    trace = noise_trace("CLIP", seconds=60)
    trace.data[2000:2010] = 1e6  # flat at the extreme in window 1 (0-20 s)
    trace.data[4500:6000] = 7.0  # dead in window 3 (40-60 s) ... most of it
    trace.data[4000:6000] = 7.0  # ... all of it
    write(trace, tmp_path / "clip.mseed")
    prep = Preprocessing(window_seconds=20)
    summary = tokenize([str(tmp_path / "clip.mseed")], tmp_path / "corpus", prep=prep, progress=False)
    assert summary.skipped_windows == {"clipped": 1, "constant": 1} and summary.windows == 1
    assert not summary.failures
    allowed = tokenize([str(tmp_path / "clip.mseed")], tmp_path / "corpus2", progress=False,
                       prep=Preprocessing(window_seconds=20, allow_clipped=True))
    assert allowed.windows == 2 and allowed.skipped_windows == {"constant": 1}


def _inputs(tmp_path, count=5):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(count):
        write(noise_trace(f"S{i}", seconds=30 + 10 * i, seed=i), folder / f"f{i}.mseed")
    return [str(folder)]


def _same_corpus(a: Path, b: Path) -> None:
    ca, cb = load_tokenized(a), load_tokenized(b)
    assert ca.dataset.to_dict() == cb.dataset.to_dict()
    assert ca.metadata == cb.metadata


def test_interrupted_run_resumes_to_the_same_corpus(tmp_path, monkeypatch):
    inputs = _inputs(tmp_path)
    tokenize(inputs, tmp_path / "reference", progress=False)

    calls = []
    real = writer_module.tokenize_unit

    def interrupted_after_two(*args, **kwargs):
        if len(calls) == 2:
            (args[3] / "0123456789abcdef.arrow.tmp").write_bytes(b"partial")  # being written
            raise KeyboardInterrupt
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(writer_module, "tokenize_unit", interrupted_after_two)
    out = tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt):
        tokenize(inputs, out, progress=False)
    partial = out.with_name("corpus.partial")
    assert not out.exists() and len(list((partial / "units").glob("*.json"))) == 2
    assert not leftovers(out)  # Ctrl-C removes unfinished files ...
    (partial / "units" / "fedcba9876543210.arrow.tmp").write_bytes(b"partial")  # ... a kill -9 does not

    monkeypatch.setattr(writer_module, "tokenize_unit", real)
    resumed = []
    monkeypatch.setattr(writer_module, "tokenize_unit", lambda *a, **k: resumed.append(a[0]) or real(*a, **k))
    summary = tokenize(inputs, out, progress=False)
    assert len(resumed) == 3 and not set(resumed) & set(calls)  # only the rest was done
    assert summary.files == 5 and summary.windows == 5
    _same_corpus(out, tmp_path / "reference")
    assert not partial.exists() and not leftovers(out)


def test_resume_with_other_settings_is_refused(tmp_path, monkeypatch):
    inputs = _inputs(tmp_path, 2)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer_module, "tokenize_unit", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tokenize(inputs, tmp_path / "corpus", progress=False)
    monkeypatch.undo()
    with pytest.raises(InputError, match="other settings"):
        tokenize(inputs, tmp_path / "corpus", progress=False, prep=Preprocessing(window_seconds=60))
    tokenize(inputs, tmp_path / "reference", progress=False)
    with pytest.raises(InputError, match="already exists"):
        tokenize(inputs, tmp_path / "reference", progress=False)
    assert tokenize(inputs, tmp_path / "reference", progress=False, overwrite=True).corpus


def test_parallel_run_equals_serial_run(tmp_path):
    inputs = _inputs(tmp_path, 4)
    tokenize(inputs, tmp_path / "serial", progress=False, num_proc=1)
    tokenize(inputs, tmp_path / "parallel", progress=False, num_proc=2)
    _same_corpus(tmp_path / "serial", tmp_path / "parallel")


def test_shards_of_a_run_merge_into_the_whole(tmp_path):
    inputs = _inputs(tmp_path, 5)
    tokenize(inputs, tmp_path / "whole", progress=False)
    for i in range(2):
        tokenize(inputs, tmp_path / f"part{i}", progress=False, shard=(i, 2))
    merged = load_tokenized([tmp_path / "part0", tmp_path / "part1"])
    whole = load_tokenized(tmp_path / "whole")
    key = lambda row: (row["source_file"], row["starttime"], row["channel"])  # noqa: E731
    assert sorted(map(key, merged.dataset)) == sorted(map(key, whole.dataset))
    merged.save(tmp_path / "merged")
    assert load_tokenized(tmp_path / "merged").metadata["counts"]["windows"] == 5
