"""`eqcodec index`: build (or extend) a similarity-search index over token corpora.

Every channel of the corpora is decoded from its first 2 codebooks, band-passed
and cut into 4-s windows hopped by 1 s; each window becomes an 80-value vector
(20 Hz, mean removed, unit norm) in a FAISS index (exact for small archives,
product-quantized for large ones), with a table of each vector's trace and time.
The index folder is written whole or not at all (a temporary folder, renamed).
It refers to the corpora by path (`eqcodec search` reads their tokens again to
re-rank), and holds one codec's tokens: corpora of another codec are refused.
An existing index is extended with `--add` (same codec, same settings);
without it an existing --out is refused. Details: tasks/search.py.
"""

from __future__ import annotations

import argparse

from tasks.search import DEFAULT_BAND, PQ_BYTES, index_corpora

from .types import positive_int

EXAMPLES = """examples:
  eqcodec index corpus --out corpus-index
  eqcodec index corpus-2023 corpus-2024 --out archive-index --index-type ivfpq
  eqcodec index corpus-2025 --out archive-index --add          # extend it
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
    index.add_argument("--index-type", choices=["auto", "flat", "pq", "ivfpq"], default="auto",
                       help="FAISS index: flat (exact, 320 bytes per archive second), pq / ivfpq (product-"
                            "quantized, --pq-bytes per second); auto: flat below 50,000 vectors, else ivfpq; "
                            "fixed when the index is created (default: %(default)s)")
    index.add_argument("--pq-bytes", type=positive_int, default=PQ_BYTES, metavar="B",
                       help="bytes per vector of pq / ivfpq indexes; divides 80 (default: %(default)s)")
    index.add_argument("--band", type=band, default=DEFAULT_BAND, metavar="LOW,HIGH",
                       help="band-pass (Hz) of both search stages, or 'none'; fixed when the index is created "
                            "(default: 1,8)")
    index.add_argument("--codec", default=None, metavar="PATH",
                       help="codec checkpoint folder (default: the shipped EQcodec); must be the corpora's codec")


def main(args) -> int:
    index_corpora(args.corpus, args.out, add=args.add, codec=args.codec, index_type=args.index_type,
                  band=args.band, pq_bytes=args.pq_bytes, progress=not args.no_progress)
    return 0
