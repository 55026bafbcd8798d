"""The whole pipeline on real recordings bundled with obspy, into one output folder. No network needed.

Steps (each prints what it does; the end lists where every result is):
  1. codec: reconstruct obspy's example event at levels k = 8..1 (Figure 1, miniSEED, quality table)
  2. tokenize obspy's bundled real recordings with the shipped EQcodec into a Hugging Face dataset
  3. fine-tune the shipped base LM on that corpus for a short run (accelerate)
  4. generate continuations of the example event, decode them to miniSEED, plot median and spread
  5. codebook usage of the corpus (histograms and entropy per codebook)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np




def step(number: int, message: str) -> float:
    print(f"\n== {number}/5 {message}", flush=True)
    return time.time()


def run_codec_step(out: Path, source: Path) -> dict:
    """Reconstruct obspy's example at every level; write miniSEED per level, Figure 1 and a table."""
    import obspy

    from codec import load_codec
    from codec.reconstruct import format_table, plot_figure1, reconstruct_file

    codec = load_codec()
    rows, originals, recon = reconstruct_file(codec, source, list(range(1, 9)))
    for k, stream in recon.items():
        path = out / "reconstruction" / f"k{k}" / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        stream.write(str(path), format="MSEED", encoding="FLOAT64")
    (out / "reconstruction" / "report.json").write_text(json.dumps(rows, indent=1))
    figure = out / "figures" / "figure1_reconstruction.png"
    plot_figure1(originals, recon, obspy.read(str(source))[0].stats.starttime, figure, "EQcodec levels 8..1")
    print(format_table([r for r in rows if r["trace"].endswith("EHZ")]))
    return {"reconstructions (miniSEED per level)": out / "reconstruction", "Figure 1": figure}


def run_tokenize_step(out: Path, source: Path) -> dict:
    from codec.data import obspy_recordings
    from tokenized_data import tokenize

    corpus = out / "corpus"
    summary = tokenize([str(p) for p in obspy_recordings()] + [str(source)], corpus, overwrite=True)
    print(summary.format())
    return {"token dataset (Hugging Face)": corpus}


def run_finetune_step(out: Path, steps: int) -> dict:
    from lm import train

    run = out / "lm-finetuned"
    train.train_lm(train.TrainLMConfig(
        data=str(out / "corpus"), out=str(run), init=str(Path(train.__file__).parent / "pretrained"),
        steps=steps, batch_size=8, warmup=5, eval_every=max(steps // 2, 1), lr=3e-4))
    return {"fine-tuned LM checkpoint": run / "final", "fine-tuning metrics": run / "metrics.jsonl"}


def run_generate_step(out: Path, source: Path, samples: int) -> dict:
    import obspy

    from codec import load_codec
    from lm.generate import generate_continuations, output_paths, plot_continuations
    from lm.model import load_lm

    stream = obspy.read(str(source)).select(component="Z")
    # Context: the first 20 s of the event (P and S arrivals); the LM continues the coda.
    stream.trim(stream[0].stats.starttime, stream[0].stats.starttime + 20)
    lm = load_lm(out / "lm-finetuned" / "final")
    codec = load_codec()
    continuations = generate_continuations(stream, lm, codec, context_seconds=20, seconds=10,
                                           samples=samples, seed=0)  # the LM's sampling settings
    target = out / "continuations" / "RJOB.EHZ.continuation.mseed"
    target.parent.mkdir(parents=True, exist_ok=True)
    for path, continuation in zip(output_paths(target, samples), continuations):
        continuation.write(str(path), format="MSEED")
    figure = out / "figures" / "continuation.png"
    plot_continuations(stream, continuations, 20, figure)
    return {"continuations (miniSEED, one file per sample)": target.parent, "continuation figure": figure}


def run_codebook_usage_step(out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenized_data import load_tokenized

    corpus = load_tokenized(out / "corpus")
    K, C = corpus.num_codebooks, corpus.codebook_size
    codes = np.concatenate([np.asarray(c, dtype=np.int64) for c in corpus.dataset["codes"]], axis=1)  # [K, frames]
    fig, axes = plt.subplots(2, 4, figsize=(12, 5), sharex=True)
    entropies = []
    for k, ax in enumerate(axes.flat[:K]):
        counts = np.bincount(codes[k], minlength=C)
        p = counts[counts > 0] / counts.sum()
        entropies.append(float(-(p * np.log2(p)).sum()))
        ax.bar(np.arange(C), np.sort(counts)[::-1], width=1.0, color="tab:blue")
        ax.set_title(f"codebook {k + 1}: {entropies[-1]:.2f} of {np.log2(C):.0f} bits", fontsize=9)
        ax.set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("code rank")
    axes[0, 0].set_ylabel("count")
    fig.suptitle(f"Codebook usage over {codes.shape[1]} frames of the demo corpus")
    fig.tight_layout()
    figure = out / "figures" / "codebook_usage.png"
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    print("entropy per codebook (bits): " + ", ".join(f"{e:.2f}" for e in entropies))
    return {"codebook usage figure": figure}


def run_demo(out: str = "eqcodec-demo", *, finetune_steps: int = 40, samples: int = 16) -> dict:
    """`eqcodec demo`: the five steps of the module docstring into `out`; returns {result: path}."""
    import obspy

    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    source = out / "input" / "BW.RJOB.example.mseed"
    source.parent.mkdir(parents=True, exist_ok=True)
    obspy.read().write(str(source), format="MSEED")  # obspy's own example: a local event at BW.RJOB

    results: dict = {}
    started = time.time()
    t0 = step(1, "codec: reconstruct obspy's example event at k = 8..1")
    results.update(run_codec_step(out, source))
    print(f"   {time.time() - t0:.1f} s")
    t0 = step(2, "tokenize obspy's bundled real recordings into a Hugging Face dataset")
    results.update(run_tokenize_step(out, source))
    print(f"   {time.time() - t0:.1f} s")
    t0 = step(3, f"fine-tune the shipped base LM on the corpus ({finetune_steps} steps, accelerate)")
    results.update(run_finetune_step(out, finetune_steps))
    print(f"   {time.time() - t0:.1f} s")
    t0 = step(4, f"generate {samples} continuations of 10 s after 20 s of the example event")
    results.update(run_generate_step(out, source, samples))
    print(f"   {time.time() - t0:.1f} s")
    t0 = step(5, "codebook usage of the corpus")
    results.update(run_codebook_usage_step(out))
    print(f"   {time.time() - t0:.1f} s")

    print(f"\nDone in {time.time() - started:.0f} s. Results:")
    for name, path in results.items():
        print(f"  {name:<48} {path}")
    return results
