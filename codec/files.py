"""Output files that appear whole or not at all.

Every command writes its results under temporary names next to their
destinations and renames them only when all of them are complete, so an error
or an interrupt never leaves a half-written file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


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
