"""`eqcodec demo`: flags -> tasks.demo; its module docstring is this command's help."""

from __future__ import annotations

import argparse

from tasks.demo import run_demo
from tasks import demo as task

from .types import positive_int

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec demo --out eqcodec-demo
  eqcodec demo --out quick-demo --finetune-steps 10 --samples 4    # a shorter run
"""


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    output = parser.add_argument_group("input/output")
    output.add_argument("--out", default="eqcodec-demo", metavar="DIR",
                        help="output folder for every result (default: %(default)s)")
    run = parser.add_argument_group("run length")
    run.add_argument("--finetune-steps", type=positive_int, default=40, metavar="N",
                     help="optimizer steps of the LM fine-tuning (default: %(default)s)")
    run.add_argument("--samples", type=positive_int, default=16, metavar="S",
                     help="continuations to sample (default: %(default)s)")
    return parser




def main(args: argparse.Namespace) -> int:
    run_demo(args.out, finetune_steps=args.finetune_steps, samples=args.samples)
    return 0
