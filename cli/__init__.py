"""The `eqcodec` command: the top layer. One entry point, one module per subcommand.

Each subcommand module (cli/<command>.py) exposes two functions:
`build_parser(parser)` adds its arguments to an argparse parser, and
`main(args) -> int` calls one library function with them. Nothing in the
library imports this package. Subcommand modules are imported only when their
command runs, so `eqcodec --help` does not pay for importing torch.

Modules: types (argparse value types), demo, reconstruct, train_codec, tokenize,
detokenize, train_lm, generate, forecast, deconvolve, evaluate, index, search.

Help convention: a subcommand's module docstring is its description, its
arguments sit in argparse groups with every default shown as
"(default: %(default)s)", and its module-level `EXAMPLES` string (starting
with "examples:") is the epilog of `eqcodec COMMAND --help`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from types import ModuleType

#: name -> (module, one-line summary). The order is the order of `eqcodec --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("cli.demo", "run the whole pipeline on obspy's bundled recordings"),
    "reconstruct": ("cli.reconstruct", "encode + decode files at k codebooks: miniSEED, table, Figure 1"),
    "train-codec": ("cli.train_codec", "fit EQcodec v2's codebooks on recordings (--kind neural: train v1)"),
    "tokenize": ("cli.tokenize", "waveform files or an SDS archive -> Hugging Face token dataset"),
    "detokenize": ("cli.detokenize", "token dataset -> miniSEED in physical units"),
    "train-lm": ("cli.train_lm", "train or fine-tune the token language model (accelerate)"),
    "generate": ("cli.generate", "continue traces with the LM: miniSEED + plot"),
    "forecast": ("cli.forecast", "probabilistic forecast: samples, median, 5-95 % band, envelope"),
    "deconvolve": ("cli.deconvolve", "predictive deconvolution (LM or Wiener prediction-error filter)"),
    "evaluate": ("cli.evaluate", "forecasting and deconvolution benchmarks against baselines"),
    "index": ("cli.index", "build or extend a similarity-search index over token corpora (FAISS)"),
    "search": ("cli.search", "find waveforms like a template in an index (ranked CSV + figure), or --all-pairs: repeats within it"),
}

DESCRIPTION = "EQcodec: neural codec tokens for seismic waveforms, and a token language model on them."

EPILOG = """examples:
  eqcodec demo --out eqcodec-demo
  eqcodec reconstruct event.mseed --out recon --codebooks 1,2,4,8 --plot figure1.png
  eqcodec tokenize archive/ --out corpus
  eqcodec train-lm --data corpus --init lm/pretrained --out my-lm
  eqcodec generate event.mseed --context-seconds 30 --seconds 20 --lm my-lm/final --out cont.mseed

Run `eqcodec COMMAND --help` for the options, defaults and examples of one command."""


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
    top = top_parser(COMMANDS)
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name = top.parse_args(argv[:1]).command
    module, parser = command_parser(name)
    settings = _settings_path(parser, argv[1:])
    if settings:  # a settings file: its values are the defaults, flags override them
        known = {action.dest for action in parser._actions} - {"settings", "help"}
        values = settings_file(settings, parser, known)
        for action in parser._actions:  # a required flag the file sets is no longer required
            if action.dest in values:
                action.required = False
        parser.set_defaults(**values)
    args = parser.parse_args(argv[1:])
    from codec.errors import CheckpointError, InputError, UsageError

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


def _settings_path(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The --settings file named in argv, if the command takes one."""
    if not any(action.dest == "settings" for action in parser._actions):
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--settings")
    return pre.parse_known_args(argv)[0].settings


def settings_file(path: str, parser: argparse.ArgumentParser, known: set[str]) -> dict:
    """A JSON object of a command's settings, named as its flags' destinations (e.g. "batch_size").

    The nanoGPT manner: one small file per recipe, flags on the command line on top.
    """
    import json
    from pathlib import Path

    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        parser.error(f"--settings {path}: cannot read a JSON object ({err})")
    if not isinstance(values, dict):
        parser.error(f"--settings {path}: expected a JSON object of settings")
    unknown = sorted(set(values) - known)
    if unknown:
        parser.error(f"--settings {path}: unknown settings {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return values


if __name__ == "__main__":
    sys.exit(main())
