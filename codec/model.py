"""EQcodec: the 40 Hz seismic neural codec (config + model, Hugging Face conventions).

Pipeline for a trace x sampled at 40 Hz (physical units):

    offset  = mean(x)                                   side info, 1 float / trace
    frames  = (x - offset) cut into 1-s frames          [B, T, 40]
    g_t     = 8-bit log-RMS gain level per frame        side info, 8 bits / s   (codec.gain)
    z       = encoder(frames / G_t, gain context)       [B, D, T]
    codes   = residual VQ of z, 8 codebooks x 1024      [B, K, T]  10 bits / codebook / s
    x_hat   = decoder(sum of first k code vectors, gain context) * G_t + offset

so decoding from the first k codebooks costs 10 k + 8 bits/s.

With `identity_skip` (latent_dim = frame_length), both networks learn a
correction around the identity: z = u + encoder(u, ...) for the unit frames u,
and u_hat = q + decoder(q, ...) for the quantized latents q. Their last layers
start at zero, so with the residual VQ started from the k-means codebooks of
the gain-shape baseline (codec.baselines) an untrained EQcodec *is* that
baseline; training then adds what the networks see across neighbouring frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import gain as gainlib
from . import rvq
from .errors import CheckpointError
from .files import write_all_or_nothing
from .preprocess import FRAME_LENGTH, SAMPLING_RATE
from .modules import FrameConvNet

#: Side information per trace: the gain reference `scale` and the removed `offset`, float64 each.
TRACE_SIDE_BITS = 128

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PRETRAINED_DIR = Path(__file__).parent / "pretrained_v1"  # EQcodec v1; the default codec: codec.checkpoints


def config_from_dict(cls, values: dict):
    """The config dataclass `cls` from a dict (config.json), ValueError naming unknown fields."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**values)


@dataclass
class EQCodecConfig:
    """Sizes of the codec. Saved as config.json beside the weights."""

    sampling_rate: float = SAMPLING_RATE
    frame_length: int = FRAME_LENGTH  # samples per frame (1 s)
    num_codebooks: int = 8
    codebook_size: int = 1024
    latent_dim: int = 32
    hidden_channels: int = 128
    residual_layers: int = 4
    # Residual VQ training (vector-quantize-pytorch): EMA updates, k-means init, dead-code reset.
    ema_decay: float = 0.99
    kmeans_iters: int = 10
    # A code is replaced by a random batch vector when its EMA count of uses per
    # batch falls below this. Keep it well below the mean count (batch frames /
    # codebook size): at 2.0 with ~2.4 uses per code per batch, a third of the
    # codes were re-drawn at every step.
    dead_code_threshold: float = 2.0
    commitment_weight: float = 1.0
    identity_skip: bool = False  # networks learn corrections around the identity (see module docstring)
    model_type: str = "eqcodec"

    @property
    def bits_per_second(self) -> list[float]:
        """Bit rate at k = 1..K codebooks, gain side information included (the per-trace
        scale and offset, TRACE_SIDE_BITS, are not: see trace_bits_per_second)."""
        frames_per_second = self.sampling_rate / self.frame_length
        bits = math.log2(self.codebook_size)
        return [frames_per_second * (k * bits + gainlib.GAIN_BITS_PER_FRAME)
                for k in range(1, self.num_codebooks + 1)]

    @property
    def gain_reference_level(self) -> int:
        """Gain level of a trace's loudest frame (codec.gain)."""
        return gainlib.REFERENCE_LEVEL

    def trace_bits_per_second(self, k: int, seconds: float) -> float:
        """Everything a trace of `seconds` costs at k codebooks, per second: tokens, gains,
        and its scale and offset (1.4 bits/s more than bits_per_second for 90 s, 0.001 for a day)."""
        return self.bits_per_second[k - 1] + TRACE_SIDE_BITS / seconds

    @classmethod
    def from_dict(cls, values: dict) -> "EQCodecConfig":
        return config_from_dict(cls, values)


@dataclass
class EncodedWaveform:
    """Tokens and side information of B traces of equal length.

    codes:  [B, K, T] int64 codebook indices
    gain:   [B, T] int64 8-bit gain levels
    scale:  [B] float64 reference amplitude of the gain levels
    offset: [B] float64 mean removed before coding
    length: samples at 40 Hz (the last frame may be padded)
    source_rate: sampling rate (Hz) of the traces before resampling to 40 Hz, or None (unknown): decoding
        keeps nothing above a slower source's Nyquist (`nyquist_of_source`), where the source had nothing
    """

    codes: torch.Tensor
    gain: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    length: int
    extra: dict = field(default_factory=dict)
    source_rate: float | None = None

    def __getitem__(self, index) -> "EncodedWaveform":
        """Select traces along the batch axis (keeps the batch dimension for ints)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return EncodedWaveform(self.codes[index], self.gain[index], self.scale[index],
                               self.offset[index], self.length, source_rate=self.source_rate)


def nyquist_of_source(encoded: EncodedWaveform) -> float | None:
    """The band limit (Hz) decoding keeps: the source's Nyquist where the source was slower than 40 Hz
    (resampled up, it held nothing above it), else None (the full band)."""
    rate = encoded.source_rate
    return None if rate is None or rate >= SAMPLING_RATE else 0.5 * float(rate)


def band_limited(samples: torch.Tensor, limit_hz: float | None) -> torch.Tensor:
    """[B, N] samples at 40 Hz with nothing above limit_hz (FFT, zero phase); None: unchanged."""
    if limit_hz is None:
        return samples
    spectrum = torch.fft.rfft(samples, dim=-1)
    frequencies = torch.fft.rfftfreq(samples.shape[-1], d=1.0 / SAMPLING_RATE)
    spectrum[..., frequencies > limit_hz] = 0
    return torch.fft.irfft(spectrum, n=samples.shape[-1], dim=-1)


class EQCodec(nn.Module):
    """Encoder, residual vector quantizer and decoder. See the module docstring for the pipeline."""

    def __init__(self, config: EQCodecConfig | None = None):
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        self.config = config = config or EQCodecConfig()
        F, D, W, L = config.frame_length, config.latent_dim, config.hidden_channels, config.residual_layers
        self.encoder = FrameConvNet(F + 2, W, D, L)
        self.decoder = FrameConvNet(D + 2, W, F, L)
        self.quantizer = ResidualVQ(
            dim=D,
            num_quantizers=config.num_codebooks,
            codebook_size=config.codebook_size,
            decay=config.ema_decay,
            kmeans_init=True,
            kmeans_iters=config.kmeans_iters,
            threshold_ema_dead_code=config.dead_code_threshold,
            commitment_weight=config.commitment_weight,
            quantize_dropout=True,  # trains every k in 1..K from one model
            quantize_dropout_cutoff_index=0,
        )
        if config.identity_skip:
            if D != F:
                raise ValueError(f"identity_skip needs latent_dim == frame_length, got {D} and {F}")
            for network in (self.encoder, self.decoder):
                last = network.model[-1]  # corrections start at zero
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def init_codebooks(self, codebooks: torch.Tensor) -> None:
        """Start the residual VQ from given centroids [K, C, D] instead of k-means on the first batch.

        Used with the gain-shape baseline's k-means codebooks (fitted on far
        more frames than one batch). Touches vector-quantize-pytorch's EMA
        buffers, which it keeps per layer in `_codebook`.
        """
        K, C, D = self.config.num_codebooks, self.config.codebook_size, self.config.latent_dim
        if tuple(codebooks.shape) != (K, C, D):
            raise ValueError(f"codebooks of shape {tuple(codebooks.shape)} do not fit this codec ({K}, {C}, {D})")
        for layer, centroids in zip(self.quantizer.layers, codebooks):
            book = layer._codebook
            book.embed.data.copy_(centroids[None])
            book.embed_avg.data.copy_(centroids[None])  # EMA sum = centroid x count (count 1)
            book.cluster_size.data.fill_(1.0)
            book.initted.data.fill_(True)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors into `directory`."""
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        write_all_or_nothing({
            directory / CONFIG_NAME: lambda tmp: tmp.write_text(json.dumps(asdict(self.config), indent=2) + "\n"),
            directory / WEIGHTS_NAME: lambda tmp: save_file(state, str(tmp), metadata={"format": "pt",
                                                                                        "model_type": "eqcodec"}),
        })

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None) -> "EQCodec":
        """Load a codec saved by save_pretrained; None loads the shipped default."""
        from safetensors.torch import load_file

        directory = Path(directory) if directory is not None else PRETRAINED_DIR
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise CheckpointError(f"{path}: codec checkpoint file is missing")
        try:
            values = json.loads(config_path.read_text())
            if values.get("model_type", "eqcodec") != "eqcodec":
                raise ValueError(f"model_type is {values.get('model_type')!r}, not 'eqcodec'")
            config = EQCodecConfig.from_dict(values)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{config_path}: not a valid EQcodec config ({err})") from None
        model = cls(config)
        try:
            state = load_file(str(weights_path))
            model.load_state_dict(state, strict=True)
        except Exception as err:
            raise CheckpointError(f"{weights_path}: corrupt or incompatible codec weights ({err})") from None
        return model.eval()

    def identity(self) -> str:
        """Short hash of config and weights: tokens from two codecs mix only if these match.

        Config fields at their default are left out, so that a new option whose
        default keeps the old behaviour does not change existing identities.
        """
        import hashlib

        defaults = asdict(EQCodecConfig())
        config = {k: v for k, v in asdict(self.config).items() if v != defaults[k]}
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    # ------------------------------------------------------------------ framing and gain
    # Long traces are framed chunk by chunk: only the input, the tokens and
    # the output ever exist at full length, never float64 copies of them.
    def _frames(self, x: torch.Tensor, offset: torch.Tensor, first: int, stop: int) -> torch.Tensor:
        """Frames first..stop-1 of [B, N] samples, demeaned, the last one zero-padded: [B, T', F] float64."""
        F = self.config.frame_length
        segment = x[:, first * F : stop * F].double() - offset[:, None]
        pad = (stop - first) * F - segment.shape[-1]
        if pad:
            segment = torch.nn.functional.pad(segment, (0, pad))
        return segment.reshape(x.shape[0], stop - first, F)

    def frame_gains(self, x: torch.Tensor, chunk_frames: int = 4096):
        """[B, N] samples (physical) -> gain levels [B, T], scale [B], offset [B] (see codec.gain)."""
        F, N = self.config.frame_length, x.shape[-1]
        T = -(-N // F)
        offset = sum(x[:, a : a + chunk_frames * F].double().sum(-1) for a in range(0, N, chunk_frames * F)) / N
        rms = torch.cat([gainlib.frame_rms(self._frames(x, offset, t, min(t + chunk_frames, T)))
                         for t in range(0, T, chunk_frames)], dim=-1)
        scale = gainlib.choose_scale(rms)
        return gainlib.quantize_gain(rms, scale), scale, offset

    def _unit_frames(self, x, gain, scale, offset, first: int, stop: int) -> torch.Tensor:
        """Frames first..stop-1 divided by their quantized gains: [B, F, T'] float32 (the networks' input)."""
        frames = self._frames(x, offset, first, stop)
        return (frames / gainlib.dequantize_gain(gain[:, first:stop], scale)[..., None]).transpose(1, 2).float()

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, N] samples (physical) -> unit-RMS frames [B, F, T] (float32), gain [B, T], scale [B], offset [B]."""
        gain, scale, offset = self.frame_gains(x)
        return self._unit_frames(x, gain, scale, offset, 0, gain.shape[-1]), gain, scale, offset

    # ------------------------------------------------------------------ networks
    def _encode_frames(self, unit: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """[B, F, T] unit frames -> [B, D, T] latents."""
        latent = self.encoder(torch.cat([unit, gainlib.gain_context(gain)], dim=1))
        return latent + unit if self.config.identity_skip else latent

    def _decode_latents(self, latent: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """[B, D, T] quantized latents -> [B, F, T] unit frames."""
        unit = self.decoder(torch.cat([latent, gainlib.gain_context(gain)], dim=1))
        return unit + latent if self.config.identity_skip else unit

    @staticmethod
    def _nearest_codes(latent: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
        """[B, D, T] latents, codebooks [K, C, D] -> [B, K, T] residual nearest-neighbour indices (codec.rvq)."""
        B, D, T = latent.shape
        codes = rvq.greedy_codes(latent.transpose(1, 2).reshape(-1, D), codebooks)  # [K, B*T]
        return codes.reshape(-1, B, T).transpose(0, 1)

    @staticmethod
    def _beam_codes(latent: torch.Tensor, codebooks: torch.Tensor, width: int) -> torch.Tensor:
        """Like _nearest_codes with a beam of `width` code sequences (codec.rvq.beam_codes): [B, K, T].

        Greedy search fixes each stage's code before seeing the later stages; the beam
        lowers the error at high k for about `width` times the search work, and raises
        it slightly at k = 1-2 (figures: the model card).
        """
        B, D, T = latent.shape
        codes = rvq.beam_codes(latent.transpose(1, 2).reshape(-1, D), codebooks, width)
        return codes.reshape(-1, B, T).transpose(0, 1)

    @staticmethod
    def _codes_to_latents(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
        """[B, k, T] indices of the first k codebooks, codebooks [K, C, D] -> [B, D, T] summed code vectors."""
        return rvq.sum_codes(codes.transpose(1, 2), codebooks).transpose(1, 2)  # [B, T, D] -> [B, D, T]

    @staticmethod
    def _chunks(num_frames: int, radius: int, chunk_frames: int):
        """Yield (start, stop, lo, hi): frames start..stop-1 are computed from frames lo..hi-1.

        Each chunk carries `radius` + 1 frames of real context on each side:
        the networks' receptive field, plus one frame because the gain context
        of a chunk's first (last) frame is its gain change to the previous
        (next) frame, which must be in the chunk. So every kept output frame is
        computed from exactly the inputs it has in a single pass.
        """
        margin = radius + 1
        for start in range(0, num_frames, chunk_frames):
            stop = min(start + chunk_frames, num_frames)
            yield start, stop, max(start - margin, 0), min(stop + margin, num_frames)

    # ------------------------------------------------------------------ public API
    @torch.inference_mode()
    def encode(self, x, chunk_frames: int = 1024, beam_width: int = 1) -> EncodedWaveform:
        """[B, N] or [N] samples at 40 Hz (numpy or torch, physical units) -> EncodedWaveform.

        Memory does not grow with N beyond the input and the tokens: framing,
        networks and quantizer run on chunks of `chunk_frames` frames, with
        margins (see _chunks) that give the codes and gains of one pass. Only the
        float32 rounding of the convolutions may change with the chunk length
        (about 1e-7 of a latent), which could flip a code only at a near-tie
        between two codes (none in tests/test_codec_chunking.py).
        beam_width > 1 searches the residual VQ with a beam (see _beam_codes):
        better at k = 8, slightly worse at k = 1, beam_width times slower search.
        """
        if not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
            raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"encode expects [B, N] or [N] samples, got shape {tuple(x.shape)}")
        device = next(self.parameters()).device
        x = x.to(device)
        gain, scale, offset = self.frame_gains(x)
        codes = torch.empty(x.shape[0], self.config.num_codebooks, gain.shape[-1], dtype=torch.long, device=device)
        codebooks = self.quantizer.codebooks  # [K, C, D]; the property stacks the layers' tensors on every call
        for start, stop, lo, hi in self._chunks(gain.shape[-1], self.encoder.receptive_radius, chunk_frames):
            latent = self._encode_frames(self._unit_frames(x, gain, scale, offset, lo, hi), gain[:, lo:hi])
            latent = latent[..., start - lo : stop - lo]
            codes[..., start:stop] = (self._nearest_codes(latent, codebooks) if beam_width == 1
                                      else self._beam_codes(latent, codebooks, int(beam_width)))
        return EncodedWaveform(codes, gain, scale, offset, x.shape[-1])

    @torch.inference_mode()
    def decode(self, encoded: EncodedWaveform, num_codebooks: int | None = None,
               chunk_frames: int = 1024) -> torch.Tensor:
        """EncodedWaveform -> [B, N] float64 samples in physical units, from the first k codebooks."""
        k = self.check_num_codebooks(num_codebooks)
        codes, gain = encoded.codes[:, :k], encoded.gain
        if codes.shape[1] < k:
            raise ValueError(f"asked for {k} codebooks but the tokens hold only {codes.shape[1]}")
        F, (B, _, T) = self.config.frame_length, codes.shape
        out = torch.empty(B, encoded.length, dtype=torch.float64, device=codes.device)
        codebooks = self.quantizer.codebooks
        for start, stop, lo, hi in self._chunks(T, self.decoder.receptive_radius, chunk_frames):
            unit = self._decode_latents(self._codes_to_latents(codes[..., lo:hi], codebooks), gain[:, lo:hi])
            frames = unit[..., start - lo : stop - lo].transpose(1, 2).double()
            frames = frames * gainlib.dequantize_gain(gain[:, start:stop], encoded.scale)[..., None]
            samples = frames.reshape(B, -1)[:, : encoded.length - start * F]
            out[:, start * F : start * F + samples.shape[-1]] = samples + encoded.offset[:, None]
        limit = nyquist_of_source(encoded)
        return out if limit is None else band_limited(out - encoded.offset[:, None], limit) + encoded.offset[:, None]

    def check_num_codebooks(self, k: int | None) -> int:
        K = self.config.num_codebooks
        if k is None:
            return K
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= K:
            raise ValueError(f"number of codebooks must be an integer in 1..{K}, got {k!r}")
        return int(k)

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor) -> dict:
        """Training pass on [B, N] samples: returns unit-domain target, reconstruction and VQ loss.

        The residual VQ drops a random number of trailing codebooks per batch
        (quantizer dropout), so every k is trained.
        """
        unit, gain, _, _ = self.normalize(x)
        latent = self._encode_frames(unit, gain)
        quantized, _, commit_loss = self.quantizer(latent.transpose(1, 2))
        recon = self._decode_latents(quantized.transpose(1, 2), gain)
        return {"target": unit, "recon": recon, "commit_loss": commit_loss.sum()}
