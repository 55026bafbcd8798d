"""`eqcodec forecast`: probabilistic forecast of seismic traces with the token LM.

For each trace of INPUT the LM continues the last --context-seconds with
--samples sampled continuations of --seconds (lm.generate.generate_continuations:
codec tokens, top-k sampling, decoded in the input's physical units at 40 Hz).
The forecast starts exactly where the input ends, one 40 Hz sample after its
last sample at 40 Hz.

Output files (trace ids NET.STA.LOC.CHA are kept unchanged in every file):
    OUT                       miniSEED, per trace the point forecast: the per-sample mean of the S
                              continuations, an estimate of the conditional mean (the forecast
                              with the least expected squared error)
    OUT_STEM.median.SUFFIX    miniSEED, the per-sample median
    OUT_STEM.q05.SUFFIX       miniSEED, the 5 % quantile (e.g. fc.mseed -> fc.q05.mseed)
    OUT_STEM.q95.SUFFIX       miniSEED, the 95 % quantile
    OUT_STEM.json             forecast envelope: per trace and per second, the RMS amplitude
                              of the context and the median and 5-95 % band over the S samples
    --plot PNG                (default OUT_STEM.png) context, mean and 5-95 % band; envelope below

The quantile traces are pointwise quantiles: a band of where the waveform
may be, not a waveform. The envelope is computed per continuation first (RMS
of each 1-s frame), then summarized over the samples.

Errors (N <= 0, a context shorter than 10 s or longer than the LM's window,
NaN or gaps in the context, an unknown checkpoint) leave no file behind.

--lm DIR forecasts with a fine-tuned LM (e.g. OUT/final of `eqcodec train-lm`);
it must have been trained on tokens of the codec used (--codec). Skill scores
against classical forecasters: `eqcodec evaluate forecast --help`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from codec.files import write_all_or_nothing
from codec.checkpoints import Codec, load_codec, retokenize_hint
from codec.model import CheckpointError
from codec.preprocess import FRAME_LENGTH, SAMPLING_RATE, InputError, check_miniseed_ids, read_stream

from lm.generate import context_samples, continue_array, generate_continuations
from lm.model import SeismicLM, load_lm

from .scores import ensemble_quantiles

#: Quantiles (%) of the band written and drawn.
BAND_PERCENTILES = (5, 50, 95)


def load_lm_and_codec(lm_path=None, codec_path=None) -> tuple[SeismicLM, Codec]:
    """An LM and the codec whose tokens it reads (None: the shipped ones), checked to belong together.

    Raises CheckpointError naming the folder when the LM or the codec cannot be
    loaded, or when the LM was trained on another codec's tokens.
    """
    lm = load_lm(lm_path)
    codec = load_codec(codec_path)
    if lm.config.codec_id != codec.identity():
        lm_name = lm_path or "the shipped LM (lm/pretrained)"
        codec_name = codec_path or "the shipped codec (codec/pretrained)"
        raise CheckpointError(f"{lm_name} was trained on tokens of codec {lm.config.codec_id}, but "
                              f"{codec_name} is codec {codec.identity()}: pass the codec the LM was trained "
                              "with (--codec) or an LM fine-tuned on this codec's tokens (--lm); "
                              f"{retokenize_hint(lm.config.codec_id)}")
    return lm, codec


def forecast_samples(samples_40hz: np.ndarray, lm: SeismicLM, codec: Codec, context_seconds: int,
                     horizon_seconds: int, n_samples: int, seed: int | None = None, top_k: int | None = None,
                     temperature: float | None = None, gain_temperature: float | None = None,
                     source_rate: float | None = None, frame_grids: int | None = None) -> np.ndarray:
    """[S, H * 40] sampled continuations of a 40 Hz array, in its physical units.

    samples_40hz: [N] samples at 40 Hz, N >= context_seconds * 40; its last
    context_seconds are the context; top_k / temperature / gain_temperature / frame_grids None: the
    LM's own. Continuation sample 0 comes 1/40 s after samples_40hz[-1]. Raises InputError for bad
    arguments or NaN in the context.
    """
    if not isinstance(horizon_seconds, (int, np.integer)) or horizon_seconds < 1:
        raise InputError(f"the forecast horizon must be a whole number of seconds >= 1, got {horizon_seconds!r}")
    samples_40hz = np.asarray(samples_40hz, dtype=np.float64)
    if samples_40hz.ndim != 1:
        raise InputError(f"expected a 1-D array of samples, got shape {samples_40hz.shape}")
    if isinstance(context_seconds, (int, np.integer)) and len(samples_40hz) < context_seconds * FRAME_LENGTH:
        raise InputError(f"the array holds {len(samples_40hz) / SAMPLING_RATE:g} s at 40 Hz, shorter than the "
                         f"{context_seconds} s context")
    frame_grids = lm.sampling_settings(frame_grids=frame_grids)["frame_grids"]
    return continue_array(samples_40hz, lm, codec, context_seconds, horizon_seconds, samples=n_samples,
                          temperature=temperature, gain_temperature=gain_temperature, top_k=top_k, seed=seed,
                          source_rate=source_rate, frame_grids=frame_grids)


def per_second_rms(waveforms: np.ndarray) -> np.ndarray:
    """[..., T * 40] -> [..., T] RMS amplitude of each 1-s frame (a trailing partial second is dropped)."""
    seconds = waveforms.shape[-1] // FRAME_LENGTH
    frames = waveforms[..., : seconds * FRAME_LENGTH].reshape(*waveforms.shape[:-1], seconds, FRAME_LENGTH)
    return np.sqrt(np.mean(frames**2, axis=-1))


def forecast_envelope(members: np.ndarray) -> dict:
    """Envelope summary of [S, H * 40] continuations: per-second RMS median and 5/95 % quantiles (lists of H)."""
    rms = per_second_rms(members)  # [S, H]
    low, median, high = ensemble_quantiles(rms, np.asarray(BAND_PERCENTILES) / 100)
    return {"rms_median": median.tolist(), "rms_q05": low.tolist(), "rms_q95": high.tolist()}


def output_paths(out: Path) -> dict[str, Path]:
    """The files of one forecast (see the module docstring)."""
    return {"mean": out, "median": out.with_name(f"{out.stem}.median{out.suffix}"),
            "q05": out.with_name(f"{out.stem}.q05{out.suffix}"),
            "q95": out.with_name(f"{out.stem}.q95{out.suffix}"), "json": out.with_suffix(".json")}


def summarize(stream, continuations: list, context_seconds: int) -> tuple[dict, dict]:
    """Streams {'mean', 'q05', 'median', 'q95'} and the envelope JSON of S continuation Streams."""
    quantile_streams = {name: continuations[0].copy() for name in ("mean", "q05", "median", "q95")}
    envelopes = []
    for i, first in enumerate(continuations[0]):
        members = np.stack([c[i].data for c in continuations])  # [S, H * 40]
        for name, values in zip(("q05", "median", "q95"),
                                ensemble_quantiles(members, np.asarray(BAND_PERCENTILES) / 100)):
            quantile_streams[name][i].data = values
        quantile_streams["mean"][i].data = members.mean(axis=0)
        last_piece = max(stream.select(id=first.id), key=lambda tr: tr.stats.endtime)
        context, _, level = context_samples(last_piece, context_seconds, allow_clipped=True)  # [C * 40] at 40 Hz
        context_rms = per_second_rms(context)  # detrended
        envelopes.append({"id": first.id, "starttime": str(first.stats.starttime),
                          "seconds": members.shape[1] // FRAME_LENGTH, "samples": len(members),
                          "context_rms_per_second": context_rms.tolist(), **forecast_envelope(members - level)})
    return quantile_streams, {"traces": envelopes,
                              "note": "per-second RMS amplitude in input units, the context's linear trend removed; "
                                      "median and 5-95 % band over the sampled continuations"}


def plot_forecast(stream, quantiles: dict, envelope: dict, context_seconds: int, path: Path) -> None:
    """PNG: per trace, the context, the mean forecast and its 5-95 % band; below, the per-second RMS envelope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(quantiles["mean"])
    fig, axes = plt.subplots(2 * n, 1, figsize=(10, 4.2 * n), squeeze=False)
    for i, mean in enumerate(quantiles["mean"]):
        wave_ax, env_ax = axes[2 * i, 0], axes[2 * i + 1, 0]
        t0 = mean.stats.starttime
        context = max(stream.select(id=mean.id), key=lambda tr: tr.stats.endtime).slice(t0 - context_seconds, t0)
        wave_ax.plot(context.times(reftime=t0), context.data, color="black", lw=0.7,
                     label=f"input (last {context_seconds} s)")
        t = mean.times()
        wave_ax.fill_between(t, quantiles["q05"][i].data, quantiles["q95"][i].data, color="tab:red", alpha=0.25,
                             lw=0, label="5-95 % (pointwise)")
        wave_ax.plot(t, mean.data, color="tab:red", lw=0.8, label="mean (point forecast)")
        wave_ax.axvline(0, color="grey", ls="--", lw=0.8)
        wave_ax.set_title(mean.id, fontsize=9, loc="left")
        wave_ax.set_ylabel("amplitude")
        wave_ax.legend(fontsize=7, loc="upper left")
        e = envelope["traces"][i]
        seconds_ctx = np.arange(-len(e["context_rms_per_second"]), 0) + 0.5
        seconds_fc = np.arange(e["seconds"]) + 0.5
        env_ax.semilogy(seconds_ctx, e["context_rms_per_second"], color="black", lw=0.9, label="input RMS")
        env_ax.fill_between(seconds_fc, e["rms_q05"], e["rms_q95"], color="tab:red", alpha=0.25, lw=0,
                            label="forecast RMS 5-95 %")
        env_ax.semilogy(seconds_fc, e["rms_median"], color="tab:red", lw=0.9, label="forecast RMS median")
        env_ax.axvline(0, color="grey", ls="--", lw=0.8)
        env_ax.set_ylabel("RMS per second")
        env_ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel(f"seconds after the end of the input ({quantiles['mean'][0].stats.starttime})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def forecast_file(input: str, out: str, *, context_seconds: int, seconds: int, plot: str | None = None,
                  samples: int | None = None, seed: int = 0, top_k: int | None = None,
                  temperature: float | None = None, lm: str | None = None,
                  codec: str | None = None, gain_temperature: float | None = None,
                  frame_grids: int | None = None) -> list[Path]:
    """`eqcodec forecast`: forecast every trace of a file; write mean, median, 5/95 % quantiles, envelope JSON, plot.

    lm / codec are checkpoint folders (None: the shipped ones); samples, top_k,
    temperature, gain_temperature and frame_grids left None are the LM's own (generation_config.json). Returns the
    paths written; nothing is written when anything fails.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Argument checks before any work (generate_continuations checks them again for API users).
    if seconds < 1:
        raise InputError(f"--seconds must be >= 1, got {seconds}")
    if context_seconds < 1:
        raise InputError(f"--context-seconds must be >= 1, got {context_seconds}")
    out = Path(out)
    paths = output_paths(out)
    paths["plot"] = Path(plot) if plot else out.with_suffix(".png")
    model, coder = load_lm_and_codec(lm, codec)
    sampling = model.sampling_settings(temperature, top_k, samples=samples, gain_temperature=gain_temperature,
                                       frame_grids=frame_grids)
    samples, top_k, temperature = sampling["samples"], sampling["top_k"], sampling["temperature"]
    gain_temperature, frame_grids = sampling["gain_temperature"], sampling["frame_grids"]
    stream = read_stream(input)
    check_miniseed_ids(stream, input)  # the outputs are miniSEED with the input's ids
    continuations = generate_continuations(stream, model, coder, context_seconds, seconds,
                                           samples=samples, temperature=temperature, top_k=top_k, seed=seed,
                                           gain_temperature=gain_temperature, frame_grids=frame_grids)
    quantiles, envelope = summarize(stream, continuations, context_seconds)
    envelope["settings"] = {"input": str(input), "context_seconds": context_seconds, "seconds": seconds,
                            "samples": samples, "top_k": top_k, "temperature": temperature,
                            "gain_temperature": gain_temperature, "frame_grids": frame_grids, "seed": seed,
                            "lm_codec_id": model.config.codec_id}

    # Everything under temporary names first, then renamed: no half-written output.
    writers = {name: (lambda tmp, s=quantiles[name]: s.write(str(tmp), format="MSEED", encoding="FLOAT64"))
               for name in ("mean", "median", "q05", "q95")}
    writers["json"] = lambda tmp: tmp.write_text(json.dumps(envelope, indent=1))
    writers["plot"] = lambda tmp: plot_forecast(stream, quantiles, envelope, context_seconds, tmp)
    written = write_all_or_nothing({paths[name]: write for name, write in writers.items()})
    print(f"{len(quantiles['mean'])} trace(s), {samples} samples of {seconds} s: "
          + ", ".join(str(path) for path in written))
    return written
