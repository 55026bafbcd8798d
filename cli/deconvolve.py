"""`eqcodec deconvolve`: flags -> tasks.deconvolve; its module docstring is this command's help."""

from __future__ import annotations

import argparse

from tasks.classical import DEFAULT_PREWHITENING
from tasks import deconvolve as task
from tasks.deconvolve import METHODS, deconvolve_file

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec deconvolve event.mseed --lag 4.0 --operator-seconds 5 --out decon.mseed --plot decon.png
  eqcodec deconvolve event.mseed --lag 0.5 --method wiener --design-window 60 --out decon.mseed
  eqcodec deconvolve event.mseed --lag 2 --method lm --lm my-lm/final --out decon-lm.mseed
"""


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    io = parser.add_argument_group("input/output")
    io.add_argument("input", metavar="INPUT", help="waveform file obspy can read (miniSEED, SAC, ...)")
    io.add_argument("--out", required=True, metavar="FILE", help="miniSEED file for the prediction-error traces")
    io.add_argument("--prediction-out", default=None, metavar="FILE",
                    help="also write the prediction as miniSEED (default: %(default)s)")
    io.add_argument("--plot", default=None, metavar="FIG.png",
                    help="draw input, prediction and error (default: %(default)s)")
    io.add_argument("--allow-clipped", action="store_true",
                    help="process traces that look clipped (default: %(default)s)")
    filt = parser.add_argument_group("prediction")
    filt.add_argument("--lag", type=float, required=True, metavar="SECONDS",
                      help="prediction distance: the part predictable from samples at least this far back is removed")
    filt.add_argument("--operator-seconds", type=float, default=1.0, metavar="L",
                      help="operator length (Wiener) or context (LM, at least 10 s) beyond the lag "
                           "(default: %(default)s s)")
    filt.add_argument("--method", choices=METHODS, default="wiener", help="predictor (default: %(default)s)")
    wiener = parser.add_argument_group("Wiener filter")
    wiener.add_argument("--prewhitening", type=float, default=100 * DEFAULT_PREWHITENING, metavar="PERCENT",
                        help="white noise added to the zero-lag autocorrelation, in %% (default: %(default)s)")
    wiener.add_argument("--design-window", type=float, default=None, metavar="SECONDS",
                        help="time-varying filter: one operator per window of this length, half overlapping "
                             "(default: %(default)s, one operator per trace)")
    model = parser.add_argument_group("model (--method lm)")
    model.add_argument("--lm", default=None, metavar="DIR",
                       help="LM folder, e.g. a fine-tuned RUN/final (default: the shipped lm/pretrained)")
    model.add_argument("--codec", default=None, metavar="DIR",
                       help="codec folder the LM was trained with (default: the shipped codec/pretrained)")
    return parser




def main(args: argparse.Namespace) -> int:
    deconvolve_file(**vars(args))
    return 0
