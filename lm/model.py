"""The seismic token LM: a decoder-only transformer over S = K + 1 delayed token streams.

Streams (fixed by the project, see tokenized_data.to_streams): stream 0 is the
codec's 8-bit gain level of each 1-s frame (256 values), streams 1..K are the
K codebooks (1024 values each). The streams are laid out with the delay
pattern (lm.delay): stream s is shifted right by s steps.

At each step the embeddings of the S tokens are summed into one vector, a
causal transformer reads these vectors, and S output heads predict the S
tokens of the next step. Sequences start with a BOS step whose S tokens are
all "empty".

The transformer is transformers' GPTBigCodeModel (the StarCoder decoder):
pre-LayerNorm blocks with learned positions, a GELU MLP, and multi-query
attention, where all heads share one key/value head, with the query, key and
value projections fused in one matrix. On a CPU, generation is bound by the
per-step cost of a small model; this block has the fewest operations per
layer of transformers' decoders (a Llama block with RMSNorm, rotary
embeddings and a gated MLP takes about twice as long per step at this size),
and multi-query attention keeps the KV cache (transformers' DynamicCache)
8x smaller.

    inputs:  [B, S, L] delayed tokens, BOS first      (empty token of stream s = vocab_sizes[s])
    logits:  S tensors [B, L, vocab_sizes[s]]          logits[s][:, j] predicts stream s at delayed step j
    labels:  [B, S, L] delayed tokens, -100 = ignore

Hugging Face conventions: SeismicLMConfig / SeismicLM with save_pretrained and
from_pretrained (safetensors). The config records `codec_id`, the identity of
the codec whose tokens the LM was trained on (codec.EQCodec.identity()).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate, groupby
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import (DynamicCache, GenerationConfig, GPTBigCodeConfig, GPTBigCodeModel, PreTrainedConfig,
                          PreTrainedModel)
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper
from transformers.utils import ModelOutput

from codec.errors import CheckpointError
from codec.gain import GAIN_LEVELS

from .delay import DelayPattern

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
CONFIGS_DIR = Path(__file__).parent / "configs"
IGNORE_INDEX = -100


class SeismicLMConfig(PreTrainedConfig):
    """Sizes of the LM and the identity of its codec. Saved as config.json beside the weights.

    max_frames: the context window in frames (seconds) the LM is trained on;
    generation beyond it slides the window.
    """

    model_type = "eqcodec_lm"

    # Token streams
    num_codebooks: int = 8
    codebook_size: int = 1024
    gain_levels: int = GAIN_LEVELS
    # Transformer (a GPTBigCode backbone)
    max_frames: int = 120
    hidden_size: int = 256
    intermediate_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    multi_query: bool = True
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    dropout: float = 0.0
    # Identity of the codec that made the training tokens (EQCodec.identity()); None = not yet trained.
    codec_id: str | None = None

    @property
    def num_streams(self) -> int:
        return self.num_codebooks + 1

    @property
    def vocab_sizes(self) -> list[int]:
        """Real tokens per stream: [gain_levels, codebook_size, ..., codebook_size]."""
        return [self.gain_levels] + [self.codebook_size] * self.num_codebooks

    @property
    def empty_tokens(self) -> list[int]:
        """Id of the 'empty' token of each stream: one past its real tokens."""
        return list(self.vocab_sizes)

    @property
    def max_positions(self) -> int:
        """Positions of one training sequence: BOS + (max_frames + S - 1) delayed steps - 1 (the last is only a target)."""
        return self.max_frames + self.num_streams - 1

    def backbone_config(self) -> GPTBigCodeConfig:
        """The transformer's config; its vocabulary holds every stream's tokens (see SeismicLM.embed)."""
        return GPTBigCodeConfig(
            vocab_size=sum(v + 1 for v in self.vocab_sizes),
            n_positions=self.max_positions,
            n_embd=self.hidden_size,
            n_inner=self.intermediate_size,
            n_layer=self.num_hidden_layers,
            n_head=self.num_attention_heads,
            multi_query=self.multi_query,
            layer_norm_epsilon=self.layer_norm_epsilon,
            initializer_range=self.initializer_range,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            bos_token_id=None,
            eos_token_id=None,
            tie_word_embeddings=False,
        )


@dataclass
class SeismicLMOutput(ModelOutput):
    """loss: mean over streams of the per-stream cross-entropy (nats), when labels were given.
    stream_losses: [S] per-stream cross-entropy. logits: S tensors [B, L, vocab_sizes[s]].
    cache: the KV cache (transformers.DynamicCache) when use_cache."""

    loss: torch.Tensor | None = None
    stream_losses: torch.Tensor | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    cache: DynamicCache | None = None


def stream_cross_entropy(logits: tuple[torch.Tensor, ...], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood (nats) and number of scored tokens per stream.

    logits: S tensors [B, L, V_s]; labels: [B, S, L] with IGNORE_INDEX where nothing is scored.
    Returns (nll_sum [S], count [S]) so that callers can average over any number of batches.
    """
    nll, count = [], []
    for s, stream_logits in enumerate(logits):
        target = labels[:, s]
        nll.append(F.cross_entropy(stream_logits.float().flatten(0, 1), target.flatten(),
                                   ignore_index=IGNORE_INDEX, reduction="sum"))
        count.append((target != IGNORE_INDEX).sum())
    return torch.stack(nll), torch.stack(count)


def default_sampling() -> GenerationConfig:
    """Sampling settings of an LM saved without generation_config.json.

    Chosen by hand for the v1 base LM: temperature 0.8 and top-k 50 avoid the rare
    wild gain jumps of plain sampling; num_return_sequences is the forecast
    ensemble size. A trained LM stores its own (SeismicLM.save_pretrained).
    """
    return GenerationConfig(do_sample=True, temperature=0.8, top_k=50, num_return_sequences=32)


class SeismicLM(PreTrainedModel):
    """Delayed multi-stream token LM. See the module docstring for the layout of inputs and outputs."""

    config_class = SeismicLMConfig
    base_model_prefix = "seismic_lm"
    main_input_name = "tokens"
    _no_split_modules = ["GPTBigCodeBlock"]
    _supports_sdpa = True

    def __init__(self, config: SeismicLMConfig):
        super().__init__(config)
        backbone_config = config.backbone_config()
        backbone_config._attn_implementation = config._attn_implementation or "sdpa"
        self.backbone = GPTBigCodeModel(backbone_config)
        # One embedding table for all streams (the backbone's), stream s using rows offset[s] .. offset[s] + V_s.
        self.stream_offsets = list(accumulate((v + 1 for v in config.vocab_sizes[:-1]), initial=0))
        self._offsets = {}  # device -> the offsets as a tensor [1, S, 1], made on first use
        # The S output heads, stacked in one matrix (stream s: rows offset .. offset + V_s).
        self.lm_head = nn.Linear(config.hidden_size, sum(config.vocab_sizes), bias=False)
        self.delay = DelayPattern(config.empty_tokens)
        self.post_init()
        # Sampling defaults (temperature, top_k, top_p, num_return_sequences) of generate / forecast /
        # deconvolve: one place, saved beside the weights as generation_config.json.
        self.generation_config = default_sampling()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """PreTrainedModel.save_pretrained, plus generation_config.json (the LM's sampling defaults)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        self.generation_config.save_pretrained(save_directory)

    def sampling_settings(self, temperature: float | None = None, top_k: int | None = None,
                          top_p: float | None = None, samples: int | None = None,
                          gain_temperature: float | None = None, frame_grids: int | None = None) -> dict:
        """The given settings, each None replaced by the LM's generation_config value.

        gain_temperature: the temperature of the gain stream alone (generation_config's own
        `gain_temperature` field; when it has none, the gain stream takes `temperature`).
        frame_grids: on how many frame grids the sampled continuations read their context
        (lm.generate.frame_grid_offsets; generation_config's own `frame_grids` field, else 1).
        """
        config = self.generation_config
        temperature = temperature if temperature is not None else (config.temperature or 1.0)
        if gain_temperature is None:
            gain_temperature = getattr(config, "gain_temperature", None) or temperature
        return {"temperature": temperature, "gain_temperature": gain_temperature,
                "top_k": top_k if top_k is not None else config.top_k,
                "top_p": top_p if top_p is not None else config.top_p,
                "samples": samples if samples is not None else (config.num_return_sequences or 1),
                "frame_grids": frame_grids if frame_grids is not None else (getattr(config, "frame_grids", None) or 1)}

    def _init_weights(self, module: nn.Module) -> None:
        """The backbone's initialisation for every module (GPT-2 scheme: residual projections scaled down with depth)."""
        self.backbone._init_weights(module)

    # ------------------------------------------------------------------ layout
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, S, L] token ids (empty allowed) -> [B, L, H] summed stream embeddings."""
        if tokens.device not in self._offsets:
            self._offsets[tokens.device] = torch.tensor(self.stream_offsets, device=tokens.device).view(1, -1, 1)
        return self.backbone.get_input_embeddings()(tokens + self._offsets[tokens.device]).sum(dim=1)

    def bos(self, batch_size: int) -> torch.Tensor:
        """[B, S, 1] the BOS step: every stream empty."""
        empty = torch.tensor(self.config.empty_tokens, device=self.device)
        return empty.view(1, -1, 1).expand(batch_size, -1, 1)

    def prepare_batch(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame-aligned tokens -> (inputs, labels) for teacher-forced training.

        frames: [B, S, T] tokens (stream 0 gain, then codebooks); mask: [B, T] True where the frame is real.
        Returns inputs [B, S, T + S - 1] (BOS, then the delayed tokens without the last step)
        and labels [B, S, T + S - 1] (the delayed tokens, IGNORE_INDEX where empty or masked).
        """
        frames = frames.long()
        if mask is not None:
            empty = torch.tensor(self.config.empty_tokens, device=frames.device).view(1, -1, 1)
            frames = torch.where(mask[:, None, :].bool(), frames, empty)
        delayed = self.delay.build(frames)
        inputs = torch.cat([self.bos(frames.shape[0]).to(frames.device), delayed[:, :, :-1]], dim=-1)
        is_empty = delayed == torch.tensor(self.config.empty_tokens, device=frames.device).view(1, -1, 1)
        labels = delayed.masked_fill(is_empty, IGNORE_INDEX)
        return inputs, labels

    # ------------------------------------------------------------------ forward
    def forward(self, tokens: torch.Tensor, labels: torch.Tensor | None = None,
                cache: DynamicCache | None = None, use_cache: bool = False,
                logits_to_keep: int = 0) -> SeismicLMOutput:
        """tokens [B, S, L] delayed input ids (BOS first for a fresh sequence); labels [B, S, L] or None.

        With a cache, `tokens` are the steps that follow the cached ones (positions continue).
        logits_to_keep: compute the logits of the last n steps only (0: all steps).
        """
        if tokens.ndim != 3 or tokens.shape[1] != self.config.num_streams:
            raise ValueError(f"expected tokens [B, {self.config.num_streams}, L], got {tuple(tokens.shape)}")
        hidden = self.backbone(inputs_embeds=self.embed(tokens), cache=cache, use_cache=use_cache)
        last_hidden = hidden.last_hidden_state[:, -logits_to_keep:] if logits_to_keep else hidden.last_hidden_state
        # One product per stream (rows of lm_head): each stream's logits come out contiguous for the loss.
        logits = tuple(F.linear(last_hidden, w) for w in self.lm_head.weight.split(self.config.vocab_sizes))
        loss = stream_losses = None
        if labels is not None:
            nll, count = stream_cross_entropy(logits, labels)
            stream_losses = nll / count.clamp_min(1)
            loss = stream_losses.mean()
        return SeismicLMOutput(loss=loss, stream_losses=stream_losses, logits=logits,
                               cache=hidden.cache if use_cache else None)

    # ------------------------------------------------------------------ generation
    def next_logits(self, tokens: torch.Tensor, cache: DynamicCache, head: torch.Tensor | None = None) -> torch.Tensor:
        """The generation step: [B, S, L] delayed steps that follow the cached ones -> [B, sum(vocab_sizes)] float32.

        The logits of the step after the last one, every stream's head in one
        product (stream s in columns sum(vocab_sizes[:s]) ..). The same numbers
        as forward(tokens, cache=cache, use_cache=True).logits[s][:, -1], without
        forward's checks, per-stream products and output objects: at batch 1 a
        step is short, and such per-call overheads are a visible part of it.
        head: the head's weight to use (default lm_head's; generate_frames passes generation_head()'s).
        """
        head = self.lm_head.weight if head is None else head
        hidden = self.backbone(inputs_embeds=self.embed(tokens), cache=cache, use_cache=True).last_hidden_state
        return F.linear(hidden[:, -1].to(head.dtype), head).float()

    def generation_head(self) -> torch.Tensor:
        """The head's weight [sum(vocab_sizes), hidden] as generation steps use it: a bfloat16 copy where the
        CPU multiplies bfloat16 natively (oneDNN, accumulating in float32), else lm_head's own.

        Why: the head (every stream's vocabulary side by side) is the largest product of a generation step,
        markedly faster in bfloat16 at the batch sizes of forecasts, while the rounding barely moves the
        predicted distributions (the LM card gives both figures; benchmarks/lm_vs_musicgen.py measures the
        speed). Teacher-forced scoring (forward) keeps float32.
        """
        weight = self.lm_head.weight
        if weight.device.type == "cpu" and weight.dtype == torch.float32 and _native_bfloat16():
            return weight.detach().to(torch.bfloat16).contiguous()
        return weight

    @torch.inference_mode()
    def generate_frames(self, context: torch.Tensor, num_frames: int, *, temperature: float = 1.0,
                        top_k: int | None = None, top_p: float | None = None,
                        generator: torch.Generator | None = None,
                        gain_temperature: float | None = None) -> torch.Tensor:
        """Sample `num_frames` frames that continue `context`.

        context: [B, S, C] frame-aligned tokens (C >= 1). Returns [B, S, num_frames].

        The frames live in their delayed layout `delayed` [B, S, C + num_frames + S - 1]
        (empty where not yet known). Step j of the loop predicts delayed step j
        from the steps before it (KV cache), then writes the sampled tokens of
        the streams that hold a new frame there; the others (context, or past
        the last frame) keep theirs; the head's product in bfloat16 where the CPU has it (generation_head).
        Sampling: temperature (gain_temperature for
        the gain stream; None: the same), then top-k, then top-p. When the sequence outgrows the trained window
        (config.max_positions) the cache is rebuilt from the last max_frames / 2 frames.
        """
        B, S, C = context.shape
        if S != self.config.num_streams or C < 1 or num_frames < 1:
            raise ValueError(f"need context [B, {self.config.num_streams}, C >= 1] and num_frames >= 1, "
                             f"got {tuple(context.shape)} and {num_frames}")
        total = C + num_frames
        frames = torch.tensor(self.config.empty_tokens, device=self.device).view(1, S, 1).repeat(B, 1, total)
        frames[:, :, :C] = context.to(self.device)
        delayed = self.delay.build(frames)  # [B, S, L]
        frame_at = torch.arange(delayed.shape[-1], device=self.device) - torch.arange(S, device=self.device)[:, None]
        to_sample = (frame_at >= C) & (frame_at < total)  # [S, L]: stream s holds a new frame at step j
        temperatures = [gain_temperature or temperature] + [temperature] * (S - 1)  # stream 0 is the gain
        sample = _Sampler(self.config.vocab_sizes, temperatures, top_k, top_p, generator)
        was_training = self.training
        self.eval()
        lay_out_for_generation(self)
        cache, positions, head = None, 0, self.generation_head()
        for step in range(C, delayed.shape[-1]):
            if cache is None or positions + 1 > self.config.max_positions:
                # (Re)build the cache from frames first_frame.. : BOS + delayed steps before `step`.
                keep = self.config.max_positions - 1 if cache is None else self.config.max_frames // 2
                first_frame = max(0, step - keep)
                window = self.delay.build(self.delay.revert(delayed)[:, :, first_frame:])[:, :, : step - first_frame]
                inputs = torch.cat([self.bos(B), window], dim=-1)
                cache, positions = DynamicCache(), 0
            else:
                inputs = delayed[:, :, step - 1 : step]
            logits = self.next_logits(inputs, cache, head)
            positions += inputs.shape[-1]
            delayed[:, :, step] = torch.where(to_sample[:, step], sample(logits), delayed[:, :, step])
        self.train(was_training)
        return self.delay.revert(delayed)[:, :, C:]


def _native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): elsewhere bfloat16 is emulated, slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def lay_out_for_generation(model: nn.Module) -> None:
    """Store every Linear weight [out, in] of `model` column-major (strides (1, out)): same values, names, shapes.

    Why: a generation step at batch 1 is a chain of matrix-vector products
    (x @ W.T in nn.Linear). MKL streams W.T at memory speed when W.T is
    contiguous, but takes a markedly slower path for a row-major W (about 1.4x
    slower on the project's AMD CPU; benchmarks/lm_vs_musicgen.py measures it
    on the peer too). Large batches (training) do not care. The Parameter
    objects are kept (`.data` swap), so optimizers holding them stay valid;
    save_pretrained writes contiguous copies. SeismicLM.generate_frames calls
    it; a no-op once done.
    """
    # Outside inference mode (generate_frames runs in it): the weights must stay trainable.
    with torch.inference_mode(False), torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.weight.stride(0) != 1:
                module.weight.data = module.weight.data.t().contiguous().t()


class _Sampler:
    """Draws one token per stream from the logits of one step, all streams in one batch.

    Each step's logits are copied into rows as wide as the largest vocabulary,
    one row per stream, in a buffer whose columns past a stream's vocabulary
    stay -inf (probability 0); consecutive streams of one vocabulary size (the
    K codebooks) take one copy. Then each stream's temperature, transformers'
    warpers (top-k, then top-p) and inverse-CDF sampling (on a CPU far faster than
    torch.multinomial, with the same distribution).
    """

    def __init__(self, vocab_sizes: list[int], temperatures: list[float], top_k: int | None, top_p: float | None,
                 generator: torch.Generator | None):
        self.vocab_sizes = vocab_sizes
        # (first stream, number of streams, vocabulary size, first column in the logits) of each run of streams
        self.groups, stream, column = [], 0, 0
        for vocab_size, run in groupby(vocab_sizes):
            count = len(list(run))
            self.groups.append((stream, count, vocab_size, column))
            stream, column = stream + count, column + count * vocab_size
        # One temperature per stream (transformers' temperature warper takes one for all rows): [1, S, 1].
        self.inverse_temperature = (None if all(t == 1.0 for t in temperatures) else
                                    torch.tensor([1.0 / t for t in temperatures]).view(1, -1, 1))
        self.warpers = []
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p is not None and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.generator = generator
        self.scores = None  # [B, S, max vocabulary] float32, made on the first call

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """[B, sum(vocab_sizes)] logits (streams side by side, as next_logits) -> [B, S] sampled tokens."""
        B, S = logits.shape[0], len(self.vocab_sizes)
        if self.scores is None or self.scores.shape[0] != B:
            self.scores = torch.full((B, S, max(self.vocab_sizes)), float("-inf"), device=logits.device)
            self.last_token = torch.tensor(self.vocab_sizes, device=logits.device) - 1
            if self.inverse_temperature is not None:
                self.inverse_temperature = self.inverse_temperature.to(logits.device)
        for first, count, vocab_size, column in self.groups:
            self.scores[:, first : first + count, :vocab_size] = logits[:, column : column + count * vocab_size].view(
                B, count, vocab_size)
        # Tempered into a new tensor: the buffer's -inf columns stay as they are.
        scores = self.scores if self.inverse_temperature is None else self.scores * self.inverse_temperature
        scores = scores.reshape(B * S, -1)
        for warp in self.warpers:  # each returns a new tensor: the buffer's -inf columns stay as they are
            scores = warp(None, scores)
        cdf = scores.softmax(-1).cumsum(-1)
        u = torch.rand(B * S, 1, generator=self.generator, device=cdf.device) * cdf[:, -1:]
        drawn = torch.searchsorted(cdf, u, right=True).view(B, S)
        return torch.minimum(drawn, self.last_token)  # u rounded up to the total: the last token, as before


# ---------------------------------------------------------------------- loading
def load_config(path: str | Path) -> SeismicLMConfig:
    """Read a config JSON (e.g. lm/configs/base.json); a bare name like 'tiny' means lm/configs/tiny.json."""
    path = Path(path)
    if not path.suffix and not path.exists():
        path = CONFIGS_DIR / f"{path.name}.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: LM config file not found")
    try:
        return SeismicLMConfig.from_json_file(str(path))
    except Exception as err:
        raise CheckpointError(f"{path}: not a valid LM config ({type(err).__name__}: {err})") from None


def load_lm(path: str | Path | None = None) -> SeismicLM:
    """Load an LM saved with save_pretrained (None: the shipped default in lm/pretrained), in float32, eval mode.

    Raises CheckpointError naming the path when files are missing, corrupt or of another model.
    """
    directory = Path(path) if path is not None else PRETRAINED_DIR
    config_path = directory / "config.json"
    if not config_path.is_file():
        hint = " (no LM has been shipped yet: train one with `eqcodec train-lm` and pass --lm)" if path is None else ""
        raise CheckpointError(f"{directory}: not an LM checkpoint, config.json is missing{hint}")
    if not (directory / "model.safetensors").is_file():
        raise CheckpointError(f"{directory}: LM checkpoint has no model.safetensors")
    try:
        config = SeismicLMConfig.from_json_file(str(config_path))
    except Exception as err:
        raise CheckpointError(f"{config_path}: not a valid LM config ({type(err).__name__}: {err})") from None
    if getattr(config, "model_type", None) != SeismicLMConfig.model_type:
        raise CheckpointError(f"{config_path}: model_type is not {SeismicLMConfig.model_type!r}")
    try:
        model, info = SeismicLM.from_pretrained(str(directory), dtype=torch.float32, output_loading_info=True)
    except Exception as err:
        raise CheckpointError(f"{directory}: corrupt or incompatible LM weights ({type(err).__name__}: {err})") from None
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise CheckpointError(f"{directory}: LM weights do not match its config ({problems})")
    if (directory / "generation_config.json").is_file():
        try:
            model.generation_config = GenerationConfig.from_pretrained(str(directory))
        except Exception as err:
            raise CheckpointError(f"{directory / 'generation_config.json'}: not a valid generation config "
                                  f"({type(err).__name__}: {err})") from None
    return model.eval()
