"""Cross-entropy (nats per token, per stream) of an LM on a token corpus it was not trained on.

    python benchmarks/lm_heldout_ce.py --lm lm/pretrained --data corpus-heldout

Every window is read once, in consecutive chunks of the LM's context length, with
the gain stream re-referenced as train-lm's validation does (lm.train.evaluation_gain_reference).
"""

import argparse
import json
import math
import warnings

import torch

warnings.filterwarnings("ignore")


def main() -> None:
    from lm.model import load_lm
    from lm.train import evaluate, evaluation_gain_reference
    from tokenized_data import LMExamples, load_tokenized

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", default=None, help="LM checkpoint (default: the shipped lm/pretrained)")
    parser.add_argument("--data", required=True, help="token corpus folder (eqcodec tokenize)")
    args = parser.parse_args()
    lm = load_lm(args.lm)
    corpus = load_tokenized(args.data)
    # Gains re-referenced as validation in train-lm does (the loudest of the first 20 frames at the reference level).
    examples = LMExamples(corpus, lm.config.max_frames, random_crop=False,
                          gain_reference_frames=evaluation_gain_reference(lm.config.max_frames))
    loader = torch.utils.data.DataLoader(examples, batch_size=8)
    result = evaluate(lm, loader, max_batches=10**9)
    uniform = [math.log(v) for v in corpus.stream_vocab_sizes]
    print("| stream | " + " | ".join(["gain"] + [f"cb {k}" for k in range(1, len(uniform))]) + " | mean |")
    print("|---" * (len(uniform) + 2) + "|")
    print("| LM | " + " | ".join(f"{v:.2f}" for v in result["eval_ce_streams"]) + f" | {result['eval_ce']:.2f} |")
    print("| uniform | " + " | ".join(f"{v:.2f}" for v in uniform) + f" | {sum(uniform) / len(uniform):.2f} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
