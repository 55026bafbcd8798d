"""`eqcodec train-codec --kind neural`: train the neural EQcodec v1 (1-s blocks, networks) with accelerate (CPU, one GPU or several).

The shipped default is EQcodec v2 (codec.lapped: MDCT frames, k-means
codebooks, no networks), which `--kind lapped` (the default, codec/fit.py)
fits; this kind trains the v1 architecture (start from codec/pretrained_v1
with --init). --data is one folder of event-window miniSEED files in the
nc-events layout, split by event (20 % held out for validation).

Losses, all in the unit-RMS frame domain so that quiet and loud seconds weigh
the same: mean squared error of the samples, a multi-resolution STFT loss
(linear and log magnitudes at 4 window sizes), and the residual VQ's
commitment loss. The RVQ uses k-means initialisation, EMA codebook updates,
dead-code replacement and quantizer dropout (vector-quantize-pytorch).

Checkpoints (accelerate state + step) are written every --eval-every steps to
OUT/checkpoint; rerunning the same command resumes from there exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .data import load_traces, nc_events_split, obspy_recordings
from .errors import CheckpointError
from .metrics import segmental_snr_db, snr_db
from .model import EQCodec, EQCodecConfig
from .trainer import RunLog, check_resume, save_checkpoint, save_model_atomically


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


@dataclass
class TrainCodecConfig:
    """Settings of one codec training run (`eqcodec train-codec` flags; JSON files of these fields work too).

    data: nc-events-layout folder (split by event, 20 % held out); out: run folder;
    config: EQCodecConfig JSON (sizes); init: a codec folder to fine-tune;
    init_codebooks: a fitted GainShapeRVQ to start the residual VQ from.
    The learning rate warms up linearly, then decays by a cosine to 10 % of lr.
    """

    data: str
    out: str
    no_obspy_recordings: bool = False
    config: str | None = None
    init: str | None = None
    init_codebooks: str | None = None
    steps: int = 20000
    batch_size: int = 64
    crop_seconds: int = 32
    lr: float = 1e-3
    warmup: int = 500
    spectral_weight: float = 0.01
    segmental_weight: float = 0.0
    eval_every: int = 1000
    seed: int = 0
    stop_after: int | None = None  # stop (resumably) after this step: tests simulate an interruption

    @classmethod
    def from_json(cls, path: str | Path, **overrides) -> "TrainCodecConfig":
        """Settings from a JSON file of these fields, then `overrides` (nanoGPT-style override files)."""
        return cls(**{**json.loads(Path(path).read_text()), **overrides})


def load_neural_init(directory: str) -> EQCodec:
    """The neural codec saved in `directory`; a lapped (v2) codec is refused with what to do instead."""
    from .checkpoints import load_codec

    model = load_codec(directory)
    if not isinstance(model, EQCodec):
        raise CheckpointError(f"{directory}: --init holds a lapped EQcodec v2 codec (no networks to train), not a "
                              "neural EQcodec v1 checkpoint; to fit a lapped codec starting from its codebooks use "
                              f"`eqcodec train-codec --kind lapped --init {directory} ...`")
    return model


def train_codec(settings: TrainCodecConfig) -> int:
    """Train (or fine-tune, with settings.init) EQcodec; resumes from OUT/checkpoint exactly."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    if settings.init:  # refuse a lapped codec before reading any data
        load_neural_init(settings.init)
    accelerator = Accelerator()
    set_seed(settings.seed)
    out = Path(settings.out)
    checkpoint = out / "checkpoint"
    run = {k: v for k, v in asdict(settings).items() if k != "stop_after"}  # what makes it the same run
    saved_step = check_resume(checkpoint, run)
    out.mkdir(parents=True, exist_ok=True)
    run_log = RunLog(accelerator, out)
    log = run_log.log

    train_files, eval_files = nc_events_split(settings.data)
    extra = [] if settings.no_obspy_recordings else obspy_recordings()
    train_traces = [x for _, x in load_traces(train_files + extra,
                                              include_obspy_example=not settings.no_obspy_recordings)]
    eval_traces = [x for _, x in load_traces(eval_files)]
    (out / "split.json").write_text(json.dumps(
        {"train": [f.name for f in train_files], "eval": [f.name for f in eval_files],
         "obspy_recordings": [str(p.name) for p in extra]}, indent=1))
    log(f"training traces: {len(train_traces)} ({sum(map(len, train_traces)) / 40 / 3600:.2f} h) "
        f"from {len(train_files)} nc-events files + {len(extra)} obspy files; "
        f"held-out traces: {len(eval_traces)} from {len(eval_files)} files")

    if settings.init:
        model = load_neural_init(settings.init).train()
    else:
        config = (EQCodecConfig.from_dict(json.loads(Path(settings.config).read_text())) if settings.config
                  else EQCodecConfig())
        model = EQCodec(config)
    if settings.init_codebooks:
        from .baselines import GainShapeRVQ

        model.init_codebooks(GainShapeRVQ.load(settings.init_codebooks).codebooks)
        log(f"residual VQ started from the codebooks of {settings.init_codebooks}")
    crop = settings.crop_seconds * model.config.frame_length
    dataset = RandomCrops(train_traces, crop, length=settings.steps * settings.batch_size, seed=settings.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=settings.batch_size, shuffle=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    # Not passed to prepare(): accelerate would step it once per process; it steps once per optimizer step.
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, settings.warmup, settings.steps,
                                                            min_lr_rate=0.1)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(scheduler)

    step = 0
    if saved_step is not None:
        accelerator.load_state(str(checkpoint))
        step = saved_step["step"]
        log(f"resumed from {checkpoint} at step {step}")
    batches = accelerator.skip_first_batches(loader, step) if step else loader

    unwrapped = accelerator.unwrap_model(model)
    progress = tqdm(total=settings.steps, initial=step, desc="train-codec",
                    disable=not accelerator.is_local_main_process)
    model.train()
    for batch in batches:
        losses = codec_losses(model, batch, settings.spectral_weight, settings.segmental_weight)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(losses["loss"])
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{losses['loss'].item():.4f}", mse=f"{losses['mse'].item():.4f}")
        if step % settings.eval_every == 0 or step == settings.steps:
            values = {"step": step, "lr": scheduler.get_last_lr()[0],
                      **{k: round(v.item(), 5) for k, v in losses.items()}}
            if accelerator.is_main_process:
                values.update(evaluate(unwrapped, eval_traces))
            run_log.record(values)
            save_checkpoint(accelerator, checkpoint, run, {"step": step})
            if accelerator.is_main_process:
                save_model_atomically(unwrapped.save_pretrained, out / "final")
        if step >= settings.steps or (settings.stop_after and step >= settings.stop_after):
            break
    progress.close()
    if step < settings.steps:
        log(f"stopped at step {step} of {settings.steps}; rerun the same command to resume")
        return 0
    log(f"done: {out / 'final'}")
    return 0
