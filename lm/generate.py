"""`eqcodec generate`: continue seismic traces with the token LM.

For each trace of INPUT, the last --context-seconds are encoded with the
codec, the LM samples --samples continuations of --seconds frames (KV cache,
delayed streams), and the codec decodes them with the context's scale and
offset, the gain levels coming from the LM's gain stream: continuations are
in the input's physical units, at 40 Hz.

Time: a continuation starts exactly where the input ends, one 40 Hz sample
after its last sample at 40 Hz (the input is resampled to 40 Hz first).

--frame-grids G (default 1): sample j reads a context that ends (j mod G) * 40 / G
samples early, on another frame grid, and is cut to start where the input ends
(frame_grid_offsets); meant for ensembles whose statistics matter (`eqcodec forecast`
uses the LM's own G). A shifted sample does not read the input's last samples: its
miss at the input's last sample is carried into its first second as far as the
input's own autocorrelation says it persists, tapered to zero within the second.
Sample 0 reads the plain context.

Output files (trace ids NET.STA.LOC.CHA are kept unchanged):
    --samples 1:  OUT                      miniSEED, one trace per input trace
    --samples S:  OUT_STEM.s00.SUFFIX ...  one miniSEED file per sample
                  (e.g. cont.mseed -> cont.s00.mseed, cont.s01.mseed, ...)
    --plot PNG    (default OUT_STEM.png) context, two sampled continuations, 5-95 % spread

Errors (bad input, unknown checkpoint) leave no file behind.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from codec.files import write_all_or_nothing
from codec.checkpoints import Codec, load_codec, retokenize_hint
from codec.model import CheckpointError, EncodedWaveform
from codec.preprocess import (FRAME_LENGTH, SAMPLING_RATE, InputError, check_miniseed_ids, check_samples,
                              check_sampling_rate, detrend_and_resample, read_stream, trace_label)

from .model import SeismicLM, load_lm

#: Shortest context accepted (s): the shortest window in a token corpus
#: (tokenized_data's min_window_seconds), the least the LM was trained to read.
MIN_CONTEXT_SECONDS = 10
#: Extra seconds before the context that are resampled with it, so that the
#: resampling filter's edge effects stay outside the context.
RESAMPLING_MARGIN_SECONDS = 2


def _prepared_tail(data, sampling_rate: float, context_seconds: int, label: str, allow_clipped: bool,
                   spare_seconds: int = 0):
    """detrend_and_resample of the last context + spare + margin seconds of `data`: (samples, trend) at 40 Hz.

    spare_seconds: kept before the context for the shifted frame grids (frame_grid_offsets), when the data hold them.
    """
    wanted = int(math.ceil((context_seconds + spare_seconds + RESAMPLING_MARGIN_SECONDS) * sampling_rate))
    data = np.asarray(data)[-wanted:]
    check_samples(data, f"{label} (last {context_seconds} s, the context)", allow_clipped=allow_clipped)
    samples, trend = detrend_and_resample(data, sampling_rate, label)
    if len(samples) < context_seconds * FRAME_LENGTH:
        raise InputError(f"{label}: {len(samples) / SAMPLING_RATE:.1f} s long at 40 Hz, shorter than the "
                         f"{context_seconds} s context")
    return samples, trend


def _trace_tail(trace, context_seconds: int, *, allow_clipped: bool, spare_seconds: int = 0):
    """_prepared_tail of an obspy Trace's end: (samples, trend, start time of the continuation).

    The continuation starts one 40 Hz sample after the last sample of the tail at 40 Hz.
    """
    rate = float(trace.stats.sampling_rate)
    samples, trend = _prepared_tail(trace.data, rate, context_seconds, trace_label(trace), allow_clipped,
                                    spare_seconds)
    used = min(trace.stats.npts,
               int(math.ceil((context_seconds + spare_seconds + RESAMPLING_MARGIN_SECONDS) * rate)))
    start = trace.stats.starttime + (trace.stats.npts - used) / rate
    return samples, trend, start + len(samples) / SAMPLING_RATE


def context_samples(trace, context_seconds: int, *, allow_clipped: bool = False):
    """The last `context_seconds` of an obspy Trace, prepared as token corpora are (detrend_and_resample).

    Returns ([C * 40] float64 detrended samples at 40 Hz, start time of the continuation, level): `level` is
    the removed trend's value at the context's end, added back to continuations so that they are in the
    input's units and go on from where the context ends. Only the context (and a 2-s resampling margin) is
    checked: NaN or a constant signal there raise InputError; earlier samples do not matter.
    """
    samples, trend, continuation_start = _trace_tail(trace, context_seconds, allow_clipped=allow_clipped)
    return samples[-context_seconds * FRAME_LENGTH:], continuation_start, float(trend[-1])


def _last_pieces(stream, context_seconds: int) -> list:
    """One trace per channel id: its last gap-free piece, which must hold the whole context."""
    import obspy

    pieces = {}
    for trace in stream:
        pieces.setdefault(trace.id, []).append(trace)
    traces = []
    for group in pieces.values():
        with_samples = [tr for tr in group if tr.stats.npts > 0]  # an empty piece holds nothing
        if not with_samples:
            raise InputError(f"{trace_label(group[0])}: trace is empty")
        for trace in with_samples:  # merging needs usable rates
            check_sampling_rate(trace.stats.sampling_rate, trace_label(trace))
        merged = obspy.Stream([tr.copy() for tr in with_samples])
        try:
            merged.merge(method=-1)  # joins contiguous pieces; a gap keeps pieces apart
        except Exception as err:  # e.g. pieces with different sampling rates or data types
            raise InputError(f"{trace_label(with_samples[0])}: its pieces cannot be joined ({err})") from None
        merged.sort(keys=["endtime"])
        last = merged[-1]
        if len(merged) > 1 and last.stats.endtime - last.stats.starttime < context_seconds:
            raise InputError(f"{trace_label(last)}: a gap lies inside the last {context_seconds} s "
                             "(the context); give a gap-free context")
        traces.append(last)
    return traces


def check_lm_codec(lm: SeismicLM, codec: Codec) -> None:
    """The LM must read tokens of the codec it was trained with."""
    identity = codec.identity()
    if lm.config.codec_id != identity:
        raise CheckpointError(f"the LM was trained on tokens of codec {lm.config.codec_id}, but the codec given "
                              f"is {identity}; use the codec the LM was trained with (--codec) or another LM "
                              f"({retokenize_hint(lm.config.codec_id)})")


def check_generation(lm: SeismicLM, codec: Codec, context_seconds: int, seconds: int, samples: int) -> None:
    """InputError / CheckpointError for lengths the LM cannot continue or an LM of another codec."""
    for name, value in (("context_seconds", context_seconds), ("seconds", seconds), ("samples", samples)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a whole number >= 1, got {value!r}")
    if context_seconds < MIN_CONTEXT_SECONDS:
        raise InputError(f"a context of {context_seconds} s is shorter than the minimum of {MIN_CONTEXT_SECONDS} s")
    if context_seconds > lm.config.max_frames:
        raise InputError(f"a context of {context_seconds} s is longer than the LM's window of "
                         f"{lm.config.max_frames} s")
    check_lm_codec(lm, codec)


def continue_codes(lm: SeismicLM, encoded: EncodedWaveform, num_frames: int, *, samples: int = 1,
                   temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                   seed: int | None = None, gain_temperature: float | None = None) -> EncodedWaveform:
    """Sample continuations of token arrays: codes [B, K, C] + gain [B, C] -> context + N new frames.

    Returns an EncodedWaveform of [B * samples, K, C + N] codes (row b * samples + j:
    sample j of row b), scale and offset repeated, ready for codec.decode.
    temperature, top_k, top_p, gain_temperature: None takes the LM's own (lm.generation_config).
    """
    from tokenized_data import from_streams, to_streams

    settings = lm.sampling_settings(temperature, top_k, top_p, gain_temperature=gain_temperature)
    for name in ("temperature", "gain_temperature"):
        if not settings[name] > 0:
            raise InputError(f"{name.replace('_', '-')} must be > 0, got {settings[name]!r}")
    tokens = to_streams(encoded.codes, encoded.gain).repeat_interleave(samples, dim=0)  # [B * samples, S, C]
    generator = torch.Generator(device=lm.device).manual_seed(seed) if seed is not None else None
    new = lm.generate_frames(tokens.to(lm.device), num_frames, temperature=settings["temperature"],
                             gain_temperature=settings["gain_temperature"], top_k=settings["top_k"],
                             top_p=settings["top_p"], generator=generator)
    codes, gain = from_streams(torch.cat([tokens, new.cpu()], dim=-1))
    frames = codes.shape[-1]
    return EncodedWaveform(codes, gain, encoded.scale.repeat_interleave(samples),
                           encoded.offset.repeat_interleave(samples), frames * FRAME_LENGTH)


def _continue_prepared(contexts: np.ndarray, levels, lm: SeismicLM, codec: Codec, seconds: int, *,
                       samples: int, source_rates=None, **sampling) -> np.ndarray:
    """[B, C * 40] prepared contexts (_prepared_tail's samples) -> [B, samples, seconds * 40] continuations in input units.

    source_rates: [B] rates the contexts were recorded at (None: 40 Hz or more): a continuation of a slower
    channel is decoded with nothing above its Nyquist, as its context (EncodedWaveform.source_rate)."""
    context_frames = contexts.shape[-1] // FRAME_LENGTH
    continued = continue_codes(lm, codec.encode(contexts), seconds, samples=samples, **sampling)
    rates = [rate for rate in (source_rates or [None] * len(contexts)) for _ in range(samples)]  # per row
    waveforms = np.empty((len(rates), seconds * FRAME_LENGTH))
    # Decode context + continuation together, so the decoder sees real neighbours at the boundary.
    for rate in set(rates):
        rows = [i for i, r in enumerate(rates) if r == rate]
        part = continued[torch.as_tensor(rows)]
        part.source_rate = rate
        waveforms[rows] = codec.decode(part)[:, context_frames * FRAME_LENGTH:].cpu().numpy()
    waveforms = waveforms.reshape(len(contexts), samples, -1)
    return waveforms + np.asarray(levels, dtype=np.float64)[:, None, None]  # back to the input's level


def frame_grid_offsets(grids: int) -> list[int]:
    """40 Hz samples by which the context of each frame grid ends before the input: 0, 40/g, 2 * 40/g, ...

    The codec cuts frames on a grid fixed by where the context starts, which bears no relation to the
    signal. Sampled continuations read from contexts on several grids are a mixture over that arbitrary
    choice: their spread includes what the tokens of one grid cannot tell apart, and their mean is
    smoother in time (benchmarks/choose_sampling.py measures it and chooses `grids`).
    """
    return [int(round(i * FRAME_LENGTH / grids)) for i in range(grids)]


def check_frame_grids(grids) -> None:
    if not isinstance(grids, (int, np.integer)) or not 1 <= grids <= FRAME_LENGTH:
        raise InputError(f"frame grids must be a whole number from 1 to {FRAME_LENGTH}, got {grids!r}")


def _continue_tails(tails, lm: SeismicLM, codec: Codec, context_seconds: int, seconds: int, *, samples: int,
                    grids: int, source_rates, seed: int | None, **sampling) -> np.ndarray:
    """[B, samples, seconds * 40] continuations of prepared tails [(samples [N_b], trend [N_b])] at 40 Hz.

    Sample j reads its context on frame grid j % grids (frame_grid_offsets): the whole seconds that end
    that many 40 Hz samples before the tail's end, up to context_seconds of them; its continuation is
    generated one frame longer and cut so that every sample starts one 40 Hz sample after the tail;
    a shifted sample's miss at the tail's last sample is carried into its first frame (_join_weights).
    Grid 0 is the plain context; when the tails hold too little for the shifted grids to read
    MIN_CONTEXT_SECONDS, every sample uses grid 0.
    """
    length = min(len(tail) for tail, _ in tails)
    offsets = frame_grid_offsets(min(grids, samples))
    if (length - offsets[-1]) // FRAME_LENGTH < MIN_CONTEXT_SECONDS:
        offsets = [0]
    out = np.empty((len(tails), samples, seconds * FRAME_LENGTH))
    if len(offsets) > 1:  # what the shifted grids' samples are joined to (_join_weights), the same for every grid
        last = np.array([tail[-1] + trend[-1] for tail, trend in tails])  # the input's last sample [B]
        carry = np.stack([_join_weights(tail, seconds * FRAME_LENGTH) for tail, _ in tails])  # [B, H * 40]
    # Grids whose contexts and continuations have the same lengths are generated in one batch.
    groups: dict[tuple, list[tuple[int, list[int]]]] = {}
    for grid, offset in enumerate(offsets):
        members = list(range(grid, samples, len(offsets)))
        context_s = min(context_seconds, (length - offset) // FRAME_LENGTH)
        groups.setdefault((context_s, offset > 0, len(members)), []).append((offset, members))
    for g, ((context_s, shifted, count), grid_members) in enumerate(groups.items()):
        n = context_s * FRAME_LENGTH
        contexts = [tail[len(tail) - offset - n : len(tail) - offset] for offset, _ in grid_members for tail, _ in tails]
        levels = [float(trend[len(trend) - offset - 1]) for offset, _ in grid_members for _, trend in tails]
        generated = _continue_prepared(np.stack(contexts), levels, lm, codec, seconds + int(shifted), samples=count,
                                       source_rates=list(source_rates) * len(grid_members),
                                       seed=None if seed is None else seed + g, **sampling)
        for i, (offset, members) in enumerate(grid_members):
            block = generated[i * len(tails) : (i + 1) * len(tails)]
            out[:, members] = block[:, :, offset : offset + seconds * FRAME_LENGTH]
            if offset:
                miss = last[:, None] - block[:, :, offset - 1]  # [B, members]
                out[:, members] += miss[:, :, None] * carry[:, None, :]
    return out


def _join_weights(tail: np.ndarray, length: int) -> np.ndarray:
    """[length] weights by which a shifted grid's miss at the input's last sample is carried after it.

    A shifted frame grid's sample was generated over the input's last samples without reading them.
    How much of its miss at the last sample persists t samples later is the input's own autocorrelation
    at lag t (the least-squares carry for a miss that is as correlated in time as the signal): most of
    it on a smooth microseism, little on a broadband coda. A raised cosine ends the carry within one
    frame, after which every sample is the LM's own.
    """
    recent = tail[-10 * FRAME_LENGTH :] - tail[-10 * FRAME_LENGTH :].mean()
    power = float(np.dot(recent, recent))
    t = np.arange(1, FRAME_LENGTH)
    rho = np.array([np.dot(recent[:-lag], recent[lag:]) for lag in t]) / power if power > 0 else np.zeros(len(t))
    weights = np.zeros(length)
    n = min(length, len(t))
    weights[:n] = (rho * 0.5 * (1 + np.cos(np.pi * t / FRAME_LENGTH)))[:n]
    return weights


def continue_array(samples_40hz: np.ndarray, lm: SeismicLM, codec: Codec, context_seconds: int, seconds: int, *,
                   samples: int = 1, temperature: float | None = None, top_k: int | None = None,
                   top_p: float | None = None, seed: int | None = None, allow_clipped: bool = False,
                   gain_temperature: float | None = None, source_rate: float | None = None,
                   frame_grids: int = 1) -> np.ndarray:
    """Continue 40 Hz arrays: [N] or [B, N] samples -> [samples, H * 40] or [B, samples, H * 40].

    The last context_seconds of each row are the context (prepared as token corpora
    are); continuation sample 0 comes 1/40 s after the row's last sample; the result
    is in the input's units. source_rate: the rate the rows were recorded at before resampling to 40 Hz
    (None: 40 Hz or more; a slower channel's continuations hold nothing above its Nyquist).
    frame_grids: sample j reads its context on frame grid j % frame_grids (_continue_tails; 1: every
    sample goes on from the row's last sample). No obspy involved: the array API under generate_continuations.
    """
    x = np.asarray(samples_40hz, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise InputError(f"expected [N] or [B, N] samples, got shape {x.shape}")
    check_generation(lm, codec, context_seconds, seconds, samples)
    check_frame_grids(frame_grids)
    rows = x[None] if x.ndim == 1 else x
    tails = [_prepared_tail(row, SAMPLING_RATE, context_seconds, f"row {i}", allow_clipped, int(frame_grids > 1))
             for i, row in enumerate(rows)]
    out = _continue_tails(tails, lm, codec, context_seconds, seconds, samples=samples, grids=frame_grids,
                          source_rates=[source_rate] * len(tails), seed=seed, temperature=temperature,
                          gain_temperature=gain_temperature, top_k=top_k, top_p=top_p)
    return out[0] if x.ndim == 1 else out


def generate_continuations(stream, lm: SeismicLM, codec: Codec, context_seconds: int, seconds: int, *,
                           samples: int = 1, temperature: float | None = None, top_k: int | None = None,
                           top_p: float | None = None, seed: int | None = None,
                           allow_clipped: bool = False, gain_temperature: float | None = None,
                           frame_grids: int = 1) -> list:
    """Continue every trace of an obspy Stream: returns `samples` obspy Streams.

    Stream j holds the j-th sampled continuation of every input channel (same
    ids), `seconds` long at 40 Hz, starting one 40 Hz sample after the input's
    end, in the input's physical units. The context is the last
    `context_seconds` of each channel (MIN_CONTEXT_SECONDS .. lm.config.max_frames).
    temperature, top_k, top_p, gain_temperature: None takes the LM's own (lm.generation_config).
    frame_grids: as continue_array's (forecasts pass the LM's own, lm.sampling_settings()).
    """
    import obspy

    check_generation(lm, codec, context_seconds, seconds, samples)
    check_frame_grids(frame_grids)
    if len(stream) == 0:
        raise InputError("the stream holds no trace")
    traces = _last_pieces(stream, context_seconds)
    tails = [_trace_tail(tr, context_seconds, allow_clipped=allow_clipped, spare_seconds=int(frame_grids > 1))
             for tr in traces]
    waveforms = _continue_tails([(s, t) for s, t, _ in tails], lm, codec, context_seconds, seconds,
                                samples=samples, grids=frame_grids,
                                source_rates=[float(tr.stats.sampling_rate) for tr in traces], seed=seed,
                                temperature=temperature, gain_temperature=gain_temperature, top_k=top_k,
                                top_p=top_p)
    starts = [start for _, _, start in tails]
    outputs = []
    for j in range(samples):
        out = obspy.Stream()
        for i, trace in enumerate(traces):
            header = {k: trace.stats[k] for k in ("network", "station", "location", "channel")}
            out.append(obspy.Trace(waveforms[i, j].astype(np.float64),
                                   header={**header, "starttime": starts[i], "sampling_rate": SAMPLING_RATE}))
        outputs.append(out)
    return outputs


def plot_continuations(stream, continuations: list, context_seconds: int, path: Path) -> None:
    """PNG: per channel, the context (input), two of the sampled continuations and the 5-95 % spread of all.

    Single samples, not a median: a continuation should look like the trace
    going on, which a per-sample median or mean of many samples does not.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = [tr.id for tr in continuations[0]]
    fig, axes = plt.subplots(len(ids), 1, figsize=(10, 2.4 * len(ids)), squeeze=False)
    for ax, trace_id in zip(axes[:, 0], ids):
        generated = np.stack([c.select(id=trace_id)[0].data for c in continuations])  # [samples, N]
        first = continuations[0].select(id=trace_id)[0]
        t0 = first.stats.starttime
        context = max(stream.select(id=trace_id), key=lambda tr: tr.stats.endtime)
        context = context.slice(t0 - context_seconds, t0)
        t_ctx = context.times(reftime=t0)
        t_gen = first.times()
        ax.plot(t_ctx, context.data, color="black", lw=0.7, label=f"input (last {context_seconds} s)")
        lo, hi = np.percentile(generated, [5, 95], axis=0)
        ax.fill_between(t_gen, lo, hi, color="tab:red", alpha=0.2, lw=0,
                        label=f"5-95 % of {len(continuations)} samples")
        for j, color in zip(range(min(2, len(generated))), ("tab:red", "tab:blue")):
            ax.plot(t_gen, generated[j], color=color, lw=0.7, label=f"sample {j + 1}")
        ax.axvline(0, color="grey", ls="--", lw=0.8)
        ax.set_title(trace_id, fontsize=9, loc="left")
        ax.set_ylabel("amplitude (input units)")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    axes[-1, 0].set_xlabel(f"seconds after the end of the input ({continuations[0][0].stats.starttime})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def output_paths(out: Path, samples: int) -> list[Path]:
    """miniSEED path of each sample (see the module docstring)."""
    if samples == 1:
        return [out]
    return [out.with_name(f"{out.stem}.s{j:02d}{out.suffix}") for j in range(samples)]


def generate_file(input: str, out: str, *, context_seconds: int, seconds: int, plot: str | None = None,
                  allow_clipped: bool = False, samples: int = 1, temperature: float | None = None,
                  top_k: int | None = None,
                  top_p: float | None = None, seed: int | None = None, lm: str | None = None,
                  codec: str | None = None, gain_temperature: float | None = None,
                  frame_grids: int = 1) -> list[Path]:
    """`eqcodec generate`: continue every trace of a file; write the continuations (miniSEED) and a plot.

    lm / codec are checkpoint folders (None: the shipped ones); sampling settings left None
    are the LM's own (its generation_config.json). Returns the paths written;
    nothing is written when anything fails.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out)
    plot = Path(plot) if plot else out.with_suffix(".png")
    stream = read_stream(input)
    check_miniseed_ids(stream, input)  # the continuations are written as miniSEED with the input's ids
    model = load_lm(lm)
    coder = load_codec(codec)
    continuations = generate_continuations(
        stream, model, coder, context_seconds, seconds, samples=samples, temperature=temperature,
        gain_temperature=gain_temperature, top_k=top_k, top_p=top_p, seed=seed, allow_clipped=allow_clipped,
        frame_grids=frame_grids)

    # Everything under temporary names first, then renamed: no half-written output.
    writers = {path: (lambda tmp, c=continuation: c.write(str(tmp), format="MSEED"))
               for path, continuation in zip(output_paths(out, samples), continuations)}
    writers[plot] = lambda tmp: plot_continuations(stream, continuations, context_seconds, tmp)
    written = write_all_or_nothing(writers)
    print(f"{len(continuations[0])} trace(s) x {samples} sample(s) of {seconds} s: "
          + ", ".join(str(path) for path in written))
    return written
