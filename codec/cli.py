"""The `eqcodec` command: one entry point, one module per subcommand.

Each subcommand lives in the package that owns it and exposes two functions:
`build_parser(parser)` adds its arguments to an argparse parser, and
`main(args) -> int` runs it. Modules are imported only when their subcommand
runs, so `eqcodec --help` stays fast.

Help convention: a subcommand's module docstring is its description, its
arguments sit in argparse groups with every default shown as
"(default: %(default)s)", and its module-level `EXAMPLES` string (starting
with "examples:") is the epilog of `eqcodec COMMAND --help`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
import warnings
from pathlib import Path
from types import ModuleType

#: name -> (module, one-line summary). The order is the order of `eqcodec --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lm.demo", "run the whole pipeline on obspy's bundled recordings"),
    "reconstruct": ("codec.reconstruct", "encode + decode files at k codebooks: miniSEED, table, Figure 1"),
    "train-codec": ("codec.train", "train EQcodec on event-window recordings (accelerate)"),
    "tokenize": ("tokenized_data.cli", "waveform files or an SDS archive -> Hugging Face token dataset"),
    "detokenize": ("tokenized_data.detokenize", "token dataset -> miniSEED in physical units"),
    "train-lm": ("lm.train", "train or fine-tune the token language model (accelerate)"),
    "generate": ("lm.generate", "continue traces with the LM: miniSEED + plot"),
    "forecast": ("lm.forecast", "probabilistic forecast: samples, median, 5-95 % band, envelope"),
    "deconvolve": ("lm.deconvolve", "predictive deconvolution (LM or Wiener prediction-error filter)"),
    "evaluate": ("lm.evaluate", "forecasting and deconvolution benchmarks against baselines"),
}

DESCRIPTION = "EQcodec: neural codec tokens for seismic waveforms, and a token language model on them."

EPILOG = """examples:
  eqcodec demo --out eqcodec-demo
  eqcodec reconstruct event.mseed --out recon --codebooks 1,2,4,8 --plot figure1.png
  eqcodec tokenize archive/ --out corpus
  eqcodec train-lm --data corpus --init lm/pretrained --out my-lm
  eqcodec generate event.mseed --context-seconds 30 --seconds 20 --lm my-lm/final --out cont.mseed

Run `eqcodec COMMAND --help` for the options, defaults and examples of one command."""


class UsageError(Exception):
    """Raised by subcommands for invalid option combinations (reported like argparse errors)."""


def module_exists(module: str) -> bool:
    """Whether a module like "lm.demo" is installed, found without running any package's __init__
    (lm/__init__.py imports torch and transformers, which would make `eqcodec --help` slow)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not rest:
        return spec is not None
    folders = [Path(folder) for folder in spec.submodule_search_locations or []]
    *packages, name = rest
    return any(folder.joinpath(*packages, f"{name}.py").is_file() for folder in folders)


def available_commands() -> dict[str, tuple[str, str]]:
    """COMMANDS whose module is installed (a command whose module is missing is not offered)."""
    return {name: spec for name, spec in COMMANDS.items() if module_exists(spec[0])}


def top_parser(commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    """The parser of `eqcodec COMMAND ...`: reads COMMAND only; its help lists the commands."""
    width = max(map(len, commands)) + 2
    table = "\n".join(f"  {name:<{width}}{summary}" for name, (_, summary) in commands.items())
    parser = argparse.ArgumentParser(
        prog="eqcodec",
        usage="eqcodec [-h] COMMAND [options]",
        description=f"{DESCRIPTION}\n\ncommands:\n{table}",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(commands), metavar="COMMAND", help=argparse.SUPPRESS)
    return parser


def command_parser(name: str) -> tuple[ModuleType, argparse.ArgumentParser]:
    """The module of subcommand `name` and its parser (docstring as description, EXAMPLES as epilog)."""
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(
        prog=f"eqcodec {name}",
        description=module.__doc__,
        epilog=getattr(module, "EXAMPLES", None),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the examples' line breaks
    )
    module.build_parser(parser)
    return module, parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = top_parser(available_commands())
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name = top.parse_args(argv[:1]).command
    module, parser = command_parser(name)
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
        print(f"eqcodec {name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"eqcodec {name}: interrupted", file=sys.stderr)
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
