"""`eqcodec forecast`: flags -> tasks.forecast; its module docstring is this command's help."""

from __future__ import annotations

import argparse

from tasks.forecast import forecast_file
from tasks import forecast as task

from .types import positive_float as _positive_float, positive_int as _positive_int

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec forecast event.mseed --context-seconds 30 --seconds 20 --samples 32 --out fc.mseed
  eqcodec forecast event.mseed --context-seconds 60 --seconds 30 --lm my-lm/final --out fc.mseed --plot fc.png
"""

def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="eqcodec forecast")
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    io = parser.add_argument_group("input/output")
    io.add_argument("input", metavar="INPUT", help="waveform file (any obspy format)")
    io.add_argument("--out", required=True, help="miniSEED of the mean (point) forecast (see above for the others)")
    io.add_argument("--plot", help="PNG path (default: OUT with .png)")
    fc = parser.add_argument_group("forecast")
    fc.add_argument("--context-seconds", type=int, required=True,
                    help="seconds at the end of each trace the LM reads (>= 10, <= the LM's window)")
    fc.add_argument("--seconds", type=int, required=True, help="seconds to forecast (>= 1)")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--samples", type=_positive_int,
                          help="sampled continuations per trace (default: the LM's generation_config)")
    sampling.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    sampling.add_argument("--top-k", type=_positive_int,
                          help="sample among the k likeliest tokens (default: the LM's generation_config)")
    sampling.add_argument("--temperature", type=_positive_float,
                          help="softmax temperature (default: the LM's generation_config)")
    sampling.add_argument("--gain-temperature", type=_positive_float,
                          help="temperature of the gain stream alone (default: the LM's generation_config; "
                               "without one there, --temperature)")
    sampling.add_argument("--frame-grids", type=_positive_int, metavar="G",
                          help="read the context on G frame grids (sample j: contexts ending j %% G * 40 / G "
                               "samples early; default: the LM's generation_config)")
    model = parser.add_argument_group("model")
    model.add_argument("--lm", metavar="DIR", help="LM folder, e.g. a fine-tuned RUN/final (default: the shipped lm/pretrained)")
    model.add_argument("--codec", metavar="DIR", help="codec folder (default: the shipped codec/pretrained)")
    return parser




def main(args: argparse.Namespace) -> int:
    forecast_file(**vars(args))
    return 0
