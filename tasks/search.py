"""Similarity search over token archives: `eqcodec index` builds an index, `eqcodec search` queries it.

    eqcodec index corpus-2024 corpus-2025 --out archive-index
    eqcodec index corpus-2026 --out archive-index --add          # extend it (same codec only)
    eqcodec search event.mseed --index archive-index --out matches.csv --top 20 --plot matches.png
    eqcodec search --all-pairs --index archive-index --out pairs.csv --min-score 0.7   # no template

    from tasks.search import all_pairs, build_index, search
    build_index(["corpus"], "archive-index")
    matches = search("event.mseed", "archive-index", top=10, min_score=0.5)   # pandas.DataFrame
    pairs = all_pairs("archive-index", min_score=0.7, min_separation=10)     # pandas.DataFrame

How it works, in two stages, from the tokens alone (no original samples needed):

1. Coarse (index time). Every channel of every corpus is cut into gap-free
   *pieces* (the corpus windows of one channel that touch or overlap, joined),
   decoded by the frozen codec from its first 2 codebooks (28 bits/s), band-passed
   (Butterworth, 4 poles, zero phase; 1-8 Hz by default, `--band`) and cut into
   windows of 4 s hopped by 1 s (one window per codec frame). Each window is
   decimated to 20 Hz (80 values), its mean removed and scaled to unit norm: the
   inner product of two vectors is their normalized cross-correlation. The
   vectors go into a FAISS index: exact (IndexFlatIP, 320 bytes per second of
   archive) for small archives, product-quantized (IndexPQ, or IndexIVFPQ for
   many vectors: 16 bytes per second by default, below the archive's Steim2 size)
   for large ones (`--index-type`). Beside it, `vectors.npz` holds each vector's
   piece and frame, `pieces.parquet` each piece's trace id, start time, length and
   corpus rows: trace id and window start time of any vector follow from them.
2. Query. The template (one channel of any obspy-readable file, optionally cut
   with `start`/`end`) is checked (gaps, NaN, too short or too long: refused),
   resampled to 40 Hz as the codec's input (codec.preprocess), detrended and
   band-passed like the archive. Its 4-s windows hopped by 2 s (anchors; the 8
   loudest) are each taken at the 40 sub-second shifts of one frame (0, 25, ...,
   975 ms), so that an event off the archive's 1-s grid still meets one window of
   it within half a sample; these vectors are searched for their nearest windows,
   which propose template start times (one per second and channel), ranked by the
   mean over the anchors of their best window correlation (an approximation of
   the whole template's correlation at that start).
3. Re-rank. For each proposal the corpus rows around it are decoded from all
   codebooks (88 bits/s), band-passed, and the normalized cross-correlation of the
   FULL template is computed at every sample within +-1 s of the proposal
   (obspy's correlate_template): its maximum is the match's `score` and its lag
   the exact `starttime` (where the template's first sample aligns, to the 25-ms
   sample). Matches closer than half the template length on one channel keep the
   best one; then `min_score` and `top` apply.

All pairs (`all_pairs`, `eqcodec search --all-pairs`; FAST's use case, no template):

1. Coarse, from the index alone. Every indexed window vector, also shifted by 0 to 0.5 s in 50-ms
   steps (its values moved, zeros after, standardized again: a pair off the 1-s grid meets within
   25 ms), is searched for its nearest vectors, PAIR_BATCH windows at a time (memory bounded by a
   batch and a pool of pairs). Partners on the same trace closer than `min_separation` (default: the
   window, 4 s: self-matches and their shifts) are dropped; each window keeps its `neighbours` (10)
   best partners; (a, b) and (b, a) are one pair (a: the earlier window on one trace, else the smaller
   trace id). Pairs of one repeat (runs of neighbouring windows: the same two traces, first windows
   within 1 s and time offsets within 1 s of each other, chained) form a cluster, ranked by the sum of
   its pairs' coarse scores (a repeat is a run of similar window pairs, a chance likeness mostly one).
2. Re-rank. The best clusters (default max(2000, 4 x windows)), up to 3 pairs of each: window a,
   decoded from all codebooks and band-passed (pieces are decoded and filtered an hour at a time and
   cached), is correlated with the decoded archive around window b at every sample within +-1 s
   (obspy's correlate_template, as the template search): the maximum is the pair's `score`, its lag
   gives `starttime_b` (where window a's first sample aligns) and `lag_seconds`, to the sample. Of the
   pairs of one repeat (same traces, lags within 0.1 s and first windows within two windows, chained;
   then lags within a window) the best is kept; then `min_score` and `top` apply.

An index refers to its corpora by their absolute paths (the tokens are read
again at query time to re-rank): moving or changing a corpus after indexing is
refused at search time with a message (index it again). An index holds the
identity of the codec that made its corpora; corpora of another codec are
refused. The index folder is written to a hidden temporary folder beside it and
renamed when complete, also when extended with `add=True` (`--add`): a folder
of that name is always a whole index. The index type and band are fixed when
the index is created; extending reuses them (and the trained quantizer).
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codec.checkpoints import retokenize_hint
from codec.errors import CheckpointError, InputError
from codec.files import replace_folder, write_all_or_nothing, write_atomically
from codec.preprocess import (FRAME_LENGTH, SAMPLING_RATE, check_numeric_samples, contiguous_traces, read_stream,
                              trace_label, trace_to_codec_input)

#: Format tag of index.json; bumped when the layout changes meaning.
FORMAT = "eqcodec-search-index/1"
#: Coarse windows: length in seconds (hop = 1 frame = 1 s), decimation factor, codebooks decoded.
WINDOW_SECONDS = 4
DECIMATION = 2
COARSE_CODEBOOKS = 2
#: Default band (Hz) of both stages.
DEFAULT_BAND = (1.0, 8.0)
#: Shortest template accepted, seconds.
MIN_TEMPLATE_SECONDS = 2.0
#: Re-rank neighbourhood: +- this many samples (1 s) around each proposal.
NEIGHBOURHOOD = FRAME_LENGTH
#: Samples decoded beyond the neighbourhood on each side so that the band-pass settles (5 s).
FILTER_MARGIN = 5 * FRAME_LENGTH
#: Anchor windows of a template queried (its loudest), and proposals re-ranked by default.
MAX_ANCHORS = 8
DEFAULT_CANDIDATES = 300
#: Below this many vectors `index_type="auto"` builds an exact index, above an IVF-PQ one.
AUTO_FLAT_LIMIT = 50_000
#: Product quantizer: bytes per vector (sub-quantizers of 8 bits each).
PQ_BYTES = 16
#: Corpus rows decoded together when building an index.
DECODE_ROWS = 64
#: Windows embedded together when building an index (1 h of one channel).
CHUNK_FRAMES = 3600

INDEX_FILES = ("index.json", "vectors.faiss", "vectors.npz", "pieces.parquet")


def _faiss():
    import faiss

    faiss.omp_set_num_threads(1)
    return faiss


# ---------------------------------------------------------------------------- signal helpers
@functools.lru_cache(maxsize=16)
def _bandpass_sos(low: float, high: float) -> np.ndarray:
    from scipy.signal import butter

    return butter(4, [low, min(high, 0.45 * SAMPLING_RATE)], btype="bandpass", fs=SAMPLING_RATE, output="sos")


def bandpass(x: np.ndarray, band) -> np.ndarray:
    """Zero-phase Butterworth band-pass (4 poles, sosfiltfilt) at 40 Hz; band None: the mean removed only."""
    from scipy.signal import sosfiltfilt

    x = np.asarray(x, dtype=np.float64)
    if band is None:
        return x - x.mean()
    sos = _bandpass_sos(float(band[0]), float(band[1]))
    padlen = min(len(x) - 1, 3 * (2 * len(sos) + 1))
    return sosfiltfilt(sos, x - x.mean(), padlen=max(padlen, 0))


def _standardize(vectors: np.ndarray) -> np.ndarray:
    """Rows with zero mean and unit norm (float32); all-zero rows stay zero."""
    v = vectors - vectors.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def window_vectors(filtered: np.ndarray, window_seconds: int = WINDOW_SECONDS,
                   decimation: int = DECIMATION) -> np.ndarray:
    """Band-passed 40 Hz samples of a piece -> [n_windows, dims] vectors of the windows starting at each frame."""
    from numpy.lib.stride_tricks import sliding_window_view

    width = window_seconds * FRAME_LENGTH
    if len(filtered) < width:
        return np.zeros((0, width // decimation), np.float32)
    windows = sliding_window_view(filtered, width)[::FRAME_LENGTH, ::decimation]
    return _standardize(windows)


# ---------------------------------------------------------------------------- the index on disk
@dataclass
class SearchIndex:
    """An index folder in memory: FAISS index, vector table, piece table, metadata (index.json)."""

    path: Path
    metadata: dict
    index: object  # faiss.Index
    vector_piece: np.ndarray  # [n] int32
    vector_frame: np.ndarray  # [n] int32
    pieces: object  # pandas.DataFrame: corpus, trace_id, starttime, num_samples, rows, offsets

    @property
    def codec_id(self) -> str:
        return self.metadata["codec_id"]

    @property
    def params(self) -> dict:
        return self.metadata["params"]

    def __len__(self) -> int:
        return int(self.index.ntotal)


def load_index(path) -> SearchIndex:
    """Read an index folder; InputError naming the file when it is missing, empty or corrupt."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such index folder (make one with `eqcodec index CORPUS --out {path}`)")
    if not path.is_dir():
        raise InputError(f"{path}: is a file, not a search index folder")
    if not any(path.iterdir()):
        raise InputError(f"{path}: the folder is empty, not a search index (make one with `eqcodec index`)")
    meta_path = path / "index.json"
    if not meta_path.is_file():
        raise InputError(f"{path}: not a search index folder (no index.json)")
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{meta_path}: corrupt search index metadata ({err})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise InputError(f"{meta_path}: not an eqcodec search index (expected format {FORMAT!r})")
    for name in INDEX_FILES[1:]:
        if not (path / name).is_file():
            raise InputError(f"{path / name}: missing from the search index (corrupt index; build it again)")
    faiss = _faiss()
    try:
        index = faiss.read_index(str(path / "vectors.faiss"))
    except Exception as err:
        raise InputError(f"{path / 'vectors.faiss'}: corrupt FAISS index ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    try:
        with np.load(path / "vectors.npz") as table:
            vector_piece, vector_frame = table["piece"].astype(np.int64), table["frame"].astype(np.int64)
    except Exception as err:
        raise InputError(f"{path / 'vectors.npz'}: corrupt vector table ({type(err).__name__}: {err})") from None
    try:
        pieces = pd.read_parquet(path / "pieces.parquet")
    except Exception as err:
        raise InputError(f"{path / 'pieces.parquet'}: corrupt piece table ({type(err).__name__}: {err})") from None
    if not (index.ntotal == len(vector_piece) == len(vector_frame) == metadata.get("vectors")):
        raise InputError(f"{path}: corrupt search index: {index.ntotal} vectors in vectors.faiss, "
                         f"{len(vector_piece)} in vectors.npz, {metadata.get('vectors')} in index.json")
    if len(vector_piece) and (vector_piece.max() >= len(pieces) or vector_piece.min() < 0):
        raise InputError(f"{path / 'vectors.npz'}: refers to pieces that pieces.parquet does not hold (corrupt index)")
    if index.d != metadata["params"]["dims"]:
        raise InputError(f"{path / 'vectors.faiss'}: vectors of {index.d} dimensions, index.json says "
                         f"{metadata['params']['dims']} (corrupt index)")
    return SearchIndex(path, metadata, index, vector_piece, vector_frame, pieces)


def _corpus_fingerprint(corpus) -> dict:
    return {"rows": len(corpus.dataset), "fingerprint": getattr(corpus.dataset, "_fingerprint", None)}


def _load_corpus(path, expected: dict | None = None):
    """A corpus of the index (its fingerprint checked when `expected` is given)."""
    from tokenized_data import load_tokenized

    corpus = load_tokenized(path)
    if expected is not None and _corpus_fingerprint(corpus) != {k: expected[k] for k in ("rows", "fingerprint")}:
        raise InputError(f"{path}: the token corpus changed since it was indexed ({len(corpus.dataset)} rows, "
                         f"index says {expected['rows']}); build the index again with `eqcodec index`")
    return corpus


def _pieces_of(corpus, corpus_number: int):
    """The corpus's rows joined into gap-free pieces per channel -> DataFrame of pieces."""
    import obspy
    import pandas as pd

    table = corpus.dataset.select_columns(
        ["network", "station", "location", "channel", "starttime", "num_frames"]).to_pandas()
    table["row"] = np.arange(len(table))
    table["trace_id"] = table.network + "." + table.station + "." + table.location + "." + table.channel
    table["t0"] = [obspy.UTCDateTime(t).timestamp for t in table.starttime]
    pieces = []
    for trace_id, rows in table.groupby("trace_id", sort=True):
        rows = rows.sort_values(["t0", "row"])
        current = None
        for row in rows.itertuples():
            length = int(row.num_frames) * FRAME_LENGTH
            if current is not None:
                offset = int(round((row.t0 - current["t0"]) * SAMPLING_RATE))
                on_grid = abs(offset / SAMPLING_RATE - (row.t0 - current["t0"])) < 0.25 / SAMPLING_RATE
                if on_grid and offset <= current["num_samples"]:  # touches or overlaps: same piece
                    current["rows"].append(int(row.row))
                    current["offsets"].append(offset)
                    current["num_samples"] = max(current["num_samples"], offset + length)
                    continue
                pieces.append(current)
            current = {"corpus": corpus_number, "trace_id": trace_id, "t0": row.t0, "starttime": row.starttime,
                       "num_samples": length, "rows": [int(row.row)], "offsets": [0]}
        if current is not None:
            pieces.append(current)
    return pd.DataFrame(pieces, columns=["corpus", "trace_id", "t0", "starttime", "num_samples", "rows", "offsets"])


class _Decoder:
    """Decodes corpus rows (cached) and assembles spans of pieces from them."""

    def __init__(self, codec, corpora: dict, num_codebooks: int | None):
        """corpora: {corpus number in the index: TokenCorpus}."""
        self.codec, self.corpora, self.k = codec, corpora, num_codebooks
        self.numpy = {n: c.dataset.with_format("numpy") for n, c in corpora.items()}
        self.lengths = {n: np.asarray(c.dataset.select_columns(["num_frames"]).to_pandas().num_frames) * FRAME_LENGTH
                        for n, c in corpora.items()}
        self.cache: dict = {}

    def rows(self, corpus: int, rows: list[int]) -> None:
        from tokenized_data.detokenize import decode_rows

        todo = [r for r in rows if (corpus, r) not in self.cache]
        for lo in range(0, len(todo), DECODE_ROWS):
            batch = todo[lo:lo + DECODE_ROWS]
            traces = decode_rows(self.codec, self.numpy[corpus][batch], self.k)
            for r, trace in zip(batch, traces):
                self.cache[(corpus, r)] = trace.data.astype(np.float64)

    def span(self, piece, lo: int, hi: int) -> np.ndarray:
        """Decoded samples lo..hi of a piece (rows overlapping the span only)."""
        rows, offsets = list(piece.rows), list(piece.offsets)
        wanted = [(r, o) for r, o in zip(rows, offsets) if o < hi and o + self._length(piece.corpus, r) > lo]
        self.rows(int(piece.corpus), [r for r, _ in wanted])
        out = np.zeros(hi - lo)
        for r, o in wanted:
            data = self.cache[(int(piece.corpus), r)]
            a, b = max(lo, o), min(hi, o + len(data))
            out[a - lo:b - lo] = data[a - o:b - o]
        return out

    def _length(self, corpus: int, row: int) -> int:
        return int(self.lengths[int(corpus)][int(row)])


def _embed_corpus(codec, corpus, number: int, pieces, params: dict, progress: bool):
    """Vectors of every piece of one corpus: (vectors [n, d], piece positions [n], frames [n])."""
    from tqdm.auto import tqdm

    from tokenized_data.writer import one_torch_thread

    decoder = _Decoder(codec, {number: corpus}, params["coarse_codebooks"])
    width = params["window_seconds"] * FRAME_LENGTH
    vectors, where, frames = [], [], []
    band = tuple(params["band"]) if params["band"] else None
    for position, piece in enumerate(tqdm(list(pieces.itertuples()), desc="index", unit="piece",
                                          disable=not progress)):
        num_windows = (int(piece.num_samples) - width) // FRAME_LENGTH + 1
        for j0 in range(0, max(num_windows, 0), CHUNK_FRAMES):  # memory bounded by one chunk, not the piece
            j1 = min(j0 + CHUNK_FRAMES, num_windows)
            lo, hi = j0 * FRAME_LENGTH, (j1 - 1) * FRAME_LENGTH + width
            a, b = max(0, lo - FILTER_MARGIN), min(int(piece.num_samples), hi + FILTER_MARGIN)
            decoder.cache.clear()
            with one_torch_thread():
                samples = decoder.span(piece, a, b)
            v = window_vectors(bandpass(samples, band)[lo - a: hi - a], params["window_seconds"],
                               params["decimation"])
            vectors.append(v)
            where.append(np.full(len(v), position, np.int64))
            frames.append(np.arange(j0, j0 + len(v), dtype=np.int64))
    dims = params["dims"]
    if not vectors:
        return np.zeros((0, dims), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(vectors), np.concatenate(where), np.concatenate(frames)


def _new_faiss_index(index_type: str, vectors: np.ndarray, dims: int, pq_bytes: int) -> tuple[object, dict]:
    faiss = _faiss()
    n = len(vectors)
    if index_type == "auto":
        index_type = "flat" if n < AUTO_FLAT_LIMIT else "ivfpq"
    info = {"index_type": index_type}
    if index_type == "flat":
        return faiss.IndexFlatIP(dims), info
    if dims % pq_bytes:
        raise InputError(f"--pq-bytes {pq_bytes} must divide the vector size {dims}")
    if index_type == "pq":
        index = faiss.IndexPQ(dims, pq_bytes, 8, faiss.METRIC_INNER_PRODUCT)
        need = 256 * 4
    elif index_type == "ivfpq":
        nlist = int(min(4096, max(16, 4 * math.sqrt(max(n, 1)))))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dims), dims, nlist, pq_bytes, 8, faiss.METRIC_INNER_PRODUCT)
        info.update(nlist=nlist, nprobe=min(nlist, 32))
        need = max(256 * 4, nlist * 4)
    else:
        raise InputError(f"unknown index type {index_type!r} (auto, flat, pq or ivfpq)")
    if n < need:
        raise InputError(f"a {index_type} index needs at least {need} vectors (seconds of archive) to train its "
                         f"quantizer, the corpora give {n}; use --index-type flat")
    rng = np.random.default_rng(0)
    train = vectors[rng.choice(n, size=min(n, 100_000), replace=False)] if n > 100_000 else vectors
    for clustering in (getattr(index, "cp", None), index.pq.cp):  # training size checked above: no warnings
        if clustering is not None:
            clustering.min_points_per_centroid = 1
    index.train(np.ascontiguousarray(train))
    info["pq_bytes"] = pq_bytes
    return index, info


def build_index(corpora, out, *, add: bool = False, codec: str | None = None, index_type: str = "auto",
                band=DEFAULT_BAND, pq_bytes: int = PQ_BYTES, progress: bool = True) -> SearchIndex:
    """`eqcodec index`: index token corpus folder(s) into the folder `out` (see the module docstring).

    add: extend the index at `out` (it must exist unless it is missing, then it is created); without it an
    existing index at `out` is refused. codec: checkpoint folder (None: the shipped EQcodec) that made the
    corpora. index_type: auto | flat | pq | ivfpq (fixed at creation). band: (low, high) Hz or None.
    """
    import pandas as pd

    from codec import load_codec
    from tokenized_data.detokenize import check_codec

    faiss = _faiss()
    if isinstance(corpora, (str, Path)):
        corpora = [corpora]
    corpora = [Path(c) for c in corpora]
    if not corpora:
        raise InputError("index: no corpus folder given")
    out = Path(out)
    old = None
    if out.exists() and out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder made beforehand
    if out.exists():
        if not add:
            raise InputError(f"{out} already exists; pass --add to extend that index with the corpora, "
                             "or choose another --out")
        old = load_index(out)
    if band is not None:
        band = (float(band[0]), float(band[1]))
        if not 0 < band[0] < band[1]:
            raise InputError(f"band must be two frequencies 0 < low < high Hz, got {band}")
    params = old.params if old is not None else {
        "window_seconds": WINDOW_SECONDS, "hop_seconds": 1, "decimation": DECIMATION,
        "dims": WINDOW_SECONDS * FRAME_LENGTH // DECIMATION, "coarse_codebooks": COARSE_CODEBOOKS,
        "band": list(band) if band else None, "normalization": "window mean removed, unit norm (inner product = NCC)"}
    codec_model = load_codec(codec)
    known = [c["path"] for c in old.metadata["corpora"]] if old is not None else []
    loaded = []
    for path in corpora:
        resolved = str(path.resolve())
        if resolved in known or resolved in [str(p.resolve()) for p, _ in loaded]:
            raise InputError(f"{path}: this corpus is already in the index {out}")
        corpus = _load_corpus(path)
        wanted = old.codec_id if old is not None else (loaded[0][1].codec_id if loaded else corpus.codec_id)
        if corpus.codec_id != wanted:
            first = f"the index {out}" if old is not None else str(loaded[0][0])
            raise InputError(f"{path}: tokenized with codec {corpus.codec_id}, but {first} holds tokens of codec "
                             f"{wanted}; an index holds one codec's tokens (build another index, or retokenize)")
        check_codec(corpus, codec_model)
        loaded.append((path, corpus))

    pieces_old = old.pieces if old is not None else None
    start_corpus = len(known)
    new_pieces, new_vectors, new_piece_ids, new_frames = [], [], [], []
    piece_base = len(pieces_old) if pieces_old is not None else 0
    for number, (path, corpus) in enumerate(loaded, start=start_corpus):
        pieces = _pieces_of(corpus, number)
        vectors, where, frames = _embed_corpus(codec_model, corpus, number, pieces, params, progress)
        new_vectors.append(vectors)
        new_piece_ids.append(where + piece_base)
        new_frames.append(frames)
        new_pieces.append(pieces)
        piece_base += len(pieces)
    vectors = np.concatenate(new_vectors) if new_vectors else np.zeros((0, params["dims"]), np.float32)
    if old is None and len(vectors) == 0:
        raise InputError(f"{', '.join(map(str, corpora))}: no gap-free piece of {params['window_seconds']} s or "
                         "more to index")
    if old is not None:
        index, info = old.index, {k: old.metadata[k] for k in ("index_type", "nlist", "nprobe", "pq_bytes")
                                  if k in old.metadata}
    else:
        index, info = _new_faiss_index(index_type, vectors, params["dims"], pq_bytes)
    index.add(np.ascontiguousarray(vectors))
    pieces = pd.concat(([pieces_old] if pieces_old is not None else []) + new_pieces, ignore_index=True)
    piece_ids = np.concatenate(([old.vector_piece] if old is not None else []) + new_piece_ids)
    frames = np.concatenate(([old.vector_frame] if old is not None else []) + new_frames)
    corpora_meta = (old.metadata["corpora"] if old is not None else []) + [
        {"path": str(p.resolve()), **_corpus_fingerprint(c), "channel_hours": c.counts()["channel_hours"]}
        for p, c in loaded]
    metadata = {"format": FORMAT, "codec_id": codec_model.identity(), "params": params, **info,
                "vectors": int(index.ntotal), "pieces": len(pieces), "corpora": corpora_meta,
                "longest_piece_seconds": float(pieces.num_samples.max() / SAMPLING_RATE) if len(pieces) else 0.0}
    tmp = out.with_name(f".{out.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        faiss.write_index(index, str(tmp / "vectors.faiss"))
        np.savez(tmp / "vectors.npz", piece=piece_ids.astype(np.int32), frame=frames.astype(np.int32))
        pieces.to_parquet(tmp / "pieces.parquet", index=False)
        metadata["bytes"] = {name: (tmp / name).stat().st_size for name in INDEX_FILES[1:]}
        (tmp / "index.json").write_text(json.dumps(metadata, indent=1))
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_index(out)


# ---------------------------------------------------------------------------- templates
@dataclass
class Template:
    """A template prepared for the search: detrended 40 Hz samples, its label, notes for the user."""

    samples: np.ndarray
    label: str
    trace_id: str
    starttime: object
    notes: list = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLING_RATE


def _time(value, reference):
    """A --start/--end value: seconds after the template's first sample (a number) or a UTC time."""
    import obspy

    if value is None:
        return None
    try:
        return reference + float(value)
    except (TypeError, ValueError):
        pass
    try:
        return obspy.UTCDateTime(value)
    except Exception:
        raise InputError(f"cannot read {value!r} as a time (seconds after the template's start, "
                         "or UTC like 2010-05-27T16:24:33)") from None


def prepare_template(template, *, start=None, end=None, seed_id: str = "*", source: str | None = None) -> Template:
    """A path or obspy Stream/Trace -> Template (one channel; gaps, NaN and too short refused)."""
    import obspy
    from scipy.signal import detrend

    if isinstance(template, (str, Path)):
        source = source or str(template)
        stream = read_stream(template)
    elif isinstance(template, obspy.Trace):
        stream = obspy.Stream([template])
    elif isinstance(template, obspy.Stream):
        stream = template
    else:
        raise InputError(f"template must be a file path or an obspy Stream/Trace, not {type(template).__name__}")
    source = source or "template"
    stream = stream.select(id=seed_id) if seed_id != "*" else stream
    ids = sorted({tr.id for tr in stream})
    if not ids:
        raise InputError(f"{source}: no trace matches {seed_id!r}")
    if len(ids) > 1:
        raise InputError(f"{source}: holds {len(ids)} channels ({', '.join(ids)}); choose one with --seed-id")
    for trace in stream:
        check_numeric_samples(trace.data, f"{source}: {trace_label(trace)}")
    traces = contiguous_traces(stream, source)  # gaps refused, with the file named
    trace = traces[0].copy()
    t_start, t_end = _time(start, trace.stats.starttime), _time(end, trace.stats.starttime)
    if t_start is not None or t_end is not None:
        if t_start is not None and t_end is not None and t_end <= t_start:
            raise InputError(f"{source}: --end {end} is not after --start {start}")
        trace.trim(t_start, t_end)
        if trace.stats.npts == 0:
            raise InputError(f"{source}: nothing of {trace.id} lies between --start {start} and --end {end} "
                             f"(the trace spans {traces[0].stats.starttime} - {traces[0].stats.endtime})")
    seconds = trace.stats.npts / trace.stats.sampling_rate
    if seconds < MIN_TEMPLATE_SECONDS:
        raise InputError(f"{source}: template {trace.id} is {seconds:.3g} s long; a template needs at least "
                         f"{MIN_TEMPLATE_SECONDS:g} s")
    notes = []
    try:
        samples = trace_to_codec_input(trace, allow_clipped=True)
    except InputError as err:
        raise InputError(f"{source}: {err}") from None
    if abs(trace.stats.sampling_rate - SAMPLING_RATE) > 1e-6:
        notes.append(f"template {trace.id} resampled from {trace.stats.sampling_rate:g} Hz to "
                     f"{SAMPLING_RATE:g} Hz (the codec's rate)")
    return Template(detrend(samples), f"{source}: {trace.id}", trace.id, trace.stats.starttime, notes)


def template_queries(filtered: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Anchor windows of the template at each of the 40 shifts of one frame.

    Anchors: the template's windows hopped by half a window (the last one flush with its end), the
    MAX_ANCHORS loudest kept; a template shorter than a window is one zero-padded anchor.
    Returns (vectors [anchors * 40, d], offsets [anchors * 40]): template sample at the vector's start.
    """
    width = params["window_seconds"] * FRAME_LENGTH
    n = len(filtered)
    if n >= width:
        starts = sorted(set(range(0, n - width + 1, width // 2)) | {n - width})
        energy = np.array([float(np.sum(filtered[a:a + width] ** 2)) for a in starts])
        anchors = [starts[i] for i in sorted(np.argsort(-energy)[:MAX_ANCHORS])]
    else:
        anchors = [0]
    padded = np.zeros(n + FRAME_LENGTH + width)
    padded[:n] = filtered
    vectors, offsets = [], []
    for a in anchors:
        for s in range(FRAME_LENGTH):
            vectors.append(padded[a + s: a + s + width: params["decimation"]])
            offsets.append(a + s)
    return _standardize(np.stack(vectors)), np.asarray(offsets)


# ---------------------------------------------------------------------------- searching
@dataclass
class SearchResult:
    matches: object  # pandas.DataFrame
    template: Template
    filtered_template: np.ndarray
    waveforms: list  # band-passed decoded samples of each match, aligned on the template
    notes: list


def _ncc_best(data: np.ndarray, template: np.ndarray) -> tuple[int, float]:
    from obspy.signal.cross_correlation import correlate_template

    cc = correlate_template(data, template, mode="valid", normalize="full", demean=True)
    cc = np.nan_to_num(np.asarray(cc), nan=0.0)
    best = int(np.argmax(cc))
    return best, float(cc[best])


def _index_codec(index: SearchIndex, codec: str | None):
    """The codec checkpoint `codec` (None: the shipped one), refused unless it made the index's tokens."""
    from codec import load_codec

    codec_model = load_codec(codec)
    if codec_model.identity() != index.codec_id:
        raise CheckpointError(f"{index.path}: the index holds tokens of codec {index.codec_id}, but the codec "
                              f"given is {codec_model.identity()} ({codec or 'the shipped EQcodec'}): "
                              f"{retokenize_hint(index.codec_id)}")
    return codec_model


def _index_decoder(index: SearchIndex, codec_model) -> _Decoder:
    """A full-rate decoder of the index's corpora (each checked unchanged since it was indexed)."""
    corpora = [_load_corpus(c["path"], c) if Path(c["path"]).exists() else None for c in index.metadata["corpora"]]
    missing = [c["path"] for c, loaded in zip(index.metadata["corpora"], corpora) if loaded is None]
    if missing:
        raise InputError(f"{index.path}: the indexed corpus {missing[0]} is gone (moved or deleted); index the "
                         "corpora again where they are now")
    return _Decoder(codec_model, dict(enumerate(corpora)), None)


def _filtered_span(decoder: _Decoder, piece, lo: int, hi: int, band) -> np.ndarray:
    """Samples lo..hi of a piece decoded from all codebooks and band-passed (with FILTER_MARGIN to settle)."""
    from tokenized_data.writer import one_torch_thread

    a, b = max(0, lo - FILTER_MARGIN), min(int(piece.num_samples), hi + FILTER_MARGIN)
    with one_torch_thread():
        return bandpass(decoder.span(piece, a, b), band)[lo - a: hi - a]


def run_search(template, index_path, *, top: int = 10, min_score: float | None = None, start=None, end=None,
               seed_id: str = "*", codec: str | None = None, candidates: int | None = None,
               keep_waveforms: int = 0) -> SearchResult:
    """The search, with what the figure needs; `search` returns its table only."""
    import pandas as pd

    if not isinstance(top, (int, np.integer)) or top < 1:
        raise InputError(f"top must be a whole number >= 1, got {top!r}")
    if min_score is not None and not -1 <= min_score <= 1:
        raise InputError(f"min_score must lie in [-1, 1] (a correlation), got {min_score}")
    index = load_index(index_path)
    codec_model = _index_codec(index, codec)
    tpl = prepare_template(template, start=start, end=end, seed_id=seed_id)
    params = index.params
    longest = index.metadata["longest_piece_seconds"]
    if tpl.seconds > longest:
        raise InputError(f"{tpl.label}: template is {tpl.seconds:.1f} s long, longer than the longest gap-free "
                         f"piece of the index {index.path} ({longest:.0f} s); cut it with --start/--end")
    band = tuple(params["band"]) if params["band"] else None
    filtered = bandpass(tpl.samples, band)
    if not np.any(filtered):
        raise InputError(f"{tpl.label}: nothing left of the template in the index's band {band} Hz")
    notes = list(tpl.notes)
    if tpl.seconds < params["window_seconds"]:
        notes.append(f"template shorter than the index's {params['window_seconds']} s windows: its coarse "
                     "query is zero-padded (the re-rank uses the template as it is)")
    queries, offsets = template_queries(filtered, params)
    anchors = offsets - np.tile(np.arange(FRAME_LENGTH), len(offsets) // FRAME_LENGTH)
    n = len(index)
    faiss = _faiss()
    if "nprobe" in index.metadata:
        faiss.ParameterSpace().set_index_parameter(index.index, "nprobe", int(index.metadata["nprobe"]))
    wanted = candidates or max(DEFAULT_CANDIDATES, 20 * top)
    scores, ids = index.index.search(np.ascontiguousarray(queries), int(min(n, wanted)))
    L = len(tpl.samples)
    # Proposals: (piece, template start in piece samples, to the nearest second) -> for each anchor its best
    # window score; a proposal's coarse score is their mean over all anchors (0 for an anchor not retrieved),
    # an approximation of the whole template's correlation; its start is that of its best window.
    number_of_anchors = len(np.unique(anchors))
    proposals: dict = {}
    for q in range(len(queries)):
        for score, vid in zip(scores[q], ids[q]):
            if vid < 0:
                continue
            piece = int(index.vector_piece[vid])
            p0 = int(index.vector_frame[vid]) * FRAME_LENGTH - int(offsets[q])
            key = (piece, int(round(p0 / FRAME_LENGTH)))
            entry = proposals.setdefault(key, {"best": -2.0, "p0": p0, "anchors": {}})
            anchor = int(anchors[q])
            entry["anchors"][anchor] = max(entry["anchors"].get(anchor, -1.0), float(score))
            if score > entry["best"]:
                entry["best"], entry["p0"] = float(score), p0
    ranked = sorted(((key, (sum(e["anchors"].values()) / number_of_anchors, e["p0"])) for key, e in proposals.items()),
                    key=lambda item: -item[1][0])[:wanted]
    decoder = _index_decoder(index, codec_model)
    found = []
    for (piece_id, _), (coarse, p0) in ranked:
        piece = index.pieces.iloc[piece_id]
        lo, hi = max(0, p0 - NEIGHBOURHOOD), min(int(piece.num_samples), p0 + L + NEIGHBOURHOOD)
        if hi - lo < L:
            continue
        lag, score = _ncc_best(_filtered_span(decoder, piece, lo, hi, band), filtered)
        found.append((score, piece_id, lo + lag, coarse))
    found.sort(key=lambda item: -item[0])
    separation = max(FRAME_LENGTH, L // 2)
    kept = []
    for score, piece_id, sample, coarse in found:
        if min_score is not None and score < min_score:
            break
        trace_id = index.pieces.iloc[piece_id].trace_id
        if any(k[4] == trace_id and abs(k[5] - (index.pieces.iloc[piece_id].t0 + sample / SAMPLING_RATE))
               < separation / SAMPLING_RATE for k in kept):
            continue
        t = float(index.pieces.iloc[piece_id].t0) + sample / SAMPLING_RATE
        kept.append((score, piece_id, sample, coarse, trace_id, t))
        if len(kept) >= top:
            break
    import obspy

    rows, waveforms = [], []
    for rank, (score, piece_id, sample, coarse, trace_id, t) in enumerate(kept, start=1):
        piece = index.pieces.iloc[piece_id]
        rows.append({"rank": rank, "trace_id": trace_id,
                     "starttime": _iso(obspy.UTCDateTime(t)), "endtime": _iso(obspy.UTCDateTime(t + (L - 1) / SAMPLING_RATE)),
                     "score": round(score, 6), "coarse_score": round(coarse, 6),
                     "corpus": index.metadata["corpora"][int(piece.corpus)]["path"]})
        if rank <= keep_waveforms:
            waveforms.append(_filtered_span(decoder, piece, sample, sample + L, band))
    columns = ["rank", "trace_id", "starttime", "endtime", "score", "coarse_score", "corpus"]
    matches = pd.DataFrame(rows, columns=columns)
    matches.attrs["notes"] = notes
    return SearchResult(matches, tpl, filtered, waveforms, notes)


def _iso(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def search(template, index_path, *, top: int = 10, min_score: float | None = None, start=None, end=None,
           seed_id: str = "*", codec: str | None = None, candidates: int | None = None):
    """Best matches of `template` (a file path or an obspy Stream/Trace) in the index -> pandas.DataFrame.

    Columns: rank, trace_id, starttime (UTC ISO of the sample where the template's first sample aligns),
    endtime, score (normalized cross-correlation of the whole template, band-passed, on tokens decoded
    from all codebooks), coarse_score (the FAISS stage's), corpus. `.attrs["notes"]`: e.g. resampling.
    """
    return run_search(template, index_path, top=top, min_score=min_score, start=start, end=end,
                      seed_id=seed_id, codec=codec, candidates=candidates).matches


def plot_matches(result: SearchResult, path) -> None:
    """The best matches (decoded, band-passed, unit peak) stacked, each with the template over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tpl = result.filtered_template
    t = np.arange(len(tpl)) / SAMPLING_RATE
    n = len(result.waveforms)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.8 * (n + 1)))
    scale = lambda x: x / (np.abs(x).max() or 1.0)  # noqa: E731
    ax.plot(t, scale(tpl), color="crimson", lw=0.9)
    labels = [f"template\n{result.template.trace_id}"]
    for i, (wave, row) in enumerate(zip(result.waveforms, result.matches.itertuples()), start=1):
        ax.plot(t, scale(tpl) - 2.2 * i, color="crimson", lw=0.6, alpha=0.45)
        ax.plot(t, scale(wave) - 2.2 * i, color="black", lw=0.7)
        labels.append(f"{row.trace_id}\n{row.starttime[:23]}\ncc {row.score:.2f}")
    ax.set_yticks([-2.2 * i for i in range(n + 1)], labels, fontsize=7)
    ax.set_xlabel("seconds after the template's first sample")
    ax.set_title(f"best {n} matches (black, decoded from all codebooks, band-passed) aligned on the template (red)",
                 fontsize=9)
    ax.set_xlim(t[0], t[-1])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def search_files(template, index, out, *, top: int = 10, min_score: float | None = None, start=None, end=None,
                 seed_id: str = "*", codec: str | None = None, plot: str | None = None,
                 candidates: int | None = None) -> object:
    """`eqcodec search`: the ranked CSV at `out` (and the figure at `plot`), both written whole or not at all."""
    result = run_search(template, index, top=top, min_score=min_score, start=start, end=end, seed_id=seed_id,
                        codec=codec, candidates=candidates, keep_waveforms=8 if plot else 0)
    writers = {Path(out): lambda tmp: result.matches.to_csv(tmp, index=False)}
    if plot:
        writers[Path(plot)] = lambda tmp: plot_matches(result, tmp)
    write_all_or_nothing(writers)
    for note in result.notes:
        print(f"note: {note}")
    best = (f"best {result.matches.trace_id.iloc[0]} at {result.matches.starttime.iloc[0]} "
            f"(score {result.matches.score.iloc[0]:.3f})") if len(result.matches) else "no match"
    print(f"wrote {len(result.matches)} matches to {out}{' and ' + str(plot) if plot else ''}: {best}")
    return result.matches


# ---------------------------------------------------------------------------- all pairs (no template)
#: All-pairs: neighbours of each window kept beyond its own overlaps, windows queried together,
#: candidate clusters re-ranked by default, pairs pooled per cluster candidate before clustering.
PAIR_NEIGHBOURS = 10
PAIR_BATCH = 2048
#: Clusters re-ranked by default: max(DEFAULT_PAIR_CANDIDATES, PAIR_CANDIDATES_PER_WINDOW x windows, 20 x top);
#: pairs pooled before clustering: PAIR_POOL_FACTOR x that, at most PAIR_POOL_LIMIT (20 bytes a pair).
DEFAULT_PAIR_CANDIDATES = 2000
PAIR_CANDIDATES_PER_WINDOW = 4
PAIR_POOL_FACTOR = 50
PAIR_POOL_LIMIT = 10_000_000
#: All-pairs queries: each window vector also shifted by up to half a frame (in steps of one vector
#: sample, 50 ms), so that a pair off the 1-s grid meets its partner within 25 ms.
PAIR_SHIFT_SECONDS = 0.5
#: Best pairs of each cluster re-ranked (the coarse score orders the windows of one repeat only roughly).
PAIR_RERANK_PER_CLUSTER = 3
#: Re-ranked pairs of one repeat agree on their lag to within this many seconds (4 samples).
PAIR_SAME_LAG = 0.1
#: Decoded corpus rows kept in memory while re-ranking pairs; band-passed chunks of pieces (1 h each,
#: 1.2 MB) kept, least recently used dropped.
PAIR_CACHE_ROWS = 256
PAIR_CACHE_CHUNKS = 32
PAIR_COLUMNS = ["rank", "trace_id_a", "starttime_a", "endtime_a", "trace_id_b", "starttime_b", "lag_seconds",
                "score", "coarse_score", "corpus_a", "corpus_b"]


def _check_pair_options(top, min_score, min_separation, neighbours, candidates) -> None:
    def whole(name, value, allow_none):
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a whole number >= 1, got {value!r}")

    whole("top", top, True)
    whole("neighbours", neighbours, False)
    whole("candidates", candidates, True)
    if min_score is not None and not (isinstance(min_score, (int, float, np.floating)) and -1 <= min_score <= 1):
        raise InputError(f"min_score must lie in [-1, 1] (a correlation), got {min_score!r}")
    if min_separation is not None and not (isinstance(min_separation, (int, float, np.floating))
                                           and math.isfinite(min_separation) and min_separation > 0):
        raise InputError(f"min_separation must be a number of seconds > 0, got {min_separation!r}")


def _cluster_pairs(ca, cb, ta, dt, width: float, offset_width: float | None = None) -> np.ndarray:
    """Cluster label of each pair: single linkage of pairs of the same two traces (codes ca, cb) whose first
    windows (ta) lie within `width` s of each other and whose time offsets (dt = t_b - t_a) differ by at
    most `offset_width` s (default: `width`). With both one hop, a run of neighbouring windows of one repeat
    is one cluster, while chance pairs, a few neighbours per window, stay far too sparse to chain."""
    offset_width = width if offset_width is None else offset_width
    parent = np.arange(len(ta))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict = {}
    keys_a, keys_d = np.floor(ta / width).astype(np.int64), np.floor(dt / offset_width).astype(np.int64)
    for i in np.argsort(ta, kind="stable"):
        key = (int(ca[i]), int(cb[i]), int(keys_a[i]), int(keys_d[i]))
        for da in (-1, 0, 1):
            for dd in (-1, 0, 1):
                for j in buckets.get((key[0], key[1], key[2] + da, key[3] + dd), ()):
                    if abs(ta[i] - ta[j]) <= width + 1e-6 and abs(dt[i] - dt[j]) <= offset_width + 1e-6:
                        ri, rj = root(i), root(j)
                        if ri != rj:
                            parent[max(ri, rj)] = min(ri, rj)
        buckets.setdefault(key, []).append(i)
    return np.array([root(i) for i in range(len(ta))], dtype=np.int64)


class _FilteredChunks:
    """Band-passed decoded samples of pieces, computed an hour (CHUNK_FRAMES) at a time and cached (LRU):
    a re-rank slices them instead of decoding and filtering each span again."""

    def __init__(self, decoder: _Decoder, pieces, band, reach: int):
        """reach: longest span asked for (samples); a span that does not fit one chunk is made directly."""
        from collections import OrderedDict

        self.decoder, self.pieces, self.band, self.reach = decoder, pieces, band, reach
        self.size = CHUNK_FRAMES * FRAME_LENGTH
        self.chunks: OrderedDict = OrderedDict()

    def span(self, piece_id: int, lo: int, hi: int) -> np.ndarray:
        piece = self.pieces.iloc[piece_id]
        c = lo // self.size
        c0, c1 = c * self.size, min(int(piece.num_samples), (c + 1) * self.size + self.reach)
        if hi > c1:
            return _filtered_span(self.decoder, piece, lo, hi, self.band)
        key = (piece_id, c)
        if key not in self.chunks:
            if len(self.decoder.cache) > PAIR_CACHE_ROWS:
                self.decoder.cache.clear()
            self.chunks[key] = _filtered_span(self.decoder, piece, c0, c1, self.band)
            while len(self.chunks) > PAIR_CACHE_CHUNKS:
                self.chunks.popitem(last=False)
        self.chunks.move_to_end(key)
        return self.chunks[key][lo - c0: hi - c0]


def all_pairs(index_path, *, top: int | None = None, min_score: float | None = None,
              min_separation: float | None = None, neighbours: int = PAIR_NEIGHBOURS,
              candidates: int | None = None, codec: str | None = None, progress: bool = False):
    """Pairs of similar windows within the indexed archive, with no template -> pandas.DataFrame.

    Coarse stage (the index alone): every indexed window vector is searched for its nearest neighbours
    in the FAISS index (in batches of PAIR_BATCH windows), neighbours on the same trace closer than
    `min_separation` seconds (default: the index's window, 4 s; self-matches and their shifts) dropped;
    each window is also queried shifted by 0-0.5 s (50-ms steps) so that a pair off the 1-s grid meets;
    each window keeps its `neighbours` best partners; (a, b) and (b, a) are one pair, and the pairs of one
    repeat (runs of neighbouring windows: pairs of the same two traces whose first windows lie within one
    hop, 1 s, of each other and whose time offsets differ by at most one hop, chained) form a cluster,
    ranked by the sum of its pairs' coarse scores. The best `candidates` clusters (default
    max(2000, 4 x windows, 20 x top)), up to 3 pairs of each, are re-ranked: window a (decoded from all
    codebooks, band-passed) is correlated (normalized cross-correlation) with the archive around window b
    at every sample within +-1 s, which gives the `score` and `starttime_b`, where window a's first
    sample aligns to the sample; `lag_seconds` = starttime_b - starttime_a. Of the re-ranked pairs of one
    repeat (the same two traces, lags within a window, first windows within two) the best is listed.

    Columns: rank, trace_id_a, starttime_a, endtime_a (window a), trace_id_b, starttime_b, lag_seconds,
    score, coarse_score (the FAISS stage's), corpus_a, corpus_b; best first, `min_score` and `top` applied.
    Window a is the earlier one of a pair on one trace, else the one of the smaller trace id.
    `.attrs["notes"]`: what the stages saw.
    """
    import obspy
    import pandas as pd
    from tqdm.auto import tqdm

    _check_pair_options(top, min_score, min_separation, neighbours, candidates)
    index = load_index(index_path)
    codec_model = _index_codec(index, codec)
    params = index.params
    band = tuple(params["band"]) if params["band"] else None
    width_s = float(params["window_seconds"])
    width = params["window_seconds"] * FRAME_LENGTH
    hop = float(params.get("hop_seconds", 1))
    separation = float(min_separation) if min_separation is not None else width_s
    n = len(index)
    if n < 2:
        raise InputError(f"{index.path}: {n} window(s) indexed; all-pairs needs at least 2")
    wanted = candidates or max(DEFAULT_PAIR_CANDIDATES, PAIR_CANDIDATES_PER_WINDOW * n, 20 * (top or 0))
    pool_limit = min(PAIR_POOL_FACTOR * wanted, PAIR_POOL_LIMIT)
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index.index) if hasattr(faiss, "try_extract_index_ivf") else None
    if ivf is not None:
        ivf.make_direct_map()  # reconstruct() by id
    if "nprobe" in index.metadata:
        faiss.ParameterSpace().set_index_parameter(index.index, "nprobe", int(index.metadata["nprobe"]))
    _, trace_codes = np.unique(np.asarray(index.pieces.trace_id, dtype=str), return_inverse=True)
    trace_of = np.asarray(trace_codes, np.int64).ravel()[index.vector_piece]
    time_of = np.asarray(index.pieces.t0, np.float64)[index.vector_piece] + index.vector_frame * hop
    k = int(min(n, neighbours + 2 * math.ceil(separation / hop) + 1))
    step = params["decimation"] / SAMPLING_RATE
    shifts = range(0, int(round(PAIR_SHIFT_SECONDS / step)) + 1)  # window a later by s vector samples

    pool_a, pool_b, pool_s = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    seen = 0

    def shrink(a, b, s, limit):
        """Symmetric duplicates merged (best score kept), then the `limit` best pairs."""
        order = np.argsort(-s, kind="stable")
        a, b, s = a[order], b[order], s[order]
        _, first = np.unique(a * n + b, return_index=True)
        first.sort()
        a, b, s = a[first], b[first], s[first]
        return a[:limit], b[:limit], s[:limit]

    for lo in tqdm(range(0, n, PAIR_BATCH), desc="all pairs", unit="batch", disable=not progress):
        hi = min(n, lo + PAIR_BATCH)
        base = np.asarray(index.index.reconstruct_n(lo, hi - lo), dtype=np.float32)
        queries = np.ascontiguousarray(np.concatenate([_standardize(np.pad(base[:, s:], ((0, 0), (0, s))))
                                                       for s in shifts]))
        scores, ids = index.index.search(queries, k)
        a = np.repeat(np.tile(np.arange(lo, hi, dtype=np.int64), len(shifts)), k)
        b, s = ids.ravel().astype(np.int64), scores.ravel()
        ok = b >= 0
        a, b, s = a[ok], b[ok], s[ok]
        ok = ~((trace_of[a] == trace_of[b]) & (np.abs(time_of[a] - time_of[b]) < separation - 1e-6))
        a, b, s = a[ok], b[ok], s[ok]
        # each window's `neighbours` best partners (over all its shifts)
        order = np.argsort(-s, kind="stable")
        _, first = np.unique(a[order] * n + b[order], return_index=True)
        a, b, s = a[order][first], b[order][first], s[order][first]
        order = np.lexsort((-s, a))
        a, b, s = a[order], b[order], s[order]
        group_start = np.searchsorted(a, a, side="left")
        ok = np.arange(len(a)) - group_start < neighbours
        a, b, s = a[ok], b[ok], s[ok]
        swap = (trace_of[b] < trace_of[a]) | ((trace_of[b] == trace_of[a]) & (time_of[b] < time_of[a]))
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        seen += len(a)
        pool_a, pool_b, pool_s = (np.concatenate([pool_a, a]), np.concatenate([pool_b, b]),
                                  np.concatenate([pool_s, s.astype(np.float32)]))
        if len(pool_a) > 2 * pool_limit:
            pool_a, pool_b, pool_s = shrink(pool_a, pool_b, pool_s, pool_limit)
    pool_a, pool_b, pool_s = shrink(pool_a, pool_b, pool_s, pool_limit)
    notes = [f"{n} windows, each at {len(shifts)} shifts of {step * 1000:g} ms, searched for {k} neighbours: "
             f"{seen} pairs (each window's {neighbours} best partners, none within {separation:g} s on its own "
             f"trace), {len(pool_a)} distinct pairs pooled"]
    ta, tb = time_of[pool_a], time_of[pool_b]
    labels = _cluster_pairs(trace_of[pool_a], trace_of[pool_b], ta, tb - ta, hop)
    best: dict = {}
    for i in np.argsort(-pool_s, kind="stable"):  # the best pairs of each cluster
        members = best.setdefault(int(labels[i]), [])
        if len(members) < PAIR_RERANK_PER_CLUSTER:
            members.append(int(i))
    # a cluster's evidence: the sum of its pairs' coarse scores (a repeat is a run of window pairs, a chance
    # likeness mostly one pair), as FAST counts the fingerprints two windows share
    evidence = np.bincount(labels, weights=np.clip(pool_s, 0, None).astype(np.float64))
    clusters = sorted(best.items(), key=lambda item: -evidence[item[0]])[:wanted]
    clusters = [members for _, members in clusters]
    chosen = [i for members in clusters for i in members]
    notes.append(f"{len(best)} clusters of pairs (repeats); the best {len(clusters)} re-ranked "
                 f"({len(chosen)} pairs, up to {PAIR_RERANK_PER_CLUSTER} per cluster)")

    chunks = _FilteredChunks(_index_decoder(index, codec_model), index.pieces, band, width + 2 * NEIGHBOURHOOD)
    piece_trace = list(index.pieces.trace_id)
    piece_t0 = np.asarray(index.pieces.t0, np.float64)
    reranked = []  # (score, coarse, piece a, piece b, t_a, t_b)
    for i in sorted(chosen, key=lambda i: (int(index.vector_piece[pool_a[i]]), int(index.vector_frame[pool_a[i]]))):
        va, vb = int(pool_a[i]), int(pool_b[i])
        pa, pb = int(index.vector_piece[va]), int(index.vector_piece[vb])
        a0 = int(index.vector_frame[va]) * FRAME_LENGTH
        window = chunks.span(pa, a0, a0 + width)
        b0 = int(index.vector_frame[vb]) * FRAME_LENGTH
        lo, hi = max(0, b0 - NEIGHBOURHOOD), min(int(index.pieces.num_samples.iloc[pb]), b0 + width + NEIGHBOURHOOD)
        if hi - lo < width or not np.any(window):
            continue
        lag, score = _ncc_best(chunks.span(pb, lo, hi), window)
        t_a = float(piece_t0[pa]) + a0 / SAMPLING_RATE
        t_b = float(piece_t0[pb]) + (lo + lag) / SAMPLING_RATE
        if piece_trace[pa] == piece_trace[pb] and abs(t_b - t_a) < separation - 1e-6:
            continue  # the re-rank slid b onto a's own window
        reranked.append((score, float(pool_s[i]), pa, pb, t_a, t_b))
    kept = []
    if reranked:
        # pairs of one repeat left in several clusters: refined lags equal (to PAIR_SAME_LAG), first windows
        # within two windows of each other, linked; the best of each, then any pair of the same two traces
        # within two windows and with a lag within a window of a better one dropped
        codes = {name: c for c, name in enumerate(sorted(set(piece_trace)))}
        ra = np.array([codes[piece_trace[item[2]]] for item in reranked])
        rb = np.array([codes[piece_trace[item[3]]] for item in reranked])
        t_a = np.array([item[4] for item in reranked])
        lags = np.array([item[5] - item[4] for item in reranked])
        labels = _cluster_pairs(ra, rb, t_a, lags, 2 * width_s, PAIR_SAME_LAG)
        best_of: dict = {}
        for j in sorted(range(len(reranked)), key=lambda j: -reranked[j][0]):
            best_of.setdefault(int(labels[j]), j)
        taken: list = []
        near: dict = {}  # (traces, 2-window bin of t_a, 1-window bin of the lag) -> pairs taken
        for j in sorted(best_of.values(), key=lambda j: -reranked[j][0]):
            if min_score is not None and reranked[j][0] < min_score:
                break
            bins = (int(ra[j]), int(rb[j]), int(t_a[j] // (2 * width_s)), int(lags[j] // width_s))
            if any(abs(t_a[o] - t_a[j]) < 2 * width_s and abs(lags[o] - lags[j]) < width_s
                   for da in (-1, 0, 1) for dl in (-1, 0, 1)
                   for o in near.get((bins[0], bins[1], bins[2] + da, bins[3] + dl), ())):
                continue
            taken.append(j)
            near.setdefault(bins, []).append(j)
            if top is not None and len(taken) >= top:
                break
        kept = [reranked[j] for j in taken]
    corpora = index.metadata["corpora"]
    corpus_of = list(index.pieces.corpus)
    rows = []
    for rank, (score, coarse, pa, pb, t_a, t_b) in enumerate(kept, start=1):
        rows.append({"rank": rank, "trace_id_a": piece_trace[pa], "starttime_a": _iso(obspy.UTCDateTime(t_a)),
                     "endtime_a": _iso(obspy.UTCDateTime(t_a + (width - 1) / SAMPLING_RATE)),
                     "trace_id_b": piece_trace[pb], "starttime_b": _iso(obspy.UTCDateTime(t_b)),
                     "lag_seconds": round(t_b - t_a, 6), "score": round(score, 6), "coarse_score": round(coarse, 6),
                     "corpus_a": corpora[int(corpus_of[pa])]["path"], "corpus_b": corpora[int(corpus_of[pb])]["path"]})
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    pairs.attrs["notes"] = notes
    return pairs


def all_pairs_files(index, out, *, top: int | None = None, min_score: float | None = None,
                    min_separation: float | None = None, neighbours: int = PAIR_NEIGHBOURS,
                    candidates: int | None = None, codec: str | None = None, progress: bool = True):
    """`eqcodec search --all-pairs`: the pairs CSV at `out`, written whole or not at all."""
    pairs = all_pairs(index, top=top, min_score=min_score, min_separation=min_separation, neighbours=neighbours,
                      candidates=candidates, codec=codec, progress=progress)
    write_atomically(lambda tmp: pairs.to_csv(tmp, index=False), Path(out))
    for note in pairs.attrs["notes"]:
        print(f"note: {note}")
    best = (f"best {pairs.trace_id_a.iloc[0]} {pairs.starttime_a.iloc[0]} ~ {pairs.trace_id_b.iloc[0]} "
            f"{pairs.starttime_b.iloc[0]} (score {pairs.score.iloc[0]:.3f})") if len(pairs) else "no pair"
    print(f"wrote {len(pairs)} pairs to {out}: {best}")
    return pairs


def index_corpora(corpora, out, *, add: bool = False, codec: str | None = None, index_type: str = "auto",
                  band=DEFAULT_BAND, pq_bytes: int = PQ_BYTES, progress: bool = True) -> SearchIndex:
    """`eqcodec index`: build_index, with a summary line."""
    index = build_index(corpora, out, add=add, codec=codec, index_type=index_type, band=band,
                        pq_bytes=pq_bytes, progress=progress)
    size = sum(index.metadata["bytes"].values())
    print(f"{'extended' if add else 'wrote'} index {out}: {len(index)} vectors ({index.metadata['index_type']}), "
          f"{index.metadata['pieces']} pieces from {len(index.metadata['corpora'])} corpora, {size / 1e6:.2f} MB")
    return index
