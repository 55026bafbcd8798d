"""`eqcodec train-codec`: flags -> codec.train; its module docstring is this command's help."""

from __future__ import annotations

import argparse

from codec.train import TrainCodecConfig, train_codec
from codec import train as task

from .types import positive_float, positive_int

__doc__ = task.__doc__  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec train-codec --data events/ --out codec-run
  eqcodec train-codec --data events/ --out small-run --config small.json --steps 2000 --batch-size 32
  eqcodec train-codec --data my-events/ --out my-codec --init codec/pretrained_v1 --steps 1000 --lr 3e-4
  accelerate launch -m cli train-codec --data events/ --out codec-run    # several GPUs
"""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="eqcodec train-codec", description=__doc__)
    files = parser.add_argument_group("input/output")
    files.add_argument("--data", required=True, metavar="DIR",
                       help="folder of event-window miniSEED files (nc-events layout)")
    files.add_argument("--out", required=True, metavar="RUN",
                       help="output folder: checkpoint/, final/, metrics.jsonl, train.log")
    files.add_argument("--settings", metavar="JSON",
                       help="a JSON object of settings named as these flags' destinations (e.g. "
                            '{"steps": 5000, "batch_size": 32}); flags given here override it')
    files.add_argument("--no-obspy-recordings", action="store_true",
                       help="do not add the real recordings bundled with obspy to the training data")
    model = parser.add_argument_group("model")
    model.add_argument("--config", metavar="JSON", help="codec config JSON (sizes) (default: EQCodecConfig())")
    model.add_argument("--init", metavar="PATH", help="start from this codec checkpoint (fine-tuning)")
    model.add_argument("--init-codebooks", metavar="FILE",
                       help="start the residual VQ from a fitted gain-shape RVQ (codec.baselines, e.g. the one "
                            "benchmarks/codec_benchmark.py caches) instead of k-means on the first batch; "
                            "for configs with identity_skip")
    training = parser.add_argument_group("training")
    training.add_argument("--steps", type=positive_int, default=20000, metavar="N", help="optimizer steps (default: %(default)s)")
    training.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="crops per step (default: %(default)s)")
    training.add_argument("--crop-seconds", type=positive_int, default=32, metavar="S",
                          help="crop length in seconds (default: %(default)s)")
    training.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (default: %(default)s)")
    training.add_argument("--warmup", type=int, default=500, metavar="N", help="warm-up steps (default: %(default)s)")
    training.add_argument("--spectral-weight", type=float, default=0.01, metavar="W",
                          help="weight of the multi-resolution STFT loss (default: %(default)s)")
    training.add_argument("--segmental-weight", type=float, default=0.0, metavar="W",
                          help="weight of the mean per-frame error in dB (minus segmental SNR) (default: %(default)s)")
    training.add_argument("--eval-every", type=positive_int, default=1000, metavar="N",
                          help="validate and checkpoint every N steps (default: %(default)s)")
    training.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: %(default)s)")
    training.add_argument("--stop-after", type=positive_int, help=argparse.SUPPRESS)  # tests: simulate an interruption
    return parser




def main(args: argparse.Namespace) -> int:
    return train_codec(TrainCodecConfig(**{k: v for k, v in vars(args).items() if k != "settings"}))
