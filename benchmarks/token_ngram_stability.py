"""Would an inverted index over token n-grams (or tokenizers' BPE words over the coarse codebooks) find a
waveform again? It can only if the same waveform gives the same tokens. This measures how often it does on a
real hour: the share of 1-s frames whose first-codebook code is unchanged (and the first two codebooks'
pair, and first-codebook 3-grams) when the hour starts s samples (25 ms each) later, and when white noise
is added at a level below the trace's standard deviation. A whole frame later (40 samples) is the control.

    python benchmarks/token_ngram_stability.py [--file MSEED] [--hour 5]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DAY = "/work/shared/data/public-recordings/ispaq/US.OXF..BHZ.2002.110.M"


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Codes [K, T] of the same frames -> shares of equal codebook-1 codes, codebook-1-2 pairs, codebook-1 3-grams."""
    one = a[0] == b[0]
    return float(np.mean(one)), float(np.mean(one & (a[1] == b[1]))), float(np.mean(one[:-2] & one[1:-1] & one[2:]))


def main() -> int:
    import obspy
    import torch

    from codec import load_codec
    from codec.preprocess import FRAME_LENGTH, trace_to_codec_input

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default=DAY, help="a continuous recording (default: %(default)s)")
    parser.add_argument("--hour", type=int, default=5, help="which hour of its longest trace (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec = load_codec(None)
    stream = obspy.read(args.file)
    stream.merge(method=-1)
    trace = max(stream.split(), key=lambda t: t.stats.npts)
    hour = 3600 * FRAME_LENGTH
    x = trace_to_codec_input(trace)[args.hour * hour: (args.hour + 1) * hour + FRAME_LENGTH].astype(np.float64)
    if len(x) < hour + FRAME_LENGTH:
        raise SystemExit(f"{args.file}: its longest trace holds no hour {args.hour}")
    reference = codec.encode(x[:hour]).codes[0].numpy()  # [K, T]
    print(f"{trace.id}, hour {args.hour}: share of 1-s frames with the same tokens\n")
    print("| change | codebook 1 code | codebooks 1-2 | codebook-1 3-gram |")
    print("|---|---|---|---|")
    for shift in (1, 2, 5, 10, 20):
        codes = codec.encode(x[shift:shift + hour]).codes[0].numpy()
        print(f"| {shift} sample(s) later ({shift * 25} ms) | " + " | ".join(f"{v:.3f}" for v in
                                                                       agreement(reference, codes)) + " |")
    codes = codec.encode(x[FRAME_LENGTH:FRAME_LENGTH + hour]).codes[0].numpy()
    print("| a whole frame later (control) | " + " | ".join(f"{v:.3f}" for v in
                                                          agreement(reference[:, 1:], codes[:, :-1])) + " |")
    rng = np.random.default_rng(0)
    for db in (-40, -30, -20, -10):
        noisy = x[:hour] + rng.standard_normal(hour) * np.std(x[:hour]) * 10 ** (db / 20)
        codes = codec.encode(noisy).codes[0].numpy()
        print(f"| white noise {db} dB below the trace's std | " + " | ".join(f"{v:.3f}" for v in
                                                                           agreement(reference, codes)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
