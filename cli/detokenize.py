"""`eqcodec detokenize`: flags -> tokenized_data.detokenize; its module docstring is this command's help."""

from __future__ import annotations

from tokenized_data.detokenize import detokenize_corpus
from tokenized_data import detokenize as task

from .types import positive_int

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec detokenize corpus --out waveforms
  eqcodec detokenize corpus --out waveforms-k2 --codebooks 2    # 28 bits/s
  eqcodec detokenize corpus-part0 corpus-part1 --out waveforms --codec my-codec/final
"""


def build_parser(parser) -> None:
    files = parser.add_argument_group("input/output")
    files.add_argument("corpus", nargs="+", metavar="CORPUS",
                       help="token corpus folder(s) made by `eqcodec tokenize`")
    files.add_argument("--out", required=True, metavar="DIR", help="folder for the miniSEED files (created if missing)")
    files.add_argument("--no-progress", action="store_true", help="no progress bar")
    codec = parser.add_argument_group("codec")
    codec.add_argument("--codebooks", type=positive_int, default=None, metavar="k",
                       help="decode from the first k codebooks (default: all)")
    codec.add_argument("--codec", default=None, metavar="PATH",
                       help="codec checkpoint folder (default: the shipped EQcodec); must be the corpus's codec")




def main(args) -> int:
    detokenize_corpus(args.corpus, args.out, codebooks=args.codebooks, codec=args.codec,
                      progress=not args.no_progress)
    return 0
