"""Load, split and save token corpora: `load_tokenized(path) -> TokenCorpus`.

    corpus = load_tokenized("corpus")                # or a list of folders
    corpus.dataset                                   # datasets.Dataset, one row per window
    corpus.codec_id, corpus.num_codebooks, corpus.codebook_size, corpus.metadata
    train, validation = corpus.split(by="event", eval_fraction=0.2, seed=0)

Splits. A split never puts one window in both parts, and keeps together what
would leak information between them:
  by="event":   windows whose `event_key` (the source file) is the same, and
                every set of source files whose recording times overlap: the
                three components and the other stations that recorded the
                same earthquake stay on one side. (For continuous archives
                this groups whole days of all stations that overlap in time.)
  by="station": all windows of one NET.STA.
Groups are taken for validation in the order of a seeded hash of their name
until `eval_fraction` of the windows is reached; the result depends only on
the corpus and the seed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.data import held_out_groups, overlap_groups
from codec.files import replace_folder
from codec.preprocess import InputError

from .schema import metadata_from_text, metadata_to_text, stream_vocab_sizes


@dataclass
class TokenCorpus:
    """A token dataset and its metadata (see tokenized_data.schema for both)."""

    dataset: object  # datasets.Dataset
    metadata: dict

    @property
    def codec_id(self) -> str:
        """Identity hash of the codec that made the tokens (`EQCodec.identity()`)."""
        return self.metadata["codec"]["id"]

    @property
    def num_codebooks(self) -> int:
        return int(self.metadata["codec"]["config"]["num_codebooks"])

    @property
    def codebook_size(self) -> int:
        return int(self.metadata["codec"]["config"]["codebook_size"])

    @property
    def stream_vocab_sizes(self) -> list[int]:
        """Vocabulary of each row of `to_streams`: [256 gain levels, then codebook_size per codebook]."""
        return stream_vocab_sizes(self.num_codebooks, self.codebook_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def counts(self) -> dict:
        """Windows, channel-hours, stations, channels and time span of the corpus."""
        import pandas as pd

        table = self.dataset.select_columns(
            ["network", "station", "location", "channel", "starttime", "num_frames"]).to_pandas()
        if table.empty:
            return {"windows": 0, "channel_hours": 0.0, "stations": [], "channels": 0}
        starts = pd.to_datetime(table.starttime, utc=True)
        ends = starts + pd.to_timedelta(table.num_frames, unit="s")
        stations = sorted(set(table.network + "." + table.station))
        channels = table.network + "." + table.station + "." + table.location + "." + table.channel
        return {
            "windows": len(table),
            "channel_hours": round(float(table.num_frames.sum()) / 3600, 6),
            "stations": stations,
            "channels": int(channels.nunique()),
            "channel_codes": sorted(set(table.channel)),
            "first_sample": starts.min().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "last_sample": ends.max().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    # ------------------------------------------------------------------ splits
    def split(self, by: str = "event", eval_fraction: float = 0.2, seed: int = 0) -> tuple["TokenCorpus", "TokenCorpus"]:
        """(train, validation) corpora; see the module docstring for what stays together."""
        if by not in ("event", "station"):
            raise ValueError(f"split by 'event' or 'station', not {by!r}")
        if not 0 < eval_fraction < 1:
            raise ValueError(f"eval_fraction must lie strictly between 0 and 1, got {eval_fraction}")
        table = self.dataset.select_columns(["network", "station", "event_key", "starttime", "num_frames"]).to_pandas()
        keys = table.network + "." + table.station if by == "station" else _event_groups(table)
        sizes = keys.value_counts()
        if len(sizes) < 2:
            raise InputError(f"cannot split by {by}: all {len(table)} windows belong to one {by} "
                             f"({keys.iloc[0] if len(keys) else 'none'})")
        held = held_out_groups({name: int(n) for name, n in sizes.items()}, eval_fraction, salt=f"{seed}:")
        is_eval = keys.isin(held).to_numpy()
        parts = []
        for part, rows in (("train", np.flatnonzero(~is_eval)), ("validation", np.flatnonzero(is_eval))):
            metadata = {**self.metadata, "split": {"by": by, "eval_fraction": eval_fraction, "seed": seed,
                                                   "part": part, "groups_held_out": len(held)}}
            parts.append(TokenCorpus(self.dataset.select(rows), metadata))
        return parts[0], parts[1]

    # ------------------------------------------------------------------ saving
    def save(self, path) -> Path:
        """Write the corpus to a new folder: Arrow shards (save_to_disk), metadata, README.md card.

        Written to a hidden temporary folder beside `path`, then renamed: a
        folder named `path` is always a complete corpus.
        """
        import datasets

        from .card import dataset_card

        path = Path(path)
        if path.exists():
            raise InputError(f"{path} already exists")
        tmp = path.with_name(f".{path.name}.saving")
        shutil.rmtree(tmp, ignore_errors=True)
        self.metadata = {**self.metadata, "counts": self.counts()}
        self.dataset.info.description = metadata_to_text(self.metadata)
        bars_were_on = not datasets.utils.are_progress_bars_disabled()
        datasets.utils.disable_progress_bars()
        try:
            self.dataset.save_to_disk(str(tmp), max_shard_size="500MB")
        finally:
            if bars_were_on:
                datasets.utils.enable_progress_bars()
        (tmp / "README.md").write_text(dataset_card(self.metadata, path.name))
        replace_folder(tmp, path)
        return path


def _event_groups(table):
    """[rows] event_key -> group name: keys whose recording times overlap form one group (codec.data)."""
    import pandas as pd

    seconds = (pd.to_datetime(table.starttime, utc=True) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    spans = pd.DataFrame({"key": table.event_key, "start": seconds, "end": seconds + table.num_frames})
    spans = spans.groupby("key").agg(start=("start", "min"), end=("end", "max"))
    group_of = overlap_groups({key: (start, end) for key, start, end in zip(spans.index, spans.start, spans.end)})
    return table.event_key.map(group_of)


def _load_one(path) -> TokenCorpus:
    import datasets

    path = Path(path)
    if not (path / "dataset_info.json").is_file():
        hint = " (an unfinished run? rerun the same `eqcodec tokenize` command)" if \
            path.with_name(path.name + ".partial").exists() else ""
        raise InputError(f"{path}: not a token corpus folder (no dataset_info.json){hint}")
    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as err:
        raise InputError(f"{path}: cannot load the dataset ({type(err).__name__}: {err})") from None
    if not isinstance(dataset, datasets.Dataset):
        raise InputError(f"{path}: holds a DatasetDict, not one token dataset")
    return TokenCorpus(dataset, metadata_from_text(dataset.info.description, str(path)))


def load_tokenized(paths) -> TokenCorpus:
    """Load one corpus folder, or several made by the same codec (concatenated, in order).

    Refuses corpora made by different codecs, naming both.
    """
    from datasets import concatenate_datasets

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise InputError("load_tokenized: no corpus folder given")
    corpora = [_load_one(p) for p in paths]
    first = corpora[0]
    if len(corpora) == 1:
        return first
    for path, corpus in zip(paths[1:], corpora[1:]):
        if corpus.codec_id != first.codec_id:
            raise InputError(
                f"cannot mix token corpora made by different codecs: {paths[0]} was tokenized with codec "
                f"{first.codec_id}, {path} with codec {corpus.codec_id}; retokenize one of them")
    metadata = {key: value for key, value in first.metadata.items() if key not in ("counts", "run", "split")}
    metadata["parts"] = [{"path": str(p), **c.metadata} for p, c in zip(paths, corpora)]
    dataset = concatenate_datasets([c.dataset for c in corpora])
    return TokenCorpus(dataset, metadata)
