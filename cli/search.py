"""`eqcodec search`: find where a template waveform recurs in an indexed token archive.

The template (one channel of any obspy-readable file, cut with --start/--end;
resampled to 40 Hz when needed, with a note) is band-passed like the index; its
4-s windows (hopped by 2 s, the 8 loudest), each at 40 sub-second shifts, are
looked up in the index's FAISS vectors; the best proposals are re-ranked by the normalized cross-correlation of the
whole template with the archive decoded from all codebooks, at every 25-ms
sample within +-1 s. The CSV lists rank, trace_id, starttime (UTC, where the
template's first sample aligns), endtime, score (that correlation),
coarse_score and corpus, best first; --plot draws the best matches aligned on
the template. Templates shorter than 2 s or longer than the index's longest
gap-free piece, with gaps or NaN, an index of another codec or a damaged index
are refused, and nothing is written. Details: tasks/search.py.
"""

from __future__ import annotations

import argparse

from tasks.search import search_files

from .types import positive_int

EXAMPLES = """examples:
  eqcodec search event.mseed --index corpus-index --out matches.csv
  eqcodec search day.mseed --start 2010-05-27T16:24:30 --end 2010-05-27T16:24:40 --index idx --out m.csv
  eqcodec search event.mseed --index corpus-index --out matches.csv --top 50 --min-score 0.6 --plot matches.png
  eqcodec search event.mseed --seed-id 'BW.RJOB..EHZ' --start 2 --end 12 --index corpus-index --out m.csv
"""


def score(text: str) -> float:
    """argparse type: a correlation in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not -1 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [-1, 1], got {text}")
    return value


def build_parser(parser) -> None:
    files = parser.add_argument_group("input/output")
    files.add_argument("template", metavar="TEMPLATE", help="waveform file holding the template (any obspy format)")
    files.add_argument("--index", required=True, metavar="INDEX", help="index folder made by `eqcodec index`")
    files.add_argument("--out", required=True, metavar="MATCHES.csv", help="ranked matches (CSV)")
    files.add_argument("--plot", default=None, metavar="FIG.png", help="figure of the best matches on the template")
    tpl = parser.add_argument_group("template")
    tpl.add_argument("--start", default=None, metavar="T",
                     help="cut the template from T: seconds after its first sample, or a UTC time (default: its start)")
    tpl.add_argument("--end", default=None, metavar="T", help="cut the template up to T (default: its end)")
    tpl.add_argument("--seed-id", default="*", metavar="ID",
                     help="the template's channel when the file holds several, e.g. BW.RJOB..EHZ (default: %(default)s)")
    search = parser.add_argument_group("search")
    search.add_argument("--top", type=positive_int, default=10, metavar="N", help="matches listed (default: %(default)s)")
    search.add_argument("--min-score", type=score, default=None, metavar="S",
                        help="list only matches with a correlation >= S (default: no threshold)")
    search.add_argument("--candidates", type=positive_int, default=None, metavar="C",
                        help="proposals of the FAISS stage re-ranked (default: max(300, 20 x top))")
    search.add_argument("--codec", default=None, metavar="PATH",
                        help="codec checkpoint folder (default: the shipped EQcodec); must be the index's codec")


def main(args) -> int:
    search_files(args.template, args.index, args.out, top=args.top, min_score=args.min_score, start=args.start,
                 end=args.end, seed_id=args.seed_id, codec=args.codec, plot=args.plot, candidates=args.candidates)
    return 0
