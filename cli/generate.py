"""`eqcodec generate`: flags -> lm.generate; its module docstring is this command's help."""

from __future__ import annotations

import argparse

from lm.generate import MIN_CONTEXT_SECONDS, generate_file
from lm import generate as task

from .types import positive_float as _positive_float, positive_int as _positive_int, probability as _probability

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec generate event.mseed --context-seconds 30 --seconds 20 --out cont.mseed
  eqcodec generate event.mseed --context-seconds 30 --seconds 20 --samples 16 --top-k 50 --out cont.mseed
  eqcodec generate event.mseed --context-seconds 60 --seconds 30 --lm my-lm/final --seed 1 --out my-cont.mseed
"""




def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="eqcodec generate", description=__doc__)
    files = parser.add_argument_group("input/output")
    files.add_argument("input", metavar="INPUT", help="waveform file (any obspy format)")
    files.add_argument("--out", required=True, metavar="FILE",
                       help="output miniSEED file (see above for --samples > 1)")
    files.add_argument("--plot", metavar="PNG", help="plot path (default: OUT with .png)")
    files.add_argument("--allow-clipped", action="store_true", help="accept a clipped context")
    length = parser.add_argument_group("context and continuation")
    length.add_argument("--context-seconds", type=_positive_int, required=True, metavar="S",
                        help=f"seconds at the end of each trace the LM reads (>= {MIN_CONTEXT_SECONDS}, "
                             "<= the LM's window)")
    length.add_argument("--seconds", type=_positive_int, required=True, metavar="S", help="seconds to generate")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--samples", type=_positive_int, default=1, metavar="N",
                          help="continuations per trace (default: %(default)s)")
    sampling.add_argument("--temperature", type=_positive_float, metavar="T",
                          help="sampling temperature (default: the LM's generation_config)")
    sampling.add_argument("--gain-temperature", type=_positive_float, metavar="T",
                          help="temperature of the gain stream alone (default: the LM's generation_config; "
                               "without one there, --temperature)")
    sampling.add_argument("--frame-grids", type=_positive_int, metavar="G", default=1,
                          help="read the context on G frame grids (sample j: a context ending j %% G * 40 / G "
                               "samples early, its miss at the input's last sample carried into its first second) "
                               "(default: %(default)s)")
    sampling.add_argument("--top-k", type=_positive_int, metavar="K",
                          help="sample among the K most likely tokens only; a K of the codebook size or more "
                               "samples from all (default: the LM's generation_config)")
    sampling.add_argument("--top-p", type=_probability, metavar="P",
                          help="sample from the smallest set of tokens with probability P "
                               "(default: the LM's generation_config)")
    sampling.add_argument("--seed", type=int, metavar="N", help="random seed (default: not seeded)")
    model = parser.add_argument_group("model")
    model.add_argument("--lm", metavar="PATH", help="LM folder (default: the shipped lm/pretrained)")
    model.add_argument("--codec", metavar="PATH", help="codec folder (default: the shipped codec/pretrained)")
    return parser




def main(args: argparse.Namespace) -> int:
    generate_file(**vars(args))
    return 0
