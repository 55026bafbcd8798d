"""`eqcodec train-codec`: flags -> codec.fit (--kind lapped) or codec.train (--kind neural); their module
docstrings are this command's help."""

from __future__ import annotations

import argparse

from codec import fit, train
from codec.errors import UsageError

from .types import positive_float, positive_int

__doc__ = f"{fit.__doc__}\n{train.__doc__}"  # the command is described where it is implemented

EXAMPLES = """examples:
  eqcodec train-codec --data archive/ --out my-codec
  eqcodec train-codec --data archive/ 'more/*.mseed' --out small-codec --max-vectors 200000 --iters 10
  eqcodec train-codec --data new-stations/ --out tuned-codec --init codec/pretrained --iters 5
  eqcodec train-codec --kind neural --data events/ --out codec-run
  eqcodec train-codec --kind neural --data events/ --out small-run --config small.json --steps 2000 --batch-size 32
  eqcodec train-codec --kind neural --data my-events/ --out my-codec --init codec/pretrained_v1 --steps 1000 --lr 3e-4
  accelerate launch -m cli train-codec --kind neural --data events/ --out codec-run    # several GPUs
"""

LAPPED_GROUP = "lapped fit (--kind lapped: EQcodec v2)"
NEURAL_GROUP = "neural training (--kind neural: EQcodec v1)"


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="eqcodec train-codec", description=__doc__)
    files = parser.add_argument_group("input/output")
    files.add_argument("--kind", choices=("lapped", "neural"), default="lapped",
                       help="lapped: fit EQcodec v2's k-means codebooks (the shipped kind); neural: train the "
                            "EQcodec v1 networks (default: %(default)s)")
    files.add_argument("--data", required=True, nargs="+", metavar="PATH",
                       help="lapped: waveform files, folders or glob patterns (any obspy-readable format); "
                            "neural: one folder of event-window miniSEED files (nc-events layout)")
    files.add_argument("--out", required=True, metavar="RUN",
                       help="run folder: final/ (the codec), train.log, and fit.json (lapped) or "
                            "checkpoint/ and metrics.jsonl (neural)")
    files.add_argument("--settings", metavar="JSON",
                       help="a JSON object of settings named as these flags' destinations (e.g. "
                            '{"iters": 10, "max_vectors": 200000}); flags given here override it')
    files.add_argument("--no-obspy-recordings", action="store_true",
                       help="do not add the real recordings bundled with obspy to the training data")
    files.add_argument("--init", metavar="CODEC",
                       help="start from this codec folder: a lapped codec's codebooks start the k-means "
                            "(lapped), a neural checkpoint is fine-tuned (neural)")
    files.add_argument("--seed", type=int, default=train.TrainCodecConfig.seed, metavar="N",
                       help="random seed: the draw of training frames and k-means (lapped), crops and "
                            "initialisation (neural) (default: %(default)s)")

    lapped = parser.add_argument_group(LAPPED_GROUP)
    defaults = fit.LappedFitSettings
    lapped.add_argument("--num-codebooks", type=positive_int, metavar="K",
                        help=f"residual stages (default: {fit.DEFAULT_NUM_CODEBOOKS}, or --init's)")
    lapped.add_argument("--codebook-size", type=positive_int, metavar="C",
                        help=f"entries per codebook (default: {fit.DEFAULT_CODEBOOK_SIZE}, or --init's)")
    lapped.add_argument("--max-vectors", type=positive_int, default=defaults.max_vectors, metavar="N",
                        help="training frames drawn at random from the pool (k-means time grows with it; "
                             "a number above the pool's size takes all of it) (default: %(default)s)")
    lapped.add_argument("--offsets", type=positive_int, default=defaults.offsets, metavar="N",
                        help="training frames start at N evenly spaced samples of each second; 1: the "
                             "non-overlapping frames (default: %(default)s)")
    lapped.add_argument("--flip", action=argparse.BooleanOptionalAction, default=defaults.flip,
                        help="add every training frame's polarity-flipped copy to the pool (default: %(default)s)")
    lapped.add_argument("--iters", type=positive_int, default=defaults.iters, metavar="N",
                        help="k-means iterations per stage (default: %(default)s)")
    lapped.add_argument("--overwrite", action="store_true", help="replace an existing RUN/final")

    neural = parser.add_argument_group(NEURAL_GROUP)
    neural.add_argument("--config", metavar="JSON", help="codec config JSON (sizes) (default: EQCodecConfig())")
    neural.add_argument("--init-codebooks", metavar="FILE",
                        help="start the residual VQ from a fitted gain-shape RVQ (codec.baselines, e.g. the one "
                             "benchmarks/codec_benchmark.py caches) instead of k-means on the first batch; "
                             "for configs with identity_skip")
    neural.add_argument("--steps", type=positive_int, default=20000, metavar="N",
                        help="optimizer steps (default: %(default)s)")
    neural.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                        help="crops per step (default: %(default)s)")
    neural.add_argument("--crop-seconds", type=positive_int, default=32, metavar="S",
                        help="crop length in seconds (default: %(default)s)")
    neural.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (default: %(default)s)")
    neural.add_argument("--warmup", type=int, default=500, metavar="N", help="warm-up steps (default: %(default)s)")
    neural.add_argument("--spectral-weight", type=float, default=0.01, metavar="W",
                        help="weight of the multi-resolution STFT loss (default: %(default)s)")
    neural.add_argument("--segmental-weight", type=float, default=0.0, metavar="W",
                        help="weight of the mean per-frame error in dB (minus segmental SNR) (default: %(default)s)")
    neural.add_argument("--eval-every", type=positive_int, default=1000, metavar="N",
                        help="validate and checkpoint every N steps (default: %(default)s)")
    neural.add_argument("--stop-after", type=positive_int, help=argparse.SUPPRESS)  # tests: simulate an interruption
    return parser


def kind_settings(args: argparse.Namespace) -> dict:
    """The flags of args.kind as keyword arguments; a flag of the other kind set to a non-default value: UsageError."""
    other = NEURAL_GROUP if args.kind == "lapped" else LAPPED_GROUP
    values = {k: v for k, v in vars(args).items() if k not in ("kind", "settings")}
    for group in build_parser()._action_groups:  # a fresh parser: its defaults are the flags' own
        if group.title == other:
            for action in group._group_actions:
                if values.pop(action.dest, action.default) != action.default:
                    kind = "neural" if other == NEURAL_GROUP else "lapped"
                    raise UsageError(f"{action.option_strings[0]} is a setting of --kind {kind}; "
                                     f"this run is --kind {args.kind}")
    data = [values["data"]] if isinstance(values["data"], str) else values["data"]  # a --settings file's string
    if args.kind == "neural":
        if len(data) != 1:
            raise UsageError(f"--kind neural reads one folder of event files (nc-events layout), got {len(data)} "
                             "--data paths")
        data = data[0]
    return {**values, "data": data}


def main(args: argparse.Namespace) -> int:
    if args.kind == "lapped":
        fit.fit_lapped_codec(fit.LappedFitSettings(**kind_settings(args)))
        return 0
    return train.train_codec(train.TrainCodecConfig(**kind_settings(args)))
