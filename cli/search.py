"""`eqcodec search`: find where a template waveform recurs in an indexed token archive,
or (--all-pairs) list the pairs of similar windows within the archive.

The template (any obspy-readable file, cut with --start/--end; resampled to
40 Hz when needed, with a note) is band-passed like the index; a template of
several channels (the components of a station, stations of a network: all the
file holds, or those --seed-id selects) is searched as a network matched
filter: each channel on its own channel of the archive, their correlations
averaged at the same shift, the channels' relative timing kept (the CSV then
adds channels and channel_scores). --min-significance M keeps the matches
scoring at least M x the MAD of the template's correlation with the archive
(256 random windows, decoded), with a significance column. Each channel's
4-s windows (hopped by 2 s, the 8 loudest), each at 40 sub-second shifts, are
looked up in the index's FAISS codes; the best proposals are re-ranked by the normalized cross-correlation of the
whole template with the archive decoded from all codebooks, at every 25-ms
sample within +-1 s. The CSV lists rank, trace_id, starttime (UTC, where the
template's first sample aligns), endtime, score (that correlation),
coarse_score and corpus, best first; --plot draws the best matches aligned on
the template. The index is read one shard at a time; several --index folders
(built on several machines, say) are searched in turn and their matches
merged by score. Templates shorter than 2 s or longer than the index's longest
gap-free piece, with gaps or NaN, an index of another codec or a damaged index
are refused, and nothing is written.

--all-pairs takes no template (FAST's use case): every indexed 4-s window
(also taken 25 ms to 0.5 s later, every sample) is looked up among its nearest FAISS neighbours,
those on the same station closer than --min-separation seconds (self-matches,
their shifts, and the same arrival on the station's other components or
sensors) dropped, its --neighbours best partners kept, (a, b) and (b, a)
merged, and the runs of pairs of one repeat grouped and ranked by their summed
similarity; the best groups are re-ranked by the normalized cross-correlation
of window a with the archive decoded from all codebooks around window b, at
every sample within +-1 s, and the best pair of each repeat is listed. The CSV lists rank, trace_id_a, starttime_a, endtime_a, trace_id_b,
starttime_b (where window a's first sample aligns), lag_seconds, score,
significance (score over the MAD of window a's correlation with its hour of
the archive: 8 or more is what a matched filter counts as a detection; a
narrow-band window, such as a large earthquake's coda, passes a fixed score by
chance), coarse_score, corpus_a and corpus_b, best first. Details: tasks/search.py.
"""

from __future__ import annotations

import argparse

from codec.errors import UsageError
from tasks.search import PAIR_NEIGHBOURS, all_pairs_files, search_files

from .types import nonnegative_float, positive_float, positive_int

EXAMPLES = """examples:
  eqcodec search event.mseed --index corpus-index --out matches.csv
  eqcodec search day.mseed --start 2010-05-27T16:24:30 --end 2010-05-27T16:24:40 --index idx --out m.csv
  eqcodec search event.mseed --index corpus-index --out matches.csv --top 50 --min-score 0.6 --plot matches.png
  eqcodec search event.mseed --seed-id 'BW.RJOB..EHZ' --start 2 --end 12 --index corpus-index --out m.csv
  eqcodec search --all-pairs --index corpus-index --out pairs.csv --min-score 0.7 --min-separation 10
  eqcodec search --all-pairs --index corpus-index --out pairs.csv --min-significance 8
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
    files.add_argument("template", metavar="TEMPLATE", nargs="?", default=None,
                       help="waveform file holding the template (any obspy format); none with --all-pairs")
    files.add_argument("--index", required=True, nargs="+", metavar="INDEX",
                       help="index folder made by `eqcodec index`; several (e.g. one per machine): each searched in "
                            "turn and the matches merged by score (--all-pairs: one only)")
    files.add_argument("--out", required=True, metavar="MATCHES.csv", help="ranked matches or pairs (CSV)")
    files.add_argument("--plot", default=None, metavar="FIG.png", help="figure of the best matches on the template")
    tpl = parser.add_argument_group("template")
    tpl.add_argument("--start", default=None, metavar="T",
                     help="cut the template from T: seconds after its first sample, or a UTC time (default: its start)")
    tpl.add_argument("--end", default=None, metavar="T", help="cut the template up to T (default: its end)")
    tpl.add_argument("--seed-id", default="*", metavar="ID",
                     help="the template's channels, e.g. BW.RJOB..EHZ for one, BW.RJOB..EH? for three (stacked; "
                          "%(default)s: all the file holds) (default: %(default)s)")
    tpl.add_argument("--same-channel", action="store_true",
                     help="a one-channel template: search its own channel of the archive only (default: every "
                          "channel; a template of several channels always meets its own channels)")
    search = parser.add_argument_group("search")
    search.add_argument("--all-pairs", action="store_true",
                        help="no template: list pairs of similar windows within the index (FAST's use case)")
    search.add_argument("--top", type=positive_int, default=None, metavar="N",
                        help="matches listed (default: 10; with --all-pairs: every pair re-ranked)")
    search.add_argument("--min-score", type=score, default=None, metavar="S",
                        help="list only matches with a correlation >= S (default: no threshold)")
    search.add_argument("--candidates", type=positive_int, default=None, metavar="C",
                        help="proposals of the FAISS stage re-ranked (default: max(1000, 20 x top); with "
                             "--all-pairs, clusters of pairs: max(2000, 4 x indexed windows, 20 x top))")
    search.add_argument("--min-separation", type=positive_float, default=None, metavar="SECONDS",
                        help="--all-pairs: windows of one station (network.station: any of its channels) closer "
                             "than this are not a pair (default: the index's window, 4 s)")
    search.add_argument("--min-significance", type=nonnegative_float, default=None, metavar="M",
                        help="list only matches whose score is >= M x the MAD of the template's correlation with "
                             "256 random windows of the archive (--all-pairs: window a's, with its hour), with a "
                             "significance column (e.g. 8, as a matched filter counts detections; 0: the column "
                             "only; default: no threshold, no column for templates)")
    search.add_argument("--neighbours", type=positive_int, default=None, metavar="K",
                        help="--all-pairs: best partners kept of each window, its own overlaps apart "
                             f"(default: {PAIR_NEIGHBOURS})")
    search.add_argument("--codec", default=None, metavar="PATH",
                        help="codec checkpoint folder (default: the shipped EQcodec); must be the index's codec")


def main(args) -> int:
    if args.all_pairs:
        if args.template is not None:
            raise UsageError(f"--all-pairs takes no template (got {args.template!r})")
        given = [flag for flag, value in (("--plot", args.plot), ("--start", args.start), ("--end", args.end),
                                          ("--seed-id", None if args.seed_id == "*" else args.seed_id),
                                          ("--same-channel", args.same_channel)) if value]
        if given:
            raise UsageError(f"{', '.join(given)}: template options, not used by --all-pairs")
        if len(args.index) > 1:
            raise UsageError("--all-pairs searches one index (pairs across indexes are not looked for); "
                             f"got {len(args.index)}")
        all_pairs_files(args.index[0], args.out, top=args.top, min_score=args.min_score,
                        min_separation=args.min_separation, neighbours=args.neighbours or PAIR_NEIGHBOURS,
                        candidates=args.candidates, codec=args.codec, min_significance=args.min_significance)
        return 0
    if args.template is None:
        raise UsageError("give a TEMPLATE file, or --all-pairs")
    if args.min_separation is not None or args.neighbours is not None:
        raise UsageError("--min-separation and --neighbours apply to --all-pairs only")
    search_files(args.template, args.index, args.out, top=args.top or 10, min_score=args.min_score,
                 start=args.start, end=args.end, seed_id=args.seed_id, codec=args.codec, plot=args.plot,
                 candidates=args.candidates, same_channel=args.same_channel, min_significance=args.min_significance)
    return 0
