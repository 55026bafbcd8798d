"""`eqcodec train-codec`: train EQcodec with accelerate (CPU, one GPU or several).

Losses, all in the unit-RMS frame domain so that quiet and loud seconds weigh
the same: mean squared error of the samples, a multi-resolution STFT loss
(linear and log magnitudes at 4 window sizes), and the residual VQ's
commitment loss. The RVQ uses k-means initialisation, EMA codebook updates,
dead-code replacement and quantizer dropout (vector-quantize-pytorch).

Checkpoints (accelerate state + step) are written every --eval-every steps to
OUT/checkpoint; rerunning the same command resumes from there exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .data import load_traces, nc_events_split, obspy_recordings
from .metrics import segmental_snr_db, snr_db
from .model import EQCodec, EQCodecConfig


class RandomCrops(torch.utils.data.Dataset):
    """Item i is a crop of `crop` samples at a random (seeded by i) trace and sample offset.

    Crops start at any sample, not only at frame boundaries, and flip polarity
    at random: both multiply the variety of frames seen in a small corpus.
    """

    def __init__(self, traces: list[np.ndarray], crop: int, length: int, seed: int = 0):
        self.traces = [t for t in traces if len(t) >= crop]
        if not self.traces:
            raise ValueError(f"no training trace is at least {crop} samples long")
        lengths = np.array([len(t) - crop + 1 for t in self.traces], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.crop, self.length, self.seed = crop, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, i))
        trace = self.traces[rng.choice(len(self.traces), p=self.weights)]
        start = rng.integers(0, len(trace) - self.crop + 1)
        crop = trace[start : start + self.crop] * rng.choice([-1.0, 1.0])
        return torch.from_numpy(crop.copy())


def multi_resolution_stft_loss(target: torch.Tensor, recon: torch.Tensor,
                               windows=(16, 32, 64, 128)) -> torch.Tensor:
    """Mean over window sizes of L1(|S| - |S_hat|) + L1(log |S| - log |S_hat|); inputs [B, N]."""
    loss = 0.0
    for n in windows:
        window = torch.hann_window(n, device=target.device)
        spec = lambda x: torch.stft(x, n, hop_length=n // 4, window=window, return_complex=True).abs()  # noqa: E731
        s, s_hat = spec(target), spec(recon)
        loss = loss + F.l1_loss(s_hat, s) + F.l1_loss(torch.log(s_hat + 1e-4), torch.log(s + 1e-4))
    return loss / len(windows)


def segmental_error_db(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Mean over 1-s frames of 10 log10(frame error energy) for unit-RMS frames [B, F, T]: minus the segmental SNR.

    MSE weighs frames by their error, so it spends the networks on the worst
    frames; this term weighs every frame's SNR in dB alike, like the
    segmental SNR the codec is judged by (floored at -30 dB so near-perfect frames do not dominate).
    """
    frame_error = (recon - target).pow(2).mean(1)  # [B, T]
    return 10 * torch.log10(frame_error + 1e-3).mean()


def codec_losses(model: EQCodec, batch: torch.Tensor, spectral_weight: float, segmental_weight: float = 0.0) -> dict:
    out = model(batch)
    target = out["target"].transpose(1, 2).reshape(batch.shape[0], -1)  # [B, N] unit domain
    recon = out["recon"].transpose(1, 2).reshape(batch.shape[0], -1)
    mse = F.mse_loss(recon, target)
    spectral = multi_resolution_stft_loss(target, recon)
    segmental = segmental_error_db(out["target"], out["recon"])
    total = mse + spectral_weight * spectral + segmental_weight * segmental + out["commit_loss"]
    return {"loss": total, "mse": mse, "spectral": spectral, "segmental_db": segmental, "commit": out["commit_loss"]}


def evaluate(model: EQCodec, traces: list[np.ndarray]) -> dict:
    """Median whole-trace SNR and mean segmental SNR (dB) over traces, at k = 1, 2, 4, ..., K codebooks."""
    K = model.config.num_codebooks
    levels = sorted({k for k in (1, 2, 4, 8) if k <= K} | {K})
    was_training = model.training
    model.eval()
    results = {}
    encoded = [model.encode(x) for x in traces]
    for k in levels:
        snrs, segs = [], []
        for x, enc in zip(traces, encoded):
            y = model.decode(enc, k)[0].cpu().numpy()
            snrs.append(snr_db(x, y))
            segs.append(segmental_snr_db(x, y))
        results[f"snr_k{k}"] = float(np.median(snrs))
        results[f"segsnr_k{k}"] = float(np.mean(segs))
    model.train(was_training)
    return results


def run_logger(accelerator, log_path: Path):
    """log(message): timestamped line appended to log_path and printed above the progress bar (main process only)."""
    from tqdm.auto import tqdm

    def log(message: str) -> None:
        if accelerator.is_main_process:
            line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
            with open(log_path, "a") as f:
                f.write(line + "\n")
            tqdm.write(line)

    return log


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


EXAMPLES = """examples:
  eqcodec train-codec --data events/ --out codec-run
  eqcodec train-codec --data events/ --out small-run --config small.json --steps 2000 --batch-size 32
  eqcodec train-codec --data my-events/ --out my-codec --init codec/pretrained --steps 1000 --lr 3e-4
  accelerate launch -m codec.cli train-codec --data events/ --out codec-run    # several GPUs
"""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    from .cli import positive_float, positive_int

    parser = parser or argparse.ArgumentParser(prog="eqcodec train-codec", description=__doc__)
    files = parser.add_argument_group("input/output")
    files.add_argument("--data", required=True, metavar="DIR",
                       help="folder of event-window miniSEED files (nc-events layout)")
    files.add_argument("--out", required=True, metavar="RUN",
                       help="output folder: checkpoint/, final/, metrics.jsonl, train.log")
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
    return parser


def main(args: argparse.Namespace) -> int:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    accelerator = Accelerator()
    set_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = run_logger(accelerator, out / "train.log")

    train_files, eval_files = nc_events_split(args.data)
    extra = [] if args.no_obspy_recordings else obspy_recordings()
    train_traces = [x for _, x in load_traces(train_files + extra, include_obspy_example=not args.no_obspy_recordings)]
    eval_traces = [x for _, x in load_traces(eval_files)]
    (out / "split.json").write_text(json.dumps(
        {"train": [f.name for f in train_files], "eval": [f.name for f in eval_files],
         "obspy_recordings": [str(p.name) for p in extra]}, indent=1))
    log(f"training traces: {len(train_traces)} ({sum(map(len, train_traces)) / 40 / 3600:.2f} h) "
        f"from {len(train_files)} nc-events files + {len(extra)} obspy files; "
        f"held-out traces: {len(eval_traces)} from {len(eval_files)} files")

    if args.init:
        model = EQCodec.from_pretrained(args.init).train()
    else:
        config = EQCodecConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else EQCodecConfig()
        model = EQCodec(config)
    if args.init_codebooks:
        from .baselines import GainShapeRVQ

        model.init_codebooks(GainShapeRVQ.load(args.init_codebooks).codebooks)
        log(f"residual VQ started from the codebooks of {args.init_codebooks}")
    crop = args.crop_seconds * model.config.frame_length
    dataset = RandomCrops(train_traces, crop, length=args.steps * args.batch_size, seed=args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    step = 0
    checkpoint = out / "checkpoint"
    if (checkpoint / "step.json").is_file():
        accelerator.load_state(str(checkpoint))
        step = json.loads((checkpoint / "step.json").read_text())["step"]
        log(f"resumed from {checkpoint} at step {step}")
    batches = accelerator.skip_first_batches(loader, step) if step else loader

    unwrapped = accelerator.unwrap_model(model)
    progress = tqdm(total=args.steps, initial=step, desc="train-codec", disable=not accelerator.is_local_main_process)
    model.train()
    for batch in batches:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.warmup, args.lr)
        losses = codec_losses(model, batch, args.spectral_weight, args.segmental_weight)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(losses["loss"])
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{losses['loss'].item():.4f}", mse=f"{losses['mse'].item():.4f}")
        if step % args.eval_every == 0 or step == args.steps:
            record = {"step": step, **{k: round(v.item(), 5) for k, v in losses.items()}}
            if accelerator.is_main_process:
                record.update(evaluate(unwrapped, eval_traces))
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            log(json.dumps(record))
            accelerator.wait_for_everyone()
            accelerator.save_state(str(checkpoint))
            if accelerator.is_main_process:
                (checkpoint / "step.json").write_text(json.dumps({"step": step}))
                unwrapped.save_pretrained(out / "final")
        if step >= args.steps:
            break
    progress.close()
    log(f"done: {out / 'final'}")
    return 0
