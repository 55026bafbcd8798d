"""`eqcodec train-lm`: flags -> lm.train; its module docstring is this command's help."""

from __future__ import annotations

import argparse

from lm.train import DEFAULT_CONFIG, TrainLMConfig, train_lm
from lm import train as task

from .types import fraction as _fraction, positive_int as _positive_int

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec train-lm --data corpus --init lm/pretrained --out my-lm    # fine-tune the shipped base LM
  eqcodec train-lm --data corpus --out new-lm --config base --steps 5000 --batch-size 32
  eqcodec train-lm --data corpus --out my-lm --split station --eval-fraction 0.1
  eqcodec train-lm --data corpus --out long-run --settings recipe.json --lr 5e-4    # a recipe file, one flag on top
  accelerate launch --num_processes 2 -m cli train-lm --data corpus --out my-lm
"""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="eqcodec train-lm", description=__doc__)
    files = parser.add_argument_group("input/output")
    files.add_argument("--data", required=True, metavar="CORPUS",
                       help="token corpus folder (made by `eqcodec tokenize`)")
    files.add_argument("--out", required=True, metavar="RUN",
                       help="output folder: final/, checkpoint/, metrics.jsonl, train.log")
    files.add_argument("--settings", metavar="JSON",
                       help="a JSON object of settings named as these flags' destinations (e.g. "
                            '{"steps": 5000, "batch_size": 32}); flags given here override it')
    files.add_argument("--save-dtype", choices=["float32", "float16"], default="float32",
                       help="dtype of the weights in OUT/final; float16 halves the file (load_lm reads "
                            "either as float32) (default: %(default)s)")
    model = parser.add_argument_group("model")
    model.add_argument("--init", metavar="PATH",
                       help="start from this LM (fine-tuning); its codec_id must match the corpus")
    model.add_argument("--config", metavar="JSON",
                       help=f"LM config JSON or a name in lm/configs, ignored with --init "
                            f"(default: {DEFAULT_CONFIG.name})")
    model.add_argument("--context-frames", "--length", dest="context_frames", type=_positive_int, metavar="T",
                       help="frames (seconds) per training window (default: the config's max_frames)")
    training = parser.add_argument_group("training")
    training.add_argument("--steps", type=_positive_int, default=300, metavar="N",
                          help="optimizer steps (default: %(default)s)")
    training.add_argument("--batch-size", type=_positive_int, default=16, metavar="N",
                          help="windows per optimizer step, over all processes (default: %(default)s)")
    training.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: %(default)s)")
    training.add_argument("--warmup", type=int, default=50, metavar="N", help="warm-up steps (default: %(default)s)")
    training.add_argument("--weight-decay", type=float, default=0.1, metavar="W",
                          help="AdamW weight decay (default: %(default)s)")
    training.add_argument("--grad-accum", type=_positive_int, default=1, metavar="N",
                          help="forward passes per optimizer step (default: %(default)s)")
    training.add_argument("--mixed-precision", choices=["auto", "no", "fp16", "bf16"], default="auto",
                          help="auto: bf16/fp16 on a GPU, fp32 on a CPU (default: %(default)s)")
    training.add_argument("--seed", type=int, default=0, metavar="N",
                          help="random seed (data split, initialization, batches) (default: %(default)s)")
    training.add_argument("--stop-after", type=_positive_int, help=argparse.SUPPRESS)  # tests: simulate an interruption
    validation = parser.add_argument_group("validation")
    validation.add_argument("--eval-every", type=_positive_int, default=50, metavar="N",
                            help="validate and checkpoint every N steps (default: %(default)s)")
    validation.add_argument("--eval-batches", type=_positive_int, default=50, metavar="N",
                            help="at most this many validation batches (default: %(default)s)")
    validation.add_argument("--eval-data", metavar="CORPUS",
                            help="validate on this corpus (e.g. held-out stations) instead of a split of --data "
                                 "(then all of --data trains)")
    validation.add_argument("--split", choices=["event", "station"], default="event",
                            help="how the corpus is split into training and validation (default: %(default)s)")
    validation.add_argument("--eval-fraction", type=_fraction, default=0.2, metavar="F",
                            help="validation share, between 0 and 1 (default: %(default)s)")
    return parser




def main(args: argparse.Namespace) -> int:
    return train_lm(TrainLMConfig(**{k: v for k, v in vars(args).items() if k != "settings"}))
