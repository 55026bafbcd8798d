"""The `eqcodec` command: one entry point, one module per subcommand.

Each subcommand lives in the package that owns it and exposes two functions:
`build_parser(parser)` adds its arguments to an argparse parser, and
`main(args) -> int` runs it. Modules are imported only when their subcommand
runs, so `eqcodec --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import warnings

#: name -> (module, one-line summary). The order is the order of `eqcodec --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lm.demo", "run the whole pipeline on obspy's bundled recordings into one folder"),
    "reconstruct": ("codec.reconstruct", "encode + decode waveform files at k codebooks; quality table, miniSEED, Figure 1"),
    "train-codec": ("codec.train", "train EQcodec on event-window recordings (accelerate)"),
    "tokenize": ("tokenized_data.cli", "turn waveform files or an SDS archive into a token dataset"),
    "detokenize": ("tokenized_data.detokenize", "decode a token dataset back to miniSEED"),
    "train-lm": ("lm.train", "train or fine-tune the token language model (accelerate)"),
    "generate": ("lm.generate", "continue traces with the LM; miniSEED + plot"),
    "forecast": ("lm.forecast", "probabilistic forecast of a trace: samples, median, 5-95 %% band, envelope"),
    "deconvolve": ("lm.deconvolve", "predictive deconvolution (LM or Wiener prediction-error filter)"),
    "evaluate": ("lm.evaluate", "benchmarks of forecasting and predictive deconvolution against baselines"),
}

EPILOG = """examples:
  eqcodec demo --out eqcodec-demo
  eqcodec reconstruct event.mseed --out recon --codebooks 1,2,4,8 --plot figure1.png
  eqcodec tokenize archive/ --out corpus
  eqcodec train-lm --data corpus --out my-lm
  eqcodec generate event.mseed --context-seconds 30 --seconds 20 --out continuation.mseed

Run `eqcodec COMMAND --help` for the options of one command."""


class UsageError(Exception):
    """Raised by subcommands for invalid option combinations (reported like argparse errors)."""


def _available(name: str) -> bool:
    module = COMMANDS[name][0]
    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {name: spec for name, spec in COMMANDS.items() if _available(name)}
    top = argparse.ArgumentParser(
        prog="eqcodec",
        description="EQcodec: neural codec tokens for seismic waveforms, and a token LM on them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("command", choices=list(commands), metavar="COMMAND",
                     help="one of: " + ", ".join(commands))
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        print("\ncommands:")
        for name, (_, summary) in commands.items():
            print(f"  {name:<12} {summary.replace('%%', '%')}")
        return 0
    known = top.parse_args(argv[:1])
    module = importlib.import_module(commands[known.command][0])
    parser = argparse.ArgumentParser(
        prog=f"eqcodec {known.command}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.build_parser(parser)
    args = parser.parse_args(argv[1:])
    from .model import CheckpointError
    from .preprocess import InputError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # obspy's format chatter
            return int(module.main(args) or 0)
    except UsageError as err:
        parser.error(str(err))
    except (InputError, CheckpointError, FileNotFoundError) as err:
        print(f"eqcodec {known.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"eqcodec {known.command}: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------- argument types shared by subcommands
def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
