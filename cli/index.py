"""`eqcodec index`: build (or extend) a similarity-search index over token corpora.

Every channel of the corpora is decoded from all 8 codebooks, band-passed
and cut into 4-s windows hopped by --hop seconds (2); each window becomes an
80-value vector (20 Hz, mean removed, unit norm), stored as a FAISS code: exact
float vectors for small archives, product-quantized (8 bytes a vector by
default, FAISS's fast scan) for large ones. The index is a set of shards (one
per corpus, station or day: --shard-by) sharing one trained quantizer; a search
reads one shard at a time. A new index is written in a hidden folder and
renamed when complete; an interrupted build run again with the same arguments
keeps the shards it had completed (and says so). It refers to the corpora by
path (`eqcodec search` reads their tokens again to re-rank) and holds one
codec's tokens: corpora of another codec are refused. An existing index gets
new shards with `--add` (same codec, same settings); without it an existing
--out is refused. Details: tasks/search.py and docs/search.md.
"""

from __future__ import annotations

import argparse

from tasks.search import DEFAULT_BAND, HOP_SECONDS, INDEX_TYPES, PQ_BYTES, SHARD_BY, WINDOW_SECONDS, index_corpora

from .types import positive_int

EXAMPLES = """examples:
  eqcodec index corpus --out corpus-index
  eqcodec index corpus-2023 corpus-2024 --out archive-index --index-type pqfs --shard-by day
  eqcodec index corpus-2025 --out archive-index --add          # extend it (new shards)
"""


def band(text: str):
    """argparse type: 'LOW,HIGH' in Hz, or 'none' (no band-pass, mean removed only)."""
    if text.lower() == "none":
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH in Hz (e.g. 1,8) or 'none'") from None
    if not 0 < low < high:
        raise argparse.ArgumentTypeError(f"need 0 < LOW < HIGH, got {text}")
    return (low, high)


def build_parser(parser) -> None:
    files = parser.add_argument_group("input/output")
    files.add_argument("corpus", nargs="+", metavar="CORPUS", help="token corpus folder(s) made by `eqcodec tokenize`")
    files.add_argument("--out", required=True, metavar="INDEX", help="index folder to write")
    files.add_argument("--add", action="store_true",
                       help="extend the index at --out with the corpora (created if missing); without it an "
                            "existing --out is refused")
    files.add_argument("--no-progress", action="store_true", help="no progress bar")
    index = parser.add_argument_group("index")
    index.add_argument("--index-type", choices=list(INDEX_TYPES), default="auto",
                       help="FAISS codes: flat (exact, 320 bytes per window), pq (--pq-bytes 8-bit sub-quantizers), "
                            "pqfs (2 x --pq-bytes 4-bit sub-quantizers of rotated vectors, FAISS's fast scan), "
                            "ivfpqfs (pqfs in 256 inverted lists, 16 probed: 1 more byte per window, a faster "
                            "search); auto: flat below 10,000 windows, else pqfs; fixed when the index is created "
                            "(default: %(default)s)")
    index.add_argument("--pq-bytes", type=positive_int, default=PQ_BYTES, metavar="B",
                       help="bytes per window of pq / pqfs / ivfpqfs codes (pq: 8-bit sub-quantizers dividing 80; "
                            "pqfs, ivfpqfs: twice as many 4-bit ones dividing 48) "
                            "(default: %(default)s)")
    index.add_argument("--hop", type=positive_int, default=HOP_SECONDS, metavar="SECONDS",
                       help=f"seconds between indexed windows, 1 to {WINDOW_SECONDS}; fixed when the index is created "
                            "(default: %(default)s)")
    index.add_argument("--shard-by", choices=list(SHARD_BY), default="station",
                       help="one shard per corpus, per station of each corpus, or per UTC day of each corpus; a "
                            "search holds one shard in memory at a time (default: %(default)s)")
    index.add_argument("--band", type=band, default=DEFAULT_BAND, metavar="LOW,HIGH",
                       help="band-pass (Hz) of both search stages, or 'none'; fixed when the index is created "
                            "(default: 1,8)")
    index.add_argument("--codec", default=None, metavar="PATH",
                       help="codec checkpoint folder (default: the shipped EQcodec); must be the corpora's codec")


def main(args) -> int:
    index_corpora(args.corpus, args.out, add=args.add, codec=args.codec, index_type=args.index_type,
                  band=args.band, pq_bytes=args.pq_bytes, hop=args.hop, shard_by=args.shard_by,
                  progress=not args.no_progress)
    return 0
