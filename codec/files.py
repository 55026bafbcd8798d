"""Input files found from what users give, and output files that appear whole or not at all.

Inputs: files, directories (searched recursively) and glob patterns become one
sorted list of waveform files (expand_inputs), the same for every command.

Outputs: every command writes its results under temporary names next to their
destinations and renames them only when all of them are complete, so an error
or an interrupt never leaves a half-written file behind.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

NOT_WAVEFORM_SUFFIXES = {".csv", ".txt", ".md", ".rst", ".json", ".xml", ".yaml", ".yml", ".py",
                         ".ipynb", ".png", ".jpg", ".jpeg", ".pdf", ".html", ".log", ".npz", ".npy",
                         ".arrow", ".parquet", ".safetensors", ".tmp"}


def expand_inputs(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, directories (recursive) and glob patterns -> (sorted unique file paths, [(input, problem)]).

    An input that yields no waveform file is returned with its problem; the others go on.
    """
    found_paths: dict[str, str] = {}  # resolved -> as given
    problems = []
    for given in inputs:
        if Path(given).is_dir():
            found = [str(p) for p in sorted(Path(given).rglob("*")) if _looks_like_waveform(p, Path(given))]
            problem = "directory holds no waveform files"
        elif Path(given).exists():
            found, problem = [given], ""
        elif glob.has_magic(given):
            found = [p for p in sorted(glob.glob(given, recursive=True)) if Path(p).is_file()]
            problem = "pattern matches no file"
        else:
            found, problem = [], "no such file or directory"
        if not found:
            problems.append((given, problem))
        for path in found:
            found_paths.setdefault(str(Path(path).resolve()), path)
    return sorted(found_paths.values()), problems


def _looks_like_waveform(path: Path, root: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    return path.is_file() and not hidden and path.suffix.lower() not in NOT_WAVEFORM_SUFFIXES


def temporary_path(path: Path) -> Path:
    """A hidden sibling of `path` with the same suffix (matplotlib and obspy pick formats by it)."""
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def write_all_or_nothing(writers: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Call writer(temporary path) for each destination, then rename them all; returns the destinations.

    If any writer fails, every temporary file is removed and no destination is touched.
    """
    done: list[tuple[Path, Path]] = []
    try:
        for path, write in writers.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temporary_path(path)
            done.append((tmp, path))
            write(tmp)
    except BaseException:
        for tmp, _ in done:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in done:
        os.replace(tmp, path)
    return [path for _, path in done]


def write_atomically(write: Callable[[Path], None], path: Path) -> None:
    """write(temporary path), then rename to `path`: one file, whole or not at all."""
    write_all_or_nothing({Path(path): write})


def replace_folder(tmp: Path, directory: Path) -> None:
    """Move the finished folder `tmp` to `directory`, replacing any folder there: never a half-written one."""
    tmp, directory = Path(tmp), Path(directory)
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_folder(directory, overwrite: bool = False) -> Iterator[Path]:
    """`with staged_folder(out) as tmp:` fill tmp; on success it replaces `out`, on any error it is removed.

    An existing `out` is refused (FileExistsError) unless overwrite; tmp is a hidden sibling of `out`.
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists (pass overwrite=True to replace it)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the finished folder is an ordinary one
    try:
        yield tmp
        replace_folder(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
