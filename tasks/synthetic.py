"""Seeded synthetic benchmark for predictive deconvolution: reverberating traces with known truth.

Each trace (40 Hz) is built in three steps, every random choice drawn from
`numpy.random.default_rng([seed, index])` so that any trace can be rebuilt
from (seed, index) alone:

1. Primaries: a sparse reflectivity series (Bernoulli-Gaussian: on average
   `EVENTS_PER_SECOND` spikes per second, Gaussian amplitudes) convolved with
   a wavelet of peak frequency 2-5 Hz, by default a zero-phase Ricker; with
   `wavelets=WAVELETS` each trace draws one of (see `wavelet`)
       ricker         zero phase
       minimum-phase  the minimum-phase wavelet of the Ricker's amplitude spectrum
       berlage        t^2 exp(-pi f t) sin(2 pi f t), causal (Aldridge 1990), a source-like onset
2. Reverberation: the primaries pass through a water-layer operator with
   two-way time tau (2-8 s) and sea-floor reflection coefficient r (0.3-0.7):
       simple: 1 / (1 + r z^tau)        (one reverberating leg)
       backus: 1 / (1 + r z^tau)^2      (source and receiver legs, Backus 1959)
   In the "constant" set tau is fixed per trace (a whole number of samples);
   in the "drifting" set tau changes linearly along the trace by up to
   +-`MAX_DRIFT` of its starting value (a non-stationarity test: a single
   operator designed on the whole trace no longer fits every part of it).
3. Noise: white Gaussian noise at an SNR of 20-40 dB relative to the
   reverberated signal's RMS.

The parts are returned separately: observed = primaries + reverberation + noise.
`iter_set` draws a set lazily (make_set: as a list); `write_set` stores one,
from a list or from `iter_set`, as miniSEED (observed traces in `waveforms/`,
which `eqcodec tokenize` reads; the truth in `truth/`) with a JSON manifest
of every trace's parameters; `load_set` reads it back. Sets of 10^4 traces
and more (fine-tuning corpora: one 120-s trace is one tokenized window) are
written one trace at a time, in memory bounded by one trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collections.abc import Iterable, Iterator

from codec.files import staged_folder
from codec.preprocess import SAMPLING_RATE

#: Parameter ranges of the benchmark (uniform draws).
TAU_RANGE_S = (2.0, 8.0)
REFLECTION_RANGE = (0.3, 0.7)
PEAK_FREQUENCY_RANGE_HZ = (2.0, 5.0)
SNR_RANGE_DB = (20.0, 40.0)
#: Mean number of primary reflections per second.
EVENTS_PER_SECOND = 0.5
#: Largest relative change of tau along a drifting trace.
MAX_DRIFT = 0.1
#: Peak amplitude of the primaries' wavelet, in the files' (arbitrary) counts.
AMPLITUDE = 1000.0
#: Every stored trace starts at T0 + index hours (distinct "events" for event-wise splits).
T0 = "2001-01-01T00:00:00"
#: Wavelet families a trace can draw (make_trace(wavelets=...)); the benchmark's test sets use Ricker only.
WAVELETS = ("ricker", "minimum-phase", "berlage")
NETWORK, CHANNEL = "SY", "BHZ"


@dataclass
class SyntheticTrace:
    """One synthetic trace and its known parts, all [N] at 40 Hz.

    observed = primaries + reverberation + noise. `reverberation` is what the
    water layer adds to the primaries (the multiples); `tau_samples` [N] is
    the reverberation period in effect at each sample.
    """

    observed: np.ndarray
    primaries: np.ndarray
    reverberation: np.ndarray
    noise: np.ndarray
    tau_samples: np.ndarray
    parameters: dict = field(default_factory=dict)


def ricker(peak_frequency_hz: float, sampling_rate: float = SAMPLING_RATE) -> np.ndarray:
    """Zero-phase Ricker wavelet, unit peak, truncated at +-1.5 / peak frequency: [2M + 1]."""
    half = int(np.ceil(1.5 / peak_frequency_hz * sampling_rate))
    t = np.arange(-half, half + 1) / sampling_rate
    arg = (np.pi * peak_frequency_hz * t) ** 2
    return (1 - 2 * arg) * np.exp(-arg)


def berlage(peak_frequency_hz: float, sampling_rate: float = SAMPLING_RATE) -> np.ndarray:
    """Causal Berlage wavelet t^2 exp(-pi f t) sin(2 pi f t), unit peak, 3 / peak frequency long: [M]."""
    t = np.arange(int(np.ceil(3.0 / peak_frequency_hz * sampling_rate))) / sampling_rate
    w = t**2 * np.exp(-np.pi * peak_frequency_hz * t) * np.sin(2 * np.pi * peak_frequency_hz * t)
    return w / np.abs(w).max()


def wavelet(name: str, peak_frequency_hz: float, sampling_rate: float = SAMPLING_RATE) -> np.ndarray:
    """The wavelet of a family in WAVELETS at a peak frequency, unit peak.

    minimum-phase: scipy.signal.minimum_phase (homomorphic, full length) of
    the Ricker, i.e. the same amplitude spectrum with its energy up front.
    """
    if name == "ricker":
        return ricker(peak_frequency_hz, sampling_rate)
    if name == "minimum-phase":
        from scipy.signal import minimum_phase

        w = minimum_phase(ricker(peak_frequency_hz, sampling_rate), method="homomorphic", half=False)
        return w / np.abs(w).max()
    if name == "berlage":
        return berlage(peak_frequency_hz, sampling_rate)
    raise ValueError(f"unknown wavelet {name!r}: choose from {', '.join(WAVELETS)}")


def sparse_reflectivity(n_samples: int, rng: np.random.Generator,
                        events_per_second: float = EVENTS_PER_SECOND,
                        sampling_rate: float = SAMPLING_RATE) -> np.ndarray:
    """[N]: Bernoulli-Gaussian spikes, about `events_per_second` per second, unit-variance amplitudes."""
    spikes = rng.random(n_samples) < events_per_second / sampling_rate
    return np.where(spikes, rng.normal(size=n_samples), 0.0)


def water_layer(x: np.ndarray, tau_samples, reflection: float, kind: str = "backus") -> np.ndarray:
    """Pass x [N] through 1 / (1 + r z^tau) ("simple") or its square ("backus").

    tau_samples: a number, or [N] giving the delay in effect at each sample
    (fractional delays are linearly interpolated). The recursion
    y[n] = x[n] - r y[n - tau[n]] runs in blocks shorter than the smallest
    delay, so each block only reads samples already computed.
    """
    if kind not in ("simple", "backus"):
        raise ValueError(f"unknown water-layer operator {kind!r}: use 'simple' or 'backus'")
    x = np.asarray(x, dtype=np.float64)
    tau = np.broadcast_to(np.asarray(tau_samples, dtype=np.float64), x.shape)
    if tau.min() < 1:
        raise ValueError("the reverberation delay must be at least one sample")
    block = int(np.floor(tau.min()))
    n = np.arange(len(x))
    y = x
    for _ in range(2 if kind == "backus" else 1):
        source, y = y, np.zeros_like(x)
        for start in range(0, len(x), block):
            stop = min(start + block, len(x))
            delayed = np.interp(n[start:stop] - tau[start:stop], n[:start], y[:start],
                                left=0.0) if start else 0.0
            y[start:stop] = source[start:stop] - reflection * delayed
    return y


def make_trace(rng: np.random.Generator, duration_s: float = 180.0, drifting: bool = False,
               kind: str = "backus", sampling_rate: float = SAMPLING_RATE,
               wavelets: tuple[str, ...] = ("ricker",)) -> SyntheticTrace:
    """Draw one trace's parameters from `rng` and build it (see the module docstring).

    wavelets: the families drawn from (uniformly); with one family no draw is
    made, so Ricker-only traces are those of earlier versions, draw for draw.
    """
    for name in wavelets:
        if name not in WAVELETS:
            raise ValueError(f"unknown wavelet {name!r}: choose from {', '.join(WAVELETS)}")
    n = int(round(duration_s * sampling_rate))
    tau_start = rng.uniform(*TAU_RANGE_S)
    reflection = rng.uniform(*REFLECTION_RANGE)
    peak_frequency = rng.uniform(*PEAK_FREQUENCY_RANGE_HZ)
    snr_db = rng.uniform(*SNR_RANGE_DB)
    family = wavelets[0] if len(wavelets) == 1 else wavelets[int(rng.integers(len(wavelets)))]
    if drifting:
        tau_end = float(np.clip(tau_start * (1 + rng.uniform(-MAX_DRIFT, MAX_DRIFT)), *TAU_RANGE_S))
        tau = np.linspace(tau_start, tau_end, n) * sampling_rate
    else:
        tau_start = round(tau_start * sampling_rate) / sampling_rate  # whole samples
        tau_end = tau_start
        tau = np.full(n, tau_start * sampling_rate)

    shape = wavelet(family, peak_frequency, sampling_rate)
    reflectivity = sparse_reflectivity(n, rng, sampling_rate=sampling_rate)
    primaries = AMPLITUDE * np.convolve(reflectivity, shape, mode="same")
    reverberated = water_layer(primaries, tau, reflection, kind)
    signal_rms = np.sqrt(np.mean(reverberated**2))
    noise = rng.normal(0.0, signal_rms * 10 ** (-snr_db / 20), n)
    parameters = {
        "kind": kind, "drifting": drifting, "duration_s": duration_s, "sampling_rate": sampling_rate,
        "tau_start_s": float(tau_start), "tau_end_s": float(tau_end), "reflection": float(reflection),
        "peak_frequency_hz": float(peak_frequency), "wavelet": family, "snr_db": float(snr_db),
        "events_per_second": EVENTS_PER_SECOND,
    }
    return SyntheticTrace(observed=reverberated + noise, primaries=primaries,
                          reverberation=reverberated - primaries, noise=noise,
                          tau_samples=tau, parameters=parameters)


def iter_set(n_traces: int, seed: int = 0, drifting: bool = False, duration_s: float = 180.0,
             kind: str = "backus", wavelets: tuple[str, ...] = ("ricker",)) -> Iterator[SyntheticTrace]:
    """Trace i = 0 .. n_traces - 1, drawn from default_rng([seed, i]), one at a time; each records seed and index."""
    for index in range(n_traces):
        trace = make_trace(np.random.default_rng([seed, index]), duration_s, drifting, kind, wavelets=wavelets)
        trace.parameters.update(seed=seed, index=index)
        yield trace


def make_set(n_traces: int, seed: int = 0, drifting: bool = False, duration_s: float = 180.0,
             kind: str = "backus", wavelets: tuple[str, ...] = ("ricker",)) -> list[SyntheticTrace]:
    """iter_set as a list."""
    return list(iter_set(n_traces, seed, drifting, duration_s, kind, wavelets))


def _station(index: int) -> str:
    return f"R{index:04d}"


def write_set(traces: Iterable[SyntheticTrace], out_dir, overwrite: bool = False, recipe: dict | None = None) -> Path:
    """Store a set (a list, or iter_set's traces one at a time) as miniSEED plus manifest.json; returns the manifest's path.

    out_dir/waveforms/SY_R0000_2001010100000000.mseed  observed trace (SY.R0000..BHZ)
    out_dir/truth/SY_R0000_2001010100000000.mseed      primaries (location PR),
                                                       reverberation (RV), noise (NS)
    out_dir/manifest.json                              per-trace parameters and files
    The set is written to a temporary folder next to out_dir and renamed at the
    end, so a failure leaves nothing half-written. `recipe` (e.g. the
    arguments of iter_set) is stored in the manifest, for callers that reuse a
    set only when it was made the same way.
    """
    import obspy

    out_dir = Path(out_dir)
    with staged_folder(out_dir, overwrite) as staging:
        (staging / "waveforms").mkdir()
        (staging / "truth").mkdir()
        entries = []
        for trace in traces:
            index = trace.parameters["index"]
            start = obspy.UTCDateTime(T0) + 3600 * index
            name = f"{NETWORK}_{_station(index)}_{start.strftime('%Y%m%d%H%M%S')}00.mseed"
            header = {"network": NETWORK, "station": _station(index), "channel": CHANNEL,
                      "starttime": start, "sampling_rate": trace.parameters["sampling_rate"]}

            def make(data, location=""):
                return obspy.Trace(data.astype(np.float32), header={**header, "location": location})

            obspy.Stream([make(trace.observed)]).write(str(staging / "waveforms" / name), format="MSEED")
            obspy.Stream([make(trace.primaries, "PR"), make(trace.reverberation, "RV"),
                          make(trace.noise, "NS")]).write(str(staging / "truth" / name), format="MSEED")
            entries.append({"file": f"waveforms/{name}", "truth_file": f"truth/{name}",
                            "trace_id": f"{NETWORK}.{_station(index)}..{CHANNEL}",
                            "starttime": str(start), "parameters": trace.parameters})
        manifest = {"generator": "tasks.synthetic", "description": __doc__.split("\n\n")[0],
                    "observed": "primaries + reverberation + noise", "recipe": recipe, "traces": entries}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out_dir / "manifest.json"


def load_set(directory) -> list[SyntheticTrace]:
    """Read a set written by write_set (float32 samples, so equal to the originals to ~1e-7)."""
    import obspy

    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    traces = []
    for entry in manifest["traces"]:
        observed = obspy.read(str(directory / entry["file"]))[0].data.astype(np.float64)
        truth = obspy.read(str(directory / entry["truth_file"]))
        part = {tr.stats.location: tr.data.astype(np.float64) for tr in truth}
        p = entry["parameters"]
        rate = p["sampling_rate"]
        tau = np.linspace(p["tau_start_s"], p["tau_end_s"], len(observed)) * rate
        traces.append(SyntheticTrace(observed, part["PR"], part["RV"], part["NS"], tau, p))
    return traces
