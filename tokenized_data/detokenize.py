"""Decode a token corpus back to miniSEED: the waveforms its tokens carry.

One miniSEED file per source file of the corpus, named after it, holding its
channels at 40 Hz in the input's physical units (FLOAT32 encoding), with the
windows' SEED ids and start times. Consecutive windows of a segment are joined
into one trace (obspy merge, no filling), so gaps stay gaps. `--codebooks k`
decodes from the first k codebooks only (10 k + 8 bits/s). A corpus with
channel codes longer than miniSEED holds (network 2, station 5, location 2,
channel 3 characters) is refused before anything is written: obspy's writer
would cut them, and WIN channels a100 and a101 would both become a10.

The corpus must be decoded by the codec that made it: the default is the
shipped EQcodec; pass the same `--codec` as for `eqcodec tokenize` otherwise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from codec.checkpoints import retokenize_hint
from codec.files import write_atomically
from codec.model import CheckpointError, EncodedWaveform
from codec.preprocess import FRAME_LENGTH, SAMPLING_RATE, InputError, miniseed_code_problem

from .reader import load_tokenized
from .writer import one_torch_thread

#: Rows decoded together (one batch per window length).
DECODE_BATCH = 64




def check_codec(corpus, codec) -> None:
    """Refuse to decode tokens with another codec than the one that made them."""
    if codec.identity() != corpus.codec_id:
        raise CheckpointError(
            f"the corpus was tokenized with codec {corpus.codec_id} "
            f"({corpus.metadata['codec'].get('checkpoint', '?')}), but the codec given is {codec.identity()}: "
            f"{retokenize_hint(corpus.codec_id)}")


def check_ids_fit_miniseed(corpus) -> None:
    """Refuse a corpus with channel ids miniSEED cannot hold (its writer would cut them, mixing channels)."""
    ids = corpus.dataset.select_columns(["source_file", "network", "station", "location", "channel"])
    ids = ids.to_pandas().drop_duplicates()
    problems = [f"{row.source_file}: trace {row.network}.{row.station}.{row.location}.{row.channel}: {problem}"
                for row in ids.itertuples() if (problem := miniseed_code_problem(row._asdict())) is not None]
    if problems:
        raise InputError(f"miniSEED cannot hold the ids of {len(problems)} channel(s) of the corpus (ids come "
                         f"from the tokenized files); nothing was written. The first: {problems[0]}")


def arrow_table(dataset):
    """The rows of a corpus dataset as one pyarrow Table, in order (for `numpy_rows`): the dataset's own table
    when it has no index mapping (a corpus as saved), else its rows gathered in Arrow format."""
    if getattr(dataset, "_indices", None) is None:
        return dataset.data.table
    return dataset.with_format("arrow")[:]


def numpy_rows(dataset, indices) -> dict:
    """Rows `indices` of a corpus dataset (or of its `arrow_table`) as numpy: codes [K, T] int16 and gain [T]
    uint8 per row (lists), the other columns as arrays; read through Arrow, several times faster than
    datasets' numpy format for the nested code lists."""
    import pyarrow as pa

    indices = list(map(int, indices))
    if isinstance(dataset, pa.Table) or getattr(dataset, "_indices", None) is None:
        table = (dataset if isinstance(dataset, pa.Table) else dataset.data.table).take(pa.array(indices, pa.int64()))
    else:  # a selection: its index mapping applied by datasets
        table = dataset.with_format("arrow")[indices]
    frames = table.column("num_frames").to_numpy()
    rows = {name: table.column(name).to_numpy(zero_copy_only=False)
            for name in table.column_names if name not in ("codes", "gain")}
    codes = table.column("codes").combine_chunks()  # list<list<int16>>: K lists of T codes per row
    per_row = np.diff(codes.offsets.to_numpy())  # K of each row
    values = codes.flatten().flatten().to_numpy(zero_copy_only=False)
    gains = table.column("gain").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    rows["codes"], rows["gain"] = [], []
    start = gain_start = 0
    for K, T in zip(per_row.tolist(), frames.tolist()):
        rows["codes"].append(values[start:start + K * T].reshape(K, T))
        rows["gain"].append(gains[gain_start:gain_start + T])
        start += K * T
        gain_start += T
    return rows


class TableRows:
    """Rows of a corpus's pyarrow Table (its `arrow_table`) read as `numpy_rows` gives them, without copying:
    a row's codes [K, T] and gain [T] are views into the table's buffers (memory-mapped for a saved corpus),
    the decoding columns (num_frames, scale, offset, sampling_rate, augmentation) arrays read once. For
    reading many scattered rows again and again (the similarity search's re-rank): `take` copies each time."""

    COLUMNS = ("num_frames", "scale", "offset", "sampling_rate", "augmentation")

    def __init__(self, table):
        self.columns = {name: table.column(name).to_numpy(zero_copy_only=False)
                        for name in self.COLUMNS if name in table.column_names}
        codes, gain = table.column("codes"), table.column("gain")
        # per row: its chunk, and where its codes and gains start in that chunk's flat values
        self.code_values, self.gain_values, chunk_of, code_start, gain_start, per_row = [], [], [], [], [], []
        for c, (code_chunk, gain_chunk) in enumerate(zip(*_chunks_aligned(codes, gain))):
            outer = code_chunk.offsets.to_numpy()  # row -> its first inner list (sliced chunks: not from 0)
            inner = code_chunk.values.offsets.to_numpy()  # inner list -> its first value
            self.code_values.append(code_chunk.values.values.to_numpy(zero_copy_only=False))
            self.gain_values.append(gain_chunk.values.to_numpy(zero_copy_only=False))
            chunk_of.append(np.full(len(code_chunk), c))
            code_start.append(inner[outer[:-1]])
            per_row.append(np.diff(outer))
            gain_start.append(gain_chunk.offsets.to_numpy()[:-1])
        join = (lambda parts: np.concatenate(parts).astype(np.int64)) if chunk_of else \
            (lambda parts: np.zeros(0, np.int64))
        self.chunk_of, self.code_start, self.gain_start, self.K = map(join, (chunk_of, code_start, gain_start,
                                                                            per_row))

    def __len__(self) -> int:
        return len(self.chunk_of)

    def codes(self, row: int) -> np.ndarray:
        """[K, T] int16 codes of a row (a view)."""
        K, T = int(self.K[row]), int(self.columns["num_frames"][row])
        a = int(self.code_start[row])
        return self.code_values[int(self.chunk_of[row])][a:a + K * T].reshape(K, T)

    def gain(self, row: int) -> np.ndarray:
        """[T] uint8 gains of a row (a view)."""
        a = int(self.gain_start[row])
        return self.gain_values[int(self.chunk_of[row])][a:a + int(self.columns["num_frames"][row])]

    def rows(self, indices) -> dict:
        """Rows `indices` as `numpy_rows` gives them (the decoding columns only)."""
        indices = np.asarray(list(map(int, indices)), np.int64)
        out = {name: values[indices] for name, values in self.columns.items()}
        out["codes"] = [self.codes(r) for r in indices.tolist()]
        out["gain"] = [self.gain(r) for r in indices.tolist()]
        return out


def _chunks_aligned(*columns):
    """The chunks of ChunkedArrays of equal length, cut at the same rows (a Table's columns may be chunked
    differently)."""
    import pyarrow as pa

    if len({tuple(len(c) for c in col.chunks) for col in columns}) == 1:
        return [col.chunks for col in columns]
    return [[pa.concat_arrays(col.chunks)] if col.num_chunks else [] for col in columns]


def decode_row_samples(codec, rows: dict, num_codebooks: int | None = None,
                       batch_size: int = DECODE_BATCH) -> list[np.ndarray]:
    """Rows of a corpus (a dict of columns, numpy format: at least codes, gain, num_frames, scale, offset) ->
    one float64 array per row: its samples at 40 Hz in physical units. Rows of one length are decoded
    `batch_size` at a time."""
    lengths = np.asarray(rows["num_frames"])
    # the source's rate bounds the band decoded (EncodedWaveform.source_rate; 40 Hz or more: the full band,
    # alike), except for augmented copies, whose time-stretch may have moved content above it
    n = len(lengths)
    rates = np.minimum(np.asarray(rows.get("sampling_rate", [SAMPLING_RATE] * n), np.float64), SAMPLING_RATE)
    rates[np.asarray(rows.get("augmentation", [""] * n), dtype=object) != ""] = SAMPLING_RATE
    out: list = [None] * n
    for frames, rate in sorted(set(zip(lengths.tolist(), rates.tolist()))):
        where = np.flatnonzero((lengths == frames) & (rates == rate))
        for lo in range(0, len(where), batch_size):
            batch = where[lo:lo + batch_size]
            encoded = EncodedWaveform(
                codes=torch.as_tensor(np.stack([rows["codes"][i] for i in batch])).long(),  # [B, K, T]
                gain=torch.as_tensor(np.stack([rows["gain"][i] for i in batch])).long(),  # [B, T]
                scale=torch.as_tensor(np.asarray(rows["scale"])[batch], dtype=torch.float64),
                offset=torch.as_tensor(np.asarray(rows["offset"])[batch], dtype=torch.float64),
                length=int(frames) * FRAME_LENGTH, source_rate=float(rate))
            samples = codec.decode(encoded, num_codebooks).cpu().numpy()  # [B, N]
            for b, i in enumerate(batch):
                out[i] = samples[b]
    return out


def decode_rows(codec, rows: dict, num_codebooks: int | None = None) -> list:
    """Rows of a corpus (a dict of columns, numpy format) -> one obspy Trace per window (40 Hz)."""
    import obspy

    traces = []
    for i, samples in enumerate(decode_row_samples(codec, rows, num_codebooks)):
        header = {key: str(rows[key][i]) for key in ("network", "station", "location", "channel")}
        header.update(starttime=obspy.UTCDateTime(str(rows["starttime"][i])), sampling_rate=SAMPLING_RATE)
        traces.append(obspy.Trace(samples.astype(np.float32), header=header))
    return traces


def detokenize(corpus, codec, out, num_codebooks: int | None = None, *, progress: bool = True) -> list[Path]:
    """Write one miniSEED file per source file of `corpus` into `out`; returns their paths."""
    import obspy
    from tqdm.auto import tqdm

    check_codec(corpus, codec)
    check_ids_fit_miniseed(corpus)
    k = codec.check_num_codebooks(num_codebooks)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = corpus.dataset.select_columns(["source_file"]).to_pandas().source_file
    rows_of = {source: list(rows) for source, rows in sources.groupby(sources, sort=False).groups.items()}
    names = _file_names(list(rows_of))
    written = []
    for source, rows in tqdm(rows_of.items(), desc="detokenize", unit="file", disable=not progress):
        with one_torch_thread():
            stream = obspy.Stream(decode_rows(codec, numpy_rows(corpus.dataset, rows), k))
        stream.merge(method=-1)  # joins windows that follow each other; gaps and overlaps stay
        stream.sort()
        path = out / names[source]
        write_atomically(lambda tmp, st=stream: st.write(str(tmp), format="MSEED", encoding="FLOAT32"), path)
        written.append(path)
    return written


def _file_names(sources: list[str]) -> dict[str, str]:
    """source file -> '<stem>.mseed', with a hash of the source added where two stems collide."""
    stems = {source: _stem(source) for source in sources}
    taken = {}
    for stem in stems.values():
        taken[stem] = taken.get(stem, 0) + 1
    return {source: (f"{stem}.mseed" if taken[stem] == 1 else
                     f"{stem}-{hashlib.sha1(source.encode()).hexdigest()[:8]}.mseed")
            for source, stem in stems.items()}


def _stem(source: str) -> str:
    """File name without a format suffix ('.mseed', '.SAC', '.gz'); SDS names ('...2010.147') stay whole."""
    path = Path(source)
    return path.stem if path.suffix[1:].isalpha() else path.name


def detokenize_corpus(corpus: str | list[str], out: str, *, codebooks: int | None = None, codec: str | None = None,
                      progress: bool = True) -> list[Path]:
    """`eqcodec detokenize`: decode the corpus folder(s) with the codec checkpoint `codec` (None: shipped)."""
    from codec import load_codec

    tokens = load_tokenized(corpus if isinstance(corpus, str) or len(corpus) > 1 else corpus[0])
    written = detokenize(tokens, load_codec(codec), out, codebooks, progress=progress)
    hours = tokens.counts()["channel_hours"]
    print(f"wrote {len(written)} miniSEED files ({len(tokens)} windows, {hours:.3f} channel-hours, "
          f"{codebooks or tokens.num_codebooks} codebooks) to {out}")
    return written
