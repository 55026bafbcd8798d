"""`eqcodec reconstruct`: flags -> codec.reconstruct; its module docstring is this command's help."""

from __future__ import annotations

import argparse

from codec.reconstruct import reconstruct_files
from codec import reconstruct as task

from .types import positive_int

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec reconstruct event.mseed --out recon --codebooks 1,2,4,8 --plot figure1.png
  eqcodec reconstruct day/*.mseed station.SAC --out recon --codebooks all
  eqcodec reconstruct event.mseed --out recon-mine --codec my-codec/final
  eqcodec reconstruct archive.mseed --out recon-k8 --codebooks 8 --beam-width 4
"""


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    files = parser.add_argument_group("input/output")
    files.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="waveform files, folders (searched recursively) or glob patterns; any format obspy reads")
    files.add_argument("--out", required=True, metavar="DIR", help="output folder (k{K}/ subfolders, report.json)")
    files.add_argument("--plot", default=None, metavar="FIG.png", help="draw Figure 1 (first trace of the first file)")
    files.add_argument("--allow-clipped", action="store_true", help="code traces that look clipped instead of refusing them")
    codec = parser.add_argument_group("codec")
    codec.add_argument("--codebooks", default="1,2,4,8", metavar="LEVELS",
                       help="levels k to decode, comma-separated, or 'all' (default: %(default)s)")
    codec.add_argument("--codec", default=None, metavar="PATH", help="codec checkpoint folder (default: the shipped EQcodec)")
    codec.add_argument("--beam-width", type=positive_int, default=1, metavar="B",
                       help="search the codebooks with a beam of B code sequences instead of stage by stage: "
                            "about +1 dB at k = 8 for B = 4, slightly less at k = 1, B times the search work "
                            "(default: %(default)s)")
    return parser




def main(args: argparse.Namespace) -> int:
    return 1 if reconstruct_files(**vars(args)) else 0
