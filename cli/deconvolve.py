"""`eqcodec deconvolve`: flags -> tasks.deconvolve; its module docstring is this command's help."""

from __future__ import annotations

import argparse

from tasks.adaptive import DEFAULT_TAPS, DEFAULT_WINDOW_SECONDS
from tasks.classical import DEFAULT_PREWHITENING
from tasks import deconvolve as task
from tasks.deconvolve import LM_SAMPLES, METHODS, OUTPUTS, SUBTRACTIONS, deconvolve_file

from .types import positive_float, positive_int

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec deconvolve event.mseed --lag 4.0 --operator-seconds 5 --out decon.mseed --plot decon.png
  eqcodec deconvolve event.mseed --lag 0.5 --method wiener --design-window 60 --out decon.mseed
  eqcodec deconvolve event.mseed --lag 3.5 --method delay --match-window-seconds 24 --out decon-delay.mseed
  eqcodec deconvolve event.mseed --lag 2 --method lm --lm my-lm/final --out decon-lm.mseed
  eqcodec deconvolve event.mseed --output surprisal --out surprisal.mseed --plot surprisal.png
  eqcodec deconvolve event.mseed --output onset --out onset.mseed --plot onset.png
"""


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    io = parser.add_argument_group("input/output")
    io.add_argument("input", metavar="INPUT", help="waveform file obspy can read (miniSEED, SAC, ...)")
    io.add_argument("--out", required=True, metavar="FILE",
                    help="miniSEED file for the prediction-error (or surprisal) traces")
    io.add_argument("--output", choices=OUTPUTS, default="error",
                    help="error: prediction-error traces at 40 Hz; surprisal: the LM's nats per 1-s frame "
                         "as 1-Hz traces; onset: dB of each frame's gain above the LM's 99th-percentile "
                         "forecast, as 4-Hz traces (an onset detector; about 4.5 dB is the threshold chosen on "
                         "nc-events) (default: %(default)s)")
    io.add_argument("--prediction-out", default=None, metavar="FILE",
                    help="also write the prediction as miniSEED (default: %(default)s)")
    io.add_argument("--plot", default=None, metavar="FIG.png",
                    help="draw input, prediction and error (or surprisal) (default: %(default)s)")
    io.add_argument("--allow-clipped", action="store_true",
                    help="process traces that look clipped (default: %(default)s)")
    filt = parser.add_argument_group("prediction")
    filt.add_argument("--lag", type=float, default=None, metavar="SECONDS",
                      help="prediction distance: the part predictable from samples at least this far back is "
                           "removed (required for --output error) (default: %(default)s)")
    filt.add_argument("--operator-seconds", type=float, default=1.0, metavar="L",
                      help="operator length (Wiener), period search range beyond the lag (delay) or context "
                           "(LM, at least 10 s) (default: %(default)s s)")
    filt.add_argument("--method", choices=METHODS, default="wiener", help="predictor (default: %(default)s)")
    filt.add_argument("--period", type=float, default=None, metavar="SECONDS",
                      help="delay: the period tau, >= --lag (default: %(default)s, picked from the "
                           "autocorrelation at lags [lag, lag + L])")
    filt.add_argument("--design-window", type=float, default=None, metavar="SECONDS",
                      help="time-varying Wiener filter or picked period: one per window of this length, half "
                           "overlapping (default: %(default)s, one per trace)")
    sub = parser.add_argument_group("subtraction")
    sub.add_argument("--subtraction", choices=SUBTRACTIONS, default=None,
                     help="adaptive: matching filters fit the prediction to the data first; direct: subtract "
                          "it as it is (default: %(default)s: adaptive for delay and lm, direct for wiener)")
    sub.add_argument("--match-taps", type=positive_int, default=DEFAULT_TAPS, metavar="N",
                     help="matching-filter length, odd, centred (shifts of up to N // 2 samples) "
                          "(default: %(default)s)")
    sub.add_argument("--match-window-seconds", type=positive_float, default=DEFAULT_WINDOW_SECONDS,
                     metavar="SECONDS", help="matching window, half overlapping and tapered; several periods "
                                             "long (default: %(default)s)")
    wiener = parser.add_argument_group("Wiener filter")
    wiener.add_argument("--prewhitening", type=float, default=100 * DEFAULT_PREWHITENING, metavar="PERCENT",
                        help="white noise added to the zero-lag autocorrelation, in %% (default: %(default)s)")
    model = parser.add_argument_group("model (--method lm, --output surprisal)")
    model.add_argument("--lm", default=None, metavar="DIR",
                       help="LM folder, e.g. a fine-tuned RUN/final (default: the shipped lm/pretrained)")
    model.add_argument("--codec", default=None, metavar="DIR",
                       help="codec folder the LM was trained with (default: the shipped codec/pretrained)")
    model.add_argument("--lm-samples", type=positive_int, default=LM_SAMPLES, metavar="S",
                       help="continuations averaged per predicted frame (default: %(default)s)")
    model.add_argument("--seed", type=int, default=0, help="seed of the LM's sampling (default: %(default)s)")
    return parser


def main(args: argparse.Namespace) -> int:
    deconvolve_file(**vars(args))
    return 0
