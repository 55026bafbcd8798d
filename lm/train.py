"""`eqcodec train-lm`: train or fine-tune the seismic token LM with accelerate.

The same command runs on a CPU, one GPU, or several processes:

    eqcodec train-lm --data corpus --out my-lm
    accelerate launch --num_processes 2 -m cli train-lm --data corpus --out my-lm

--batch-size is the number of windows per optimizer step, whatever the
number of processes and --grad-accum: each process reads
batch-size / (processes x grad-accum) windows per forward pass, so a run on
2 processes follows the same recipe as on one.

Mixed precision: bf16 (or fp16) on a GPU, fp32 on a CPU (--mixed-precision
overrides; so does `accelerate launch --mixed_precision`). The learning rate
warms up linearly for --warmup steps, then follows a cosine decay to zero.

What OUT holds:
    final/          the trained LM (save_pretrained: config.json + model.safetensors, float32
                    or --save-dtype float16); load it with lm.load_lm(OUT/final) or
                    `eqcodec generate --lm OUT/final`
    best/           the LM of the validation with the lowest cross-entropy so far (same format)
    checkpoint/     accelerate state + step.json + run.json, written every --eval-every steps;
                    rerunning the same command resumes from it exactly
    metrics.jsonl   one JSON record per validation: per-stream cross-entropy (nats), perplexity
    train.log       the log

The corpus must come from the codec the LM is (or will be) tied to: with
--init, a corpus whose codec_id differs from the LM's is refused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from codec.checkpoints import retokenize_hint
from codec.trainer import RunLog, check_resume, save_checkpoint as save_run_checkpoint, save_model_atomically
from codec.preprocess import InputError

from .model import CONFIGS_DIR, SeismicLM, load_config, load_lm, stream_cross_entropy

DEFAULT_CONFIG = CONFIGS_DIR / "base.json"
#: Arguments that define a run: resuming with different values would not be the same run.
RUN_ARGS = ("data", "eval_data", "init", "config", "steps", "batch_size", "context_frames", "lr", "warmup",
            "grad_accum", "seed", "split", "eval_fraction", "weight_decay")


#: Context lengths (frames) for which the LM learns to read gains: in every
#: training crop the loudest of its first P frames is moved to the reference
#: level, P from 10 (the shortest context generation accepts) to half the
#: window; validation uses P = 20, the default forecast context. See
#: tokenized_data.LMExamples(gain_reference_frames=...).
def training_gain_reference(length: int) -> tuple[int, int]:
    low = min(10, length)
    return low, max(low, length // 2)


def evaluation_gain_reference(length: int) -> int:
    return min(20, length)


class TrainingWindows(torch.utils.data.Dataset):
    """Item i of the training stream: a crop from the corpus, in a fixed order for the whole run.

    Epoch e visits every window once in a permutation seeded by (seed, e), with
    new crop positions each epoch (tokenized_data.LMExamples.set_epoch). Item i
    is therefore the same on every process and after a resume, which makes
    runs reproducible and resumes exact.
    """

    def __init__(self, corpus, length: int, num_items: int, seed: int):
        from tokenized_data import LMExamples

        self.examples = LMExamples(corpus, length, random_crop=True, seed=seed,
                                   gain_reference_frames=training_gain_reference(length))
        self.per_epoch = len(self.examples)
        if self.per_epoch == 0:
            raise InputError("the training part of the corpus holds no window")
        self.num_items, self.seed = num_items, seed
        self._order = (None, None)  # (epoch, permutation) of the last item

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, i: int) -> dict:
        epoch, position = divmod(i, self.per_epoch)
        if self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng((self.seed, epoch)).permutation(self.per_epoch))
        self.examples.set_epoch(epoch)
        return self.examples[int(self._order[1][position])]




def _mixed_precision(choice: str) -> str | None:
    """accelerate's mixed_precision for --mixed-precision (None: leave it to `accelerate launch`)."""
    if choice != "auto":
        return choice
    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        return None
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _run_record(settings: "TrainLMConfig") -> dict:
    return {name: getattr(settings, name) for name in RUN_ARGS}


def build_model(settings: "TrainLMConfig", corpus) -> SeismicLM:
    """The LM to train: --init's (codec must match the corpus) or a fresh one from --config."""
    if settings.init:
        model = load_lm(settings.init).train()
        if model.config.codec_id and model.config.codec_id != corpus.codec_id:
            raise InputError(
                f"{settings.data}: corpus tokens come from codec {corpus.codec_id}, but the LM {settings.init} was "
                f"trained on tokens of codec {model.config.codec_id}; tokenize the data with that codec "
                f"or train a new LM without --init ({retokenize_hint(model.config.codec_id)})")
        if settings.context_frames and settings.context_frames > model.config.max_frames:
            raise InputError(f"--context-frames {settings.context_frames} is longer than the window of {settings.init} "
                             f"({model.config.max_frames} frames)")
    else:
        config = load_config(settings.config or DEFAULT_CONFIG)
        if settings.context_frames:
            config.max_frames = settings.context_frames
        model = SeismicLM(config)
    config = model.config
    if (config.num_codebooks, config.codebook_size) != (corpus.num_codebooks, corpus.codebook_size):
        raise InputError(f"{settings.data}: corpus has {corpus.num_codebooks} codebooks of {corpus.codebook_size} "
                         f"entries, the LM expects {config.num_codebooks} of {config.codebook_size}")
    config.codec_id = corpus.codec_id
    return model


@torch.no_grad()
def evaluate(model: SeismicLM, loader, max_batches: int) -> dict:
    """Per-stream cross-entropy (nats per token) and perplexity over the validation windows."""
    was_training = model.training
    model.eval()
    nll = count = 0
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        inputs, labels = model.prepare_batch(batch["tokens"].to(model.device), batch["mask"].to(model.device))
        batch_nll, batch_count = stream_cross_entropy(model(inputs).logits, labels)
        nll, count = nll + batch_nll, count + batch_count
    model.train(was_training)
    if isinstance(count, int) or int(count.sum()) == 0:
        return {}
    per_stream = (nll / count.clamp_min(1)).tolist()
    mean = float(np.mean(per_stream))
    return {"eval_ce": round(mean, 5), "eval_ppl": round(math.exp(mean), 3),
            "eval_ce_streams": [round(v, 4) for v in per_stream], "eval_tokens": int(count.sum())}


def _weights_checksum(model: torch.nn.Module) -> torch.Tensor:
    """A float64 fingerprint of the weights (identical on every process of one run)."""
    return torch.stack([p.detach().double().sum() + p.detach().double().pow(2).sum() for p in model.parameters()]).sum()


@dataclass
class TrainLMConfig:
    """Settings of one LM training run (`eqcodec train-lm` flags; JSON files of these fields work too).

    data: token corpus folder; out: run folder; eval_data: a corpus to validate
    on (e.g. held-out stations; then all of data trains, and split / eval_fraction
    are not used); init: an LM folder to fine-tune
    (its codec_id must match the corpus); config: LM config JSON or a name in
    lm/configs (ignored with init); context_frames: frames per window (None: the
    config's max_frames). batch_size counts windows per optimizer step over all
    processes. stop_after: stop (resumably) after this step, for tests.
    """

    data: str
    out: str
    eval_data: str | None = None
    init: str | None = None
    config: str | None = None
    context_frames: int | None = None
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.1
    grad_accum: int = 1
    mixed_precision: str = "auto"
    seed: int = 0
    eval_every: int = 50
    eval_batches: int = 50
    split: str = "event"
    eval_fraction: float = 0.2
    save_dtype: str = "float32"
    stop_after: int | None = None

    @classmethod
    def from_json(cls, path: str | Path, **overrides) -> "TrainLMConfig":
        """Settings from a JSON file of these fields, then `overrides` (nanoGPT-style override files)."""
        return cls(**{**json.loads(Path(path).read_text()), **overrides})


def train_lm(settings: TrainLMConfig) -> int:
    """Train (or fine-tune, with settings.init) the LM; resumes from OUT/checkpoint. 0 when done and in sync."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    from tokenized_data import LMExamples, load_tokenized

    hf_logging.disable_progress_bar()
    # cpu=True without a GPU: then `accelerate launch --multi_gpu` / torchrun processes join over gloo.
    accelerator = Accelerator(gradient_accumulation_steps=settings.grad_accum,
                              mixed_precision=_mixed_precision(settings.mixed_precision),
                              cpu=not torch.cuda.is_available())
    set_seed(settings.seed)
    out = Path(settings.out)
    checkpoint = out / "checkpoint"

    micro, remainder = divmod(settings.batch_size, accelerator.num_processes * settings.grad_accum)
    if remainder or micro == 0:
        raise InputError(f"--batch-size {settings.batch_size} must be a multiple of processes x --grad-accum "
                         f"({accelerator.num_processes} x {settings.grad_accum})")

    corpus = load_tokenized(settings.data)
    model = build_model(settings, corpus)
    length = settings.context_frames or model.config.max_frames
    run = _run_record(settings)
    saved_step = check_resume(checkpoint, run)

    out.mkdir(parents=True, exist_ok=True)
    run_log = RunLog(accelerator, out)
    log, record = run_log.log, run_log.record

    if settings.eval_data:
        train_corpus, eval_corpus = corpus, load_tokenized(settings.eval_data)
        if eval_corpus.codec_id != corpus.codec_id:
            raise InputError(f"{settings.eval_data}: tokens of codec {eval_corpus.codec_id}, but {settings.data} "
                             f"holds tokens of codec {corpus.codec_id}")
        split_name = f"validation corpus {settings.eval_data}"
    else:
        train_corpus, eval_corpus = corpus.split(by=settings.split, eval_fraction=settings.eval_fraction,
                                                 seed=settings.seed)
        split_name = f"{settings.split}-wise split"
    train_windows = TrainingWindows(train_corpus, length, settings.steps * settings.batch_size, settings.seed)
    eval_windows = LMExamples(eval_corpus, length, random_crop=False, seed=settings.seed,
                              gain_reference_frames=evaluation_gain_reference(length))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"corpus {settings.data}: codec {corpus.codec_id}, {train_windows.per_epoch} training and "
        f"{len(eval_windows)} validation windows ({split_name}); LM {n_params / 1e6:.2f} M parameters, "
        f"{length} frames per window; {accelerator.num_processes} process(es) x {micro} windows x "
        f"{settings.grad_accum} accumulation = {settings.batch_size} windows per step; "
        f"mixed precision {accelerator.mixed_precision}")

    loader = torch.utils.data.DataLoader(train_windows, batch_size=micro, shuffle=False)
    eval_loader = torch.utils.data.DataLoader(eval_windows, batch_size=micro, shuffle=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay)
    # Not passed to prepare(): accelerate would step it once per process; we step it once per optimizer step.
    scheduler = get_cosine_schedule_with_warmup(optimizer, settings.warmup, settings.steps)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(scheduler)
    unwrapped = accelerator.unwrap_model(model)

    step, best_ce = 0, math.inf
    if saved_step is not None:
        accelerator.load_state(str(checkpoint))
        step, best_ce = saved_step["step"], saved_step.get("best_eval_ce", math.inf)
        log(f"resumed from {checkpoint} at step {step}")
    batches = accelerator.skip_first_batches(loader, step * settings.grad_accum) if step else loader

    def save_lm(lm: SeismicLM, directory: Path) -> None:
        """save_pretrained in --save-dtype, atomically."""
        save_model_atomically((lm if settings.save_dtype == "float32" else copy.deepcopy(lm).to(torch.float16))
                              .save_pretrained, directory)

    def save_checkpoint() -> None:
        save_run_checkpoint(accelerator, checkpoint, run, {"step": step, "best_eval_ce": best_ce})

    progress = tqdm(total=settings.steps, initial=step, desc="train-lm", disable=not accelerator.is_local_main_process)
    model.train()
    window_loss, window_frames, window_start = [], 0, time.perf_counter()
    for batch in batches:
        with accelerator.accumulate(model):
            inputs, labels = unwrapped.prepare_batch(batch["tokens"], batch["mask"])
            loss = model(inputs, labels).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        window_loss.append(loss.detach())
        window_frames += int(batch["mask"].sum()) * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step % settings.eval_every == 0 or step == settings.steps:
            elapsed = time.perf_counter() - window_start
            values = {"step": step, "lr": scheduler.get_last_lr()[0],
                      "train_loss": round(accelerator.reduce(torch.stack(window_loss).mean(), "mean").item(), 5),
                      "train_frames_per_s": round(window_frames / elapsed, 1)}
            if accelerator.is_main_process:
                values.update(evaluate(unwrapped, eval_loader, settings.eval_batches))
                if values.get("eval_ce", math.inf) < best_ce:
                    best_ce = values["eval_ce"]
                    save_lm(unwrapped, out / "best")
            record(values)
            save_checkpoint()
            window_loss, window_frames, window_start = [], 0, time.perf_counter()
        if step >= settings.steps or (settings.stop_after and step >= settings.stop_after):
            break
    progress.close()

    # Every process must hold the same weights: they trained one model together.
    checksums = accelerator.gather(_weights_checksum(unwrapped).reshape(1).to(accelerator.device))
    in_sync = bool(torch.all(checksums == checksums[0]))
    if step < settings.steps:
        log(f"stopped at step {step} of {settings.steps}; rerun the same command to resume")
        return 0
    if accelerator.is_main_process:
        save_lm(unwrapped, out / "final")
    record({"event": "done", "step": step, "processes": accelerator.num_processes, "windows_per_step": settings.batch_size,
            "windows_per_process_and_pass": micro, "weights_in_sync": in_sync})
    log(f"done: {out / 'final'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0 if in_sync else 1
