"""Lapped gain-shape residual VQ: codec.baselines.GainShapeRVQ on MDCT frames instead of 1-s blocks.

The block coder cuts a trace into independent 1-s frames, so its coding error
jumps at every frame edge (audible / visible steps once k is small). This coder
codes the coefficients of a lapped transform instead (codec.mdct: 80-sample
sine window, hop 40, time-domain aliasing cancellation), so every decoded
second is a cross-fade of two coded frames and the error is continuous:

    offset  = mean(x)                                    side info, 1 float / trace
    X_t     = MDCT frame t of (x - offset)               [B, T, 40], T = ceil(N / 40)
    g_t     = 8-bit log-RMS level of X_t (GainQuantizer)  side info, 8 bits / s
    shape_t = X_t / G_t (G_t: the *quantized* gain)      unit RMS within +-step/2
    codes   = residual k-means VQ of shape_t, K x C      [B, K, T], log2 C bits / codebook / s
    x_hat   = IMDCT((sum of first k code vectors) * G_t) + offset

Same bit budget as the block coder and EQcodec: 10 k + 8 bits/s with
codebooks of 1024 entries, one token per codebook per second; token t
describes second t (its window reaches half a second into each neighbour).
The transform is orthonormal, so the squared error of the coefficients equals
the squared error of the samples, and k-means on coefficient shapes minimizes
the sample error directly. Because frames are divided by the quantized gain,
the gain's rounding error is left in the shape, where the residual stages
absorb it.

Gain quantizer (GainQuantizer, default 0.75 dB steps, +40 dB headroom):
    level = round(20 log10(rms_t / scale) / step) + R,  R = 255 - headroom / step = 202 (rounded)
    G     = scale * 10 ** ((level - R) step / 20),       level 1..255
    level 0 = silence or more than (R - 1) step = 150.75 dB below `scale`: decoded as 0.
`scale` is the largest frame RMS of the trace (its loudest frame sits at level
202), so levels run from 150.75 dB below the loudest frame to 39.75 dB above it.

How it was chosen (benchmarks/codec_lapped_benchmark.py's training and
evaluation traces; MDCT frame RMS relative to each trace's loudest frame):
  - spread below the loudest frame: the quietest real frames lie 40-83 dB
    below it (II.KAPI 40, Rutford 56-67, US.OXF 64, broadband training days
    83; 0.01 % quantiles 35-71 dB; one seisio trace 106 dB). nc-events adds
    frames 120-157 dB down in ~11 % of its traces: constant tails, resampled
    to 40 Hz, leave 1e-11 ripples (and the frames leading into them).
  - headroom: a forecast's scale is the loudest frame of its context. Later
    frames rose above the loudest of the first 30 s by at most 41 dB (99 %:
    38 dB) on nc-events, 38 dB on US.OXF 10-min pieces, 8.5 dB on II.KAPI.
  - step, at the benchmark's budget (8 x 1024, 16 iterations, same data):
    0.5 dB / +40 dB (floor -87 dB), 0.75 dB / +40 dB and codec.gain's
    1.5 dB / +96 dB gave the same median SNR within 0.15 dB on nc-events and
    US.OXF; on II.KAPI (SNR 23-26 dB at k >= 5) 0.5 and 0.75 dB beat 1.5 dB by
    0.2-0.3 dB (1.5 dB steps leave the shapes +-9 % off unit norm, 0.75 dB
    +-4 %); but 0.5 dB's floor at -87 dB zeroes the near-silent nc-events
    frames, costing 0.1-0.4 dB of median segmental SNR there. 0.75 dB keeps the
    finer step and reaches down to -150 dB.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import gain as gainlib
from . import mdct as mdctlib
from . import rvq
from .baselines import kmeans, load_codebooks, save_codebooks
from .errors import CheckpointError
from .files import write_all_or_nothing
from .model import TRACE_SIDE_BITS, EncodedWaveform, config_from_dict, nyquist_of_source
from .preprocess import SAMPLING_RATE

FORMAT_NAME = "lapped-gain-shape-rvq"
MODEL_TYPE = "eqcodec-lapped"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
HOP = mdctlib.HOP


# ---------------------------------------------------------------------- gain
@dataclass(frozen=True)
class GainQuantizer:
    """8-bit log-RMS gain in `step_db` steps, the trace's loudest frame `headroom_db` below the top level."""

    step_db: float = 0.75
    headroom_db: float = 40.0
    levels: int = 256

    @property
    def reference_level(self) -> int:
        """Level of a frame as loud as `scale` (the loudest frame of the trace)."""
        level = self.levels - 1 - int(round(self.headroom_db / self.step_db))
        if not 1 <= level <= self.levels - 1:
            raise ValueError(f"headroom {self.headroom_db} dB does not fit {self.levels} levels of {self.step_db} dB")
        return level

    @property
    def floor_db(self) -> float:
        """Level 1 in dB relative to scale (quieter frames get level 0, decoded as silence)."""
        return (1 - self.reference_level) * self.step_db

    def quantize(self, rms: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, T] frame RMS and [B] scale -> [B, T] levels (long, 0..levels-1); 0 = silence / below range."""
        ratio = (rms.double() / scale.double()[..., None]).clamp_min(1e-300)
        levels = torch.round(20 * torch.log10(ratio) / self.step_db) + self.reference_level
        levels = levels.clamp(max=self.levels - 1)
        levels = torch.where((rms > 0) & (levels >= 1), levels, torch.zeros_like(levels))
        return levels.long()

    def dequantize(self, levels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, T] levels and [B] scale -> [B, T] linear gains (float64; 0 for level 0)."""
        db = (levels.double() - self.reference_level) * self.step_db
        gains = scale.double()[..., None] * torch.pow(10.0, db / 20)
        return torch.where(levels > 0, gains, torch.zeros_like(gains))


# ---------------------------------------------------------------------- config
@dataclass
class LappedCodecConfig:
    """Sizes of the lapped codec (EQcodec v2). Saved as config.json beside the codebooks.

    Everything the token format depends on: the frame hop (one token per
    codebook per hop), the codebooks' number and size, the gain quantizer.
    """

    sampling_rate: float = SAMPLING_RATE
    hop: int = HOP  # samples per frame (1 s); the MDCT window is 2 hops long
    num_codebooks: int = 8
    codebook_size: int = 1024
    gain_step_db: float = 0.75
    gain_headroom_db: float = 40.0
    gain_levels: int = 256
    model_type: str = MODEL_TYPE

    def __post_init__(self):
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"model_type is {self.model_type!r}, not {MODEL_TYPE!r}")
        if self.hop != HOP or self.sampling_rate != SAMPLING_RATE:
            raise ValueError(f"this coder works at {SAMPLING_RATE:g} Hz with a hop of {HOP} samples")

    @property
    def gain_quantizer(self) -> "GainQuantizer":
        return GainQuantizer(self.gain_step_db, self.gain_headroom_db, self.gain_levels)

    @property
    def gain_reference_level(self) -> int:
        """Gain level of a trace's loudest frame (an LM's gain stream is shifted to it: tokenized_data.examples)."""
        return self.gain_quantizer.reference_level

    @property
    def frame_length(self) -> int:
        """Samples per token frame (the hop)."""
        return self.hop

    @property
    def bits_per_second(self) -> list[float]:
        """Bit rate at k = 1..K codebooks, the gain included (per-trace scale and offset aside)."""
        frames_per_second = self.sampling_rate / self.hop
        bits, gain_bits = math.log2(self.codebook_size), math.log2(self.gain_levels)
        return [frames_per_second * (k * bits + gain_bits) for k in range(1, self.num_codebooks + 1)]

    def trace_bits_per_second(self, k: int, seconds: float) -> float:
        """Everything a trace of `seconds` costs at k codebooks, per second: tokens, gains, scale and offset."""
        return self.bits_per_second[k - 1] + TRACE_SIDE_BITS / seconds

    @classmethod
    def from_dict(cls, values: dict) -> "LappedCodecConfig":
        return config_from_dict(cls, values)


# ---------------------------------------------------------------------- framing
def _as_batch(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"expected [B, N] or [N] samples, got shape {tuple(x.shape)}")
    if x.shape[-1] < 1:
        raise ValueError("cannot code an empty trace")
    return x.double()


def _chunks(T: int, chunk_frames: int):
    chunk_frames = max(1, int(chunk_frames))
    for t0 in range(0, T, chunk_frames):
        yield t0, min(T, t0 + chunk_frames)


def coefficient_frames(y: torch.Tensor, T: int, t0: int, t1: int) -> torch.Tensor:
    """MDCT frames t0..t1-1 of a padded signal y [B, 40 T + 40] (mdct.pad_signal) -> [B, t1 - t0, 40]."""
    return mdctlib.mdct_padded(y[:, t0 * HOP : t1 * HOP + HOP], HOP, first=t0 == 0, last=t1 == T)


def lapped_shapes(x, quantizer: GainQuantizer = GainQuantizer(), scale: torch.Tensor | None = None,
                  chunk_frames: int = 8192):
    """[B, N] samples -> unit-RMS coefficient shapes [B, T, 40] (float32), gain [B, T], scale [B], offset [B].

    Shapes of level-0 frames (silence) are 0. `scale` (one per trace) may be
    given, e.g. a context's, instead of the trace's own loudest frame.
    """
    x = _as_batch(x)
    offset = x.mean(-1)
    y = mdctlib.pad_signal(x - offset[:, None], HOP)
    T = mdctlib.num_frames(x.shape[-1], HOP)
    rms = torch.cat([gainlib.frame_rms(coefficient_frames(y, T, t0, t1)) for t0, t1 in _chunks(T, chunk_frames)], 1)
    if scale is None:
        scale = gainlib.choose_scale(rms)
    scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1).expand(x.shape[0]).clone()
    gain = quantizer.quantize(rms, scale)
    G = quantizer.dequantize(gain, scale)
    inv = torch.where(G > 0, 1 / G.clamp_min(1e-300), torch.zeros_like(G))
    shapes = torch.empty(x.shape[0], T, HOP, dtype=torch.float32)
    for t0, t1 in _chunks(T, chunk_frames):
        shapes[:, t0:t1] = (coefficient_frames(y, T, t0, t1) * inv[:, t0:t1, None]).float()
    return shapes, gain, scale, offset


def fit_residual_codebooks(vectors: torch.Tensor, num_codebooks: int, codebook_size: int, iters: int,
                           seed: int = 0, log: Callable[[str], None] | None = None,
                           init: torch.Tensor | None = None):
    """Residual k-means on [N, D] float32 vectors -> codebooks [K, C, D] and the training SNR (dB) after each stage.

    Stage q is codec.baselines.kmeans on what stages 1..q-1 left (the same
    procedure as GainShapeRVQ.fit, on any vectors); with init [K, C, D], stage
    q's iterations start from init[q] instead of k-means++ seeds.
    """
    if len(vectors) < codebook_size:
        raise ValueError(f"{len(vectors)} training vectors are fewer than {codebook_size} codebook entries")
    energy = vectors.pow(2).mean().item()
    residual = vectors.clone()
    codebooks, stage_snr = [], []
    for stage in range(num_codebooks):
        if log is not None:
            log(f"stage {stage + 1}/{num_codebooks}: k-means of {len(residual)} residuals"
                + (" from the given codebook" if init is not None else ""))
        centroids, index = kmeans(residual, codebook_size, iters, seed=seed + stage,
                                  init=init[stage] if init is not None else None)
        residual -= centroids[index]
        codebooks.append(centroids)
        stage_snr.append(10 * math.log10(energy / max(residual.pow(2).mean().item(), 1e-30)))
        if log is not None:
            log(f"stage {stage + 1}: training SNR {stage_snr[-1]:.2f} dB")
    return torch.stack(codebooks), stage_snr


# ---------------------------------------------------------------------- the coder
class LappedGainShapeRVQ(nn.Module):
    """Gain-shape residual VQ of MDCT frames (see the module docstring).

    codebooks: [K, C, 40] float32. encode -> EncodedWaveform (codes [B, K, T],
    gain [B, T] levels of `quantizer`, scale [B], offset [B]); decode(encoded, k) -> [B, N].
    """

    def __init__(self, codebooks: torch.Tensor, quantizer: GainQuantizer | None = None,
                 fit_info: dict | None = None):
        super().__init__()
        if codebooks.ndim != 3 or codebooks.shape[-1] != HOP:
            raise ValueError(f"codebooks must be [K, C, {HOP}], got shape {tuple(codebooks.shape)}")
        self.register_buffer("codebooks", codebooks.float().contiguous())
        self.quantizer = quantizer or GainQuantizer()
        self.fit_info = dict(fit_info or {})

    #: A decoded sample depends on the codes of its own frame and of at most this many frames on each side
    #: (the 2-s windows overlap their neighbours), and on whether those are the trace's first or last frame
    #: (start and stop windows): a stretch of a long trace decodes exactly from its frames and a margin.
    decode_context_frames = 1

    @property
    def config(self) -> LappedCodecConfig:
        K, C, _ = self.codebooks.shape
        q = self.quantizer
        return LappedCodecConfig(num_codebooks=K, codebook_size=C, gain_step_db=q.step_db,
                                 gain_headroom_db=q.headroom_db, gain_levels=q.levels)

    @property
    def num_codebooks(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @property
    def bits_per_second(self) -> list[float]:
        """Bit rate at k = 1..K codebooks, gain included: one frame per second."""
        return self.config.bits_per_second

    def check_num_codebooks(self, k: int | None) -> int:
        """k (None: all) as an int, or ValueError when it is not in 1..K."""
        if k is None:
            return self.num_codebooks
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= self.num_codebooks:
            raise ValueError(f"number of codebooks must be an integer in 1..{self.num_codebooks}, got {k!r}")
        return int(k)

    def identity(self) -> str:
        """Short hash of config and codebooks: tokens of two codecs mix only if these match."""
        import hashlib

        digest = hashlib.sha256(json.dumps(asdict(self.config), sort_keys=True).encode())
        digest.update(self.codebooks.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    # ------------------------------------------------------------------ training
    @staticmethod
    def training_vectors(traces: Sequence[np.ndarray], quantizer: GainQuantizer = GainQuantizer(),
                         max_vectors: int | None = None, seed: int = 0) -> torch.Tensor:
        """Shapes of the non-overlapping MDCT frames of every trace (silent frames left out): [N, 40] float32.

        At most `max_vectors` (a seeded random subset) if given.
        """
        shapes = []
        for trace in traces:
            s, gain, _, _ = lapped_shapes(np.asarray(trace, dtype=np.float64), quantizer)
            shapes.append(s[0][gain[0] > 0])
        vectors = torch.cat(shapes)
        if max_vectors is not None and len(vectors) > max_vectors:
            picks = torch.randperm(len(vectors), generator=torch.Generator().manual_seed(seed))[:max_vectors]
            vectors = vectors[picks]
        return vectors

    @classmethod
    def fit(cls, traces: Sequence[np.ndarray], num_codebooks: int = 8, codebook_size: int = 1024,
            iters: int = 16, max_vectors: int | None = None, seed: int = 0,
            quantizer: GainQuantizer | None = None, metadata: dict | None = None,
            log: Callable[[str], None] | None = None) -> "LappedGainShapeRVQ":
        """Fit K residual k-means codebooks on the coefficient shapes of 40 Hz traces (physical units)."""
        quantizer = quantizer or GainQuantizer()
        vectors = cls.training_vectors(traces, quantizer, max_vectors, seed)
        codebooks, stage_snr = fit_residual_codebooks(vectors, num_codebooks, codebook_size, iters, seed, log)
        fit_info = {"training_vectors": len(vectors), "iters": iters, "seed": seed,
                    "training_shape_snr_db": [round(s, 3) for s in stage_snr], **(metadata or {})}
        return cls(codebooks, quantizer, fit_info).eval()

    # ------------------------------------------------------------------ coding
    @torch.inference_mode()
    def encode(self, x, chunk_frames: int = 8192, scale=None, beam_width: int = 1) -> EncodedWaveform:
        """[B, N] or [N] samples at 40 Hz (numpy or torch, physical units) -> EncodedWaveform.

        Runs the transform and the search on chunks of `chunk_frames` frames
        (the result does not depend on it). `scale` ([B] or a number) fixes the
        gains' reference instead of each trace's loudest frame. `beam_width` > 1
        searches the residual VQ with a beam of that many code sequences
        (codec.rvq.beam_codes) for about `beam_width` times the search work: it
        lowers the error with all K codebooks (in total; a frame whose greedy
        path drops out of the beam early can end up slightly worse), while a
        shorter prefix (k < K) may be worse than greedy's.
        """
        if not isinstance(beam_width, (int, np.integer)) or isinstance(beam_width, bool) or beam_width < 1:
            raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
        x = _as_batch(x)
        shapes, gain, scale, offset = lapped_shapes(x, self.quantizer, scale, chunk_frames)
        B, T, F = shapes.shape
        if beam_width == 1:
            codes = rvq.greedy_codes(shapes.reshape(-1, F), self.codebooks)  # [K, B*T]
        else:
            codes = rvq.beam_codes(shapes.reshape(-1, F), self.codebooks, int(beam_width))
        codes = codes.reshape(-1, B, T).transpose(0, 1)  # [B, K, T]
        return EncodedWaveform(codes, gain, scale, offset, x.shape[-1], extra={"format": FORMAT_NAME})

    @torch.inference_mode()
    def decode(self, encoded: EncodedWaveform, num_codebooks: int | None = None,
               chunk_frames: int = 8192) -> torch.Tensor:
        """EncodedWaveform -> [B, N] float64 samples in physical units, from the first k codebooks."""
        k = self.check_num_codebooks(num_codebooks)
        if encoded.codes.shape[1] < k:
            raise ValueError(f"asked for {k} codebooks but the tokens hold only {encoded.codes.shape[1]}")
        codes = encoded.codes
        B, _, T = codes.shape
        if mdctlib.num_frames(encoded.length, HOP) != T:
            raise ValueError(f"{T} frames do not code {encoded.length} samples")
        G = self.quantizer.dequantize(encoded.gain, encoded.scale)
        # a source slower than 40 Hz had nothing above its Nyquist: its coefficients there are set to 0
        # (coefficient j spans [j, j + 1) x 20 / HOP Hz), which removes the quantization noise in that band
        limit = nyquist_of_source(encoded)
        keep = HOP if limit is None else int(math.floor(limit * HOP / 20.0 + 1e-9))
        y = torch.zeros(B, T * HOP + HOP, dtype=torch.float64)
        K, C, _ = self.codebooks.shape
        # codeword c of codebook q is row q C + c; in float64, where the sum of a frame's k float32 codewords
        # is exact (the same samples in any order of summation)
        table = self.codebooks[:k].double().reshape(k * C, HOP)
        first_row = (torch.arange(k) * C)[None, :, None]
        for t0, t1 in _chunks(T, chunk_frames):
            # the k codewords of each frame summed in one lookup
            rows = (codes[:, :k, t0:t1].long() + first_row).transpose(1, 2).reshape(-1, k)  # [B (t1 - t0), k]
            shapes = nn.functional.embedding_bag(rows, table, mode="sum").reshape(B, t1 - t0, HOP)
            shapes[..., keep:] = 0
            frames = mdctlib.imdct_frames(shapes * G[:, t0:t1, None], HOP, first=t0 == 0, last=t1 == T)
            y[:, t0 * HOP : t1 * HOP + HOP] += mdctlib.overlap_add(frames, HOP)
        return y[:, HOP // 2 : HOP // 2 + encoded.length] + encoded.offset.double()[:, None]

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path) -> None:
        """Write codebooks, gain quantizer and fit information to one .safetensors file (atomically)."""
        save_codebooks(path, self.codebooks, FORMAT_NAME, gain_quantizer=asdict(self.quantizer),
                       fit_info=self.fit_info)

    @classmethod
    def load(cls, path: str | Path) -> "LappedGainShapeRVQ":
        """Read a file written by save()."""
        codebooks, metadata = load_codebooks(path, FORMAT_NAME, "lapped gain-shape RVQ")
        if "gain_quantizer" not in metadata:
            raise CheckpointError(f"{path}: not a lapped gain-shape RVQ file (no gain quantizer)")
        return cls(codebooks, GainQuantizer(**metadata["gain_quantizer"]), metadata.get("fit_info", {})).eval()

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors (the codebooks, fit information in its header) into `directory`."""
        directory = Path(directory)
        write_all_or_nothing({
            directory / CONFIG_NAME: lambda tmp: tmp.write_text(json.dumps(asdict(self.config), indent=2) + "\n"),
            directory / WEIGHTS_NAME: lambda tmp: save_codebooks(tmp, self.codebooks, FORMAT_NAME,
                                                                 fit_info=self.fit_info),
        })

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "LappedGainShapeRVQ":
        """Load a codec saved by save_pretrained (codec.load_codec picks the class from config.json)."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise CheckpointError(f"{path}: codec checkpoint file is missing")
        try:
            config = LappedCodecConfig.from_dict(json.loads(config_path.read_text()))
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{config_path}: not a valid lapped codec config ({err})") from None
        codebooks, metadata = load_codebooks(weights_path, FORMAT_NAME, "lapped codec codebook")
        expected = (config.num_codebooks, config.codebook_size, config.hop)
        if tuple(codebooks.shape) != expected:
            raise CheckpointError(f"{weights_path}: codebooks of shape {tuple(codebooks.shape)}, "
                                  f"config.json says {expected}")
        return cls(codebooks, config.gain_quantizer, metadata.get("fit_info", {})).eval()


# ---------------------------------------------------------------------- continuity measure
