"""`eqcodec train-codec` (--kind lapped, the default): fit EQcodec v2's codebooks on your own recordings.

EQcodec v2 (codec.lapped.LappedGainShapeRVQ, the shipped default) has no
networks to train: its 8-bit frame gains are fixed, and its residual codebooks
are fitted by k-means on the unit-RMS MDCT shapes of recordings. This command
does that fit on the files, folders or glob patterns given with --data:

  1. every obspy-readable file is read; each gap-free piece of a channel
     (codec.preprocess.contiguous_pieces) is checked and resampled to 40 Hz
     (trace_to_codec_input, as `eqcodec reconstruct` codes it; the codec takes
     out each trace's mean itself). A file or trace that cannot be used is
     reported by name and skipped; the others are used. obspy's bundled real
     recordings are added unless --no-obspy-recordings.
  2. the training frames: the MDCT shapes of the frames starting at --offsets
     evenly spaced samples of each second (1: the non-overlapping frames), and,
     with --flip, their polarity-flipped copies; silent frames are left out.
     --max-vectors of this pool are drawn at random (seeded by --seed).
  3. residual k-means, stage by stage: --num-codebooks codebooks of
     --codebook-size entries, --iters Lloyd iterations each
     (codec.lapped.fit_residual_codebooks). With --init CODEC a lapped codec's
     codebooks start the iterations instead of k-means++ seeding (fine-tuning
     on new data; sizes and gain quantizer are the init codec's).

Steps 2-3 are the procedure benchmarks/codec_lapped_benchmark.py fitted the
shipped codec with: the same traces in the same order give the same codebooks,
and the defaults are the shipped fit's budget. The fit is deterministic for a
given --seed, inputs and thread count.

The pool of step 2 is not held in memory: its frames are counted in one pass
and the drawn ones extracted in a second, so memory grows with --max-vectors
(160 bytes per frame, twice during k-means), the 40 Hz traces (8 bytes per
sample) and the draw's permutation (8 bytes per frame of the pool).

Output, in RUN (--out):
    final/     config.json + model.safetensors: `codec.load_codec("RUN/final")`,
               `eqcodec tokenize --codec RUN/final`, `eqcodec reconstruct --codec RUN/final`;
               written whole when the fit is done, so an interrupted fit leaves none
    fit.json   inputs used and skipped, hours, training vectors, iterations, seconds, identity
    train.log  timestamped progress (created once the inputs gave training frames)
An existing RUN/final is refused unless --overwrite.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import obspy_example_stream, obspy_recordings
from .errors import CheckpointError, InputError, UsageError
from .files import expand_inputs, staged_folder, write_atomically
from .lapped import HOP, MODEL_TYPE, GainQuantizer, LappedGainShapeRVQ, fit_residual_codebooks
from .preprocess import SAMPLING_RATE, contiguous_pieces, read_stream, trace_to_codec_input

#: Sizes of a new codec (not --init): the shipped codec's.
DEFAULT_NUM_CODEBOOKS = 8
DEFAULT_CODEBOOK_SIZE = 1024


@dataclass
class LappedFitSettings:
    """Settings of one lapped-codec fit (`eqcodec train-codec --kind lapped` flags).

    data: waveform files, folders (searched recursively) or glob patterns; out: the run folder.
    num_codebooks / codebook_size: None takes 8 x 1024, or the --init codec's sizes.
    max_vectors: None uses the whole pool of training frames.
    """

    data: list[str]
    out: str
    no_obspy_recordings: bool = False
    init: str | None = None
    num_codebooks: int | None = None
    codebook_size: int | None = None
    max_vectors: int | None = 1_500_000
    offsets: int = 10
    flip: bool = True
    iters: int = 20
    seed: int = 0
    overwrite: bool = False


@dataclass
class TrainingTraces:
    """40 Hz traces read for a fit, where each came from, and what was skipped (messages naming the file)."""

    traces: list[np.ndarray] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)  # {"file", "traces", "hours"} per file used
    skipped: list[str] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return sum(map(len, self.traces)) / SAMPLING_RATE / 3600


class FitLog:
    """log(message): a timestamped line on stderr and in RUN/train.log.

    Lines logged before open() are kept and written when it is called, so a
    fit whose inputs are all unusable leaves no file behind.
    """

    def __init__(self):
        self.path: Path | None = None
        self.pending: list[str] = []

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        print(line, file=sys.stderr, flush=True)
        if self.path is None:
            self.pending.append(line)
        else:
            with open(self.path, "a") as f:
                f.write(line + "\n")

    def open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.writelines(line + "\n" for line in self.pending)
        self.path, self.pending = path, []


# ---------------------------------------------------------------------- inputs
def read_training_traces(inputs: Sequence[str], obspy_data: bool = False,
                         log: Callable[[str], None] = print) -> TrainingTraces:
    """Files, folders and globs (codec.files.expand_inputs), then obspy's bundled recordings if obspy_data.

    Each gap-free piece of a channel becomes one 40 Hz trace (trace_to_codec_input);
    a path, file or trace that cannot be used is logged, listed in `skipped` and left out.
    """
    found = TrainingTraces()
    paths, problems = expand_inputs([inputs] if isinstance(inputs, str) else list(inputs))
    found.skipped += [f"{given}: {problem}" for given, problem in problems]
    streams = [(path, None) for path in paths]
    if obspy_data:
        streams += [(str(path), None) for path in obspy_recordings()]
        streams.append(("obspy.read() example", obspy_example_stream()))
    for source, stream in streams:
        try:
            pieces = contiguous_pieces(stream if stream is not None else read_stream(source), source)
        except InputError as err:  # unreadable file, or pieces that cannot be joined; the message names it
            found.skipped.append(str(err))
            continue
        traces = []
        for piece in pieces:
            try:
                traces.append(trace_to_codec_input(piece))
            except InputError as err:  # the message names the trace, not the file
                found.skipped.append(f"{source}: {err}")
        if traces:
            found.traces += traces
            found.sources.append({"file": source, "traces": len(traces),
                                  "hours": round(sum(map(len, traces)) / SAMPLING_RATE / 3600, 4)})
    for message in found.skipped:
        log(f"skipping {message}")
    return found


# ---------------------------------------------------------------------- training frames
def frame_offsets(offsets: int) -> list[int]:
    """Starting samples (within a 1-s hop) of the training frames: `offsets` evenly spaced ones, 0 first."""
    return sorted({round(i * HOP / offsets) for i in range(offsets)})


def draw_training_vectors(traces: Sequence[np.ndarray], quantizer: GainQuantizer, offsets: int = 1,
                          flip: bool = False, max_vectors: int | None = None,
                          seed: int = 0) -> tuple[torch.Tensor, int]:
    """A seeded random draw of at most max_vectors training shapes [n, 40] (float32), and the pool's size.

    The pool: for each offset s (frame_offsets), for each trace x, the shapes of
    x[s:]'s non-silent frames (LappedGainShapeRVQ.training_vectors), in that
    order; with flip, followed by all of them negated. The draw is the first
    max_vectors of a permutation of the pool seeded by `seed` (all of it,
    shuffled, without max_vectors): benchmarks/codec_lapped_benchmark.py's draw.
    The pool is counted in a first pass and only the drawn frames are kept in the
    second: of the pool itself only the permutation (8 bytes a frame) is held.
    """
    shifts = frame_offsets(offsets)
    blocks = [(s, x) for s in shifts for x in traces]  # the pool's order: offsets outermost
    counts = [len(LappedGainShapeRVQ.training_vectors([x[s:]], quantizer)) for s, x in blocks]
    frames = sum(counts)
    pool = frames * (2 if flip else 1)
    count = min(pool, max_vectors) if max_vectors else pool
    picks = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))[:count]
    frame = picks % max(frames, 1)  # the frame a pick takes; picks >= frames take it negated
    order = torch.argsort(frame)
    sorted_frames = frame[order]
    chosen = torch.empty(count, HOP, dtype=torch.float32)
    start = 0
    for (s, x), n in zip(blocks, counts):
        lo, hi = (int(i) for i in torch.searchsorted(sorted_frames, torch.tensor([start, start + n])))
        if hi > lo:  # a block none of whose frames was drawn is not transformed again
            rows = order[lo:hi]
            chosen[rows] = LappedGainShapeRVQ.training_vectors([x[s:]], quantizer)[frame[rows] - start]
        start += n
    negated = picks >= frames
    chosen[negated] = -chosen[negated]
    return chosen, pool


# ---------------------------------------------------------------------- k-means
def fit_codebooks(vectors: torch.Tensor, num_codebooks: int, codebook_size: int, iters: int, seed: int = 0,
                  init: LappedGainShapeRVQ | None = None, log: Callable[[str], None] | None = None):
    """Residual codebooks [K, C, 40] and per-stage training SNR (dB): k-means, or Lloyd from init's codebooks."""
    if len(vectors) < codebook_size:
        raise InputError(f"the inputs give {len(vectors)} training frames, fewer than the {codebook_size} "
                         "entries of a codebook: give more data, more --offsets, --flip or a smaller --codebook-size")
    if log is not None:
        log(f"fitting {num_codebooks} x {codebook_size} codebooks on {len(vectors)} frames, "
            f"{iters} iterations per stage" + (" from the --init codebooks" if init is not None else ""))
    if init is None:
        return fit_residual_codebooks(vectors, num_codebooks, codebook_size, iters, seed, log)
    return fit_residual_codebooks(vectors, num_codebooks, codebook_size, iters, seed, log, init=init.codebooks)


# ---------------------------------------------------------------------- the command
def load_init_codec(directory: str | Path) -> LappedGainShapeRVQ:
    """The lapped codec saved in `directory`; a neural (v1) checkpoint is refused with what to do instead."""
    from .checkpoints import load_codec

    codec = load_codec(directory)
    if not isinstance(codec, LappedGainShapeRVQ):
        raise CheckpointError(f"{directory}: --init holds a neural EQcodec v1 checkpoint, not a lapped codec "
                              f"(model_type {MODEL_TYPE!r}, e.g. codec/pretrained) that --kind lapped can start "
                              f"from; to fine-tune the neural codec use `eqcodec train-codec --kind neural "
                              f"--init {directory} ...`")
    return codec


def codec_sizes(settings: LappedFitSettings, init: LappedGainShapeRVQ | None) -> tuple[int, int]:
    """(num_codebooks, codebook_size): as given, the defaults, or init's (which a different value contradicts)."""
    if init is None:
        return (settings.num_codebooks or DEFAULT_NUM_CODEBOOKS, settings.codebook_size or DEFAULT_CODEBOOK_SIZE)
    for flag, given, held in (("--num-codebooks", settings.num_codebooks, init.num_codebooks),
                              ("--codebook-size", settings.codebook_size, init.codebook_size)):
        if given is not None and given != held:
            raise UsageError(f"{flag} {given}, but --init {settings.init} has {held}: a fine-tuned codec keeps "
                             f"the sizes of its --init (leave {flag} out)")
    return init.num_codebooks, init.codebook_size


def fit_lapped_codec(settings: LappedFitSettings) -> dict:
    """Read the inputs, draw the training frames, fit the codebooks, write RUN/final and RUN/fit.json.

    Returns fit.json's contents. Raises InputError (nothing written) when no
    input gives a usable trace or too few frames, and before any reading when
    RUN/final exists without settings.overwrite.
    """
    started = time.time()
    out = Path(settings.out)
    final = out / "final"
    if final.exists() and not settings.overwrite:
        raise InputError(f"{final} already exists; pass --overwrite to replace it, or choose another --out")
    init = load_init_codec(settings.init) if settings.init else None
    num_codebooks, codebook_size = codec_sizes(settings, init)
    quantizer = init.quantizer if init is not None else GainQuantizer()
    log = FitLog()

    found = read_training_traces(settings.data, obspy_data=not settings.no_obspy_recordings, log=log)
    if not found.traces:
        listed = "; ".join(found.skipped[:10]) + (f"; and {len(found.skipped) - 10} more" if len(found.skipped) > 10
                                                  else "")
        raise InputError(f"no usable training trace in the inputs, nothing was written ({listed})")
    log(f"training traces: {len(found.traces)} ({found.hours:.2f} h) from {len(found.sources)} files"
        + (f"; {len(found.skipped)} input(s) or trace(s) skipped" if found.skipped else ""))
    read = time.time()
    vectors, pool = draw_training_vectors(found.traces, quantizer, settings.offsets, settings.flip,
                                          settings.max_vectors, settings.seed)
    drawn = time.time()
    if len(vectors) >= codebook_size:  # a fit that will run gets its log file (fit_codebooks refuses the rest)
        log.open(out / "train.log")
    log(f"training frames: {len(vectors)} drawn from a pool of {pool} (frame offsets "
        f"{frame_offsets(settings.offsets)}{', both polarities' if settings.flip else ''}) in {drawn - read:.0f} s")
    codebooks, stage_snr = fit_codebooks(vectors, num_codebooks, codebook_size, settings.iters, settings.seed,
                                         init, log)
    fitted = time.time()

    training_data = {"files": len(found.sources), "traces": len(found.traces), "hours": round(found.hours, 3),
                     "obspy_recordings": not settings.no_obspy_recordings}
    fit_info = {"training_vectors": len(vectors), "pool": pool, "iters": settings.iters, "seed": settings.seed,
                "offsets": settings.offsets, "flip": settings.flip, "training_data": training_data,
                "training_shape_snr_db": [round(s, 3) for s in stage_snr],
                "init": init.identity() if init is not None else None}
    codec = LappedGainShapeRVQ(codebooks, quantizer, fit_info).eval()
    report = {"kind": "lapped", "model_type": MODEL_TYPE, "identity": codec.identity(), "final": str(final),
              "num_codebooks": num_codebooks, "codebook_size": codebook_size,
              "settings": {k: v for k, v in asdict(settings).items() if k not in ("out", "overwrite")},
              "init_identity": fit_info["init"], **training_data,
              "vectors": {"pool": pool, "drawn": len(vectors), "offsets": frame_offsets(settings.offsets),
                          "flip": settings.flip},
              "iterations": settings.iters, "training_shape_snr_db": fit_info["training_shape_snr_db"],
              "seconds": {"read": round(read - started, 1), "frames": round(drawn - read, 1),
                          "kmeans": round(fitted - drawn, 1), "total": round(time.time() - started, 1)},
              "sources": found.sources, "skipped": found.skipped}
    # final/ appears whole, last: fit.json is renamed into place just before it
    with staged_folder(final, overwrite=settings.overwrite) as tmp:
        codec.save_pretrained(tmp)
        write_atomically(lambda path: path.write_text(json.dumps(report, indent=1) + "\n"), out / "fit.json")
    log(f"done: {final} (identity {report['identity']}, {num_codebooks} x {codebook_size} codebooks, "
        f"{found.hours:.2f} h of data, {report['seconds']['total']:.0f} s); use it with "
        f"`eqcodec tokenize --codec {final}` or codec.load_codec({str(final)!r})")
    if found.skipped:
        log(f"{len(found.skipped)} input(s) or trace(s) were skipped (listed above and in {out / 'fit.json'}); "
            "the codec was fitted on the rest")
    return report
