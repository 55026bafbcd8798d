"""How much do neighbouring frames say about a frame? The optimal linear estimator, in closed form.

    python benchmarks/codec_context_ceiling.py [--data DIR] [--baseline-cache FILE]

For k = 1, 4, 8 codebooks of the gain-shape baseline (codec.baselines, the
codebooks the shipped EQcodec starts from): least squares on the training split
of nc-events predicts each unit-RMS frame u_t from the decoded frames
[q_{t-1}, q_t, q_{t+1}]; on the held-out split it prints the mean per-frame
error in dB (minus a segmental SNR) of q_t alone and of that estimate. A gain
near 0 dB says the neighbours carry nothing a linear decoder could use, a hint
of how much any context-using decoder (EQcodec's networks) can add over the
per-frame codes. Measured 2026-11-26: +0.03 / -0.03 / -0.02 dB at k = 1 / 4 / 8.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def frames(baseline, files, k: int):
    """Unit frames [T, F] and their k-codebook reconstructions [T, F], one pair per trace."""
    import torch

    from codec.baselines import gain_shape_frames
    from codec.data import load_traces

    pairs = []
    for _, x in load_traces(files):
        shapes = gain_shape_frames(torch.as_tensor(x)[None])[0][0]
        codes = baseline.encode(x).codes[0]
        decoded = sum(baseline.codebooks[s][codes[s]] for s in range(k))
        pairs.append((shapes.numpy(), decoded.numpy()))
    return pairs


def with_neighbours(decoded: np.ndarray) -> np.ndarray:
    """[T, F] -> [T, 3 F + 1]: previous, own and next frame (zeros at the ends) and a constant."""
    padded = np.pad(decoded, ((1, 1), (0, 0)))
    return np.concatenate([padded[:-2], padded[1:-1], padded[2:], np.ones((len(decoded), 1))], axis=1)


def frame_error_db(target: np.ndarray, estimate: np.ndarray) -> float:
    return float(np.mean(10 * np.log10(((target - estimate) ** 2).mean(1) + 1e-3)))


def main() -> int:
    import torch

    from codec.baselines import GainShapeRVQ
    from codec.data import nc_events_split

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/nc-events", help="nc-events folder (default: %(default)s)")
    parser.add_argument("--baseline-cache", default=str(REPO / "benchmarks" / "baselines" / "gain_shape_rvq.safetensors"),
                        help="fitted gain-shape RVQ (benchmarks/codec_benchmark.py writes it) (default: %(default)s)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(1)
    baseline = GainShapeRVQ.load(args.baseline_cache)
    train_files, held_out_files = nc_events_split(args.data)
    print("| k | per-frame error, own codes (dB) | with linear 3-frame context (dB) | gain (dB) |")
    print("|---|---|---|---|")
    for k in (1, 4, 8):
        train, held = frames(baseline, train_files, k), frames(baseline, held_out_files, k)
        weights, *_ = np.linalg.lstsq(np.concatenate([with_neighbours(q) for _, q in train]),
                                      np.concatenate([u for u, _ in train]), rcond=None)
        target = np.concatenate([u for u, _ in held])
        own = frame_error_db(target, np.concatenate([q for _, q in held]))
        context = frame_error_db(target, np.concatenate([with_neighbours(q) for _, q in held]) @ weights)
        print(f"| {k} | {own:.2f} | {context:.2f} | {own - context:+.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
