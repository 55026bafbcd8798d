"""Does pretraining on synthetic seismograms help the token LM on held-out real recordings? (LM v2 issue, item 1)

    OMP_NUM_THREADS=1 python benchmarks/synthetic_pretraining.py [--synthetic 4000] [--steps 600] \
        [--pretrain-steps 300] [--config small-v2] [--out runs/synthetic-pretraining]

Chronos's KernelSynth found synthetic series help a token LM forecast unseen data. Here, three runs
of one LM config, the same seeds and batches of real data, validated on the same held-out corpus:

    real              --steps on the real training corpus
    synthetic+real    --pretrain-steps on synthetic seismograms, then --steps on the real corpus
    equal compute     --pretrain-steps on synthetic, then --steps - --pretrain-steps on real

The synthetic corpus: --synthetic traces of 128 s from tasks.synthetic_seismograms (seed 0),
tokenized with the shipped codec. The real corpora are benchmarks/make_lm_corpora.py's
(runs/corpora/train and runs/corpora/heldout). Prints a table of held-out cross-entropy (nats per
token: mean, gain stream, codebooks) after each run and after the synthetic stage alone, and writes
benchmarks/results/synthetic_pretraining.json. Every stage resumes (rerun the same command).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks/results/synthetic_pretraining.json"


def last_eval(run: Path) -> dict:
    """The last validation record of a run folder's metrics.jsonl."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    record = [r for r in records if "eval_ce" in r][-1]
    streams = record["eval_ce_streams"]
    return {"step": record["step"], "ce": round(record["eval_ce"], 4), "gain": round(streams[0], 4),
            "codebooks": round(sum(streams[1:]) / len(streams[1:]), 4)}


def main(argv=None) -> int:
    from lm.train import TrainLMConfig, train_lm
    from tasks.synthetic_seismograms import write_seismogram_set
    from tokenized_data import Preprocessing, tokenize

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=4000, help="synthetic traces of 128 s")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--config", default="small-v2", help="LM config (a name in lm/configs or a JSON file)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--real", default=str(ROOT / "runs/corpora/train"))
    parser.add_argument("--heldout", default=str(ROOT / "runs/corpora/heldout"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs/synthetic-pretraining")
    args = parser.parse_args(argv)

    waveforms, corpus = args.out / "synthetic-waveforms", args.out / "synthetic-corpus"
    if not waveforms.exists():
        write_seismogram_set(args.synthetic, waveforms, seed=0, duration_s=128)
    if not corpus.exists():
        summary = tokenize([str(waveforms / "waveforms")], corpus, prep=Preprocessing(window_seconds=128),
                           progress=False)
        print(summary.format(), flush=True)

    def run(name, data, steps, init=None):
        out = args.out / name
        common = dict(eval_data=args.heldout, steps=steps, batch_size=args.batch_size, lr=1e-3, warmup=50,
                      eval_every=100, eval_batches=10, seed=0)
        code = train_lm(TrainLMConfig(data=str(data), out=str(out), config=None if init else args.config,
                                      init=str(init) if init else None, **common))
        if code:
            raise SystemExit(f"{name}: training failed ({code})")
        print(f"== {name}: {last_eval(out)}", flush=True)
        return out

    real = run("real", args.real, args.steps)
    synthetic = run("synthetic", corpus, args.pretrain_steps)
    both = run("synthetic+real", args.real, args.steps, init=synthetic / "final")
    equal = run("equal-compute", args.real, args.steps - args.pretrain_steps, init=synthetic / "final")

    rows = {"real only": last_eval(real), "synthetic only (zero-shot on real)": last_eval(synthetic),
            "synthetic, then real": last_eval(both), "synthetic, then real (equal compute)": last_eval(equal)}
    steps = {"real only": f"{args.steps} real", "synthetic only (zero-shot on real)": f"{args.pretrain_steps} synthetic",
             "synthetic, then real": f"{args.pretrain_steps} synthetic + {args.steps} real",
             "synthetic, then real (equal compute)": f"{args.pretrain_steps} synthetic + "
                                                      f"{args.steps - args.pretrain_steps} real"}
    lines = ["| run | steps | held-out CE | gain | codebooks (mean) |", "|---|---|---:|---:|---:|"]
    lines += [f"| {name} | {steps[name]} | {r['ce']:.3f} | {r['gain']:.3f} | {r['codebooks']:.3f} |"
              for name, r in rows.items()]
    print("\n".join(lines))
    RESULTS.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "held_out_ce": rows},
                                  indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
