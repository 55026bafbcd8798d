"""Seeded generator of seismogram-like signals, for pretraining the token LM (KernelSynth's idea, Chronos).

Each trace (40 Hz, one channel, arbitrary counts) is a random composition of
the parts of a real seismogram, every random choice drawn from
`numpy.random.default_rng([seed, index])`, so that any trace is rebuilt from
(seed, index) alone:

1. Background noise: Gaussian noise with a random coloured spectrum: a power
   law f^-a (a from 0 to 2), a secondary microseism peak (0.12-0.3 Hz, 10-40 dB
   above the power law there), with probability 1/2 a primary microseism peak
   (0.05-0.09 Hz) and with probability 1/3 a cultural-noise bump (2-15 Hz).
2. Local events (a Poisson number, on average 0-1.5 per trace): a P and an S
   burst of band-limited noise (corner 1-10 Hz), S 1-25 s after P and 1.5-6
   times stronger, each with a fast rise and an exponential coda decay, at
   -5 to +40 dB over the noise; onsets may lie before the trace starts (a coda
   running in) or anywhere in it.
3. A teleseism (probability 0.15): a low-frequency P (Ricker, 0.2-1 Hz) with a
   long coda, and a dispersed surface-wave train (frequency rising from ~0.03
   to ~0.1 Hz over 40-120 s).
4. Reverberation (probability 0.25 per event): the event passes through a water
   layer (tasks.synthetic.water_layer: two-way time 2-8 s, r 0.3-0.7).
5. The sum, scaled by 10^(1..5) counts (the codec's gain takes any level).

`seismogram(rng, duration_s)` returns one trace and its parameters;
`write_seismogram_set(n, out, seed)` stores a set as miniSEED files (one per
`traces_per_file` traces, each trace its own station SY.nnnnn) plus a
manifest of every trace's parameters, which `eqcodec tokenize` reads like any
archive. `benchmarks/synthetic_pretraining.py` measures whether pretraining
on them helps the LM on held-out real recordings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import signal

from codec.files import staged_folder
from codec.preprocess import SAMPLING_RATE

from .synthetic import ricker, water_layer

#: Every stored trace starts at T0 + index * STRIDE_S (distinct windows for event-wise splits).
T0 = "2002-01-01T00:00:00"
STRIDE_S = 3600
NETWORK, CHANNEL = "SY", "HHZ"
#: Station codes are the trace's index in 5 digits (miniSEED allows 5 characters).
MAX_TRACES = 100_000
#: Probabilities of the optional parts.
P_PRIMARY_MICROSEISM, P_CULTURAL, P_TELESEISM, P_REVERBERATION = 0.5, 1 / 3, 0.15, 0.25


def coloured_noise(rng: np.random.Generator, n: int, sampling_rate: float = SAMPLING_RATE) -> tuple[np.ndarray, dict]:
    """[n] unit-RMS Gaussian noise with a random seismic-noise-like spectrum (part 1) and its parameters."""
    f = np.fft.rfftfreq(n, 1 / sampling_rate)
    f[0] = f[1]
    logf = np.log10(f)
    slope = rng.uniform(0.0, 2.0)
    power = f ** -slope  # relative power spectral density

    def peak(centre_hz, width_decades, height_db):
        at_centre = np.interp(np.log10(centre_hz), logf, power)  # relative to the power law there
        return at_centre * 10 ** (height_db / 10) * np.exp(-0.5 * ((logf - np.log10(centre_hz)) / width_decades) ** 2)

    parameters = {"slope": slope, "secondary_microseism_hz": rng.uniform(0.12, 0.3),
                  "secondary_height_db": rng.uniform(10, 40)}
    power = power + peak(parameters["secondary_microseism_hz"], rng.uniform(0.08, 0.2),
                         parameters["secondary_height_db"])
    if rng.random() < P_PRIMARY_MICROSEISM:
        parameters["primary_microseism_hz"] = rng.uniform(0.05, 0.09)
        power = power + peak(parameters["primary_microseism_hz"], 0.08, rng.uniform(0, 20))
    if rng.random() < P_CULTURAL:
        parameters["cultural_hz"] = rng.uniform(2, 15)
        power = power + peak(parameters["cultural_hz"], rng.uniform(0.1, 0.3), rng.uniform(0, 20))
    spectrum = np.sqrt(power) * (rng.normal(size=len(f)) + 1j * rng.normal(size=len(f)))
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x**2)), parameters


def burst(rng: np.random.Generator, t: np.ndarray, onset_s: float, corner_hz: float, rise_s: float,
          decay_s: float, sampling_rate: float = SAMPLING_RATE) -> np.ndarray:
    """[N] band-limited noise under a rise-and-decay envelope starting at onset_s (0 before), unit peak envelope."""
    low, high = corner_hz / 2, min(2 * corner_hz, 0.45 * sampling_rate)
    sos = signal.butter(2, [low, high], btype="band", fs=sampling_rate, output="sos")
    carrier = signal.sosfilt(sos, rng.normal(size=len(t)))
    carrier /= np.sqrt(np.mean(carrier**2)) + 1e-12
    after = np.clip(t - onset_s, 0, None)
    envelope = np.where(t >= onset_s, (1 - np.exp(-after / rise_s)) * np.exp(-after / decay_s), 0.0)
    return carrier * envelope


def local_event(rng: np.random.Generator, t: np.ndarray, duration_s: float) -> tuple[np.ndarray, dict]:
    """[N] a P and an S burst (part 2), peak envelope 1 at the S wave, and the event's parameters."""
    sp = rng.uniform(1, 25)
    p = {"kind": "local", "p_onset_s": rng.uniform(-sp - 10, duration_s), "s_minus_p_s": sp,
         "corner_hz": rng.uniform(1, 10),
         "s_to_p": rng.uniform(1.5, 6), "coda_decay_s": rng.uniform(1, 4) * (1 + sp / 5)}
    rise = rng.uniform(0.05, 0.5)
    x = (burst(rng, t, p["p_onset_s"], p["corner_hz"], rise, p["coda_decay_s"] / 2) / p["s_to_p"]
         + burst(rng, t, p["p_onset_s"] + sp, p["corner_hz"] * 0.7, 2 * rise, p["coda_decay_s"]))
    return x, p


def teleseism(rng: np.random.Generator, t: np.ndarray, duration_s: float,
              sampling_rate: float = SAMPLING_RATE) -> tuple[np.ndarray, dict]:
    """[N] a low-frequency P with coda and a dispersed surface-wave train (part 3), and their parameters."""
    p = {"kind": "teleseism", "p_onset_s": rng.uniform(-30, duration_s), "p_hz": rng.uniform(0.2, 1.0),
         "surface_onset_s": rng.uniform(-60, duration_s), "surface_duration_s": rng.uniform(40, 120)}
    wavelet = ricker(p["p_hz"], sampling_rate)
    spike = np.zeros(len(t))
    at = int(round((p["p_onset_s"] + len(wavelet) / 2 / sampling_rate) * sampling_rate))
    if 0 <= at < len(t):
        spike[at] = 1.0
    x = np.convolve(spike, wavelet, mode="same") + 0.3 * burst(rng, t, p["p_onset_s"], 2 * p["p_hz"], 1.0, 30.0)
    # Surface waves: instantaneous frequency rising linearly (normal dispersion), Gaussian envelope.
    tau = (t - p["surface_onset_s"]) / p["surface_duration_s"]
    inside = (tau >= 0) & (tau <= 1)
    f0, f1 = rng.uniform(0.02, 0.04), rng.uniform(0.06, 0.12)
    phase = 2 * np.pi * p["surface_duration_s"] * (f0 * tau + (f1 - f0) * tau**2 / 2)
    x = x + np.where(inside, rng.uniform(1, 5) * np.exp(-0.5 * ((tau - 0.4) / 0.2) ** 2) * np.sin(phase), 0.0)
    return x / (np.abs(x).max() + 1e-12), p


def seismogram(rng: np.random.Generator, duration_s: float = 128.0,
               sampling_rate: float = SAMPLING_RATE) -> tuple[np.ndarray, dict]:
    """[N] one synthetic seismogram (float64 counts) and its parameters; see the module docstring."""
    n = int(round(duration_s * sampling_rate))
    t = np.arange(n) / sampling_rate
    x, noise = coloured_noise(rng, n, sampling_rate)
    parameters = {"duration_s": duration_s, "sampling_rate": sampling_rate,
                  "noise": {k: float(v) for k, v in noise.items()}, "events": []}
    parts = [local_event(rng, t, duration_s) for _ in range(rng.poisson(rng.uniform(0, 1.5)))]
    if rng.random() < P_TELESEISM:
        parts.append(teleseism(rng, t, duration_s, sampling_rate))
    for part, event in parts:
        event["snr_db"] = rng.uniform(-5, 40)
        if rng.random() < P_REVERBERATION:
            event["reverberation"] = {"tau_s": rng.uniform(2, 8), "reflection": rng.uniform(0.3, 0.7)}
            part = water_layer(part, round(event["reverberation"]["tau_s"] * sampling_rate),
                               event["reverberation"]["reflection"], "simple")
        x = x + part * 10 ** (event["snr_db"] / 20)
        parameters["events"].append({k: float(v) if isinstance(v, (float, np.floating)) else v
                                     for k, v in event.items()})
    parameters["scale"] = float(10 ** rng.uniform(1, 5))
    return x * parameters["scale"], parameters


def write_seismogram_set(n_traces: int, out_dir, seed: int = 0, duration_s: float = 128.0,
                         traces_per_file: int = 100, overwrite: bool = False) -> Path:
    """Store traces 0 .. n_traces - 1 (rng [seed, i]) as miniSEED in out_dir, with manifest.json; returns out_dir.

    out_dir/waveforms/synthetic_00000.mseed   traces_per_file traces, SY.00000..HHZ, SY.00001..HHZ, ...
    out_dir/manifest.json                     the recipe and every trace's parameters
    Written to a temporary folder beside out_dir and renamed at the end: nothing half-written.
    """
    import obspy

    out_dir = Path(out_dir)
    if not 1 <= n_traces <= MAX_TRACES or traces_per_file < 1:
        raise ValueError(f"n_traces must be 1 to {MAX_TRACES} and traces_per_file positive, got {n_traces} and "
                         f"{traces_per_file}")
    with staged_folder(out_dir, overwrite) as staging:
        (staging / "waveforms").mkdir()
        entries = []
        for first in range(0, n_traces, traces_per_file):
            stream = obspy.Stream()
            name = f"waveforms/synthetic_{first:05d}.mseed"
            for index in range(first, min(first + traces_per_file, n_traces)):
                x, parameters = seismogram(np.random.default_rng([seed, index]), duration_s)
                header = {"network": NETWORK, "station": f"{index:05d}", "channel": CHANNEL,
                          "starttime": obspy.UTCDateTime(T0) + STRIDE_S * index, "sampling_rate": SAMPLING_RATE}
                stream.append(obspy.Trace(x.astype(np.float32), header=header))
                entries.append({"file": name, "trace_id": stream[-1].id, "index": index, "parameters": parameters})
            stream.write(str(staging / name), format="MSEED")
        manifest = {"generator": "tasks.synthetic_seismograms", "description": __doc__.split("\n\n")[0],
                    "recipe": {"n_traces": n_traces, "seed": seed, "duration_s": duration_s}, "traces": entries}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out_dir
