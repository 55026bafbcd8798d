"""How much do neighbouring frames say about a frame? The optimal linear estimator, in closed form.

    python benchmarks/codec_context_ceiling.py [--data DIR] [--baseline-cache FILE]

For k = 1, 4, 8 codebooks of the gain-shape baseline (codec.baselines, the
codebooks the shipped EQcodec starts from), least squares predicts each
unit-RMS frame u_t from the decoded frames [q_{t-1}, q_t, q_{t+1}], the
neighbours scaled by their gain relative to frame t (so that the estimator
sees them in frame t's units, as a decoder with the gains would). It prints
the mean per-frame error in dB (minus a segmental SNR) of q_t alone and of
that estimate:
  - nc-events: fitted on the training split, scored on the held-out split;
  - obspy's broadband recordings (B?? / H?? channels): leave one trace out.
A gain near 0 dB says the neighbours carry nothing a linear decoder could use,
a hint of how much any context-using decoder (EQcodec's networks) can add over
the per-frame codes. Figures: codec/pretrained/README.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def frames(baseline, traces, k: int):
    """Per trace: unit frames [T, F] and the estimator's inputs [T, 3 F + 1] from the k-codebook decoding."""
    import torch

    from codec.baselines import gain_shape_frames
    from codec.gain import dequantize_gain

    pairs = []
    for x in traces:
        shapes = gain_shape_frames(torch.as_tensor(x)[None])[0][0]
        encoded = baseline.encode(x)
        decoded = sum(baseline.codebooks[s][encoded.codes[0, s]] for s in range(k)).numpy()
        gains = dequantize_gain(encoded.gain, encoded.scale)[0].numpy()
        pairs.append((shapes.numpy(), with_neighbours(decoded, gains)))
    return pairs


def with_neighbours(decoded: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """[T, F] decoded unit frames, [T] gains -> [T, 3 F + 1]: previous, own and next frame in the
    own frame's units (zeros at the ends) and a constant."""
    previous, following = np.zeros_like(decoded), np.zeros_like(decoded)
    previous[1:] = decoded[:-1] * (gains[:-1] / gains[1:])[:, None]
    following[:-1] = decoded[1:] * (gains[1:] / gains[:-1])[:, None]
    return np.concatenate([previous, decoded, following, np.ones((len(decoded), 1))], axis=1)


def frame_error_db(target: np.ndarray, estimate: np.ndarray) -> float:
    return float(np.mean(10 * np.log10(((target - estimate) ** 2).mean(1) + 1e-3)))


def own_and_context_error(train, held) -> tuple[float, float]:
    """Fit on `train` pairs, return the held-out error (dB) of the own codes and of the estimate."""
    F = train[0][0].shape[1]
    weights, *_ = np.linalg.lstsq(np.concatenate([x for _, x in train]), np.concatenate([u for u, _ in train]),
                                  rcond=None)
    target = np.concatenate([u for u, _ in held])
    inputs = np.concatenate([x for _, x in held])
    return frame_error_db(target, inputs[:, F : 2 * F]), frame_error_db(target, inputs @ weights)


def main() -> int:
    import torch

    from codec.baselines import GainShapeRVQ
    from benchmarks.codec_rate_distortion import broadband as is_broadband
    from codec.data import load_traces, nc_events_split, obspy_recordings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/nc-events", help="nc-events folder (default: %(default)s)")
    parser.add_argument("--baseline-cache", default=str(REPO / "benchmarks" / "baselines" / "gain_shape_rvq.safetensors"),
                        help="fitted gain-shape RVQ (benchmarks/codec_benchmark.py writes it) (default: %(default)s)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(1)
    baseline = GainShapeRVQ.load(args.baseline_cache)
    train_files, held_out_files = nc_events_split(args.data)
    nc_train = [x for _, x in load_traces(train_files)]
    nc_held = [x for _, x in load_traces(held_out_files)]
    broadband = [x for label, x in load_traces(obspy_recordings()) if is_broadband(label)]
    print("| corpus | k | per-frame error, own codes (dB) | with linear 3-frame context (dB) | gain (dB) |")
    print("|---|---|---|---|---|")
    for k in (1, 4, 8):
        own, context = own_and_context_error(frames(baseline, nc_train, k), frames(baseline, nc_held, k))
        print(f"| nc-events held-out | {k} | {own:.2f} | {context:.2f} | {own - context:+.2f} |", flush=True)
    for k in (1, 4, 8):
        pairs = frames(baseline, broadband, k)
        errors = np.array([own_and_context_error(pairs[:i] + pairs[i + 1 :], [pairs[i]]) for i in range(len(pairs))])
        own, context = errors.mean(0)
        print(f"| obspy broadband, leave one out | {k} | {own:.2f} | {context:.2f} | {own - context:+.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
