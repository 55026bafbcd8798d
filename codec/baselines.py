"""Classical baselines EQcodec must beat: gain-shape residual VQ (no network) and Steim2.

Gain-shape RVQ codes a trace exactly like EQcodec, minus the networks:

    offset  = mean(x)                                   side info, 1 float / trace
    frames  = (x - offset) cut into 1-s frames          [B, T, 40]
    g_t     = 8-bit log-RMS gain level per frame        side info, 8 bits / s   (codec.gain)
    shape_t = frame_t / G_t                             unit RMS (within +-9 %)
    codes   = residual k-means VQ of shape_t, 8 x 1024  [B, K, T]  10 bits / codebook / s
    x_hat   = (sum of first k code vectors) * G_t + offset

so it spends the same 10 k + 8 bits/s as EQcodec with k codebooks. The
codebooks are plain k-means centroids of 40-sample unit-RMS frames, one
codebook per residual stage. Whatever EQcodec gains over it comes from its
learned transform (and the context the networks see across frames).

Steim2 is the lossless compression of miniSEED archives; its size says what
the same samples cost when nothing may be lost (integers only).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import gain as gainlib
from . import rvq
from .files import write_atomically
from .model import EncodedWaveform, band_limited, nyquist_of_source
from .preprocess import FRAME_LENGTH, SAMPLING_RATE

FORMAT_NAME = "gain-shape-rvq"


# ---------------------------------------------------------------------- gain and shape
def gain_shape_frames(x: torch.Tensor, frame_length: int = FRAME_LENGTH):
    """[B, N] samples -> unit-RMS shapes [B, T, F] (float32), gain [B, T], scale [B], offset [B].

    The same demeaning, framing (last frame zero-padded) and 8-bit gain as
    EQCodec.normalize, with frames as rows instead of channels.
    """
    x = x.double()
    offset = x.mean(-1)
    x = x - offset[:, None]
    pad = (-x.shape[-1]) % frame_length
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    frames = x.reshape(x.shape[0], -1, frame_length)
    rms = gainlib.frame_rms(frames)
    scale = gainlib.choose_scale(rms)
    gain = gainlib.quantize_gain(rms, scale)
    shapes = frames / gainlib.dequantize_gain(gain, scale)[..., None]
    return shapes.float(), gain, scale, offset


def training_shapes(traces: Sequence[np.ndarray], max_vectors: int = 1_500_000, seed: int = 0,
                    frame_length: int = FRAME_LENGTH) -> torch.Tensor:
    """Unit-RMS shapes of frames starting at every sample of every trace, both polarities: [N, F] float32.

    Like EQcodec's random crops, frames start at any sample offset and flip
    polarity, which multiplies the frames a small corpus offers. Each window
    is divided by its 8-bit quantized gain, computed against the trace's own
    `scale` as in encoding. At most `max_vectors` are kept (a seeded random subset).
    """
    shapes = []
    for trace in traces:
        x = torch.as_tensor(np.asarray(trace, dtype=np.float64))
        if x.numel() < frame_length:
            continue
        x = x - x.mean()
        _, _, scale, _ = gain_shape_frames(x[None], frame_length)
        windows = x.unfold(0, frame_length, 1)  # [N - F + 1, F], a view
        rms = gainlib.frame_rms(windows)
        keep = rms > 0  # digital silence has no shape
        levels = gainlib.quantize_gain(rms[keep][None], scale)
        shapes.append((windows[keep] / gainlib.dequantize_gain(levels, scale)[0, :, None]).float())
    if not shapes:
        raise ValueError(f"no trace holds a frame of {frame_length} samples")
    unflipped = torch.cat(shapes)
    total = 2 * len(unflipped)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(total, generator=generator)[: min(max_vectors, total)]
    flip = picks >= len(unflipped)
    vectors = unflipped[picks % len(unflipped)]
    vectors[flip] = -vectors[flip]
    return vectors


# ---------------------------------------------------------------------- k-means
def nearest(vectors: torch.Tensor, centroids: torch.Tensor, chunk: int = 16384):
    """[N, D] vectors, [C, D] centroids -> index [N] (long) and squared distance [N] of the nearest.

    Distances are computed for `chunk` vectors at a time, so memory stays at
    chunk x C floats whatever N is.
    """
    norms = centroids.pow(2).sum(-1)
    index = torch.empty(len(vectors), dtype=torch.long)
    distance = torch.empty(len(vectors), dtype=vectors.dtype)
    # One reused buffer: allocating a fresh chunk x C block per chunk made the
    # allocator hold on to hundreds of MB on long traces.
    partial = torch.empty(min(chunk, len(vectors)), len(centroids), dtype=vectors.dtype)
    for start in range(0, len(vectors), chunk):
        part = vectors[start : start + chunk]
        scores = partial[: len(part)]
        # ||v - c||^2 = ||v||^2 + ||c||^2 - 2 v.c ; the argmin needs only the last two terms.
        torch.addmm(norms, part, centroids.T, alpha=-2, out=scores)
        best, best_index = scores.min(-1)
        index[start : start + len(part)] = best_index
        distance[start : start + len(part)] = (best + part.pow(2).sum(-1)).clamp_min(0)
    return index, distance


def kmeans_plus_plus(vectors: torch.Tensor, num_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: [N, D] -> [C, D], each new centre drawn in proportion to squared distance."""
    first = torch.randint(len(vectors), (1,), generator=generator)
    centroids = [vectors[first[0]]]
    distance = (vectors - centroids[0]).pow(2).sum(-1)
    for _ in range(1, num_clusters):
        if distance.sum() <= 0:  # fewer distinct vectors than clusters
            pick = torch.randint(len(vectors), (1,), generator=generator)[0]
        else:
            pick = torch.multinomial(distance, 1, generator=generator)[0]
        centroids.append(vectors[pick])
        distance = torch.minimum(distance, (vectors - vectors[pick]).pow(2).sum(-1))
    return torch.stack(centroids)


def kmeans(vectors: torch.Tensor, num_clusters: int, iters: int = 20, seed: int = 0,
           init_sample: int = 40_000, log: Callable[[str], None] | None = None,
           init: torch.Tensor | None = None):
    """Lloyd's k-means on [N, D] float32 vectors -> centroids [C, D] and the final assignment [N].

    Seeded by k-means++ on a random subset of `init_sample` vectors (seeding
    on all would take C passes over the data), or started from the centroids
    `init` [C, D] (refining a fitted codebook on new data). A cluster left empty is
    re-seeded like a k-means++ step, at a vector drawn in proportion to its
    squared distance from the nearest centroid, so every centroid stays in
    use. Deterministic for a given seed and thread count.
    """
    generator = torch.Generator().manual_seed(seed)
    if init is not None:
        if init.shape != (num_clusters, vectors.shape[1]):
            raise ValueError(f"init centroids {tuple(init.shape)}, expected ({num_clusters}, {vectors.shape[1]})")
        centroids = init.float().clone()
    else:
        subset = torch.randperm(len(vectors), generator=generator)[: max(init_sample, num_clusters)]
        centroids = kmeans_plus_plus(vectors[subset], num_clusters, generator)
    for it in range(iters):
        index, distance = nearest(vectors, centroids)
        error = distance.mean().item()
        counts = torch.bincount(index, minlength=num_clusters)
        sums = torch.zeros(num_clusters, vectors.shape[1], dtype=torch.float64)
        sums.index_add_(0, index, vectors.double())
        centroids = (sums / counts.clamp_min(1)[:, None]).float()
        empty = torch.nonzero(counts == 0).flatten()
        for cluster in empty:  # k-means++ steps: each new seed far from all centroids so far
            pick = torch.multinomial(distance.double() + 1e-30, 1, generator=generator)[0]
            centroids[cluster] = vectors[pick]
            distance = torch.minimum(distance, (vectors - vectors[pick]).pow(2).sum(-1))
        if log is not None:
            log(f"  iter {it + 1}/{iters}: mean squared distance {error:.4f}, "
                f"re-seeded {len(empty)} empty clusters")
    index, _ = nearest(vectors, centroids)
    return centroids, index


# ---------------------------------------------------------------------- the baseline codec
class GainShapeRVQ(nn.Module):
    """Gain-shape residual VQ: EQcodec's framing, gain and bit budget with k-means codebooks.

    codebooks: [K, C, F] float32 (K residual stages of C centroids of F-sample shapes).
    Same interface as EQCodec: encode -> EncodedWaveform, decode(encoded, k) -> samples.
    """

    def __init__(self, codebooks: torch.Tensor, fit_info: dict | None = None):
        super().__init__()
        if codebooks.ndim != 3:
            raise ValueError(f"codebooks must be [K, C, F], got shape {tuple(codebooks.shape)}")
        self.register_buffer("codebooks", codebooks.float().contiguous())
        self.fit_info = dict(fit_info or {})

    @property
    def num_codebooks(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @property
    def frame_length(self) -> int:
        return self.codebooks.shape[2]

    @property
    def bits_per_second(self) -> list[float]:
        """Bit rate at k = 1..K codebooks, gain side information included (as EQCodecConfig)."""
        frames_per_second = SAMPLING_RATE / self.frame_length
        bits = math.log2(self.codebook_size)
        return [frames_per_second * (k * bits + gainlib.GAIN_BITS_PER_FRAME)
                for k in range(1, self.num_codebooks + 1)]

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(cls, traces: Sequence[np.ndarray], num_codebooks: int = 8, codebook_size: int = 1024,
            iters: int = 20, max_vectors: int = 1_500_000, seed: int = 0,
            frame_length: int = FRAME_LENGTH, metadata: dict | None = None,
            log: Callable[[str], None] | None = None) -> "GainShapeRVQ":
        """Fit the K codebooks stage by stage on the residuals of the previous stages.

        traces: 40 Hz sample arrays (physical units). `metadata` (JSON-able) is
        stored with the codebooks, e.g. to record which data they were fitted on.
        """
        vectors = training_shapes(traces, max_vectors, seed, frame_length)
        if len(vectors) < codebook_size:
            raise ValueError(f"{len(vectors)} training frames are fewer than {codebook_size} codebook entries")
        energy = vectors.pow(2).mean().item()
        residual = vectors  # modified in place stage by stage
        codebooks, stage_snr = [], []
        for stage in range(num_codebooks):
            if log is not None:
                log(f"stage {stage + 1}/{num_codebooks}: k-means of {len(residual)} residuals")
            centroids, index = kmeans(residual, codebook_size, iters, seed=seed + stage, log=log)
            residual -= centroids[index]
            codebooks.append(centroids)
            stage_snr.append(10 * math.log10(energy / max(residual.pow(2).mean().item(), 1e-30)))
            if log is not None:
                log(f"stage {stage + 1}: training shape SNR {stage_snr[-1]:.2f} dB")
        fit_info = {"training_vectors": len(vectors), "iters": iters, "seed": seed,
                    "training_shape_snr_db": [round(s, 3) for s in stage_snr], **(metadata or {})}
        return cls(torch.stack(codebooks), fit_info).eval()

    # ------------------------------------------------------------------ coding
    @torch.inference_mode()
    def encode(self, x) -> EncodedWaveform:
        """[B, N] or [N] samples at 40 Hz (numpy or torch, physical units) -> EncodedWaveform (codes [B, K, T])."""
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"encode expects [B, N] or [N] samples, got shape {tuple(x.shape)}")
        shapes, gain, scale, offset = gain_shape_frames(x, self.frame_length)
        B, T, F = shapes.shape
        codes = rvq.greedy_codes(shapes.reshape(B * T, F), self.codebooks)  # [K, B*T]
        codes = codes.reshape(-1, B, T).transpose(0, 1)  # [B, K, T]
        return EncodedWaveform(codes, gain, scale, offset, x.shape[-1])

    @torch.inference_mode()
    def decode(self, encoded: EncodedWaveform, num_codebooks: int | None = None) -> torch.Tensor:
        """EncodedWaveform -> [B, N] float64 samples in physical units, from the first k codebooks."""
        k = self.num_codebooks if num_codebooks is None else num_codebooks
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= min(self.num_codebooks, encoded.codes.shape[1]):
            raise ValueError(f"number of codebooks must be an integer in 1..{encoded.codes.shape[1]}, got {k!r}")
        shapes = rvq.sum_codes(encoded.codes[:, :k].transpose(1, 2), self.codebooks)  # [B, T, F]
        frames = shapes.double() * gainlib.dequantize_gain(encoded.gain, encoded.scale)[..., None]
        x = frames.reshape(frames.shape[0], -1)[:, : encoded.length]
        return band_limited(x, nyquist_of_source(encoded)) + encoded.offset[:, None]

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path) -> None:
        """Write the codebooks and fit information to one .safetensors file (atomically)."""
        save_codebooks(path, self.codebooks, FORMAT_NAME, fit_info=self.fit_info)

    @classmethod
    def load(cls, path: str | Path) -> "GainShapeRVQ":
        """Read a file written by save()."""
        codebooks, metadata = load_codebooks(path, FORMAT_NAME, "gain-shape RVQ baseline")
        return cls(codebooks, metadata.get("fit_info", {})).eval()


def save_codebooks(path: str | Path, codebooks: torch.Tensor, format_name: str, **metadata) -> None:
    """Codebooks [K, C, D] and JSON metadata in one .safetensors file, written atomically."""
    from safetensors.torch import save_file

    header = {"format": format_name, **{key: json.dumps(value) for key, value in metadata.items()}}
    write_atomically(lambda tmp: save_file({"codebooks": codebooks.contiguous()}, str(tmp), metadata=header),
                     Path(path))


def load_codebooks(path: str | Path, format_name: str, what: str) -> tuple[torch.Tensor, dict]:
    """(codebooks, metadata) of a file written by save_codebooks; CheckpointError naming `path` otherwise."""
    from safetensors import safe_open

    from .errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} file is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != format_name:
                raise ValueError(f"format is {header.get('format')!r}, not {format_name!r}")
            codebooks = f.get_tensor("codebooks")
        return codebooks, {key: json.loads(value) for key, value in header.items() if key != "format"}
    except Exception as err:
        raise CheckpointError(f"{path}: not a {what} file ({err})") from None


# ---------------------------------------------------------------------- Steim2
def steim2_integers(samples: np.ndarray) -> np.ndarray:
    """Samples rounded to the nearest integer, as int32: what a Steim2 archive can hold.

    Integer data (raw counts) pass unchanged; float data lose their
    fractional part (at most 0.5 count per sample).
    """
    rounded = np.rint(np.asarray(samples, dtype=np.float64))
    if np.abs(rounded).max(initial=0) >= 2**29:  # Steim2 codes first differences in at most 30 bits
        raise ValueError("samples exceed the +-2**29 range Steim2 can code")
    return rounded.astype(np.int32)


def steim2_bytes(integers: np.ndarray, sampling_rate: float = SAMPLING_RATE, record_length: int = 4096) -> bytes:
    """The miniSEED file (Steim2 encoding, `record_length`-byte records) obspy writes for int32 samples."""
    import obspy

    trace = obspy.Trace(np.ascontiguousarray(integers, dtype=np.int32),
                        header={"sampling_rate": sampling_rate, "network": "XX", "station": "STEIM"})
    buffer = io.BytesIO()
    obspy.Stream([trace]).write(buffer, format="MSEED", encoding="STEIM2", reclen=record_length)
    return buffer.getvalue()


def steim2_bits_per_second(integers: np.ndarray, sampling_rate: float = SAMPLING_RATE,
                           record_length: int = 4096) -> float:
    """File size in bits of the Steim2 miniSEED file divided by the trace duration in seconds.

    Includes the record headers and the padding of the last record, as an archive would.
    """
    size = len(steim2_bytes(integers, sampling_rate, record_length))
    return 8 * size / (len(integers) / sampling_rate)
