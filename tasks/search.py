"""Similarity search over token archives: `eqcodec index` builds an index, `eqcodec search` queries it.

    eqcodec index corpus-2024 corpus-2025 --out archive-index                # shards by station (default)
    eqcodec index corpus-2026 --out archive-index --add          # new shards (same codec and settings only)
    eqcodec search event.mseed --index archive-index --out matches.csv --top 20 --plot matches.png
    eqcodec search event-3c.mseed --seed-id 'XX.STA..HH?' --index archive-index --out m.csv  # channels stacked
    eqcodec search --all-pairs --index archive-index --out pairs.csv --min-score 0.7   # no template

    from tasks.search import all_pairs, build_index, search
    build_index(["corpus"], "archive-index")
    matches = search("event.mseed", "archive-index", top=10, min_score=0.5)   # pandas.DataFrame
    pairs = all_pairs("archive-index", min_score=0.7, min_separation=10)     # pandas.DataFrame

How it works, in two stages, from the tokens alone (no original samples needed):

1. Coarse (index time). Every channel of every corpus is cut into gap-free
   *pieces* (the corpus windows of one channel that touch or overlap, joined),
   decoded by the frozen codec from all its codebooks (`coarse_codebooks`), band-passed
   (Butterworth, 4 poles, zero phase; 1-8 Hz by default, `--band`) and cut into
   windows of 4 s starting every `hop` s (2 by default, `--hop`). Each window is
   decimated to 20 Hz (80 values), its mean removed and scaled to unit norm: the
   inner product of two vectors is their normalized cross-correlation. Each vector
   is stored as a FAISS code (`--index-type`): flat (the 80 float32 values, exact;
   `auto` below 10,000 windows), pq (8-bit product quantizer, `--pq-bytes` bytes)
   or pqfs (`auto` above: PCA to 48 values and a random rotation, then a 4-bit
   product quantizer of 2 x `--pq-bytes` sub-quantizers searched by FAISS's SIMD
   fast scan; 8 bytes a window by default). There are no inverted lists: IVF
   stores an 8-byte id beside each code, as much as the code; here the search
   scans the codes, and a vector's number is its position.
   The index is a set of *shards* (one per corpus, per station of a corpus, or
   per UTC day of a corpus: `--shard-by`), each `shards/NAME/` with its codes
   (`codes.npy`), its pieces (`pieces.parquet`: trace id, start, rows of the
   corpus, first vector and number of vectors; a piece's vectors are its
   consecutive windows, so trace id and start time of any vector follow) and
   `shard.json`; one trained quantizer (`quantizer.faiss`) serves all shards and
   `index.json` lists them. A search holds one shard's codes at a time.
2. Query. The template (one channel of any obspy-readable file, optionally cut
   with `start`/`end`; a template of several channels is searched channel by
   channel and stacked: `run_network_search`) is checked (gaps, NaN, too short or too long: refused),
   resampled to 40 Hz as the codec's input (codec.preprocess), detrended and
   band-passed like the archive. Its 4-s windows hopped by 2 s (anchors; the 8
   loudest) are each taken at every 25-ms shift of one hop (80 shifts for a 2-s
   hop), so that an event off the archive's grid still meets one window of it
   within half a sample; the loudest anchor's vectors (`searched_anchors`, 1) are
   searched for their 30 nearest windows in every channel-day of windows of a
   shard (QUERY_NEIGHBOURS_WINDOWS), each proposing a template start time to the
   sample. The best proposals (RESCORE_FACTOR x `candidates` per channel-day) then
   have every anchor scored from the codes at their start (the window each anchor
   meets there, scored from its code; no search): the coarse score is the mean of the anchors'
   correlations weighted by the anchors' norms (an approximation of the whole
   template's correlation at that start); the best start of each second and
   channel is kept. A piece lies in one shard, so each shard's
   proposals are complete when it has been searched and the best `candidates`
   over all shards are kept.
3. Re-rank. For each of the best `candidates` proposals (1000) the frames around it are decoded from all
   codebooks (88 bits/s; the frames of all proposals together), band-passed, and
   the normalized cross-correlation of the FULL template is computed at every
   sample within +-1 s of the proposal (as obspy's correlate_template, all
   proposals in one matrix product): its maximum
   is the match's `score` and its lag the exact `starttime` (where the template's
   first sample aligns, to the 25-ms sample). Matches closer than half the
   template length on one channel keep the best one; then `min_score` and `top`
   apply.

All pairs (`all_pairs`, `eqcodec search --all-pairs`; FAST's use case, no template):

1. Coarse. Every indexed window, also taken 1 to 20 samples (25 ms to half a hop) later (made from the
   decoded samples as the index's vectors are: a pair off the hop grid meets within half a sample), is
   searched for its nearest vectors in every shard, PAIR_BATCH windows at a time (memory
   bounded by a batch, PAIR_SHARD_CACHE shards and a pool of pairs). Partners on the same station (network and
   station code: the window's own trace, the other components and sensors there) closer than `min_separation`
   (default: the window, 4 s: self-matches, their shifts, the same arrival on another component) are dropped;
   each window keeps
   its `neighbours` (10) best partners; (a, b) and (b, a) are one pair (a: the earlier window on one trace,
   else the smaller trace id). Pairs of one repeat (runs of neighbouring windows: the same two traces, first
   windows within one hop and time offsets within one hop of each other, chained) form a cluster, ranked by
   the sum of its pairs' coarse scores (a repeat is a run of similar window pairs, a chance likeness mostly one).
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
refused; an index of an older format is refused with a message to build it
again. A new index is built in a hidden folder beside it (`.NAME.building`)
and renamed when complete: a folder of that name is always a whole index. Each
shard is written to a temporary folder and renamed, its shard.json last; an
interrupted build run again with the same arguments keeps the completed
shards (and the trained quantizer) and builds the rest, saying so; with other
arguments it starts again. `add=True` (`--add`) writes the new shards into the
index and rewrites its index.json last, so that the index lists only complete
shards. The index type, hop and band are fixed when the index is created;
extending reuses them and the trained quantizer. Sharding over several
machines: docs/search.md.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codec.checkpoints import retokenize_hint
from codec.errors import CheckpointError, InputError
from codec.files import replace_folder, write_all_or_nothing, write_atomically
from codec.preprocess import (FRAME_LENGTH, SAMPLING_RATE, check_numeric_samples, contiguous_traces, read_stream,
                              trace_label, trace_to_codec_input)

#: Format tag of index.json; bumped when the layout changes meaning (older formats are refused: build again).
FORMAT = "eqcodec-search-index/2"
OLD_FORMATS = ("eqcodec-search-index/1",)
#: Coarse windows: length in seconds, decimation factor, codebooks decoded (all: the codec spends its first
#: codebooks on a trace's loudest band, often microseisms below the search band; decoding costs the same).
WINDOW_SECONDS = 4
DECIMATION = 2
COARSE_CODEBOOKS = 8
#: Seconds (frames) between the starts of indexed windows by default: with 2 s, a window overlaps the next
#: by half and the index is half the size of a 1-s hop; the template's queries cover the hop instead.
HOP_SECONDS = 2
#: Default band (Hz) of both stages.
DEFAULT_BAND = (1.0, 8.0)
#: Shortest template accepted, seconds.
MIN_TEMPLATE_SECONDS = 2.0
#: Re-rank neighbourhood: +- this many samples (1 s) around each proposal.
NEIGHBOURHOOD = FRAME_LENGTH
#: Samples decoded beyond the neighbourhood on each side so that the band-pass settles (2.5 s: the 4-pole
#: 1-8 Hz Butterworth's edge transient has died out; what a wider margin changes: docs/search.md).
FILTER_MARGIN = FRAME_LENGTH * 5 // 2
#: Anchor windows of a template queried (its loudest), and proposals re-ranked by default.
MAX_ANCHORS = 8
#: Of them, the loudest searched in the index: each proposal then has every anchor scored from the codes, so
#: more searched anchors find the same matches for their cost (benchmarks: docs/search.md).
SEARCHED_ANCHORS = 1
DEFAULT_CANDIDATES = 1000
#: A match's significance (asked with min_significance): its score over the MAD of the template's correlation with
#: this many windows of the searched archive at seeded random places, decoded as the matches are; matched-filter
#: practice (EQcorrscan) counts 8 x MAD of the correlation as a detection.
BACKGROUND_WINDOWS = 256
#: Nearest windows retrieved per query vector (at most `candidates`) in each QUERY_NEIGHBOURS_WINDOWS windows
#: of a shard (a channel-day at a 2-s hop): a true match is near the top of its anchors' lists in its day
#: (benchmarks: docs/search.md), and the work grows with the archive as the look-alikes it must beat do. The
#: 80 shifts of an anchor retrieve overlapping lists, so a short list per shift loses nothing that 100 found.
QUERY_NEIGHBOURS = 30
QUERY_NEIGHBOURS_WINDOWS = 43_200
#: Sub-hop shifts of each anchor searched: every QUERY_SHIFT_STEP-th sample; the scoring from the codes tries
#: the samples between, so a proposal's start is still found to the sample. 2 (50 ms) halves the scan but lost
#: recall near 0 dB for a tenth of the query time over a channel-month (docs/search.md): 1, every sample.
QUERY_SHIFT_STEP = 1
#: Proposals whose every anchor is scored from the codes (`_anchor_scores`), per channel-day of windows of a
#: shard: this many times the proposals re-ranked, the best by their retrieved anchors.
RESCORE_FACTOR = 3
#: FAISS index types: flat (exact, the float vectors), pq (8-bit sub-quantizers), pqfs (4-bit sub-quantizers,
#: searched by FAISS's SIMD fast scan). No inverted lists: IVF lists store an 8-byte id per vector, as much
#: as the codes; here a vector's number is its position (see SearchIndex).
INDEX_TYPES = ("auto", "flat", "pq", "pqfs", "ivfpqfs")
#: ivfpqfs: inverted lists (the list number is a 1-byte part of each code) and lists probed per query.
IVF_LISTS = 256
IVF_PROBES = 16
#: Below this many vectors `index_type="auto"` builds an exact index (small archives: a quantizer is not worth
#: training), above a pqfs one.
AUTO_FLAT_LIMIT = 10_000
#: Product quantizer: bytes per vector (pq: that many 8-bit sub-quantizers; pqfs: twice as many of 4 bits).
PQ_BYTES = 8
#: Vectors the product quantizer is trained on (the first ones of the shards being built).
PQ_TRAIN_VECTORS = 100_000
QUANTIZER_KEYS = ("index_type", "pq_bytes", "pq_subquantizers", "pq_bits", "quantized_dims", "nlist", "nprobe")
#: pqfs: values a window is reduced to (PCA, random rotation) before its 4-bit product quantizer.
PQFS_DIMS = 48
#: Corpus rows decoded together when building an index.
DECODE_ROWS = 64
#: Windows embedded together when building an index (1 h of one channel at a 1-s hop).
CHUNK_FRAMES = 3600
#: How the corpora given to one build are cut into shards.
SHARD_BY = ("corpus", "station", "day")
SHARD_FILES = ("codes.npy", "pieces.parquet", "shard.json")


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
    """Zero-phase Butterworth band-pass (4 poles, sosfiltfilt) at 40 Hz along the last axis (one trace [N] or a
    batch of equal length [n, N], each filtered alone); band None: the mean removed only."""
    from scipy.signal import sosfiltfilt

    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    if band is None:
        return x
    sos = _bandpass_sos(float(band[0]), float(band[1]))
    padlen = min(x.shape[-1] - 1, 3 * (2 * len(sos) + 1))
    return sosfiltfilt(sos, x, axis=-1, padlen=max(padlen, 0))


def _standardize(vectors: np.ndarray) -> np.ndarray:
    """Rows with zero mean and unit norm (float32); all-zero rows stay zero."""
    v = vectors - vectors.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def window_vectors(filtered: np.ndarray, window_seconds: int = WINDOW_SECONDS,
                   decimation: int = DECIMATION, hop: int = 1) -> np.ndarray:
    """Band-passed 40 Hz samples of a piece -> [n_windows, dims] vectors of the windows starting every `hop` frames."""
    from numpy.lib.stride_tricks import sliding_window_view

    width = window_seconds * FRAME_LENGTH
    if len(filtered) < width:
        return np.zeros((0, width // decimation), np.float32)
    windows = sliding_window_view(filtered, width)[::hop * FRAME_LENGTH, ::decimation]
    return _standardize(windows)


# ---------------------------------------------------------------------------- the index on disk
@dataclass
class SearchIndex:
    """An index folder in memory: metadata (index.json), the trained quantizer and the piece table of every shard;
    a shard's codes are read when it is searched (`shard_index`), so that memory is bounded by one shard.

    Vector numbers are global: shard s holds the vectors offsets[s] .. offsets[s + 1] - 1, in the order of its
    pieces, and the vectors of one piece are its consecutive windows (`first_vector`, `num_vectors` of the piece
    table): the piece and time of any vector follow from them, no per-vector table is stored.
    """

    path: Path
    metadata: dict
    quantizer: object  # faiss index, trained, holding no vector: it encodes and decodes the shards' codes
    pieces: object  # pandas.DataFrame: corpus, trace_id, t0, starttime, num_samples, rows, offsets, shard,
    #                 first_vector (global), num_vectors
    shards: list  # [{"name", "vectors", ...}] as in index.json
    offsets: np.ndarray  # [shards + 1] first global vector number of each shard

    @property
    def codec_id(self) -> str:
        return self.metadata["codec_id"]

    @property
    def params(self) -> dict:
        return self.metadata["params"]

    @property
    def hop(self) -> int:
        """Frames (seconds) between the starts of consecutive indexed windows."""
        return int(self.params["hop_seconds"])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def shard_path(self, s: int) -> Path:
        return self.path / "shards" / self.shards[s]["name"]

    def codes(self, s: int) -> np.ndarray:
        """Codes of shard s, [vectors, code size] uint8 (memory-mapped: read as used)."""
        path = self.shard_path(s) / "codes.npy"
        try:
            codes = np.load(path, mmap_mode="r")
        except Exception as err:
            raise InputError(f"{path}: corrupt shard codes ({type(err).__name__}: {err}); build the index again"
                             ) from None
        want = (int(self.shards[s]["vectors"]), int(self.metadata["code_size"]))
        if codes.dtype != np.uint8 or codes.shape != want:
            raise InputError(f"{path}: corrupt shard codes ({codes.dtype} {codes.shape}, index.json says uint8 "
                             f"{want}); build the index again")
        return codes

    def _parts(self):
        """(rotation or None, the quantizer of the rotated vectors) of the quantizer (see _new_quantizer)."""
        faiss = _faiss()
        if not hasattr(self, "_cached_parts"):
            if isinstance(self.quantizer, faiss.IndexPreTransform):
                chain = faiss.downcast_index(self.quantizer)
                self._cached_parts = (faiss.downcast_VectorTransform(chain.chain.at(0)),
                                      faiss.downcast_index(chain.index))
            else:
                self._cached_parts = (None, self.quantizer)
        return self._cached_parts

    def prepare_queries(self, vectors: np.ndarray) -> np.ndarray:
        """Query vectors as the shard indexes take them (rotated and reduced for pqfs), float32."""
        rotation, _ = self._parts()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return rotation.apply(vectors) if rotation is not None else vectors

    def shard_index(self, s: int):
        """A searchable FAISS index of shard s; queries go through `prepare_queries` first."""
        return self.searchable(self.codes(s))

    def searchable(self, codes: np.ndarray):
        """A searchable FAISS index of codes (e.g. a stretch of a shard's `codes`) in a copy of the quantizer;
        the ids it returns are positions in `codes`."""
        faiss = _faiss()
        _, inner = self._parts()
        index = faiss.clone_index(inner)
        codes = np.ascontiguousarray(codes)
        kind = self.metadata["index_type"]
        if kind == "ivfpqfs":
            index.add_sa_codes(codes, np.arange(len(codes), dtype=np.int64))  # ids: positions in the shard
            index = faiss.IndexIVFPQFastScan(index)  # the same codes, laid out for the SIMD scan
            index.nprobe = int(self.metadata["nprobe"])
            return index
        if len(codes):
            index.add_sa_codes(codes)
        if kind == "pqfs":  # the same codes, laid out for the SIMD scan
            index = faiss.IndexPQFastScan(index)
            index.implem = 15  # a scan FAISS does not pick by itself: the same neighbours, about a tenth faster
        return index

    def pair_searchable(self, s: int):
        """A FAISS index of shard s for all-pairs, whose queries are all the shard's own windows.

        A pqfs shard of more than PAIR_LISTS_MIN windows gets inverted lists made for the occasion: the
        decoded codes are clustered (spherical k-means, about PAIR_LISTS_PER_ROOT x sqrt(windows) lists), each
        code goes, unchanged, to the list of its nearest centroid, and a query scans the PAIR_PROBES lists
        nearest to it. All pairs then costs about windows^1.5 instead of windows^2 (a scan of every code by
        every window), at a cost of the pairs whose two windows fall in lists far apart: windows alike enough
        to matter are near each other. Nothing is stored: the lists take a fraction of a second to make.
        Other shards: `shard_index`."""
        faiss = _faiss()
        n = int(self.shards[s]["vectors"])
        if self.metadata["index_type"] != "pqfs" or n <= PAIR_LISTS_MIN:
            return self.shard_index(s)
        codes = np.ascontiguousarray(self.codes(s))
        _, flat = self._parts()
        pq = faiss.downcast_index(flat).pq
        decoded = flat.sa_decode(codes)  # [n, quantized_dims], the rotated vectors the codes stand for
        lists = int(min(round(PAIR_LISTS_PER_ROOT * math.sqrt(n)), n // 16))
        kmeans = faiss.Kmeans(decoded.shape[1], lists, niter=10, spherical=True, seed=1, max_points_per_centroid=64,
                              min_points_per_centroid=1)
        kmeans.train(decoded)
        coarse = faiss.IndexFlatIP(decoded.shape[1])
        coarse.add(kmeans.centroids)
        _, assigned = coarse.search(decoded, 1)
        lists_index = faiss.IndexIVFPQ(coarse, decoded.shape[1], lists, pq.M, pq.nbits, faiss.METRIC_INNER_PRODUCT)
        lists_index.by_residual = False  # codes of the vectors themselves: the shard's codes as they are
        lists_index.pq = pq
        lists_index.is_trained = True
        # a code with its list number in front (little-endian), as FAISS's add_sa_codes takes it
        list_numbers = assigned.astype("<i8").view(np.uint8).reshape(n, 8)[:, :lists_index.coarse_code_size()]
        lists_index.add_sa_codes(np.ascontiguousarray(np.concatenate([list_numbers, codes], axis=1)),
                                 np.arange(n, dtype=np.int64))  # ids: positions in the shard
        index = faiss.IndexIVFPQFastScan(lists_index)  # the same lists, laid out for the SIMD scan
        index.nprobe = PAIR_PROBES
        index.implem = 10  # FAISS's query-blocked scan: faster here than its automatic choice (docs/search.md)
        index.referenced_objects = [coarse]  # the centroids are not owned by the index: kept alive with it
        return index

    def decode(self, s: int, lo: int, hi: int) -> np.ndarray:
        """Vectors lo..hi (local numbers) of shard s as the index holds them (decoded codes), float32."""
        return self.quantizer.sa_decode(np.ascontiguousarray(self.codes(s)[lo:hi]))

    def searched_vectors(self, s: int, local, codes: np.ndarray | None = None) -> np.ndarray:
        """Vectors `local` (local numbers) of shard s decoded in the space its FAISS index searches (rotated
        and reduced for pqfs: inner products with `prepare_queries` vectors are the index's scores), float32.
        codes: the shard's `codes` already read into memory (a gather from the memory map is slow)."""
        _, inner = self._parts()
        local = np.asarray(local, np.int64)
        if not len(local):
            return np.zeros((0, inner.d), np.float32)
        codes = self.codes(s) if codes is None else codes
        return inner.sa_decode(np.ascontiguousarray(codes[local]))

    def code_tables(self, queries: np.ndarray) -> np.ndarray | None:
        """Lookup tables of prepared query rows (`prepare_queries`) for scoring codes without decoding them:
        [q, code size, 256] float32, tables[r, b, c] the inner product of query r with the codewords that code
        byte b holds when its value is c (one 8-bit sub-quantizer, or two 4-bit ones: low nibble first, as
        FAISS packs them), so that a vector's inner product with query r is the sum over its code bytes
        (`code_scores`). None for index types whose codes are not plain product-quantizer codes (flat,
        ivfpqfs): score those by `searched_vectors`."""
        if self.metadata["index_type"] not in ("pq", "pqfs"):
            return None
        faiss = _faiss()
        pq = self._parts()[1].pq
        centroids = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
        lut = np.einsum("rmd,mcd->rmc", np.asarray(queries, np.float32).reshape(len(queries), pq.M, pq.dsub),
                        centroids)  # [q, M, ksub]
        if pq.nbits == 8:
            return np.ascontiguousarray(lut, np.float32)
        value = np.arange(256)
        return np.ascontiguousarray(lut[:, 0::2, value & 15] + lut[:, 1::2, value >> 4], np.float32)

    @staticmethod
    def code_scores(tables: np.ndarray, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Inner products of codes [n, code size] uint8 with query rows [n] (`code_tables`), [n] float32."""
        size = tables.shape[1]
        index_type = np.int32 if tables.size < 2 ** 31 else np.int64
        where = (np.asarray(rows, index_type) * (size * 256))[:, None] + np.arange(0, size * 256, 256, dtype=index_type)
        where += codes
        return tables.reshape(-1)[where].sum(axis=1)

    def piece_of(self, vectors) -> np.ndarray:
        """Piece (row of `pieces`) of global vector numbers."""
        first = np.asarray(self.pieces.first_vector, np.int64)
        return np.searchsorted(first, np.asarray(vectors, np.int64), side="right") - 1

    def frame_of(self, vectors, pieces=None) -> np.ndarray:
        """Frame (second) of the piece where each vector's window starts."""
        pieces = self.piece_of(vectors) if pieces is None else pieces
        return (np.asarray(vectors, np.int64) - np.asarray(self.pieces.first_vector, np.int64)[pieces]) * self.hop


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: corrupt {what} ({err}); build the index again") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: corrupt {what} (not a JSON object); build the index again")
    return value


def load_index(path) -> SearchIndex:
    """Read an index folder (metadata, quantizer, piece tables; codes stay on disk until searched);
    InputError naming the file when it is missing, empty, of an older format or corrupt."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

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
    metadata = _read_json(meta_path, "search index metadata")
    if metadata.get("format") in OLD_FORMATS:
        raise InputError(f"{meta_path}: a search index of an older format ({metadata['format']}); this version reads "
                         f"{FORMAT}: build it again with `eqcodec index CORPUS... --out {path}`")
    if metadata.get("format") != FORMAT:
        raise InputError(f"{meta_path}: not an eqcodec search index (expected format {FORMAT!r})")
    quantizer_path = path / "quantizer.faiss"
    if not quantizer_path.is_file():
        raise InputError(f"{quantizer_path}: missing from the search index (corrupt index; build it again)")
    faiss = _faiss()
    try:
        quantizer = faiss.read_index(str(quantizer_path))
    except Exception as err:
        raise InputError(f"{quantizer_path}: corrupt FAISS quantizer ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); build the index again") from None
    if quantizer.d != metadata["params"]["dims"] or quantizer.sa_code_size() != metadata.get("code_size"):
        raise InputError(f"{quantizer_path}: a quantizer of {quantizer.d} dimensions and {quantizer.sa_code_size()}-byte "
                         f"codes, index.json says {metadata['params']['dims']} and {metadata.get('code_size')} "
                         "(corrupt index; build it again)")
    tables, offsets = [], [0]
    for s, shard in enumerate(metadata.get("shards", [])):
        folder = path / "shards" / shard["name"]
        for name in SHARD_FILES:
            if not (folder / name).is_file():
                raise InputError(f"{folder / name}: missing from the search index (corrupt shard; build it again)")
        info = _read_json(folder / "shard.json", "shard metadata")
        if info.get("vectors") != shard["vectors"] or info.get("quantizer") != metadata["quantizer"]:
            raise InputError(f"{folder / 'shard.json'}: the shard does not match index.json ({info.get('vectors')} "
                             f"vectors, {shard['vectors']} listed; or another quantizer): corrupt index, build it again")
        try:
            table = pq.read_table(folder / "pieces.parquet")
            held = int(pc.sum(table.column("num_vectors")).as_py() or 0)
        except Exception as err:
            raise InputError(f"{folder / 'pieces.parquet'}: corrupt piece table ({type(err).__name__}: {err}); "
                             "build the index again") from None
        if held != shard["vectors"]:
            raise InputError(f"{folder / 'pieces.parquet'}: its pieces hold {held} vectors, "
                             f"index.json says {shard['vectors']} (corrupt shard; build the index again)")
        # the shards' tables joined in Arrow and converted once: a conversion per shard costs more than the read
        first = pc.add(table.column("first_vector").cast(pa.int64()), offsets[-1])
        table = table.set_column(table.schema.get_field_index("first_vector"), "first_vector", first)
        tables.append(table.append_column("shard", pa.array(np.full(len(table), s, np.int64))))
        offsets.append(offsets[-1] + int(shard["vectors"]))
    columns = PIECE_COLUMNS + ["first_vector", "num_vectors", "shard"]
    pieces = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=columns)
    if offsets[-1] != metadata.get("vectors"):
        raise InputError(f"{meta_path}: its shards hold {offsets[-1]} vectors, it says {metadata.get('vectors')} "
                         "(corrupt index; build it again)")
    return SearchIndex(path, metadata, quantizer, pieces, list(metadata.get("shards", [])),
                       np.asarray(offsets, np.int64))


def _corpus_fingerprint(corpus) -> dict:
    return {"rows": len(corpus.dataset), "fingerprint": getattr(corpus.dataset, "_fingerprint", None)}


def _corpus_band(corpus):
    """The band (low, high) Hz a corpus was band-passed in before coding (`tokenize --bandpass`), or None."""
    band = corpus.metadata.get("preprocessing", {}).get("bandpass")
    return tuple(band) if band else None


def _load_corpus(path, expected: dict | None = None):
    """A corpus of the index (its fingerprint checked when `expected` is given)."""
    from tokenized_data import load_tokenized

    corpus = load_tokenized(path)
    if expected is not None and _corpus_fingerprint(corpus) != {k: expected[k] for k in ("rows", "fingerprint")}:
        raise InputError(f"{path}: the token corpus changed since it was indexed ({len(corpus.dataset)} rows, "
                         f"index says {expected['rows']}); build the index again with `eqcodec index`")
    return corpus


PIECE_COLUMNS = ["corpus", "trace_id", "t0", "starttime", "num_samples", "rows", "offsets"]


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
    return pd.DataFrame(pieces, columns=PIECE_COLUMNS)


def _shard_groups(pieces, corpus_number: int, shard_by: str) -> list[tuple[str, object]]:
    """A corpus's pieces -> [(shard name, its pieces)]: one shard per corpus, per station (network.station) or per
    UTC day of a piece's first sample (a piece is never split); names start with the corpus number."""
    import obspy

    if shard_by == "corpus" or len(pieces) == 0:
        keys = [""] * len(pieces)
    elif shard_by == "station":
        keys = [".".join(t.split(".")[:2]) for t in pieces.trace_id]
    elif shard_by == "day":
        keys = [obspy.UTCDateTime(t).strftime("%Y-%m-%d") for t in pieces.t0]
    else:
        raise InputError(f"unknown shard_by {shard_by!r} (corpus, station or day)")
    pieces = pieces.assign(key=keys)
    return [(f"{corpus_number:04d}" + (f"-{key}" if key else ""), group.drop(columns="key").reset_index(drop=True))
            for key, group in pieces.groupby("key", sort=True)]


def _num_windows(num_samples: int, params: dict) -> int:
    width, hop = params["window_seconds"] * FRAME_LENGTH, params["hop_seconds"] * FRAME_LENGTH
    return max(0, (int(num_samples) - width) // hop + 1)


class _Decoder:
    """Decodes corpus rows (cached) and assembles spans of pieces from them; corpora are opened when first used."""

    def __init__(self, codec, corpora, num_codebooks: int | None):
        """corpora: {corpus number in the index: TokenCorpus, or a function returning it}."""
        self.codec, self.sources, self.k = codec, dict(corpora), num_codebooks
        self.tables: dict = {}  # corpus -> its rows (tokenized_data.detokenize.TableRows)
        self.lengths: dict = {}
        self.longest: dict = {}
        self.cache: dict = {}
        self.piece_arrays: dict = {}

    def _open(self, corpus: int) -> None:
        if corpus not in self.tables:
            source = self.sources[corpus]
            from tokenized_data.detokenize import TableRows, arrow_table

            c = source() if callable(source) else source
            self.tables[corpus] = TableRows(arrow_table(c.dataset))
            self.lengths[corpus] = self.tables[corpus].columns["num_frames"].astype(np.int64) * FRAME_LENGTH
            self.longest[corpus] = int(self.lengths[corpus].max(initial=0))

    def rows(self, corpus: int, rows: list[int]) -> None:
        from tokenized_data.detokenize import decode_row_samples

        self._open(corpus)
        todo = [r for r in rows if (corpus, r) not in self.cache]
        for lo in range(0, len(todo), DECODE_ROWS):
            batch = todo[lo:lo + DECODE_ROWS]
            for r, samples in zip(batch, decode_row_samples(self.codec, self.tables[corpus].rows(batch), self.k)):
                self.cache[(corpus, r)] = samples

    def _piece_arrays(self, piece) -> tuple[np.ndarray, np.ndarray]:
        """(rows, offsets) of a piece as arrays, converted once per piece (a long piece lists thousands of rows;
        a piece is known by its corpus and first row: pieces of a corpus share no row)."""
        key = (int(piece.corpus), int(piece.rows[0]), len(piece.rows))
        if key not in self.piece_arrays:
            self.piece_arrays[key] = (np.asarray(piece.rows, np.int64), np.asarray(piece.offsets, np.int64))
        return self.piece_arrays[key]

    def _overlapping_many(self, piece, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows of a piece overlapping each span lo[i]..hi[i] (piece samples), all spans at once ->
        (span number, row, its offset in the piece), one entry per overlap, in span and then time order."""
        corpus = int(piece.corpus)
        self._open(corpus)
        rows, offsets = self._piece_arrays(piece)
        first = np.searchsorted(offsets, lo - self.longest[corpus], side="right")  # as in _overlapping
        last = np.searchsorted(offsets, hi, side="left")
        count = np.maximum(last - first, 0)
        which = np.repeat(np.arange(len(lo)), count)
        position = np.repeat(first - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
        ok = offsets[position] + self.lengths[corpus][rows[position]] > lo[which]
        return which[ok], rows[position[ok]], offsets[position[ok]]

    def _overlapping(self, piece, lo: int, hi: int) -> list[tuple[int, int]]:
        corpus = int(piece.corpus)
        self._open(corpus)
        rows, offsets = self._piece_arrays(piece)
        # a piece's rows are in time order and none is longer than the corpus's longest: only rows starting
        # less than that before lo can reach it
        first = int(np.searchsorted(offsets, lo - self.longest[corpus], side="right"))
        last = int(np.searchsorted(offsets, hi, side="left"))
        rows, offsets = rows[first:last], offsets[first:last]
        ok = offsets + self.lengths[corpus][rows] > lo
        return list(zip(rows[ok].tolist(), offsets[ok].tolist()))

    def spans(self, requests) -> list[np.ndarray]:
        """[(piece, lo, hi)] -> decoded samples lo..hi of each piece, as `span` gives them, from the frames
        they need only (nothing cached): each overlapping row's frames around the span, with a margin of
        the codec's decode context and one frame more (the margin's outer frame decodes with a trace's start
        or stop window: its samples are dropped). A codec that does not state its context decodes whole rows."""
        from tokenized_data.detokenize import decode_row_samples

        context = getattr(self.codec, "decode_context_frames", None)
        margin = None if context is None else int(context) + 1
        out = [np.zeros(hi - lo) for _, lo, hi in requests]
        # corpus -> [request, row, first and end frame decoded, row samples a..b wanted, where they go in the
        # request's output, frames of the row]
        parts: dict = {}
        of_piece: dict = {}  # the requests of each piece, handled together
        for i, (piece, lo, hi) in enumerate(requests):
            of_piece.setdefault((int(piece.corpus), int(piece.rows[0])), (piece, []))[1].append(i)
        for piece, members in of_piece.values():
            corpus = int(piece.corpus)
            lo = np.array([requests[i][1] for i in members], np.int64)
            hi = np.array([requests[i][2] for i in members], np.int64)
            which, r, o = self._overlapping_many(piece, lo, hi)
            length = self.lengths[corpus][r]
            a, b = np.maximum(lo[which], o) - o, np.minimum(hi[which], o + length) - o
            frames = length // FRAME_LENGTH
            if margin is None:
                f0, f1 = np.zeros_like(frames), frames
            else:
                f0 = np.maximum(0, a // FRAME_LENGTH - margin)
                f1 = np.minimum(frames, -(-b // FRAME_LENGTH) + margin)
            at = o + a - lo[which]
            request = np.asarray(members)[which]
            parts.setdefault(corpus, []).extend(
                list(part) for part in zip(*(v.tolist() for v in (request, r, f0, f1, a, b, at, frames))))
        for corpus, todo in parts.items():
            # stretches widened to one number of frames where their rows allow: decoded in the same batches
            width = max(f1 - f0 for _, _, f0, f1, *_ in todo)
            for part in todo:
                frames = part[7]
                part[3] = min(frames, part[2] + width)
                part[2] = max(0, part[3] - width)
            wanted = sorted({r for _, r, *_ in todo})
            for lo in range(0, len(wanted), 16 * DECODE_ROWS):
                batch = wanted[lo:lo + 16 * DECODE_ROWS]
                where = {r: j for j, r in enumerate(batch)}
                rows = self.tables[corpus].rows(batch)
                mine = [part for part in todo if part[1] in where]
                cut = {"codes": [rows["codes"][where[r]][:, f0:f1] for _, r, f0, f1, *_ in mine],
                       "gain": [rows["gain"][where[r]][f0:f1] for _, r, f0, f1, *_ in mine],
                       "num_frames": [f1 - f0 for _, _, f0, f1, *_ in mine]}
                for key in ("scale", "offset", "sampling_rate", "augmentation"):
                    if key in rows:
                        cut[key] = [rows[key][where[r]] for _, r, *_ in mine]
                # short stretches: all of a batch in one decode call
                for (i, _, f0, _, a, b, at, _), samples in zip(mine, decode_row_samples(self.codec, cut, self.k,
                                                                                       batch_size=len(mine))):
                    out[i][at:at + b - a] = samples[a - f0 * FRAME_LENGTH:b - f0 * FRAME_LENGTH]
        return out

    def span(self, piece, lo: int, hi: int) -> np.ndarray:
        """Decoded samples lo..hi of a piece (rows overlapping the span only)."""
        corpus = int(piece.corpus)
        wanted = self._overlapping(piece, lo, hi)
        self.rows(corpus, [r for r, _ in wanted])
        out = np.zeros(hi - lo)
        for r, o in wanted:
            data = self.cache[(corpus, r)]
            a, b = max(lo, o), min(hi, o + len(data))
            out[a - lo:b - lo] = data[a - o:b - o]
        return out


def _piece_vectors(decoder: _Decoder, pieces, params: dict):
    """Window vectors of pieces, in order, an hour of windows (CHUNK_FRAMES) at a time: memory bounded by a chunk,
    not by a piece or a shard. Yields [n, dims] float32 arrays (pieces too short for a window yield nothing)."""
    from tokenized_data.writer import one_torch_thread

    width = params["window_seconds"] * FRAME_LENGTH
    hop = params["hop_seconds"]
    band = tuple(params["band"]) if params["band"] else None
    chunk = max(1, CHUNK_FRAMES // hop)
    for piece in pieces.itertuples():
        num_windows = _num_windows(piece.num_samples, params)
        for j0 in range(0, num_windows, chunk):
            j1 = min(j0 + chunk, num_windows)
            lo, hi = j0 * hop * FRAME_LENGTH, (j1 - 1) * hop * FRAME_LENGTH + width
            a, b = max(0, lo - FILTER_MARGIN), min(int(piece.num_samples), hi + FILTER_MARGIN)
            decoder.cache.clear()
            with one_torch_thread():
                samples = decoder.span(piece, a, b)
            yield window_vectors(bandpass(samples, band)[lo - a: hi - a], params["window_seconds"],
                                 params["decimation"], hop)


def _new_quantizer(index_type: str, dims: int, pq_bytes: int, training) -> tuple[object, dict]:
    """A trained, empty FAISS index of `index_type` (flat needs no training), and what index.json says of it.

    training: a function (limit) -> [n <= limit, dims] float32 vectors to train the product quantizer on."""
    faiss = _faiss()
    info = {"index_type": index_type}
    if index_type == "flat":
        return faiss.IndexFlatIP(dims), info
    if index_type == "pq":
        subquantizers, bits, reduced = pq_bytes, 8, dims
    elif index_type in ("pqfs", "ivfpqfs"):  # 4-bit sub-quantizers: FAISS's SIMD fast scan, on rotated vectors
        subquantizers, bits, reduced = 2 * pq_bytes, 4, PQFS_DIMS
    else:
        raise InputError(f"unknown index type {index_type!r} ({', '.join(INDEX_TYPES)})")
    if reduced % subquantizers:
        raise InputError(f"--pq-bytes {pq_bytes}: {subquantizers} sub-quantizers of {bits} bits do not divide the "
                         f"{reduced} values a {index_type} index quantizes")
    need = 4 * (1 << bits) if index_type != "ivfpqfs" else 4 * IVF_LISTS
    vectors = np.ascontiguousarray(training(PQ_TRAIN_VECTORS))
    if len(vectors) < max(need, reduced * 4):
        raise InputError(f"a {index_type} index needs at least {max(need, reduced * 4)} vectors (windows of the "
                         f"archive) to train its quantizer, the corpora give {len(vectors)}; use --index-type flat")
    if index_type == "ivfpqfs":
        # inverted lists over the rotated vectors; the list number is part of each code (1 byte for 256 lists) and
        # a vector's id is its position, given again when a shard is loaded: no id is stored
        pq = faiss.IndexIVFPQ(faiss.IndexFlatIP(reduced), reduced, IVF_LISTS, subquantizers, bits,
                              faiss.METRIC_INNER_PRODUCT)
        pq.cp.min_points_per_centroid = 1
        info.update(nlist=IVF_LISTS, nprobe=IVF_PROBES)
    else:
        pq = faiss.IndexPQ(reduced, subquantizers, bits, faiss.METRIC_INNER_PRODUCT)
    pq.pq.cp.min_points_per_centroid = 1  # training size checked above: no warnings
    if index_type == "pq":
        pq.train(vectors)
        index = pq
    else:
        # PCA to PQFS_DIMS then a random rotation (an orthonormal map): the windows are band-limited, so little
        # of them is lost, and the rotation spreads their variance evenly over the sub-quantizers, which 4-bit
        # codebooks need. The mean is not subtracted (bias zeroed): inner products stay correlations.
        rotation = faiss.PCAMatrix(dims, reduced, 0, True)
        rotation.train(vectors)
        faiss.copy_array_to_vector(np.zeros(reduced, np.float32), rotation.b)
        rotation.PCAMat.clear()  # the full eigenvector matrix: not needed once A (reduced, rotated) is made
        pq.train(np.ascontiguousarray(rotation.apply(vectors)))
        index = faiss.IndexPreTransform(rotation, pq)
    info.update(pq_bytes=pq_bytes, pq_subquantizers=subquantizers, pq_bits=bits, quantized_dims=reduced)
    return index, info


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def build_index(corpora, out, *, add: bool = False, codec: str | None = None, index_type: str = "auto",
                band=DEFAULT_BAND, pq_bytes: int = PQ_BYTES, hop: int = HOP_SECONDS, shard_by: str = "station",
                coarse_codebooks: int = COARSE_CODEBOOKS, progress: bool = True, log=None) -> SearchIndex:
    """`eqcodec index`: index token corpus folder(s) into the folder `out` (see the module docstring).

    add: extend the index at `out` with new shards (it must exist unless it is missing, then it is created);
    without it an existing index at `out` is refused. codec: checkpoint folder (None: the shipped EQcodec) that
    made the corpora. index_type: auto | flat | pq | pqfs; band: (low, high) Hz or None; hop: seconds between
    indexed windows (these three fixed at creation). shard_by: corpus | station | day (the shards of the corpora
    given). log: function of a line (None: print). An interrupted build, run again with the same arguments,
    keeps the shards it had completed.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from codec import load_codec
    from tokenized_data.detokenize import check_codec

    log = log or print
    if isinstance(corpora, (str, Path)):
        corpora = [corpora]
    corpora = [Path(c) for c in corpora]
    if not corpora:
        raise InputError("index: no corpus folder given")
    if shard_by not in SHARD_BY:
        raise InputError(f"unknown shard_by {shard_by!r} ({', '.join(SHARD_BY)})")
    if index_type not in INDEX_TYPES:
        raise InputError(f"unknown index type {index_type!r} ({', '.join(INDEX_TYPES)})")
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or not 1 <= hop <= WINDOW_SECONDS:
        raise InputError(f"hop must be a whole number of seconds from 1 to {WINDOW_SECONDS} (the window), got {hop!r}")
    if isinstance(coarse_codebooks, bool) or not isinstance(coarse_codebooks, (int, np.integer)) \
            or not 1 <= coarse_codebooks <= 8:
        raise InputError(f"coarse_codebooks must be a whole number from 1 to 8, got {coarse_codebooks!r}")
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
        "window_seconds": WINDOW_SECONDS, "hop_seconds": int(hop), "decimation": DECIMATION,
        "dims": WINDOW_SECONDS * FRAME_LENGTH // DECIMATION, "coarse_codebooks": int(coarse_codebooks),
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
        if band is not None and _corpus_band(corpus) is None:
            log(f"note: {path} holds tokens of the traces as recorded; on a quiet broadband station the search "
                f"band ({band[0]:g}-{band[1]:g} Hz) can lie under the codec's error there: tokens of the band-passed "
                f"traces (`eqcodec tokenize --bandpass {band[0]:g}-{band[1]:g}`) keep it (docs/search.md)")
        loaded.append((path, corpus))

    # the shards to build: (name, corpus number, its pieces)
    plan = []
    for number, (path, corpus) in enumerate(loaded, start=len(known)):
        for name, pieces in _shard_groups(_pieces_of(corpus, number), number, shard_by):
            pieces = pieces.assign(num_vectors=[_num_windows(n, params) for n in pieces.num_samples])
            pieces["first_vector"] = np.concatenate([[0], np.cumsum(pieces.num_vectors)[:-1]]).astype(np.int64)
            plan.append((name, number, pieces))
    total = sum(int(p.num_vectors.sum()) for _, _, p in plan)
    if old is None and total == 0:
        raise InputError(f"{', '.join(map(str, corpora))}: no gap-free piece of {params['window_seconds']} s or "
                         "more to index")
    decoder = _Decoder(codec_model, {n: c for n, (_, c) in enumerate(loaded, start=len(known))},
                       params["coarse_codebooks"])

    # Where to write: a new index is built in a hidden folder beside `out` and renamed when complete; an index
    # extended gets its new shards in place, listed in its index.json (rewritten last) only once complete. A
    # shard folder is complete once its shard.json is there: an interrupted build, run again, keeps those.
    work = out if old is not None else out.with_name(f".{out.name}.building")
    settings = {"format": FORMAT, "codec_id": codec_model.identity(), "params": params, "index_type": index_type,
                "pq_bytes": pq_bytes, "shard_by": shard_by, "corpora": [str(p.resolve()) for p, _ in loaded]}
    if old is None and work.exists():
        try:
            before = json.loads((work / "build.json").read_text())
        except (OSError, ValueError):
            before = None
        if before != settings:
            log(f"note: {work} holds an interrupted build with other settings or corpora: started again")
            shutil.rmtree(work)
    (work / "shards").mkdir(parents=True, exist_ok=True)
    if old is None:
        write_atomically(lambda tmp: tmp.write_text(json.dumps(settings, indent=1)), work / "build.json")

    quantizer_path = work / "quantizer.faiss"
    faiss = _faiss()
    if old is not None:
        quantizer, info = old.quantizer, {k: old.metadata[k] for k in QUANTIZER_KEYS if k in old.metadata}
    elif quantizer_path.is_file() and (work / "quantizer.json").is_file():
        quantizer, info = faiss.read_index(str(quantizer_path)), json.loads((work / "quantizer.json").read_text())
    else:
        kind = index_type if index_type != "auto" else ("flat" if total < AUTO_FLAT_LIMIT else "pqfs")

        def training(limit):
            """The first `limit` vectors of the shards (pieces in order): a day and more of one channel."""
            got, count = [], 0
            for _, _, pieces in plan:
                for v in _piece_vectors(decoder, pieces, params):
                    got.append(v)
                    count += len(v)
                    if count >= limit:
                        return np.concatenate(got)[:limit]
            return np.concatenate(got) if got else np.zeros((0, params["dims"]), np.float32)

        quantizer, info = _new_quantizer(kind, params["dims"], pq_bytes, training)
        write_atomically(lambda tmp: faiss.write_index(quantizer, str(tmp)), quantizer_path)
        write_atomically(lambda tmp: tmp.write_text(json.dumps(info)), work / "quantizer.json")
    quantizer_id = old.metadata["quantizer"] if old is not None else _file_digest(quantizer_path)

    shards_meta, kept = [], 0
    for name, number, pieces in tqdm(plan, desc="index", unit="shard", disable=not progress):
        path, corpus = loaded[number - len(known)]
        folder = work / "shards" / name
        expected = {"name": name, "corpus": str(path.resolve()), **_corpus_fingerprint(corpus),
                    "quantizer": quantizer_id, "vectors": int(pieces.num_vectors.sum()), "pieces": len(pieces)}
        try:
            done = json.loads((folder / "shard.json").read_text()) == expected
        except (OSError, ValueError):
            done = False
        if done and all((folder / f).is_file() for f in SHARD_FILES):
            kept += 1
        else:
            codes = [quantizer.sa_encode(np.ascontiguousarray(v)) for v in _piece_vectors(decoder, pieces, params)]
            codes = np.concatenate(codes) if codes else np.zeros((0, quantizer.sa_code_size()), np.uint8)
            if len(codes) != expected["vectors"]:
                raise RuntimeError(f"shard {name}: {len(codes)} vectors made, {expected['vectors']} planned")
            tmp = folder.with_name(f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            np.save(tmp / "codes.npy", codes)
            pieces.to_parquet(tmp / "pieces.parquet", index=False)
            (tmp / "shard.json").write_text(json.dumps(expected, indent=1))  # last: the shard is complete
            replace_folder(tmp, folder)
        shards_meta.append({"name": name, "corpus": number, "vectors": expected["vectors"],
                            "pieces": expected["pieces"],
                            "bytes": {f: (folder / f).stat().st_size for f in SHARD_FILES}})
    if kept:
        log(f"resumed an interrupted build: {kept} of {len(plan)} shards were complete and kept, "
            f"{len(plan) - kept} built")
    shards_meta = (old.shards if old is not None else []) + shards_meta
    all_pieces = pd.concat(([old.pieces[PIECE_COLUMNS]] if old is not None else []) + [p for _, _, p in plan],
                           ignore_index=True)
    corpora_meta = (old.metadata["corpora"] if old is not None else []) + [
        {"path": str(p.resolve()), **_corpus_fingerprint(c), "channel_hours": c.counts()["channel_hours"],
         "bandpass": _corpus_band(c)}
        for p, c in loaded]
    byte_counts = {"quantizer.faiss": quantizer_path.stat().st_size if old is None else
                   old.metadata["bytes"]["quantizer.faiss"]}
    for f in SHARD_FILES:
        byte_counts[f] = sum(s["bytes"][f] for s in shards_meta)
    metadata = {"format": FORMAT, "codec_id": codec_model.identity(), "params": params, **info,
                "code_size": int(quantizer.sa_code_size()), "quantizer": quantizer_id,
                "shard_by": old.metadata["shard_by"] if old is not None else shard_by,
                "vectors": int(sum(s["vectors"] for s in shards_meta)), "pieces": len(all_pieces),
                "corpora": corpora_meta, "shards": shards_meta,
                "longest_piece_seconds": float(all_pieces.num_samples.max() / SAMPLING_RATE) if len(all_pieces)
                else 0.0, "bytes": byte_counts}
    text = json.dumps(metadata, indent=1)
    write_atomically(lambda tmp: tmp.write_text(text), work / "index.json")  # the index now lists the new shards
    if old is None:
        for name in ("build.json", "quantizer.json"):
            (work / name).unlink(missing_ok=True)
        replace_folder(work, out)
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


def _template_stream(template, seed_id: str, source: str | None):
    """A path or obspy Stream/Trace -> (its traces matching seed_id, a name for messages, their channel ids)."""
    import obspy

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
    return stream, source, ids


def prepare_templates(template, *, start=None, end=None, seed_id: str = "*",
                      source: str | None = None) -> list[Template]:
    """Every channel of a template (path or obspy Stream/Trace; `seed_id` selects) -> [Template], one per
    channel in id order, each cut to start..end (seconds after the earliest channel's first sample, or UTC)."""
    stream, source, ids = _template_stream(template, seed_id, source)
    first = min(tr.stats.starttime for tr in stream)
    start, end = (None if v is None else str(_time(v, first)) for v in (start, end))
    if len(ids) == 1:
        return [prepare_template(stream, start=start, end=end, source=source)]
    # a channel that cannot be a template (constant, too short, gaps, NaN) is left out, said so; none left: its error
    templates, skipped = [], []
    for i in ids:
        try:
            templates.append(prepare_template(stream.select(id=i), start=start, end=end, source=source))
        except InputError as err:
            skipped.append(err)
    if not templates:
        raise skipped[0]
    templates[0].notes.extend(f"channel left out of the template: {err}" for err in skipped)
    return templates


def prepare_template(template, *, start=None, end=None, seed_id: str = "*", source: str | None = None) -> Template:
    """A path or obspy Stream/Trace -> Template (one channel; gaps, NaN and too short refused)."""
    from scipy.signal import detrend

    stream, source, ids = _template_stream(template, seed_id, source)
    if len(ids) > 1:
        raise InputError(f"{source}: holds {len(ids)} channels ({', '.join(ids)}); choose one with --seed-id, "
                         "or search them together (prepare_templates, run_network_search)")
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


def template_queries(filtered: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchor windows of the template, each at every sub-hop shift (40 per second of the index's hop).

    Anchors: the template's windows hopped by half a window (the last one flush with its end), the
    MAX_ANCHORS loudest kept; a template shorter than a window is one zero-padded anchor. Shifted by every
    sample of one hop, an anchor meets one indexed window within half a sample wherever the template recurs.
    Returns (vectors [q, d], offsets [q]: template sample at the vector's start, anchors [q]: its anchor).
    """
    width = params["window_seconds"] * FRAME_LENGTH
    shifts = int(params["hop_seconds"]) * FRAME_LENGTH
    n = len(filtered)
    if n >= width:
        starts = sorted(set(range(0, n - width + 1, width // 2)) | {n - width})
        energy = np.array([float(np.sum(filtered[a:a + width] ** 2)) for a in starts])
        anchors = [starts[i] for i in sorted(np.argsort(-energy)[:MAX_ANCHORS])]
    else:
        anchors = [0]
    padded = np.zeros(n + shifts + width)
    padded[:n] = filtered
    vectors, offsets, of_anchor = [], [], []
    for a in anchors:
        for s in range(shifts):
            vectors.append(padded[a + s: a + s + width: params["decimation"]])
            offsets.append(a + s)
            of_anchor.append(a)
    return _standardize(np.stack(vectors)), np.asarray(offsets), np.asarray(of_anchor)


# ---------------------------------------------------------------------------- searching
@dataclass
class SearchResult:
    matches: object  # pandas.DataFrame
    template: Template
    filtered_template: np.ndarray
    waveforms: list  # band-passed decoded samples of each match, aligned on the template
    notes: list


def _equal_lengths(arrays) -> list[list[int]]:
    """Positions of `arrays` grouped by length: each group stacks into one batch."""
    groups: dict = {}
    for i, x in enumerate(arrays):
        groups.setdefault(len(x), []).append(i)
    return list(groups.values())


def ncc_best_batch(data: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, M] spans and one [L] template (or one per span, [n, L]) -> per span the best lag and its normalized
    cross-correlation (`ncc_batch`'s maximum)."""
    cc = ncc_batch(data, template)
    best = np.argmax(cc, axis=-1)
    return best, cc[np.arange(len(cc)), best]


def ncc_batch(data: np.ndarray, template: np.ndarray) -> np.ndarray:
    """[n, M] spans and one [L] template (or one per span, [n, L]) -> [n, M - L + 1] normalized
    cross-correlation at every lag.

    The same correlation as obspy's correlate_template(mode="valid", normalize="full", demean=True): the
    template demeaned, each data window normalized by its own demeaned energy; a window or template with no
    energy scores 0. All spans at once (one batched FFT), where obspy's FFT does one span a call.
    """
    from scipy import fft

    t = np.asarray(template, np.float64)
    t = t - t.mean(axis=-1, keepdims=True)
    L = t.shape[-1]
    data = np.asarray(data, np.float64)
    M = data.shape[-1]
    # circular correlation over a length >= M: the valid lags 0..M-L never wrap
    size = fft.next_fast_len(M, real=True)
    spectrum = fft.rfft(data, size, axis=-1) * np.conj(fft.rfft(t, size, axis=-1))
    numerator = fft.irfft(spectrum, size, axis=-1)[:, :M - L + 1]  # [n, lags]
    csum = np.concatenate([np.zeros((len(data), 1)), np.cumsum(data, axis=-1)], axis=-1)
    csq = np.concatenate([np.zeros((len(data), 1)), np.cumsum(data * data, axis=-1)], axis=-1)
    window_sum = csum[:, L:] - csum[:, :-L]
    window_energy = np.maximum(csq[:, L:] - csq[:, :-L] - window_sum ** 2 / L, 0.0)
    template_energy = np.sum(t * t, axis=-1)
    denominator = np.sqrt(window_energy * (template_energy[:, None] if t.ndim == 2 else template_energy))
    tiny = 1e-12 * max(float(denominator.max(initial=0.0)), 1e-300)
    return np.where(denominator > tiny, numerator / np.where(denominator > tiny, denominator, 1.0), 0.0)


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
    """A full-rate decoder of the index's corpora, each opened (and checked unchanged since it was indexed)
    when first decoded: a search opens only the corpora of its proposals."""
    def opener(meta):
        def open_corpus():
            if not Path(meta["path"]).exists():
                raise InputError(f"{index.path}: the indexed corpus {meta['path']} is gone (moved or deleted); "
                                 "index the corpora again where they are now")
            return _load_corpus(meta["path"], meta)
        return open_corpus

    return _Decoder(codec_model, {n: opener(c) for n, c in enumerate(index.metadata["corpora"])}, None)


def _filtered_span(decoder: _Decoder, piece, lo: int, hi: int, band) -> np.ndarray:
    """Samples lo..hi of a piece decoded from all codebooks and band-passed (with FILTER_MARGIN to settle)."""
    return _filtered_spans(decoder, [(piece, lo, hi)], band)[0]


def _filtered_spans(decoder: _Decoder, requests, band) -> list[np.ndarray]:
    """[(piece, lo, hi)] -> samples lo..hi of each piece decoded from all codebooks and band-passed (with
    FILTER_MARGIN to settle); spans of equal length are filtered together, in one call."""
    from tokenized_data.writer import one_torch_thread

    wider, cuts = [], []
    for piece, lo, hi in requests:
        a, b = max(0, lo - FILTER_MARGIN), min(int(piece.num_samples), hi + FILTER_MARGIN)
        wider.append((piece, a, b))
        cuts.append((lo - a, hi - a))
    with one_torch_thread():
        raw = decoder.spans(wider)
    out: list = [None] * len(raw)
    for members in _equal_lengths(raw):
        for i, filtered in zip(members, bandpass(np.stack([raw[i] for i in members]), band)):
            out[i] = filtered[cuts[i][0]:cuts[i][1]]
    return out


def _largest(values: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m largest values, largest first (ties: lower index first), with a partial sort: the
    proposals of a long shard number hundreds of thousands, of which a few thousand are kept."""
    if m >= len(values):
        return np.argsort(-values, kind="stable")
    kth = np.partition(values, len(values) - m)[len(values) - m]  # the m-th largest value
    above = np.flatnonzero(values > kth)
    top = np.concatenate([above, np.flatnonzero(values == kth)[: m - len(above)]])  # ties: lower index first
    return top[np.lexsort((top, -values[top]))]


def _gather_rows(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """codes[rows] for a [n, size] uint8 array, gathered as one word per row where a word holds one (numpy's
    row gather of a few bytes each is several times slower)."""
    word = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(codes.shape[1])
    if word is None or not codes.flags.c_contiguous:
        return codes[rows]
    return codes.view(word)[:, 0][rows].view(np.uint8).reshape(len(rows), codes.shape[1])


def _anchor_scores(index: SearchIndex, s: int, codes: np.ndarray, pieces: np.ndarray, starts: np.ndarray,
                   anchor_offsets, anchor_weights, queries: np.ndarray, shifts: int,
                   tables: np.ndarray | None = None) -> np.ndarray:
    """Coarse score of proposals (global piece numbers, template start in piece samples) in shard s: the
    weighted mean over the template's anchors of the correlation of the anchor with the indexed window it
    meets there (weights: `anchor_weights`, summing to 1).

    Anchor a meets, at start p, the first window starting at or after p + a, with the query of that anchor
    shifted by the difference (`template_queries`: anchor j's shift k is query row j x shifts + k); an anchor
    off the piece counts 0. The windows' codes (`codes`: shard s's, in memory) are scored by the queries'
    lookup tables (`tables`: `SearchIndex.code_tables`), or decoded where the index has none (a gather, no
    search)."""
    hop = shifts  # samples between indexed windows
    first = np.asarray(index.pieces.first_vector, np.int64)[pieces] - index.offsets[s]
    count = np.asarray(index.pieces.num_vectors, np.int64)[pieces]
    total = np.zeros(len(pieces))
    for j, a in enumerate(anchor_offsets):
        at = np.asarray(starts, np.int64) + int(a)
        window = -(-at // hop)  # ceil: the first window starting at or after the anchor
        ok = (at >= 0) & (window < count)
        local = first[ok] + window[ok]
        rows = j * shifts + (window[ok] * hop - at[ok])
        if tables is not None:
            total[ok] += anchor_weights[j] * index.code_scores(tables, rows, _gather_rows(codes, local))
        else:
            vectors = index.searched_vectors(s, local, codes)
            total[ok] += anchor_weights[j] * np.einsum("nd,nd->n", vectors, queries[rows])
    return total


def _check_match_options(top, min_score, min_significance) -> None:
    """InputError for a bad `top`, `min_score` or `min_significance` of a template search."""
    if not isinstance(top, (int, np.integer)) or top < 1:
        raise InputError(f"top must be a whole number >= 1, got {top!r}")
    if min_score is not None and not -1 <= min_score <= 1:
        raise InputError(f"min_score must lie in [-1, 1] (a correlation), got {min_score}")
    _check_significance(min_significance)


def _check_significance(min_significance) -> None:
    if min_significance is not None and not (isinstance(min_significance, (int, float, np.floating))
                                             and not isinstance(min_significance, bool)
                                             and math.isfinite(min_significance) and min_significance >= 0):
        raise InputError(f"min_significance must be a number of MADs >= 0, got {min_significance!r}")


def _score_floor(min_score, min_significance, mad) -> float | None:
    """The lowest score listed: min_score, and min_significance MADs when asked (a NaN MAD sets no floor)."""
    floors = [f for f in (min_score, None if mad is None or not math.isfinite(mad) else min_significance * mad)
              if f is not None]
    return max(floors) if floors else None


def _filtered_template(tpl: Template, index: SearchIndex) -> tuple[np.ndarray, list]:
    """The template's samples band-passed as the index's decoded samples are -> (samples, notes for the user)."""
    band = tuple(index.params["band"]) if index.params["band"] else None
    filtered = bandpass(tpl.samples, band)
    if not np.any(filtered):
        raise InputError(f"{tpl.label}: nothing left of the template in the index's band {band} Hz")
    notes = list(tpl.notes)
    prefiltered = [c.get("bandpass") for c in index.metadata["corpora"]]
    if band is not None and all(p is not None and tuple(p) == band for p in prefiltered):
        # the archive was band-passed before coding (`tokenize --bandpass`) and its decoded samples again: the
        # template gets the same filter twice, or a true match scores lower (0.89 instead of 0.98 over a month)
        filtered = bandpass(filtered, band)
        notes.append(f"the index's corpora were tokenized band-passed ({band[0]:g}-{band[1]:g} Hz): the template "
                     "is band-passed twice, as the archive was")
    return filtered, notes


def _channel_ranges(index: SearchIndex, s: int, on_channel: np.ndarray) -> list[tuple[int, int]]:
    """The runs of shard s's vectors (numbers within the shard) that belong to the pieces marked in `on_channel`
    ([pieces] bool), touching runs merged: a channel's windows, the others' left unsearched."""
    mine = np.flatnonzero(on_channel & (np.asarray(index.pieces.shard, np.int64) == s))
    first = np.asarray(index.pieces.first_vector, np.int64)[mine] - int(index.offsets[s])
    count = np.asarray(index.pieces.num_vectors, np.int64)[mine]
    ranges: list = []
    for a, b in sorted(zip(first.tolist(), (first + count).tolist())):
        if b <= a:
            continue
        if ranges and a <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], b))
        else:
            ranges.append((a, b))
    return ranges


def run_search(template, index_path, *, top: int = 10, min_score: float | None = None, start=None, end=None,
               seed_id: str = "*", codec: str | None = None, candidates: int | None = None,
               neighbours: int | None = None, searched_anchors: int | None = None,
               keep_waveforms: int = 0, trace_id: str | None = None,
               min_significance: float | None = None) -> SearchResult:
    """The search, with what the figure needs; `search` returns its table only.

    template: a file path, an obspy Stream/Trace (one channel: `prepare_template`) or a prepared Template.
    index_path: an index folder (or a loaded SearchIndex), or a list of them (e.g. one per machine or per network: each searched in
    turn, their matches merged by score; the scores are correlations on decoded samples, comparable across
    indexes). trace_id: search that channel of the archive only (a multi-channel template's channel,
    `run_network_search`). min_significance: list only matches whose score is at least this many MADs of the
    template's correlation with the archive (`_background_mad`; 8: matched-filter practice), with a `significance`
    column (score / MAD; 0 gives the column alone)."""
    import pandas as pd

    if isinstance(index_path, (list, tuple)):
        if not index_path:
            raise InputError("search: no index folder given")
        if len(index_path) > 1:
            results = [run_search(template, p, top=top, min_score=min_score, start=start, end=end, seed_id=seed_id,
                                  codec=codec, candidates=candidates, neighbours=neighbours,
                                  searched_anchors=searched_anchors, keep_waveforms=keep_waveforms,
                                  trace_id=trace_id, min_significance=min_significance)
                       for p in index_path]
            rows = [(score, r, i) for r in results for i, score in enumerate(r.matches.score)]
            rows.sort(key=lambda item: -item[0])
            rows = rows[:top]
            matches = pd.concat([r.matches.iloc[[i]] for _, r, i in rows], ignore_index=True) if rows else \
                results[0].matches.iloc[:0]
            matches["rank"] = np.arange(1, len(matches) + 1)
            notes = list(dict.fromkeys(note for r in results for note in r.notes))
            matches.attrs["notes"] = notes
            waveforms = [r.waveforms[i] for _, r, i in rows if i < len(r.waveforms)][:keep_waveforms]
            return SearchResult(matches, results[0].template, results[0].filtered_template, waveforms, notes)
        index_path = index_path[0]

    _check_match_options(top, min_score, min_significance)
    if searched_anchors is not None and (not isinstance(searched_anchors, (int, np.integer))
                                         or isinstance(searched_anchors, bool) or searched_anchors < 1):
        raise InputError(f"searched_anchors must be a whole number >= 1, got {searched_anchors!r}")
    index = index_path if isinstance(index_path, SearchIndex) else load_index(index_path)
    codec_model = _index_codec(index, codec)
    tpl = template if isinstance(template, Template) else prepare_template(template, start=start, end=end,
                                                                           seed_id=seed_id)
    params = index.params
    longest = index.metadata["longest_piece_seconds"]
    if tpl.seconds > longest:
        raise InputError(f"{tpl.label}: template is {tpl.seconds:.1f} s long, longer than the longest gap-free "
                         f"piece of the index {index.path} ({longest:.0f} s); cut it with --start/--end")
    band = tuple(params["band"]) if params["band"] else None
    filtered, notes = _filtered_template(tpl, index)
    if tpl.seconds < params["window_seconds"]:
        notes.append(f"template shorter than the index's {params['window_seconds']} s windows: its coarse "
                     "query is zero-padded (the re-rank uses the template as it is)")
    queries, offsets, anchors = template_queries(filtered, params)
    queries = index.prepare_queries(queries)
    tables = index.code_tables(queries)
    wanted = candidates or max(DEFAULT_CANDIDATES, 20 * top)
    L = len(tpl.samples)
    # Proposals: (piece, template start in piece samples) -> for each searched anchor its best retrieved
    # window score; their weighted sum (0 for an anchor not retrieved) picks the proposals whose every anchor
    # is then scored from the codes (`_anchor_scores`): the coarse score, an approximation of the whole
    # template's correlation. A piece lies in one shard, so a shard's proposals are complete once it is
    # searched: the shards are searched one at a time (memory bounded by one shard) and only the `wanted`
    # best proposals so far are kept.
    anchor_offsets, anchor_number = np.unique(anchors, return_inverse=True)
    shifts = int(params["hop_seconds"]) * FRAME_LENGTH
    # Anchors weighted by their norm: the whole template's correlation is the sum of its windows' correlations,
    # each scaled by the window's norm (and the archive's there, unknown: taken alike), so a quiet coda window
    # counts less than the onset
    width = params["window_seconds"] * FRAME_LENGTH
    anchor_weights = np.array([np.linalg.norm(filtered[a:a + width]) for a in anchor_offsets])
    anchor_weights = anchor_weights / anchor_weights.sum()
    anchor_number = anchor_number.ravel()
    number_of_anchors = int(anchor_number.max()) + 1
    # the loudest `searched_anchors` anchors at every QUERY_SHIFT_STEP-th shift are searched; the scoring from
    # the codes below uses every anchor and shift
    searched_anchors = SEARCHED_ANCHORS if searched_anchors is None else searched_anchors
    loudest = anchor_offsets[np.argsort(-anchor_weights, kind="stable")[:searched_anchors]]
    searched = np.flatnonzero(((offsets - anchors) % QUERY_SHIFT_STEP == 0) & np.isin(anchors, loudest))
    ranked: list = []  # ((piece, second), (coarse score, p0))
    k = neighbours or min(wanted, QUERY_NEIGHBOURS)
    on_channel = None if trace_id is None else np.asarray(index.pieces.trace_id, dtype=str) == trace_id
    for s in range(len(index.shards)):
        n = int(index.shards[s]["vectors"])
        if not n:
            continue
        # The nearest windows are taken per QUERY_NEIGHBOURS_WINDOWS windows of the shard (a channel-day), not
        # over the whole shard: a true match ranks among chance look-alikes whose number grows with the shard,
        # so a fixed list would lose matches as the shard grows, and one long list costs FAISS far more
        ranges = [(0, n)] if on_channel is None else _channel_ranges(index, s, on_channel)
        if not ranges:  # no window of the channel searched in this shard
            continue
        found_scores, found_ids, found_rows = [], [], []
        codes = np.ascontiguousarray(index.codes(s))  # read once: the scan and the scoring below gather from it
        for start, stop in ranges:
            for lo in range(start, stop, QUERY_NEIGHBOURS_WINDOWS):
                chunk = index.searchable(codes[lo:min(stop, lo + QUERY_NEIGHBOURS_WINDOWS)])
                scores, ids = chunk.search(queries[searched], int(min(chunk.ntotal, k)))
                ok = ids >= 0
                found_scores.append(scores[ok])
                found_ids.append(ids[ok].astype(np.int64) + lo)
                found_rows.append(np.nonzero(ok)[0])
        del chunk
        n = sum(stop - start for start, stop in ranges)  # the windows searched
        q_of = searched[np.concatenate(found_rows)]
        if not len(q_of):
            continue
        vid = np.concatenate(found_ids) + index.offsets[s]
        piece_of = index.piece_of(vid)
        score_of = np.concatenate(found_scores).astype(np.float64)
        if on_channel is not None:  # one channel of the archive searched: the others' windows propose nothing
            mine = on_channel[piece_of]
            q_of, vid, piece_of, score_of = q_of[mine], vid[mine], piece_of[mine], score_of[mine]
            if not len(q_of):
                continue
        p0_of = index.frame_of(vid, piece_of) * FRAME_LENGTH - offsets[q_of]
        # Proposals: (piece, template start to the sample). The anchors of a true match agree on its start
        # and add up there; per proposal and anchor its best window, weighted by the anchor's norm
        low = int(p0_of.min())
        span = int(p0_of.max()) - low + 1
        proposal = piece_of * span + (p0_of - low)
        pairs, pair_of = np.unique(proposal * number_of_anchors + anchor_number[q_of], return_inverse=True)
        pair_best = np.full(len(pairs), -np.inf)
        np.maximum.at(pair_best, pair_of.ravel(), score_of)
        keys, key_of_pair = np.unique(pairs // number_of_anchors, return_inverse=True)
        total = np.bincount(key_of_pair.ravel(), weights=pair_best * anchor_weights[pairs % number_of_anchors],
                            minlength=len(keys))
        # Every anchor scored at the best proposals' starts, from the codes: an anchor whose window was not
        # among its nearest counts its true correlation there, not 0 (RESCORE_FACTOR x wanted per channel-day)
        days = math.ceil(n / QUERY_NEIGHBOURS_WINDOWS)
        limit = RESCORE_FACTOR * wanted * days
        rescore = _largest(total, limit) if limit < len(total) else np.arange(len(total))  # all: order is free
        piece_r, start_r = keys[rescore] // span, keys[rescore] % span + low
        # a start found by a searched shift is within QUERY_SHIFT_STEP - 1 samples of the best: those tried too
        moves = np.arange(1 - QUERY_SHIFT_STEP, QUERY_SHIFT_STEP)
        scored = np.stack([_anchor_scores(index, s, codes, piece_r, start_r + d, anchor_offsets,
                                          anchor_weights, queries, shifts, tables) for d in moves])
        best = np.argmax(scored, axis=0)
        total_r, start_r = scored[best, np.arange(len(rescore))], start_r + moves[best]
        # one proposal per piece and second (the re-rank searches +-NEIGHBOURHOOD around it): its best start
        order = np.argsort(-total_r, kind="stable")
        second_r = piece_r[order] * (span // FRAME_LENGTH + 3) + (start_r[order] - low + FRAME_LENGTH) // FRAME_LENGTH
        _, first = np.unique(second_r, return_index=True)
        kept = order[np.sort(first)][:wanted]
        ranked += [((int(piece_r[j]), int(start_r[j]) // FRAME_LENGTH), (float(total_r[j]), int(start_r[j])))
                   for j in kept]
        ranked = sorted(ranked, key=lambda item: -item[1][0])[:wanted]
    decoder = _index_decoder(index, codec_model)
    chosen = sorted({key[0] for key, _ in ranked})
    pieces = dict(zip(chosen, index.pieces.iloc[chosen].itertuples(index=False)))
    spans = []
    for (piece_id, _), (coarse, p0) in ranked:
        piece = pieces[piece_id]
        lo, hi = max(0, p0 - NEIGHBOURHOOD), min(int(piece.num_samples), p0 + L + NEIGHBOURHOOD)
        if hi - lo >= L:
            spans.append((piece_id, lo, hi, coarse))
    # the frames of all spans decoded together (`_Decoder.spans`), then every span correlated at once
    samples = _filtered_spans(decoder, [(pieces[piece_id], lo, hi) for piece_id, lo, hi, _ in spans], band)
    found = []
    for members in _equal_lengths(samples):
        lags, scores = ncc_best_batch(np.stack([samples[i] for i in members]), filtered)
        for i, lag, score in zip(members, lags, scores):
            piece_id, lo, _, coarse = spans[i]
            found.append((float(score), piece_id, lo + int(lag), coarse))
    found.sort(key=lambda item: (-item[0], item[1], item[2]))
    mad = None if min_significance is None else _background_mad(index, decoder, band, [filtered], [0], [trace_id])
    floor = _score_floor(min_score, min_significance, mad)
    separation = max(FRAME_LENGTH, L // 2)
    kept = []
    for score, piece_id, sample, coarse in found:
        if floor is not None and score < floor:
            break
        trace_id = pieces[piece_id].trace_id
        t = float(pieces[piece_id].t0) + sample / SAMPLING_RATE
        if any(k[4] == trace_id and abs(k[5] - t) < separation / SAMPLING_RATE for k in kept):
            continue
        kept.append((score, piece_id, sample, coarse, trace_id, t))
        if len(kept) >= top:
            break
    import obspy

    rows, waveforms = [], []
    for rank, (score, piece_id, sample, coarse, trace_id, t) in enumerate(kept, start=1):
        piece = pieces[piece_id]
        rows.append({"rank": rank, "trace_id": trace_id,
                     "starttime": _iso(obspy.UTCDateTime(t)), "endtime": _iso(obspy.UTCDateTime(t + (L - 1) / SAMPLING_RATE)),
                     "score": round(score, 6), "coarse_score": round(coarse, 6),
                     "corpus": index.metadata["corpora"][int(piece.corpus)]["path"]})
        if mad is not None:
            rows[-1]["significance"] = round(score / mad, 3) if mad > 0 else float("nan")
        if rank <= keep_waveforms:
            waveforms.append(_filtered_span(decoder, piece, sample, sample + L, band))
    columns = ["rank", "trace_id", "starttime", "endtime", "score", *(["significance"] if mad is not None else []),
               "coarse_score", "corpus"]
    if mad is not None:
        notes.append(f"significance: score / {mad:.4f}, the MAD of the template's correlation with "
                     f"{BACKGROUND_WINDOWS} random windows of the archive")
    matches = pd.DataFrame(rows, columns=columns)
    matches.attrs["notes"] = notes
    return SearchResult(matches, tpl, filtered, waveforms, notes)


def _covering_pieces(index: SearchIndex, trace_id: str, starts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The piece of `trace_id` holding `width` samples from each time of `starts` (s), and its first sample there
    -> (piece numbers, -1 where none; sample numbers)."""
    piece_trace = np.asarray(index.pieces.trace_id, dtype=str)
    piece_t0 = np.asarray(index.pieces.t0, np.float64)
    piece_samples = np.asarray(index.pieces.num_samples, np.int64)
    rows = np.flatnonzero(piece_trace == trace_id)
    rows = rows[np.argsort(piece_t0[rows], kind="stable")]
    at = np.searchsorted(piece_t0[rows], starts + 1e-9, side="right") - 1
    piece = np.where(at >= 0, rows[np.maximum(at, 0)], -1)
    lo = np.rint((starts - piece_t0[np.maximum(piece, 0)]) * SAMPLING_RATE).astype(np.int64)
    fits = (piece >= 0) & (lo >= 0) & (lo + width <= piece_samples[np.maximum(piece, 0)])
    return np.where(fits, piece, -1), lo


def _background_mad(index: SearchIndex, decoder, band, filtered: list[np.ndarray], delays: list[int],
                    trace_ids: list[str | None]) -> float:
    """MAD of the template's zero-lag correlation with BACKGROUND_WINDOWS places of the archive (NaN if none fits).

    One channel (trace_ids [None]: any channel of the archive, or [id]): windows at seeded random places of the
    searched pieces, as long as the template. Several channels: random times where the first one has data, every
    channel at its delay after it, the channels' correlations averaged (a channel without data there counts 0), as
    the network stack scores a detection.
    """
    rng = np.random.default_rng(0)
    pieces = list(index.pieces.itertuples(index=False))
    piece_trace = np.asarray(index.pieces.trace_id, dtype=str)
    length = np.asarray(index.pieces.num_samples, np.int64)
    L0 = len(filtered[0])
    pool = np.flatnonzero((length >= L0) & ((piece_trace == trace_ids[0]) if trace_ids[0] is not None else True))
    if not len(pool):
        return float("nan")
    room = (length[pool] - L0 + 1).astype(np.float64)
    chosen = pool[rng.choice(len(pool), BACKGROUND_WINDOWS, p=room / room.sum())]
    first = (rng.random(BACKGROUND_WINDOWS) * (length[chosen] - L0 + 1)).astype(np.int64)
    times = np.asarray(index.pieces.t0, np.float64)[chosen] + first / SAMPLING_RATE - delays[0] / SAMPLING_RATE
    total = np.zeros(BACKGROUND_WINDOWS)
    for c, (tpl, d, trace_id) in enumerate(zip(filtered, delays, trace_ids)):
        if c == 0:
            piece, lo = chosen, first
        else:
            piece, lo = _covering_pieces(index, trace_id, times + d / SAMPLING_RATE, len(tpl))
        where = np.flatnonzero(piece >= 0)
        if not len(where):
            continue
        spans = _filtered_spans(decoder, [(pieces[piece[j]], int(lo[j]), int(lo[j]) + len(tpl)) for j in where],
                                band)
        total[where] += _standardize(np.stack(spans)) @ _standardize(tpl[None])[0]
    cc = total / len(filtered)
    return float(np.median(np.abs(cc - np.median(cc))))


#: A multi-channel template: the re-ranked matches of each channel on its own channel of the archive proposing
#: detection times (`run_network_search`), and the seconds within which two proposals are one.
NETWORK_PROPOSALS = 100
NETWORK_SAME_PROPOSAL_S = 0.5


def run_network_search(templates: list[Template], index_path, *, top: int = 10, min_score: float | None = None,
                       codec: str | None = None, candidates: int | None = None,
                       keep_waveforms: int = 0, min_significance: float | None = None) -> SearchResult:
    """A template of several channels (`prepare_templates`: e.g. the components of a station, or stations of a
    network) searched as a matched-filter network stack: the channels keep their relative timing, and a
    detection's score is the mean over the template's channels of each channel's normalized cross-correlation
    at the same shift (as EQcorrscan stacks its channels), on the archive's same channels decoded.

    1. Proposals: each channel searched alone on its own channel of the archive (`run_search` with trace_id);
       the NETWORK_PROPOSALS best matches of each give the time where the template's earliest channel would
       start; proposals within NETWORK_SAME_PROPOSAL_S of each other are one.
    2. Stack: at every proposal each channel is correlated with its channel of the archive, decoded from all
       codebooks and band-passed, at every sample within +-1 s; the channels' correlations are averaged lag
       by lag (a channel with no data there counts 0) and the best lag gives the score and the time.
    A template channel the index does not hold is left out of the mean (noted). Columns: rank, trace_id
    (the channels stacked, comma-separated), starttime (where the earliest channel's first sample aligns),
    endtime (the latest channel's last), score (the stack's mean correlation), channels (how many had data
    there), channel_scores (each channel's correlation at the stack's best lag), corpus; with min_significance,
    a `significance` column (score / the MAD of the stack at random times, `_background_mad`) and its floor.
    The figure shows the first channel stacked.
    """
    import obspy
    import pandas as pd

    if not templates:
        raise InputError("search: no template channel given")
    if len(templates) == 1:
        return run_search(templates[0], index_path, top=top, min_score=min_score, codec=codec,
                          candidates=candidates, keep_waveforms=keep_waveforms, min_significance=min_significance)
    if isinstance(index_path, (list, tuple)):
        if len(index_path) != 1:
            raise InputError("a template of several channels is searched in one index at a time "
                             f"({len(index_path)} given)")
        index_path = index_path[0]
    _check_match_options(top, min_score, min_significance)
    index = load_index(index_path)
    codec_model = _index_codec(index, codec)
    band = tuple(index.params["band"]) if index.params["band"] else None
    piece_trace = np.asarray(index.pieces.trace_id, dtype=str)
    indexed = set(piece_trace.tolist())
    held = [t for t in templates if t.trace_id in indexed]
    notes = [f"{t.trace_id} is not in the index {index.path}: left out of the stack"
             for t in templates if t.trace_id not in indexed]
    if not held:
        raise InputError(f"none of the template's channels ({', '.join(t.trace_id for t in templates)}) is in "
                         f"the index {index.path}")
    first = min(t.starttime for t in held)
    delay = [int(round((t.starttime - first) * SAMPLING_RATE)) for t in held]  # each channel after the first
    filtered = []
    for t in held:
        samples, channel_notes = _filtered_template(t, index)
        filtered.append(samples)
        notes += [n for n in channel_notes if n not in notes]
    # 1. proposals: where the earliest channel would start (POSIX seconds)
    proposals = []
    for t, d in zip(held, delay):
        found = run_search(t, index, top=NETWORK_PROPOSALS, codec=codec,  # the index read once
                           candidates=candidates or DEFAULT_CANDIDATES, trace_id=t.trace_id).matches
        proposals += [obspy.UTCDateTime(x).timestamp - d / SAMPLING_RATE for x in found.starttime]
    proposals = np.sort(np.asarray(proposals, np.float64))
    if len(proposals):
        proposals = proposals[np.concatenate([[True], np.diff(proposals) > NETWORK_SAME_PROPOSAL_S])]
    # 2. the stack at each proposal, every channel correlated within +-NEIGHBOURHOOD samples
    decoder = _index_decoder(index, codec_model)
    lags = 2 * NEIGHBOURHOOD + 1
    per_channel = np.zeros((len(held), len(proposals), lags))
    present = np.zeros((len(held), len(proposals)), bool)
    corpus_of = np.full(len(proposals), -1)
    piece_rows = list(index.pieces.itertuples(index=False))
    piece_corpus = np.asarray(index.pieces.corpus, np.int64)
    covering = functools.partial(_covering_pieces, index)
    for c, (t, d, tpl) in enumerate(zip(held, delay, filtered)):
        width = len(tpl) + 2 * NEIGHBOURHOOD
        piece, lo = covering(t.trace_id, proposals + (d - NEIGHBOURHOOD) / SAMPLING_RATE, width)
        where = np.flatnonzero(piece >= 0)
        if not len(where):
            continue
        requests = [(piece_rows[piece[j]], int(lo[j]), int(lo[j]) + width) for j in where]
        per_channel[c, where] = ncc_batch(np.stack(_filtered_spans(decoder, requests, band)), tpl)
        present[c, where] = True
        unset = where[corpus_of[where] < 0]
        corpus_of[unset] = piece_corpus[piece[unset]]
    stack = per_channel.mean(axis=0)
    best = np.argmax(stack, axis=1) if len(proposals) else np.zeros(0, int)
    score = stack[np.arange(len(proposals)), best] if len(proposals) else np.zeros(0)
    origin = proposals + (best - NEIGHBOURHOOD) / SAMPLING_RATE
    order = np.argsort(-score, kind="stable")
    span_s = max(len(tpl) + d for tpl, d in zip(filtered, delay)) / SAMPLING_RATE
    separation = max(1.0, min(len(tpl) for tpl in filtered) / SAMPLING_RATE / 2)
    mad = None if min_significance is None else _background_mad(index, decoder, band, filtered, delay,
                                                                 [t.trace_id for t in held])
    floor = _score_floor(min_score, min_significance, mad)
    kept = []
    for j in order:
        if not present[:, j].any() or (floor is not None and score[j] < floor):
            continue
        if any(abs(origin[j] - origin[k]) < separation for k in kept):
            continue
        kept.append(j)
        if len(kept) >= top:
            break
    ids = ",".join(t.trace_id for t in held)
    rows_out, waveforms = [], []
    for rank, j in enumerate(kept, start=1):
        at = obspy.UTCDateTime(origin[j])
        rows_out.append({"rank": rank, "trace_id": ids, "starttime": _iso(at),
                         "endtime": _iso(at + span_s - 1 / SAMPLING_RATE), "score": round(float(score[j]), 6),
                         **({} if mad is None else {"significance": round(float(score[j]) / mad, 3) if mad > 0
                                                    else float("nan")}),
                         "channels": int(present[:, j].sum()),
                         "channel_scores": ";".join(f"{t.trace_id}:{per_channel[c, j, best[j]]:.3f}"
                                                    for c, t in enumerate(held) if present[c, j]),
                         "corpus": index.metadata["corpora"][int(corpus_of[j])]["path"]})
    if keep_waveforms and kept:  # the first channel at each detection, for the figure
        shown = np.asarray(kept[:keep_waveforms])
        piece, lo = covering(held[0].trace_id, origin[shown] + delay[0] / SAMPLING_RATE, len(filtered[0]))
        requests = [(piece_rows[p], int(a), int(a) + len(filtered[0])) for p, a in zip(piece, lo) if p >= 0]
        decoded = iter(_filtered_spans(decoder, requests, band))
        waveforms = [next(decoded) if p >= 0 else np.zeros(len(filtered[0])) for p in piece]
    columns = ["rank", "trace_id", "starttime", "endtime", "score", *(["significance"] if mad is not None else []),
               "channels", "channel_scores", "corpus"]
    matches = pd.DataFrame(rows_out, columns=columns)
    if mad is not None:
        notes.append(f"significance: score / {mad:.4f}, the MAD of the stack at {BACKGROUND_WINDOWS} random times "
                     "of the archive")
    notes.append(f"{len(held)} channels stacked ({ids}): {len(proposals)} proposals from their own searches")
    matches.attrs["notes"] = notes
    return SearchResult(matches, held[0], filtered[0], waveforms, notes)


def _iso(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_many(seconds) -> list[str]:
    """POSIX times (s) -> the same strings as _iso, to the microsecond, all at once."""
    micro = np.rint(np.asarray(seconds, np.float64) * 1e6).astype(np.int64).astype("datetime64[us]")
    return [text + "Z" for text in np.datetime_as_string(micro, unit="us")]


def search(template, index_path, *, top: int = 10, min_score: float | None = None, start=None, end=None,
           seed_id: str = "*", codec: str | None = None, candidates: int | None = None,
           neighbours: int | None = None, searched_anchors: int | None = None, same_channel: bool = False,
           min_significance: float | None = None):
    """Best matches of `template` (a file path or an obspy Stream/Trace) in the index (a folder, or a list of
    them: their matches merged by score) -> pandas.DataFrame.

    Columns: rank, trace_id, starttime (UTC ISO of the sample where the template's first sample aligns),
    endtime, score (normalized cross-correlation of the whole template, band-passed, on tokens decoded
    from all codebooks), coarse_score (the FAISS stage's), corpus. `.attrs["notes"]`: e.g. resampling.
    A template of several channels (after `seed_id`) is searched as a network stack (`run_network_search`,
    its columns); same_channel: a one-channel template meets its own channel of the archive only. candidates:
    proposals re-ranked (default max(1000, 20 x top)); neighbours: windows retrieved per query
    vector in each channel-day of windows of a shard (default: min(candidates, 30)); searched_anchors: how
    many of the template's loudest anchor windows are looked up in the index (default SEARCHED_ANCHORS; all
    are scored).
    """
    templates = prepare_templates(template, start=start, end=end, seed_id=seed_id)
    if len(templates) > 1:
        return run_network_search(templates, index_path, top=top, min_score=min_score, codec=codec,
                                  candidates=candidates, min_significance=min_significance).matches
    return run_search(templates[0], index_path, top=top, min_score=min_score, codec=codec, candidates=candidates,
                      neighbours=neighbours, searched_anchors=searched_anchors,
                      trace_id=templates[0].trace_id if same_channel else None,
                      min_significance=min_significance).matches


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
                 candidates: int | None = None, same_channel: bool = False,
                 min_significance: float | None = None) -> object:
    """`eqcodec search`: the ranked CSV at `out` (and the figure at `plot`), both written whole or not at all.
    same_channel: a one-channel template searches its own channel of the archive only."""
    templates = prepare_templates(template, start=start, end=end, seed_id=seed_id)
    if len(templates) > 1:  # the channels stacked, as a network matched filter
        result = run_network_search(templates, index, top=top, min_score=min_score, codec=codec,
                                    candidates=candidates, keep_waveforms=8 if plot else 0,
                                    min_significance=min_significance)
    else:
        result = run_search(templates[0], index, top=top, min_score=min_score, codec=codec, candidates=candidates,
                            keep_waveforms=8 if plot else 0,
                            trace_id=templates[0].trace_id if same_channel else None,
                            min_significance=min_significance)
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
#: Clusters re-ranked by default: max(DEFAULT_PAIR_CANDIDATES, PAIR_CANDIDATES_PER_SECOND x seconds indexed, 20 x top);
#: pairs pooled before clustering: PAIR_POOL_FACTOR x that, at most PAIR_POOL_LIMIT (20 bytes a pair).
DEFAULT_PAIR_CANDIDATES = 2000
PAIR_CANDIDATES_PER_SECOND = 2
#: Shards kept loaded by all_pairs while it searches them for each batch of windows.
PAIR_SHARD_CACHE = 16
PAIR_POOL_FACTOR = 50
PAIR_POOL_LIMIT = 10_000_000
#: Best pairs of each cluster re-ranked (the coarse score orders the windows of one repeat only roughly).
PAIR_RERANK_PER_CLUSTER = 3
#: Re-ranked pairs of one repeat agree on their lag to within this many seconds (4 samples).
PAIR_SAME_LAG = 0.1
#: All pairs over a pqfs shard of more than PAIR_LISTS_MIN windows searches it through inverted lists made for
#: the occasion (SearchIndex.pair_searchable): PAIR_LISTS_PER_ROOT x sqrt(windows) lists, PAIR_PROBES probed
#: (8 lost an injected pair at 12 h: docs/search.md).
PAIR_LISTS_MIN = 5_000
PAIR_LISTS_PER_ROOT = 4.0
PAIR_PROBES = 16
#: Decoded corpus rows kept in memory while re-ranking pairs; band-passed chunks of pieces (1 h each,
#: 1.2 MB) kept, least recently used dropped.
PAIR_CACHE_ROWS = 256
PAIR_CACHE_CHUNKS = 32
PAIR_COLUMNS = ["rank", "trace_id_a", "starttime_a", "endtime_a", "trace_id_b", "starttime_b", "lag_seconds",
                "score", "significance", "coarse_score", "corpus_a", "corpus_b"]
#: A pair's significance: its score over the MAD of window a's correlation with this many windows at random
#: samples of its hour of the archive (decoded); matched-filter practice counts 8 x MAD as a detection.
PAIR_BACKGROUND_WINDOWS = BACKGROUND_WINDOWS


def _check_pair_options(top, min_score, min_separation, neighbours, candidates, min_significance=None) -> None:
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
    _check_significance(min_significance)


def _cluster_pairs(ca, cb, ta, dt, width: float, offset_width: float | None = None) -> np.ndarray:
    """Cluster label of each pair: single linkage of pairs of the same two traces (codes ca, cb) whose first
    windows (ta) lie within `width` s of each other and whose time offsets (dt = t_b - t_a) differ by at
    most `offset_width` s (default: `width`). With both one hop, a run of neighbouring windows of one repeat
    is one cluster, while chance pairs, a few neighbours per window, stay far too sparse to chain. A
    cluster's label is the position of its first pair.

    The pairs are binned by (traces, ta / width, dt / offset_width); only pairs of neighbouring bins can be
    linked, so each pair is compared with the pairs of its 9 bins (found by sorting) and the linked pairs'
    graph is split into connected components (scipy.sparse.csgraph)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offset_width = width if offset_width is None else offset_width
    ta, dt = np.asarray(ta, np.float64), np.asarray(dt, np.float64)
    n = len(ta)
    if n == 0:
        return np.zeros(0, np.int64)
    ca, cb = np.asarray(ca, np.int64), np.asarray(cb, np.int64)
    _, traces = np.unique((ca - ca.min()) * (int(cb.max() - cb.min()) + 1) + cb - cb.min(), return_inverse=True)
    bin_a = np.floor(ta / width).astype(np.int64)
    bin_d = np.floor(dt / offset_width).astype(np.int64)
    bin_a, bin_d = bin_a - bin_a.min() + 1, bin_d - bin_d.min() + 1  # room for the neighbour at -1
    # one integer per bin: (traces, bin_a) ranked densely (with its neighbours), then bin_d: no overflow
    traces_and_a = traces.ravel() * (int(bin_a.max()) + 2) + bin_a
    ranks = np.unique(np.concatenate([traces_and_a - 1, traces_and_a, traces_and_a + 1]))
    span_d = int(bin_d.max()) + 2

    own = np.searchsorted(ranks, traces_and_a) * span_d + bin_d  # a pair's bin
    order = np.argsort(own, kind="stable")
    sorted_keys = own[order]
    rows, cols = [np.arange(n)], [np.arange(n)]
    # the ranks of (traces, bin_a - 1) and (traces, bin_a + 1) are those of (traces, bin_a) -1 and +1 (all three are
    # in `ranks`), so the bins (bin_a + da, bin_d - 1 .. bin_d + 1) are one run of keys: one range per da
    for da in (-1, 0, 1):
        lo = np.searchsorted(sorted_keys, own + da * span_d - 1, side="left")
        count = np.searchsorted(sorted_keys, own + da * span_d + 1, side="right") - lo
        i = np.repeat(np.arange(n), count)
        j = order[np.repeat(lo - np.cumsum(count) + count, count) + np.arange(int(count.sum()))]
        linked = (np.abs(ta[i] - ta[j]) <= width + 1e-6) & (np.abs(dt[i] - dt[j]) <= offset_width + 1e-6)
        rows.append(i[linked])
        cols.append(j[linked])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n)).tocsr()
    _, component = connected_components(graph, directed=False)
    first = np.full(int(component.max()) + 1, n, np.int64)
    np.minimum.at(first, component, np.arange(n))
    return first[component]


class _FilteredChunks:
    """Band-passed decoded samples of pieces, computed an hour (CHUNK_FRAMES) at a time and cached (LRU):
    a re-rank slices them instead of decoding and filtering each span again."""

    def __init__(self, decoder: _Decoder, pieces, band, reach: int):
        """reach: longest span asked for (samples); a span that does not fit one chunk is made directly."""
        from collections import OrderedDict

        self.decoder, self.band, self.reach = decoder, band, reach
        self.pieces = list(pieces.itertuples(index=False))  # attribute access without pandas' cost
        self.size = CHUNK_FRAMES * FRAME_LENGTH
        self.chunks: OrderedDict = OrderedDict()

    def _bounds(self, piece_id: int, c: int) -> tuple[int, int]:
        """First and end sample of chunk c of a piece: CHUNK_FRAMES frames and `reach` samples more."""
        return c * self.size, min(int(self.pieces[piece_id].num_samples), (c + 1) * self.size + self.reach)

    def _chunk(self, piece_id: int, c: int) -> np.ndarray:
        """The band-passed samples of chunk c of a piece (cached)."""
        c0, c1 = self._bounds(piece_id, c)
        key = (piece_id, c)
        if key not in self.chunks:
            if len(self.decoder.cache) > PAIR_CACHE_ROWS:
                self.decoder.cache.clear()
            self.chunks[key] = _filtered_span(self.decoder, self.pieces[piece_id], c0, c1, self.band)
            while len(self.chunks) > PAIR_CACHE_CHUNKS:
                self.chunks.popitem(last=False)
        self.chunks.move_to_end(key)
        return self.chunks[key]

    def span(self, piece_id: int, lo: int, hi: int) -> np.ndarray:
        c0, c1 = self._bounds(piece_id, lo // self.size)
        if hi > c1:  # past the chunk's reach: made on its own
            return _filtered_span(self.decoder, self.pieces[piece_id], lo, hi, self.band)
        return self._chunk(piece_id, lo // self.size)[lo - c0: hi - c0]

    def spans(self, piece_ids: np.ndarray, los: np.ndarray, length: int) -> np.ndarray:
        """[m, length]: span i starts at sample los[i] of piece piece_ids[i] (and lies within it); the spans
        of one chunk are sliced from it at once."""
        from numpy.lib.stride_tricks import sliding_window_view

        out = np.empty((len(los), length), np.float64)
        chunk = los // self.size
        order = np.lexsort((chunk, piece_ids))
        keys = np.stack([piece_ids[order], chunk[order]], axis=1)
        starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
        for group in np.split(order, starts[1:]):
            piece_id, c = int(piece_ids[group[0]]), int(chunk[group[0]])
            c0, c1 = self._bounds(piece_id, c)
            inside = los[group] + length <= c1
            if inside.any():
                view = sliding_window_view(self._chunk(piece_id, c), length)
                out[group[inside]] = view[los[group[inside]] - c0]
            for i in group[~inside]:  # past the chunk's reach: made on its own
                out[i] = self.span(piece_id, int(los[i]), int(los[i]) + length)
        return out

    def correlation_mads(self, piece_ids: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
        """MAD of each window's normalized correlation with PAIR_BACKGROUND_WINDOWS windows at random samples
        of its chunk (the hour of its piece it starts in) -> [n] (NaN where a chunk is too short). A
        narrow-band window (a long coda, a hum) correlates widely with anything and has a large MAD; a
        broadband one in noise, a small one. Seeded by piece and chunk: the same windows, the same MADs."""
        from numpy.lib.stride_tricks import sliding_window_view

        if not len(starts):
            return np.zeros(0)
        # each window once, sorted by piece and start: the windows of one chunk are one run
        unique, back = np.unique(np.stack([piece_ids, starts], axis=1), axis=0, return_inverse=True)
        piece_ids, starts = unique[:, 0], unique[:, 1]
        chunk = starts // self.size
        windows = _standardize(self.spans(piece_ids, starts, width))  # [n, width], zero mean, unit norm
        mads = np.full(len(starts), np.nan)
        runs = np.flatnonzero(np.r_[True, (piece_ids[1:] != piece_ids[:-1]) | (chunk[1:] != chunk[:-1])])
        for lo, hi in zip(runs, np.r_[runs[1:], len(starts)]):
            piece_id, c = int(piece_ids[lo]), int(chunk[lo])
            c0, c1 = self._bounds(piece_id, c)
            if c1 - c0 < 4 * width:
                continue
            at = np.random.default_rng([piece_id, c]).integers(0, c1 - c0 - width + 1, PAIR_BACKGROUND_WINDOWS)
            background = _standardize(sliding_window_view(self._chunk(piece_id, c), width)[at])
            cc = windows[lo:hi] @ background.T  # [windows, background]
            mads[lo:hi] = np.median(np.abs(cc - np.median(cc, axis=1, keepdims=True)), axis=1)
        return mads[back.ravel()]


def _score_keys(scores: np.ndarray) -> np.ndarray:
    """float32 scores -> uint32 keys in the same order (IEEE 754: positive floats with the sign bit set,
    negative ones with every bit flipped); -0.0 counts as 0.0."""
    bits = (np.asarray(scores, np.float32) + np.float32(0.0)).view(np.uint32)
    return np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))


def _scores_of_keys(keys: np.ndarray) -> np.ndarray:
    """The inverse of _score_keys."""
    keys = np.asarray(keys, np.uint32)
    return np.where(keys & np.uint32(0x80000000), keys ^ np.uint32(0x80000000), ~keys).view(np.float32)


def _best_partners(windows, partners, scores, locate, separation: float, neighbours: int, sites=None):
    """Each window's `neighbours` best partners, row by row (a row: one window's neighbours over all its
    shifts and shards). windows [W]; partners [W, C] (window numbers, -1 where none), scores [W, C].
    Partners on the window's own site within `separation` s dropped (sites: trace code -> site code, e.g. its
    station; None: each trace its own), each partner kept once (its best score). locate: window numbers ->
    (trace codes, times in s). -> flat arrays a, b, s, t_a, t_b, trace_a, trace_b of the pairs kept, ordered
    by window, then by score (best first), then by partner.

    Two sorts of one 64-bit key per entry (partner and score in one integer: numpy sorts those far faster
    than it sorts by two keys): by partner, its best score first, to keep each partner once; then by
    score, the smaller partner first among equal scores, for the best `neighbours`."""
    partners = np.asarray(partners, np.int64)
    if partners.size and int(partners.max()) >= 2**32 - 1:  # a key holds a partner in 32 bits
        return _best_partners_by_lexsort(windows, partners, scores, locate, separation, neighbours, sites)
    low = np.uint64(0xFFFFFFFF)  # the low half of a key; as a reversed score key, worse than any score
    # the partner (+1: none is 0) in the high half, the score's key reversed (best first) in the low half
    desc = low - _score_keys(scores).astype(np.uint64)
    keys = np.sort(((partners + 1).astype(np.uint64) << np.uint64(32)) | desc, axis=1)
    b = (keys >> np.uint64(32)).astype(np.int64) - 1
    desc = keys & low
    (ca, ta), (cb, tb) = locate(windows), locate(np.maximum(b, 0))
    sa, sb = (ca, cb) if sites is None else (sites[ca], sites[cb])
    drop = (b < 0) | ((sa[:, None] == sb) & (np.abs(ta[:, None] - tb) < separation - 1e-6))
    drop[:, 1:] |= b[:, 1:] == b[:, :-1]  # a partner's repeats follow its best score
    # then the score (reversed: best first) in the high half, the partner in the low half; dropped: worst
    keys = np.sort((np.where(drop, low, desc) << np.uint64(32)) | (b + 1).astype(np.uint64), axis=1)
    keys = keys[:, :neighbours]
    desc = keys >> np.uint64(32)
    keep = desc != low
    rows = np.broadcast_to(np.arange(len(windows))[:, None], keep.shape)[keep]
    b = (keys & low).astype(np.int64)[keep] - 1
    s = _scores_of_keys((low - desc[keep]).astype(np.uint32))
    cb, tb = locate(b)
    return (np.asarray(windows)[rows], b, s, ta[rows], tb, ca[rows], cb)


def _best_partners_by_lexsort(windows, partners, scores, locate, separation: float, neighbours: int, sites=None):
    """_best_partners for partners numbered beyond 32 bits: the same pairs, by lexsort and argsort."""
    valid = partners >= 0
    b = np.where(valid, partners, 0)
    (ca, ta), (cb, tb) = locate(windows), locate(b)
    ca, ta = ca[:, None], ta[:, None]
    sa, sb = (ca, cb) if sites is None else (sites[ca], sites[cb])
    drop = ~valid | ((sa == sb) & (np.abs(ta - tb) < separation - 1e-6))
    b = np.where(valid, b, -1)
    order = np.lexsort((-scores, b), axis=1)  # by partner, its best score first: a partner's repeats follow it
    b, scores, drop, tb, cb = (np.take_along_axis(x, order, axis=1) for x in (b, scores, drop, tb, cb))
    drop[:, 1:] |= b[:, 1:] == b[:, :-1]
    scores = np.where(drop, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :neighbours]  # ties: the smaller partner first
    b, scores, tb, cb = (np.take_along_axis(x, order, axis=1) for x in (b, scores, tb, cb))
    keep = np.isfinite(scores)
    rows = np.broadcast_to(np.arange(len(windows))[:, None], keep.shape)[keep]
    return (windows[rows], b[keep], scores[keep], ta[rows, 0], tb[keep], ca[rows, 0], cb[keep])


def _best_of_clusters(labels: np.ndarray, scores: np.ndarray, wanted: int) -> tuple[np.ndarray, int]:
    """The pairs to re-rank: the PAIR_RERANK_PER_CLUSTER best pairs (by coarse score) of each of the `wanted`
    clusters with the most evidence -> (pair positions, best cluster first and its best pair first; number
    of clusters). A cluster's evidence is the sum of its pairs' coarse scores (a repeat is a run of window
    pairs, a chance likeness mostly one pair), as FAST counts the fingerprints two windows share; clusters of
    equal evidence are taken in the order of their best pairs."""
    if len(labels) == 0:
        return np.zeros(0, np.int64), 0
    rank = np.empty(len(scores), np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(len(scores))  # each pair's place, best first
    order = np.lexsort((rank, labels))  # by cluster, its best pair first
    cluster, first = np.unique(labels[order], return_index=True)
    within = np.arange(len(order)) - np.repeat(first, np.diff(np.append(first, len(order))))
    evidence = np.bincount(labels, weights=np.clip(scores, 0, None).astype(np.float64))[cluster]
    taken = np.lexsort((rank[order[first]], -evidence))[:wanted]  # the clusters re-ranked, best first
    place = np.full(int(labels.max()) + 1, -1, np.int64)
    place[cluster[taken]] = np.arange(len(taken))
    pick = order[(within < PAIR_RERANK_PER_CLUSTER) & (place[labels[order]] >= 0)]
    return pick[np.lexsort((rank[pick], place[labels[pick]]))], len(cluster)


def all_pairs(index_path, *, top: int | None = None, min_score: float | None = None,
              min_separation: float | None = None, neighbours: int = PAIR_NEIGHBOURS,
              candidates: int | None = None, codec: str | None = None, progress: bool = False,
              min_significance: float | None = None):
    """Pairs of similar windows within the indexed archive, with no template -> pandas.DataFrame.

    Coarse stage: every indexed window is searched for its nearest neighbours in the FAISS index (in
    batches of PAIR_BATCH windows; a large pqfs shard through inverted lists of its codes made for the
    search, `SearchIndex.pair_searchable`), neighbours on the same station (network.station: the window's own
    trace and the station's other components and sensors) closer than `min_separation` seconds (default: the
    index's window, 4 s; self-matches, their shifts and the same arrival on another component) dropped; each window is also queried
    25 ms to half a hop later (every sample, from the decoded samples) so that a pair off the hop grid
    meets; each window keeps its `neighbours` best partners; (a, b) and (b, a) are one pair, and the pairs of one
    repeat (runs of neighbouring windows: pairs of the same two traces whose first windows lie within one
    hop, 1 s, of each other and whose time offsets differ by at most one hop, chained) form a cluster,
    ranked by the sum of its pairs' coarse scores. The best `candidates` clusters (default
    max(2000, 4 x windows, 20 x top)), up to 3 pairs of each, are re-ranked: window a (decoded from all
    codebooks, band-passed) is correlated (normalized cross-correlation) with the archive around window b
    at every sample within +-1 s, which gives the `score` and `starttime_b`, where window a's first
    sample aligns to the sample; `lag_seconds` = starttime_b - starttime_a. Of the re-ranked pairs of one
    repeat (the same two traces, lags within a window, first windows within two) the best is listed.

    Columns: rank, trace_id_a, starttime_a, endtime_a (window a), trace_id_b, starttime_b, lag_seconds,
    score, significance (score / the MAD of window a's correlation with its hour of the archive,
    `_FilteredChunks.correlation_mads`: matched-filter practice counts 8 and above as a detection; a narrow-band window, such as
    a large earthquake's coda, passes a fixed score by chance at many lags), coarse_score (the FAISS stage's),
    corpus_a, corpus_b; best first, `min_score`, `min_significance` and `top` applied.
    Window a is the earlier one of a pair on one trace, else the one of the smaller trace id.
    `.attrs["notes"]`: what the stages saw.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    _check_pair_options(top, min_score, min_separation, neighbours, candidates, min_significance)
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
    wanted = candidates or max(DEFAULT_PAIR_CANDIDATES, int(PAIR_CANDIDATES_PER_SECOND * n * hop), 20 * (top or 0))
    pool_limit = min(PAIR_POOL_FACTOR * wanted, PAIR_POOL_LIMIT)
    traces, trace_codes = np.unique(np.asarray(index.pieces.trace_id, dtype=str), return_inverse=True)
    piece_trace_code = np.asarray(trace_codes, np.int64).ravel()
    # each trace's station (network.station): a window's partners there within `separation` s are the window
    # itself, its shifts, or the same arrival on another component or sensor, not a repeat
    _, sites = np.unique([".".join(t.split(".")[:2]) for t in traces.tolist()], return_inverse=True)
    sites = np.asarray(sites, np.int64).ravel()
    traces_per_site = int(np.bincount(sites).max())
    piece_t0 = np.asarray(index.pieces.t0, np.float64)

    def locate(v):
        """(trace code, start time in s) of window numbers v."""
        p = index.piece_of(v)
        return piece_trace_code[p], piece_t0[p] + index.frame_of(v, p)

    # room for the neighbours dropped as too near on the window's own station: each of its traces may hold them
    k = int(min(n, neighbours + traces_per_site * (2 * math.ceil(separation / hop) + 1)))
    # window a is also taken s samples (25 ms) later, up to half a hop: a repeat off the hop grid then meets
    # one of them within half a sample (shifting the 20-Hz vectors instead leaves up to 25 ms, which costs a
    # 5-8 Hz repeat much of its correlation)
    shifts = np.arange(0, int(round(hop / 2 * SAMPLING_RATE)) + 1)
    chunks = _FilteredChunks(_index_decoder(index, codec_model), index.pieces, band, width + 2 * NEIGHBOURHOOD)
    piece_samples = np.asarray(index.pieces.num_samples, np.int64)

    def shifted_windows(sa: int, lo: int, hi: int) -> np.ndarray:
        """Windows lo..hi - 1 of shard sa, each at every shift, made from the decoded samples as the index's
        own vectors are -> [len(shifts) x (hi - lo), dims], shift-major."""
        from numpy.lib.stride_tricks import sliding_window_view

        v = np.arange(lo, hi, dtype=np.int64) + index.offsets[sa]
        piece_v = index.piece_of(v)
        start_v = index.frame_of(v, piece_v) * FRAME_LENGTH
        out = np.zeros((len(shifts), len(v), width // params["decimation"]), np.float64)
        for piece_id in np.unique(piece_v):
            sel = np.flatnonzero(piece_v == piece_id)
            a, b = int(start_v[sel[0]]), int(start_v[sel[-1]]) + width + int(shifts[-1])
            x = chunks.span(int(piece_id), a, min(b, int(piece_samples[piece_id])))
            view = sliding_window_view(np.pad(x, (0, b - a - len(x))), width)[:, ::params["decimation"]]
            for j, shift in enumerate(shifts):
                out[j, sel] = view[start_v[sel] - a + shift]
        return _standardize(out.reshape(-1, out.shape[-1]))
    # the shards searched for each batch of windows: the last PAIR_SHARD_CACHE ones kept loaded (an index of
    # that many shards or fewer is loaded once; a larger one is read again for each batch: memory stays bounded)
    loaded: OrderedDict = OrderedDict()

    def shard_index(s):
        if s not in loaded:
            loaded[s] = index.pair_searchable(s)
            while len(loaded) > PAIR_SHARD_CACHE:
                loaded.popitem(last=False)
        loaded.move_to_end(s)
        return loaded[s]

    pool_a, pool_b, pool_s = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    seen = 0
    listed: dict = {}  # shard -> (inverted lists, lists probed) where the search went through lists

    def shrink(a, b, s, limit):
        """Symmetric duplicates merged (best score kept), then the `limit` best pairs."""
        order = np.argsort(-s, kind="stable")
        a, b, s = a[order], b[order], s[order]
        _, first = np.unique(a * n + b, return_index=True)
        first.sort()
        a, b, s = a[first], b[first], s[first]
        return a[:limit], b[:limit], s[:limit]

    batches = [(sa, lo, min(int(shard["vectors"]), lo + PAIR_BATCH)) for sa, shard in enumerate(index.shards)
               for lo in range(0, int(shard["vectors"]), PAIR_BATCH)]
    for sa, lo, hi in tqdm(batches, desc="all pairs", unit="batch", disable=not progress):
        queries = index.prepare_queries(shifted_windows(sa, lo, hi))
        windows = np.arange(lo, hi, dtype=np.int64) + index.offsets[sa]
        found_b, found_s = [], []  # per shard: [windows, shifts x kk], a window's row over all its shifts
        for sb, shard in enumerate(index.shards):  # every shard's nearest windows: their union holds the nearest
            if not shard["vectors"]:
                continue
            db = shard_index(sb)
            if hasattr(db, "nlist"):
                listed[sb] = (int(db.nlist), int(db.nprobe))
            kk = int(min(k, db.ntotal))
            scores, ids = db.search(queries, kk)
            ids = ids.astype(np.int64) + np.where(ids >= 0, index.offsets[sb], 0)
            found_b.append(ids.reshape(len(shifts), len(windows), kk).transpose(1, 0, 2).reshape(len(windows), -1))
            found_s.append(scores.reshape(len(shifts), len(windows), kk).transpose(1, 0, 2).reshape(len(windows), -1))
        a, b, s, ta, tb, ca, cb = _best_partners(windows, np.concatenate(found_b, axis=1),
                                                 np.concatenate(found_s, axis=1), locate,
                                                 separation, neighbours, sites)
        swap = (cb < ca) | ((cb == ca) & (tb < ta))
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        seen += len(a)
        pool_a, pool_b, pool_s = (np.concatenate([pool_a, a]), np.concatenate([pool_b, b]),
                                  np.concatenate([pool_s, s.astype(np.float32)]))
        if len(pool_a) > 2 * pool_limit:
            pool_a, pool_b, pool_s = shrink(pool_a, pool_b, pool_s, pool_limit)
    pool_a, pool_b, pool_s = shrink(pool_a, pool_b, pool_s, pool_limit)
    notes = [f"{n} windows, each at {len(shifts)} shifts of {1000 / SAMPLING_RATE:g} ms, searched for {k} neighbours: "
             f"{seen} pairs (each window's {neighbours} best partners, none within {separation:g} s on its own "
             f"station), {len(pool_a)} distinct pairs pooled"]
    if listed:
        notes.append(f"{len(listed)} of {len(index.shards)} shards searched through inverted lists of their codes "
                     f"({', '.join(sorted({f'{lists} lists, {probes} probed' for lists, probes in listed.values()}))})")
    (ca, ta), (cb, tb) = locate(pool_a), locate(pool_b)
    labels = _cluster_pairs(ca, cb, ta, tb - ta, hop)
    chosen, clusters = _best_of_clusters(labels, pool_s, wanted)
    notes.append(f"{clusters} clusters of pairs (repeats); the best {min(clusters, wanted)} re-ranked "
                 f"({len(chosen)} pairs, up to {PAIR_RERANK_PER_CLUSTER} per cluster)")

    piece_trace = list(index.pieces.trace_id)
    # the re-rank, in archive order of window a (the decoded chunks are reused), PAIR_BATCH pairs at a time
    chosen = np.asarray(chosen, np.int64)
    chosen_pa, chosen_pb = index.piece_of(pool_a[chosen]), index.piece_of(pool_b[chosen])
    chosen_fa = index.frame_of(pool_a[chosen], chosen_pa)
    chosen_fb = index.frame_of(pool_b[chosen], chosen_pb)
    order = np.lexsort((chosen_fa, chosen_pa))
    pair, pa, pb = chosen[order], chosen_pa[order], chosen_pb[order]
    a0, b0 = chosen_fa[order] * FRAME_LENGTH, chosen_fb[order] * FRAME_LENGTH
    lo, hi = np.maximum(0, b0 - NEIGHBOURHOOD), np.minimum(piece_samples[pb], b0 + width + NEIGHBOURHOOD)
    fits = hi - lo >= width
    pair, pa, pb, a0, lo, lengths = (x[fits] for x in (pair, pa, pb, a0, lo, hi - lo))
    columns: dict = {name: [] for name in ("score", "pair", "pa", "pb", "t_a", "t_b")}
    for start in range(0, len(pair), PAIR_BATCH):
        block = slice(start, start + PAIR_BATCH)
        windows = chunks.spans(pa[block], a0[block], width)
        for length in np.unique(lengths[block]):  # spans b of one length in one batched correlation
            sel = np.flatnonzero(lengths[block] == length)
            sel = sel[np.any(windows[sel], axis=1)]
            if not len(sel):
                continue
            at = start + sel
            lags, scores = ncc_best_batch(chunks.spans(pb[at], lo[at], int(length)), windows[sel])
            t_a = piece_t0[pa[at]] + a0[at] / SAMPLING_RATE
            t_b = piece_t0[pb[at]] + (lo[at] + lags) / SAMPLING_RATE
            # a pair the re-rank slid onto a's own window (or its station's same moment) is dropped
            own = (sites[piece_trace_code[pa[at]]] == sites[piece_trace_code[pb[at]]]) & \
                (np.abs(t_b - t_a) < separation - 1e-6)
            for name, values in zip(columns, (scores, pair[at], pa[at], pb[at], t_a, t_b)):
                columns[name].append(values[~own])
    score, pair, pa, pb, t_a, t_b = (np.concatenate(v) if v else np.zeros(0) for v in columns.values())
    pa, pb, pair = pa.astype(np.int64), pb.astype(np.int64), pair.astype(np.int64)
    taken: list = []
    if len(score):
        # pairs of one repeat left in several clusters: refined lags equal (to PAIR_SAME_LAG), first windows
        # within two windows of each other, linked; the best of each, then any pair of the same two traces
        # within two windows and with a lag within a window of a better one dropped
        ra, rb = piece_trace_code[pa], piece_trace_code[pb]
        lags = t_b - t_a
        labels = _cluster_pairs(ra, rb, t_a, lags, 2 * width_s, PAIR_SAME_LAG)
        order = np.argsort(-score, kind="stable")
        _, first = np.unique(labels[order], return_index=True)
        near: dict = {}  # (traces, 2-window bin of t_a, 1-window bin of the lag) -> (t_a, lag) of pairs taken
        # Python numbers: the loop reads them one at a time
        py_ra, py_rb, py_ta, py_lag, py_score = (x.tolist() for x in (ra, rb, t_a, lags, score))
        for j in order[np.sort(first)].tolist():  # the best pair of each cluster, best first
            if min_score is not None and py_score[j] < min_score:
                break
            tj, lj = py_ta[j], py_lag[j]
            bins = (int(py_ra[j]), int(py_rb[j]), int(tj // (2 * width_s)), int(lj // width_s))
            if any(abs(ta_o - tj) < 2 * width_s and abs(lag_o - lj) < width_s
                   for da in (-1, 0, 1) for dl in (-1, 0, 1)
                   for ta_o, lag_o in near.get((bins[0], bins[1], bins[2] + da, bins[3] + dl), ())):
                continue
            taken.append(j)
            near.setdefault(bins, []).append((tj, lj))
            if top is not None and min_significance is None and len(taken) >= top:
                break
    kept = np.asarray(taken, np.int64)
    a_starts = np.rint((t_a[kept] - piece_t0[pa[kept]]) * SAMPLING_RATE).astype(np.int64)
    mads = chunks.correlation_mads(pa[kept], a_starts, width)
    if min_significance is not None:  # the pairs listed are those left, best first, `top` of them
        left = score[kept] >= min_significance * np.nan_to_num(mads, nan=np.inf)
        kept, mads = kept[left][:top], mads[left][:top]
    corpora = index.metadata["corpora"]
    corpus_of = list(index.pieces.corpus)
    starts_a, starts_b = t_a[kept].astype(np.float64), t_b[kept].astype(np.float64)
    pairs = pd.DataFrame({
        "rank": np.arange(1, len(kept) + 1), "trace_id_a": [piece_trace[p] for p in pa[kept]],
        "starttime_a": _iso_many(starts_a), "endtime_a": _iso_many(starts_a + (width - 1) / SAMPLING_RATE),
        "trace_id_b": [piece_trace[p] for p in pb[kept]], "starttime_b": _iso_many(starts_b),
        "lag_seconds": np.round(starts_b - starts_a, 6), "score": np.round(score[kept], 6),
        "significance": np.round(score[kept] / np.where(mads > 0, mads, np.nan), 3),
        "coarse_score": np.round(pool_s[pair[kept]].astype(np.float64), 6),
        "corpus_a": [corpora[int(corpus_of[p])]["path"] for p in pa[kept]],
        "corpus_b": [corpora[int(corpus_of[p])]["path"] for p in pb[kept]]}, columns=PAIR_COLUMNS)
    pairs.attrs["notes"] = notes
    return pairs


def all_pairs_files(index, out, *, top: int | None = None, min_score: float | None = None,
                    min_separation: float | None = None, neighbours: int = PAIR_NEIGHBOURS,
                    candidates: int | None = None, codec: str | None = None, progress: bool = True,
                    min_significance: float | None = None):
    """`eqcodec search --all-pairs`: the pairs CSV at `out`, written whole or not at all."""
    pairs = all_pairs(index, top=top, min_score=min_score, min_separation=min_separation, neighbours=neighbours,
                      candidates=candidates, codec=codec, progress=progress, min_significance=min_significance)
    write_atomically(lambda tmp: pairs.to_csv(tmp, index=False), Path(out))
    for note in pairs.attrs["notes"]:
        print(f"note: {note}")
    best = (f"best {pairs.trace_id_a.iloc[0]} {pairs.starttime_a.iloc[0]} ~ {pairs.trace_id_b.iloc[0]} "
            f"{pairs.starttime_b.iloc[0]} (score {pairs.score.iloc[0]:.3f})") if len(pairs) else "no pair"
    print(f"wrote {len(pairs)} pairs to {out}: {best}")
    return pairs


def index_corpora(corpora, out, *, add: bool = False, codec: str | None = None, index_type: str = "auto",
                  band=DEFAULT_BAND, pq_bytes: int = PQ_BYTES, hop: int = HOP_SECONDS, shard_by: str = "station",
                  progress: bool = True) -> SearchIndex:
    """`eqcodec index`: build_index, with a summary line."""
    index = build_index(corpora, out, add=add, codec=codec, index_type=index_type, band=band, pq_bytes=pq_bytes,
                        hop=hop, shard_by=shard_by, progress=progress)
    size = sum(index.metadata["bytes"].values())
    print(f"{'extended' if add else 'wrote'} index {out}: {len(index)} vectors ({index.metadata['index_type']}, "
          f"{index.metadata['code_size']} bytes each, one per {index.hop} s), {index.metadata['pieces']} pieces from "
          f"{len(index.metadata['corpora'])} corpora in {len(index.shards)} shards, {size / 1e6:.2f} MB")
    return index
