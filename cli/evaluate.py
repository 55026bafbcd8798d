"""`eqcodec evaluate forecast|deconvolution`: the benchmarks of tasks/evaluate.py on your data."""

from __future__ import annotations

import argparse
import math

from tasks import evaluate
from tasks.adaptive import DEFAULT_TAPS, DEFAULT_WINDOW_SECONDS
from tasks.deconvolve import LM_SAMPLES
from tasks.evaluate import (DECONVOLUTION_METHODS, DeconvolutionEvaluation, ForecastEvaluation,
                            evaluate_deconvolution, evaluate_forecast, forecast_methods)
from tasks.synthetic import WAVELETS

from .types import positive_float, positive_int

__doc__ = evaluate.__doc__  # the benchmarks are described where they live


EXAMPLES = """examples:
  eqcodec evaluate forecast --nc-events ../shared/data/nc-events --out runs/eval-forecast --max-cases 40
  eqcodec evaluate forecast archive/ --picks picks.csv --out eval-forecast --lm my-lm/final
  eqcodec evaluate deconvolution --synthetic --train-steps 150 --out runs/eval-deconvolution
  eqcodec evaluate deconvolution --nc-events ../shared/data/nc-events --out runs/eval-deconvolution-real
  eqcodec evaluate deconvolution archive/ --lags 0.5,2 --methods wiener,delay --out eval-deconvolution
  eqcodec evaluate deconvolution --nc-events ../shared/data/nc-events --methods none --onsets --out runs/eval-onsets
  eqcodec evaluate deconvolution archive/ --picks picks.csv --onsets --methods wiener,delay --out eval-onsets
"""


def comma_floats(text: str) -> list[float]:
    """argparse type: '1,5,10' -> [1.0, 5.0, 10.0], each > 0."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or any(not v > 0 or not math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values



def _add_common(parser: argparse.ArgumentParser, methods: str) -> tuple:
    """Arguments both subcommands share; returns the (input/output, methods, model) groups."""
    io = parser.add_argument_group("input/output")
    io.add_argument("inputs", nargs="*", metavar="INPUTS", help="waveform files or folders (any obspy format)")
    io.add_argument("--nc-events", metavar="DIR",
                    help="instead of INPUTS: the held-out split of the nc-events corpus (codec.data.nc_events_split)"
                         " (default: %(default)s)")
    io.add_argument("--out", required=True, metavar="DIR", help="folder for the tables, JSON and plots")
    compared = parser.add_argument_group("methods")
    compared.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m], default=methods.split(","),
                          metavar="LIST", help=f"comma-separated (default: {methods})")
    compared.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    model = parser.add_argument_group("model (method lm)")
    model.add_argument("--lm", metavar="DIR", help="LM folder, e.g. a fine-tuned RUN/final (default: the shipped lm/pretrained)")
    model.add_argument("--codec", metavar="DIR", help="codec folder the LM reads (default: the shipped codec/pretrained)")
    model.add_argument("--threads", type=positive_int, default=1,
                       help="torch CPU threads (default: %(default)s; the LM is small)")
    return io, compared, model


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = parser.epilog or EXAMPLES
    commands = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)

    fc = commands.add_parser("forecast", help="forecast skill per case and horizon: LM against classical forecasters",
                             description=evaluate.__doc__.split("eqcodec evaluate deconvolution")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    io, compared, _ = _add_common(fc, ",".join([*forecast_methods(), "lm"]))
    io.add_argument("--picks", metavar="CSV",
                    help="picks (columns file, p_arrival, s_arrival) for the noise/P+2s/S+5s cases "
                         "(default: %(default)s: DIR/picks.csv with --nc-events, else one 'end' case per trace)")
    cases = fc.add_argument_group("cases")
    cases.add_argument("--context-seconds", type=positive_float, default=20.0,
                       help="context before the forecast point (>= 10 for the LM) (default: %(default)s)")
    cases.add_argument("--horizons", type=comma_floats, default=[1.0, 5.0, 10.0, 30.0], metavar="LIST",
                       help="scored horizons, seconds (default: 1,5,10,30)")
    cases.add_argument("--max-cases", type=positive_int, default=None,
                       help="N cases of each kind only, evenly spread over the files, for every method "
                            "(default: %(default)s, all)")
    cases.add_argument("--cases-per-trace", type=positive_int, default=1, metavar="N",
                       help="without picks: N cases per trace, end points spread evenly over it (continuous "
                            "recordings) instead of one at its end (default: %(default)s)")
    compared.add_argument("--samples", type=positive_int, default=100,
                          help="members of the classical ensembles (default: %(default)s)")
    compared.add_argument("--lm-samples", type=positive_int, default=None,
                          help="sampled LM continuations per case (default: the LM's num_return_sequences, "
                               "generation_config.json)")
    fc.set_defaults(func=lambda args: evaluate_forecast(ForecastEvaluation(**settings(args))))

    dc = commands.add_parser("deconvolution", help="predictive deconvolution and onsets: LM against Wiener, "
                                                   "delay and STA/LTA",
                             description="eqcodec evaluate deconvolution" + evaluate.__doc__.split("eqcodec evaluate deconvolution")[1],
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    io, compared, model = _add_common(dc, ",".join(DECONVOLUTION_METHODS))
    io.add_argument("--picks", metavar="CSV",
                    help="analyst picks (columns file, p_arrival, s_arrival) for --onsets "
                         "(default: %(default)s: DIR/picks.csv with --nc-events)")
    compared.add_argument("--match-taps", type=positive_int, default=DEFAULT_TAPS,
                          help="adaptive subtraction: matching-filter taps, odd (default: %(default)s)")
    compared.add_argument("--match-window-seconds", type=positive_float, default=DEFAULT_WINDOW_SECONDS,
                          help="adaptive subtraction: matching window, also the energy check's window "
                               "(default: %(default)s)")
    model.add_argument("--lm-samples", type=positive_int, default=LM_SAMPLES,
                       help="LM continuations averaged per predicted frame (default: %(default)s)")
    real = dc.add_argument_group("real recordings")
    real.add_argument("--lags", type=comma_floats, default=[0.25, 0.5, 1.0, 2.0], metavar="LIST",
                      help="prediction distances, seconds (default: 0.25,0.5,1,2)")
    real.add_argument("--operator-seconds", type=positive_float, default=1.0,
                      help="operator length (Wiener), period search range (delay) or LM context beyond the lag "
                           "(default: %(default)s)")
    real.add_argument("--lm-traces", type=positive_int, default=10,
                      help="traces scored by the LM, on real data and per synthetic set (default: %(default)s)")
    real.add_argument("--onsets", action="store_true",
                      help="score the LM's surprisal as an onset detector against the P picks, beside STA/LTA "
                           "(default: %(default)s)")
    syn = dc.add_argument_group("synthetic benchmark")
    syn.add_argument("--synthetic", action="store_true", help="run the seeded reverberation benchmark (default: %(default)s)")
    syn.add_argument("--traces", type=positive_int, default=50, help="test traces per set (default: %(default)s)")
    syn.add_argument("--duration", type=positive_float, default=180.0,
                     help="seconds per test trace (default: %(default)s)")
    train = dc.add_argument_group("fine-tuning on the synthetic set (--synthetic, method lm)")
    train.add_argument("--train-steps", type=int, default=0,
                       help="fine-tune the LM this many train-lm steps first; 0 scores --lm as it is (default: %(default)s)")
    train.add_argument("--train-traces", type=positive_int, default=5000,
                       help="training traces per set (constant and drifting) (default: %(default)s)")
    train.add_argument("--train-duration", type=positive_float, default=120.0,
                       help="seconds per training trace (default: %(default)s)")
    train.add_argument("--train-wavelets", type=lambda s: [w for w in s.split(",") if w],
                       default=list(WAVELETS), metavar="LIST",
                       help=f"wavelets the training traces draw from (default: {','.join(WAVELETS)})")
    dc.set_defaults(func=lambda args: evaluate_deconvolution(DeconvolutionEvaluation(**settings(args))))
    return parser


def settings(args: argparse.Namespace) -> dict:
    """The parsed flags as keyword arguments of the settings dataclasses."""
    return {k: v for k, v in vars(args).items() if k not in ("benchmark", "func")}


def main(args: argparse.Namespace) -> int:
    return args.func(args)
