"""Peer benchmark: the seismic token LM (lm.model) against transformers' MusicgenForCausalLM.

Both models get the same width, depth, heads and MLP size (from the LM config),
the same 9 token streams with the same delay pattern, the same batches in the
same order, the same optimizer and learning-rate schedule, and the same loss
(mean over streams of the per-stream cross-entropy). MusicGen has one
vocabulary for all codebooks: its vocabulary is the codebook size (1024) and
the gain stream's 256 levels are mapped to ids 0..255 of it; its pad token
(1024) plays the role of our empty token.

Reported, in one table (and as JSON with --out):
  training throughput   frames per second of optimizer steps (batch --batch-size x --context-frames)
  generation speed      frames per second with the KV cache, batch 1 and 16; each model's own
                        sampling loop (ours: SeismicLM.generate_frames; MusicGen: .generate),
                        plain sampling (temperature 1, no top-k/top-p)
  (for information)     MusicGen's generation speed with our weight layout
                        (lm.model.lay_out_for_generation, which generate_frames applies to ours):
                        how much of the lead comes from the layout alone
  peak memory           resident memory above the process's level before the phase (CPU; each
                        phase in a fresh process), or torch.cuda.max_memory_allocated on a GPU
  validation CE         nats per token, mean over streams, after --steps steps of training

Speeds are measured in one process that alternates the two models for --rounds
rounds and keeps each model's best: on a shared machine the load drifts over
minutes, and alternation exposes both models to the same conditions.

Usage:
  python benchmarks/lm_vs_musicgen.py --data CORPUS            # a token corpus (eqcodec tokenize)
  python benchmarks/lm_vs_musicgen.py --synthetic              # tokenized_data.random_corpus tokens
  options: --config lm/configs/base.json --steps 150 --batch-size 16 --context-frames 90
           --gen-context 30 --gen-frames 60 --rounds 4 --threads 1 --out results.json

CPU numbers on a shared machine vary from run to run: the load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lm.model import SeismicLM, lay_out_for_generation, load_config, stream_cross_entropy  # noqa: E402

MODELS = ("ours", "musicgen")
RELAID_PEER = "musicgen_relaid"  # MusicGen with lm.model.lay_out_for_generation: reported for information
TARGETS = {"train_frames_per_s": 1.0, "gen_frames_per_s_b1": 1.5, "gen_frames_per_s_b16": 1.5}


# ---------------------------------------------------------------------- the peer
def musicgen_for(config):
    """MusicgenForCausalLM with the LM config's width, depth, heads, MLP size, dropout and 9 codebooks."""
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    vocab = config.codebook_size
    peer = MusicgenForCausalLM(MusicgenDecoderConfig(
        vocab_size=vocab, num_codebooks=config.num_streams, hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        ffn_dim=config.intermediate_size, max_position_embeddings=config.max_positions + 1,
        dropout=config.dropout, attention_dropout=config.dropout, activation_dropout=0.0, activation_function="gelu",
        pad_token_id=vocab, bos_token_id=vocab, attn_implementation="sdpa"))
    peer.generation_config.update(decoder_start_token_id=vocab, pad_token_id=vocab, do_sample=True,
                                  top_k=0, num_return_sequences=1)
    return peer


def to_musicgen_ids(inputs: torch.Tensor, config) -> torch.Tensor:
    """Our delayed inputs [B, S, L] -> MusicGen's input_ids [B * S, L] (every empty token -> its pad id)."""
    empty = torch.tensor(config.empty_tokens, device=inputs.device).view(1, -1, 1)
    ids = torch.where(inputs == empty, config.codebook_size, inputs)
    return ids.reshape(-1, ids.shape[-1])


def logits_of(name: str, model, inputs: torch.Tensor, config) -> tuple[torch.Tensor, ...]:
    """S tensors [B, L, V]: ours per stream, MusicGen's 1024-way logits per codebook."""
    if name == "ours":
        return model(inputs).logits
    logits = model(input_ids=to_musicgen_ids(inputs, config)).logits  # [B * S, L, V]
    return logits.view(inputs.shape[0], config.num_streams, *logits.shape[1:]).unbind(1)


# ---------------------------------------------------------------------- measurements
class PeakMemory:
    """Peak resident memory (MB) above the level at entry, sampled every 2 ms (CPU), or CUDA's peak."""

    def __enter__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = self.peak = _rss()
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.cuda:
            self.mb = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        else:
            self.running = False
            self.thread.join()
            self.mb = (max(self.peak, _rss()) - self.start) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_data(args):
    """(train corpus, validation corpus) from --data or synthetic tokens."""
    from tokenized_data.random_corpus import random_token_corpus
    from tokenized_data import load_tokenized

    corpus = (load_tokenized(args.data) if args.data else
              random_token_corpus(args.synthetic_windows, args.context_frames, stations=10, seed=args.seed))
    return corpus.split(by="event", eval_fraction=0.2, seed=args.seed)


def new_model(name: str, config):
    torch.manual_seed(0)
    return SeismicLM(config) if name == "ours" else musicgen_for(config)


def train_step(name: str, model, optimizer, scheduler, helper: SeismicLM, batch: dict, config) -> torch.Tensor:
    """One optimizer step on the shared loss; returns the loss."""
    inputs, labels = helper.prepare_batch(batch["tokens"], batch["mask"])
    nll, count = stream_cross_entropy(logits_of(name, model, inputs, config), labels)
    loss = (nll / count.clamp_min(1)).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def optimizer_for(model, args):
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, max(1, args.steps // 10), args.steps)


def benchmark_config(args):
    config = load_config(args.config)
    config.max_frames = args.context_frames
    return config


def train_phase(name: str, args, model_dir: Path) -> dict:
    """Train one model for --steps steps: peak memory and validation CE (saves the weights for generation)."""
    from lm.train import TrainingWindows
    from tokenized_data import LMExamples

    config = benchmark_config(args)
    train, validation = load_data(args)
    helper = SeismicLM(config)  # prepare_batch: the delay layout both models read
    model = new_model(name, config).train()
    optimizer, scheduler = optimizer_for(model, args)
    windows = TrainingWindows(train, args.context_frames, args.steps * args.batch_size, args.seed)
    with PeakMemory() as memory:
        for batch in torch.utils.data.DataLoader(windows, batch_size=args.batch_size):
            loss = train_step(name, model, optimizer, scheduler, helper, batch, config)
    model.eval()
    nll_sum = count_sum = 0
    eval_loader = torch.utils.data.DataLoader(LMExamples(validation, args.context_frames, random_crop=False),
                                              batch_size=args.batch_size)
    with torch.no_grad():
        for i, batch in enumerate(eval_loader):
            if i >= args.eval_batches:
                break
            inputs, labels = helper.prepare_batch(batch["tokens"], batch["mask"])
            nll, count = stream_cross_entropy(logits_of(name, model, inputs, config), labels)
            nll_sum, count_sum = nll_sum + nll, count_sum + count
    per_stream = (nll_sum / count_sum).tolist()
    model.save_pretrained(model_dir / name)
    return {"params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "train_peak_MB": round(memory.mb, 1), "final_train_loss": round(loss.item(), 4),
            "val_ce": round(float(np.mean(per_stream)), 4), "val_ce_streams": [round(v, 4) for v in per_stream]}


def load_trained(name: str, model_dir: Path, config):
    if name == "ours":
        return SeismicLM.from_pretrained(str(model_dir / name), dtype=torch.float32).eval()
    from transformers import MusicgenForCausalLM

    model = MusicgenForCausalLM.from_pretrained(str(model_dir / name), dtype=torch.float32).eval()
    model.generation_config.update(decoder_start_token_id=config.codebook_size, pad_token_id=config.codebook_size,
                                   do_sample=True, top_k=0, num_return_sequences=1)
    return model


def generation_contexts(args, batch_size: int) -> torch.Tensor:
    """[B, S, C] contexts: the first --gen-context frames of validation windows."""
    from tokenized_data import LMExamples

    examples = LMExamples(load_data(args)[1], args.gen_context, random_crop=False)
    return torch.stack([examples[i % len(examples)]["tokens"] for i in range(batch_size)])


def generate(name: str, model, context: torch.Tensor, args, config) -> int:
    """Each model's own sampling loop with its KV cache; returns the number of new frames."""
    if name == "ours":
        return model.generate_frames(context, args.gen_frames).shape[-1]
    bos = torch.full((context.shape[0] * config.num_streams, 1), config.codebook_size)
    prompt = torch.cat([bos, context.reshape(-1, context.shape[-1])], dim=-1)
    with torch.inference_mode():
        out = model.generate(input_ids=prompt, max_new_tokens=args.gen_frames + config.num_streams - 1)
    return out.shape[-1] - context.shape[-1]


def generation_memory_phase(name: str, args, model_dir: Path) -> dict:
    """Peak memory of one batch-16 generation (in a fresh process)."""
    config = benchmark_config(args)
    model = load_trained(name, model_dir, config)
    context = generation_contexts(args, 16)
    with PeakMemory() as memory:
        produced = generate(name, model, context, args, config)
    if produced != args.gen_frames:
        raise RuntimeError(f"{name} produced {produced} frames instead of {args.gen_frames}")
    return {"gen_peak_MB_b16": round(memory.mb, 1)}


def speed_phase(args, model_dir: Path) -> dict:
    """Training and generation speed of both models, measured in alternation in one process.

    A shared machine's load changes over minutes; alternating the two models
    round by round and keeping each one's best time compares them under the
    same conditions. Training: --speed-steps optimizer steps per round on the
    same batch (fresh models); generation: one run per batch size per round.
    """
    from lm.train import TrainingWindows

    config = benchmark_config(args)
    helper = SeismicLM(config)
    train, _ = load_data(args)
    batch = next(iter(torch.utils.data.DataLoader(TrainingWindows(train, args.context_frames, args.batch_size,
                                                                  args.seed), batch_size=args.batch_size)))
    trainees = {name: new_model(name, config).train() for name in MODELS}
    optimizers = {name: optimizer_for(model, args) for name, model in trainees.items()}
    trained = {name: load_trained(name, model_dir, config) for name in MODELS}
    # For information only: the peer with the weight layout our generate_frames uses.
    trained[RELAID_PEER] = load_trained("musicgen", model_dir, config)
    lay_out_for_generation(trained[RELAID_PEER])
    contexts = {b: generation_contexts(args, b) for b in (1, 16)}
    best = {name: {} for name in trained}

    def keep(name, key, value):
        best[name][key] = round(max(best[name].get(key, 0.0), value), 1)

    def time_generation(name):
        peer_or_ours = "musicgen" if name == RELAID_PEER else name
        for batch_size, context in contexts.items():
            torch.manual_seed(0)
            start = time.perf_counter()
            produced = generate(peer_or_ours, trained[name], context, args, config)
            keep(name, f"gen_frames_per_s_b{batch_size}", batch_size * produced / (time.perf_counter() - start))
            if produced != args.gen_frames:
                raise RuntimeError(f"{name} produced {produced} frames instead of {args.gen_frames}")

    for name in MODELS:  # warm-up: first calls allocate and pick kernels (and lay out our weights)
        train_step(name, trainees[name], *optimizers[name], helper, batch, config)
        generate(name, trained[name], contexts[1], args, config)
    generate("musicgen", trained[RELAID_PEER], contexts[1], args, config)
    for _ in range(args.rounds):
        for name in MODELS:
            start = time.perf_counter()
            for _ in range(args.speed_steps):
                train_step(name, trainees[name], *optimizers[name], helper, batch, config)
            keep(name, "train_frames_per_s", args.speed_steps * int(batch["mask"].sum()) / (time.perf_counter() - start))
            time_generation(name)
        time_generation(RELAID_PEER)
    return best


# ---------------------------------------------------------------------- driver
PHASES = {"train": train_phase, "generation-memory": generation_memory_phase}


def run_worker(phase: str, name: str, args, model_dir: Path) -> dict:
    """Run one phase in a fresh process (clean memory figures), unless --in-process."""
    def direct():
        return speed_phase(args, model_dir) if phase == "speed" else PHASES[phase](name, args, model_dir)

    if args.in_process:
        return direct()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", f"{phase}:{name}", "--model-dir", str(model_dir),
           "--result", result_path]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    result = json.loads(Path(result_path).read_text())
    os.unlink(result_path)
    return result


def table(results: dict, args) -> str:
    ours, peer = results["ours"], results["musicgen"]
    rows = [("parameters (M)", "params_M", None), ("training throughput (frames/s)", "train_frames_per_s", True),
            ("generation, batch 1 (frames/s)", "gen_frames_per_s_b1", True),
            ("generation, batch 16 (frames/s)", "gen_frames_per_s_b16", True),
            ("peak memory, training (MB)", "train_peak_MB", False),
            ("peak memory, generation batch 16 (MB)", "gen_peak_MB_b16", False),
            (f"validation CE after {args.steps} steps (nats)", "val_ce", False)]
    lines = ["| metric | ours | MusicGen | ours / MusicGen | target |", "|---|---|---|---|---|"]
    for label, key, higher_is_better in rows:
        ratio = ours[key] / peer[key] if peer[key] else float("nan")
        if key in TARGETS:
            target = f">= {TARGETS[key]}x: {'met' if ratio >= TARGETS[key] else 'NOT met'}"
        elif key == "val_ce":
            target = f"no worse: {'met' if ours[key] <= peer[key] else 'NOT met'}"
        else:
            target = ""
        lines.append(f"| {label} | {ours[key]} | {peer[key]} | {ratio:.2f} | {target} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="token corpus folder (eqcodec tokenize)")
    source.add_argument("--synthetic", action="store_true", help="synthetic tokens (tokenized_data.random_corpus)")
    parser.add_argument("--synthetic-windows", type=int, default=400, help="windows of synthetic tokens")
    parser.add_argument("--config", default="base", help="LM config (default: lm/configs/base.json)")
    parser.add_argument("--steps", type=int, default=150, help="training steps before the validation CE")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--context-frames", type=int, default=90, help="frames per training window")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--gen-context", type=int, default=30, help="context frames for generation")
    parser.add_argument("--gen-frames", type=int, default=60, help="frames to generate")
    parser.add_argument("--rounds", type=int, default=4, help="alternating speed rounds (ours, peer, ours, ...)")
    parser.add_argument("--speed-steps", type=int, default=3, help="timed training steps per model and round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--in-process", action="store_true",
                        help="no worker processes (quick smoke runs; memory figures then overlap)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if args.worker:
        phase, name = args.worker.split(":")
        result = speed_phase(args, Path(args.model_dir)) if phase == "speed" else \
            PHASES[phase](name, args, Path(args.model_dir))
        Path(args.result).write_text(json.dumps(result))
        return 0

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        results = {name: run_worker("train", name, args, model_dir) for name in MODELS}
        for name in MODELS:
            results[name].update(run_worker("generation-memory", name, args, model_dir))
        for name, speeds in run_worker("speed", "both", args, model_dir).items():
            results.setdefault(name, {}).update(speeds)
    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "model_dir", "result")}
    report = {"settings": settings, "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "torch": torch.__version__, **results}
    print(table(results, args))
    relaid = results[RELAID_PEER]
    print("\nfor information, MusicGen with our generation weight layout (lm.model.lay_out_for_generation): "
          + ", ".join(f"batch {b} {relaid[f'gen_frames_per_s_b{b}']} frames/s (ours / it: "
                      f"{results['ours'][f'gen_frames_per_s_b{b}'] / relaid[f'gen_frames_per_s_b{b}']:.2f})"
                      for b in (1, 16)))
    print(f"\nsettings: {json.dumps(settings)}")
    print(f"load average (1, 5, 15 min) before {load_before}, after {report['load_average_after']}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
