"""How far are the codecs from what the bit budget allows? Gaussian rate-distortion reference.

    python benchmarks/codec_rate_distortion.py [--data DIR] [--codec DIR] [--baseline-cache FILE] [--out FILE]

Both EQcodec and the gain-shape baseline spend 8 bits/s on the per-frame gain
and 10 k bits/s (k = 1..8) on the unit-RMS frames, i.e. 0.25 k bits per
sample of the gain-normalized signal u (each 1-s frame divided by its
quantized gain). For each trace this script estimates the power spectrum S(f)
of u (Welch, 6.4-s segments) and computes, by reverse water-filling, the
distortion D(R) an optimal coder reaches on a stationary *Gaussian* process
with that spectrum at R = 0.25 k bits/sample:

    R(theta) = mean_f max(0, 1/2 log2(S(f) / theta)),  D(theta) = mean_f min(theta, S(f))

and reports 10 log10(mean S / D) beside the per-trace SNR both coders reach.

How to read it: among processes with a given spectrum the Gaussian one is the
hardest to compress, so this is what an ideal coder achieves when the only
structure it can use is the spectrum (second-order statistics). A coder above
it exploits non-Gaussian structure (here, mostly what k-means captures of
transients and of the envelope within a frame). It is a reference, not an
upper bound: beating the baseline by a margin M needs about M dB of
non-Gaussian structure that the baseline's k-means does not already use.

Corpora: the held-out split of nc-events (never trained on), and obspy's
bundled broadband recordings (B?? / H?? channels; part of both coders'
training data, so their coder figures are optimistic; they show a different
kind of signal: low-frequency-dominated, where every coder scores far higher).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks.codec_benchmark import DEFAULT_CACHE, DEFAULT_DATA  # noqa: E402

WELCH_SEGMENT = 256  # samples (6.4 s at 40 Hz)
BROADBAND_BANDS = ("B", "H")  # SEED band codes of broadband channels (BH?, HH?)


def gain_normalized(x: np.ndarray) -> np.ndarray:
    """40 Hz samples -> the signal the shape coder sees: each 1-s frame divided by its quantized gain."""
    import torch

    from codec.baselines import gain_shape_frames

    shapes = gain_shape_frames(torch.as_tensor(x)[None])[0][0]  # [T, F]
    return shapes.reshape(-1).double().numpy()


def gaussian_rd_snr_db(spectrum: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Power spectrum S(f) on a uniform grid, rates in bits/sample -> SNR (dB) of the Gaussian
    rate-distortion function at each rate (reverse water-filling; bisection on log theta)."""
    spectrum = np.maximum(np.asarray(spectrum, dtype=np.float64), 1e-30)
    total = spectrum.mean()
    result = []
    for rate in rates:
        lo, hi = np.log(spectrum.min() * 1e-6), np.log(spectrum.max())
        for _ in range(100):
            theta = np.exp(0.5 * (lo + hi))
            if np.mean(np.maximum(0.0, 0.5 * np.log2(spectrum / theta))) > rate:
                lo = np.log(theta)
            else:
                hi = np.log(theta)
        distortion = np.mean(np.minimum(np.exp(0.5 * (lo + hi)), spectrum))
        result.append(10 * np.log10(total / distortion))
    return np.array(result)


def trace_bounds(x: np.ndarray, rates: np.ndarray) -> np.ndarray:
    from scipy.signal import welch

    u = gain_normalized(x)
    _, spectrum = welch(u, nperseg=min(WELCH_SEGMENT, len(u)), detrend=False)
    return gaussian_rd_snr_db(spectrum, rates)


def coder_snr(coder, x: np.ndarray, levels) -> np.ndarray:
    from codec.metrics import snr_db

    encoded = coder.encode(x)
    return np.array([snr_db(x, coder.decode(encoded, k)[0].cpu().numpy()) for k in levels])


def corpus_table(name: str, traces, codec, baseline) -> dict:
    levels = list(range(1, codec.config.num_codebooks + 1))
    rates = np.array([0.25 * k for k in levels])  # 10 k bits per 40-sample frame
    bounds = np.array([trace_bounds(x, rates) for x in traces])
    ours = np.array([coder_snr(codec, x, levels) for x in traces])
    base = np.array([coder_snr(baseline, x, levels) for x in traces])
    rows = []
    for i, k in enumerate(levels):
        rows.append({"k": k, "bits_per_sample": rates[i],
                     "gaussian_rd_snr_db": float(np.median(bounds[:, i])),
                     "baseline_snr_db": float(np.median(base[:, i])),
                     "eqcodec_snr_db": float(np.median(ours[:, i])),
                     "baseline_minus_gaussian_db": float(np.median(base[:, i] - bounds[:, i])),
                     "target_snr_db": float(np.median(base[:, i])) + 3.0})
    print(f"\n### {name}: {len(traces)} traces, median per trace (dB)\n")
    print("| k | bits/sample | Gaussian R(D) | baseline | EQcodec | baseline - Gaussian | target (baseline + 3) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['k']} | {r['bits_per_sample']:.2f} | {r['gaussian_rd_snr_db']:.2f} | {r['baseline_snr_db']:.2f} | "
              f"{r['eqcodec_snr_db']:.2f} | {r['baseline_minus_gaussian_db']:+.2f} | {r['target_snr_db']:.2f} |",
              flush=True)
    return {"corpus": name, "traces": len(traces), "rows": rows}


def broadband(label: str) -> bool:
    channel = label.rsplit(".", 1)[-1]
    return len(channel) == 3 and channel[0] in BROADBAND_BANDS


def main() -> int:
    import torch

    from codec import EQCodec
    from codec.baselines import GainShapeRVQ
    from codec.data import load_traces, nc_events_split, obspy_recordings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="nc-events folder (default: %(default)s)")
    parser.add_argument("--codec", default=None, help="EQcodec checkpoint folder (default: the shipped codec)")
    parser.add_argument("--baseline-cache", default=str(DEFAULT_CACHE),
                        help="fitted gain-shape RVQ (benchmarks/codec_benchmark.py writes it) (default: %(default)s)")
    parser.add_argument("--out", default=None, help="also write the tables as JSON here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(1)
    codec = EQCodec.from_pretrained(args.codec)
    baseline = GainShapeRVQ.load(args.baseline_cache)

    corpora = []
    if Path(args.data).is_dir():
        _, held_out = nc_events_split(args.data)
        corpora.append(("nc-events held-out split", [x for _, x in load_traces(held_out)]))
    corpora.append(("obspy's broadband recordings (in the training data)",
                    [x for label, x in load_traces(obspy_recordings()) if broadband(label)]))
    results = [corpus_table(name, traces, codec, baseline) for name, traces in corpora]
    if args.out:
        from codec.files import write_atomically

        text = json.dumps({"codec": codec.identity(), "corpora": results}, indent=2) + "\n"
        write_atomically(lambda tmp: tmp.write_text(text), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
