"""Encode and decode waveform files with EQcodec at several numbers of codebooks.

INPUTs are files, folders (searched recursively) or glob patterns. For each
input file and each k, writes DIR/k{k}/<input file name>.mseed (same trace ids
and start times, 40 Hz, physical units; a channel stored in touching pieces is
one trace; each gap-free piece of a gappy channel is coded on its own and the
gaps are kept; ids miniSEED cannot hold are refused), prints a table per piece
and level (bits/s with all side information: the gains and the trace's scale
and offset; SNR over the whole piece; mean segmental SNR over 1-s segments;
the frame-edge ratio of the decoded samples beside the original's: 1 = no steps
at the 1-s frame edges) and writes the same as DIR/report.json. A file that
cannot be coded is reported and the others are written (exit status 1).
--plot draws the paper's Figure 1: the original on top, levels 8..1 below.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .api import decode_trace, encode_samples
from .files import expand_inputs, write_all_or_nothing, write_atomically
from .metrics import frame_edge_ratio, segmental_snr_db, snr_db
from .checkpoints import Codec, load_codec
from .preprocess import (SAMPLING_RATE, InputError, check_miniseed_ids, contiguous_pieces, read_stream,
                         trace_to_codec_input)


def parse_levels(text: str, num_codebooks: int = 8) -> list[int]:
    """'1,2,4,8' or 'all' -> sorted list of k, each checked to lie in 1..num_codebooks."""
    if text == "all":
        return list(range(1, num_codebooks + 1))
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InputError(f"--codebooks {text!r}: expected comma-separated integers such as 1,2,4,8") from None
    bad = [k for k in levels if not 1 <= k <= num_codebooks]
    if not levels or bad:
        raise InputError(f"--codebooks {text!r}: each k must lie in 1..{num_codebooks}")
    return levels


def output_name(path: Path) -> str:
    """<input file name>.mseed, without doubling an existing .mseed suffix."""
    return path.name if path.suffix.lower() == ".mseed" else path.name + ".mseed"


def reconstruct_file(codec: Codec, path: Path, levels: list[int], *, allow_clipped: bool = False,
                     beam_width: int = 1):
    """Return (rows, originals [40 Hz samples per piece], reconstructions {k: Stream}) for one file.

    Each gap-free piece of a channel is coded on its own (contiguous_pieces): a
    gappy trace comes back with its gaps. InputError messages name the file.
    """
    import obspy

    try:
        pieces = contiguous_pieces(read_stream(path), str(path))
        originals = [trace_to_codec_input(tr, allow_clipped=allow_clipped) for tr in pieces]
        encoded = [encode_samples(codec, tr, x, beam_width=beam_width) for tr, x in zip(pieces, originals)]
    except InputError as err:  # trace-level messages name the trace only
        message = str(err)
        raise InputError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    rows, recon = [], {}
    for k in levels:
        recon[k] = obspy.Stream([decode_trace(codec, e, k) for e in encoded])
        for x, trace in zip(originals, recon[k]):
            rows.append({
                "file": path.name, "trace": trace.id, "starttime": str(trace.stats.starttime), "k": k,
                "bits_per_second": round(codec.config.trace_bits_per_second(k, len(x) / SAMPLING_RATE), 2),
                "snr_db": round(snr_db(x, trace.data), 2),
                "segmental_snr_db": round(segmental_snr_db(x, trace.data), 2),
                "frame_edge_ratio": round(frame_edge_ratio(trace.data), 3),
                "original_frame_edge_ratio": round(frame_edge_ratio(x), 3),
            })
    return rows, originals, recon


def plot_figure1(originals: dict, recon: dict, starttime, out_path: Path, title: str) -> None:
    """Paper Figure 1: the original trace on top, reconstructions at levels 8..1 below (first trace)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = originals[0]
    trace_id = recon[next(iter(recon))][0].id
    t = np.arange(len(x)) / 40.0
    levels = sorted(recon, reverse=True)
    fig, axes = plt.subplots(len(levels) + 1, 1, figsize=(10, 1.3 * (len(levels) + 1)), sharex=True, sharey=True)
    axes[0].plot(t, x, color="black", lw=0.6)
    axes[0].set_ylabel("original", rotation=0, ha="right", va="center")
    for ax, k in zip(axes[1:], levels):
        y = recon[k][0].data
        ax.plot(t, y, color="tab:blue", lw=0.6)
        ax.set_ylabel(f"k={k}\n{10 * k + 8} b/s\n{snr_db(x, y):.1f} dB", rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel(f"seconds after {starttime}")
    axes[0].set_title(f"{title}: {trace_id}")
    fig.tight_layout()
    write_atomically(lambda tmp: fig.savefig(tmp, dpi=110), out_path)
    plt.close(fig)


def format_table(rows: list[dict]) -> str:
    """Markdown table of reconstruct_file's rows; frame-edge ratio: decoded (original)."""
    lines = ["| file | trace | start | k | bits/s | SNR dB | seg. SNR dB | frame-edge ratio |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['trace']} | {r['starttime']} | {r['k']} | {r['bits_per_second']:.1f} | "
                     f"{r['snr_db']:.2f} | {r['segmental_snr_db']:.2f} | "
                     f"{r['frame_edge_ratio']:.2f} ({r['original_frame_edge_ratio']:.2f}) |")
    return "\n".join(lines)


def reconstruct_files(inputs: list[str], out: str, *, codebooks: str = "1,2,4,8", codec: str | None = None,
                      plot: str | None = None, allow_clipped: bool = False, beam_width: int = 1) -> int:
    """`eqcodec reconstruct`: encode + decode files, folders and globs; miniSEED per level, table, report.json.

    Each file is written whole or not at all (DIR/k{k}/<name>.mseed for every
    level); a file that fails is reported and the others are written. Returns
    the number of inputs that failed (0: all written).
    """
    model = load_codec(codec)
    levels = parse_levels(codebooks, model.config.num_codebooks)
    plot_path = Path(plot) if plot else None
    if plot_path is not None and plot_path.suffix.lower() != ".png":
        raise InputError(f"--plot {plot_path}: expected a .png file name")
    paths, problems = expand_inputs(inputs)
    failures = [f"{given}: {problem}" for given, problem in problems]
    for failure in failures:
        print(f"eqcodec reconstruct: {failure}", file=sys.stderr)
    inputs_by_output: dict[str, str] = {}
    for name in paths:  # outputs are named after the inputs: two of one name would collide
        output = output_name(Path(name))
        if output in inputs_by_output:
            raise InputError(f"{inputs_by_output[output]} and {name} would both be written as k*/{output}; "
                             "give each input once, under different file names")
        inputs_by_output[output] = name

    out = Path(out)
    rows, first = [], None
    for name in paths:
        path = Path(name)
        try:
            file_rows, originals, recon = reconstruct_file(model, path, levels, allow_clipped=allow_clipped,
                                                           beam_width=beam_width)
            check_miniseed_ids(recon[levels[0]], str(path))  # the outputs are miniSEED
        except InputError as err:
            failures.append(str(err))
            print(f"eqcodec reconstruct: {err}", file=sys.stderr)
            continue
        write_all_or_nothing({
            out / f"k{k}" / output_name(path):
                (lambda tmp, s=stream: s.write(str(tmp), format="MSEED", encoding="FLOAT64"))
            for k, stream in recon.items()})
        rows += file_rows
        first = first or (path, originals, recon)
    report = {"codec": codec or "shipped default", "codec_id": model.identity(), "rows": rows, "failures": failures}
    if rows:  # a report only beside written files: a batch that failed entirely leaves nothing
        write_atomically(lambda tmp: tmp.write_text(json.dumps(report, indent=1)), out / "report.json")
    if plot_path is not None and first is not None:
        path, originals, recon = first
        plot_figure1(originals, recon, recon[levels[0]][0].stats.starttime, plot_path, path.name)
    if rows:
        print(format_table(rows))
    written = len({(r["file"], r["k"]) for r in rows})
    print(f"\nwrote {written} miniSEED files under {out}/k*/ and {out / 'report.json'}"
          + (f"; Figure 1: {plot_path}" if plot_path and first else ""))
    if failures:
        print(f"eqcodec reconstruct: {len(failures)} input(s) failed (listed above and in report.json); "
              "the others were written", file=sys.stderr)
    return len(failures)
