"""Encode and decode waveform files with EQcodec at several numbers of codebooks.

For each input file and each k, writes DIR/k{k}/<input file name>.mseed (same
trace ids and start times, 40 Hz, physical units; a channel stored in touching
pieces is one trace, and ids miniSEED cannot hold are refused), prints a table
per trace and level (bits/s with all side information: the gains and the
trace's scale and offset; SNR over the whole trace; mean segmental SNR over 1-s
segments) and writes the same as DIR/report.json.
--plot draws the paper's Figure 1: the original on top, levels 8..1 below.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .api import decode_trace, encode_samples
from .cli import positive_int
from .files import write_atomically
from .metrics import segmental_snr_db, snr_db
from .model import EQCodec
from .preprocess import (SAMPLING_RATE, InputError, check_miniseed_ids, contiguous_traces, read_stream,
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


def reconstruct_file(codec: EQCodec, path: Path, levels: list[int], *, allow_clipped: bool = False,
                     beam_width: int = 1):
    """Return (rows, originals {id: 40 Hz samples}, reconstructions {k: Stream}) for one file.

    A channel stored in touching pieces is one trace; InputError messages name the file.
    """
    import obspy

    try:
        traces = contiguous_traces(read_stream(path), str(path))
        originals = {tr.id: trace_to_codec_input(tr, allow_clipped=allow_clipped) for tr in traces}
        encoded = [encode_samples(codec, tr, originals[tr.id], beam_width=beam_width) for tr in traces]
    except InputError as err:  # trace-level messages name the trace only
        message = str(err)
        raise InputError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    rows, recon = [], {}
    for k in levels:
        recon[k] = obspy.Stream([decode_trace(codec, e, k) for e in encoded])
        for trace in recon[k]:
            x = originals[trace.id]
            rows.append({
                "file": path.name, "trace": trace.id, "k": k,
                "bits_per_second": round(codec.config.trace_bits_per_second(k, len(x) / SAMPLING_RATE), 2),
                "snr_db": round(snr_db(x, trace.data), 2),
                "segmental_snr_db": round(segmental_snr_db(x, trace.data), 2),
            })
    return rows, originals, recon


def plot_figure1(originals: dict, recon: dict, starttime, out_path: Path, title: str) -> None:
    """Paper Figure 1: the original trace on top, reconstructions at levels 8..1 below (first trace)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace_id = next(iter(originals))
    x = originals[trace_id]
    t = np.arange(len(x)) / 40.0
    levels = sorted(recon, reverse=True)
    fig, axes = plt.subplots(len(levels) + 1, 1, figsize=(10, 1.3 * (len(levels) + 1)), sharex=True, sharey=True)
    axes[0].plot(t, x, color="black", lw=0.6)
    axes[0].set_ylabel("original", rotation=0, ha="right", va="center")
    for ax, k in zip(axes[1:], levels):
        y = recon[k].select(id=trace_id)[0].data
        ax.plot(t, y, color="tab:blue", lw=0.6)
        ax.set_ylabel(f"k={k}\n{10 * k + 8} b/s\n{snr_db(x, y):.1f} dB", rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel(f"seconds after {starttime}")
    axes[0].set_title(f"{title}: {trace_id}")
    fig.tight_layout()
    write_atomically(lambda tmp: fig.savefig(tmp, dpi=110), out_path)
    plt.close(fig)


def format_table(rows: list[dict]) -> str:
    lines = ["| file | trace | k | bits/s | SNR dB | seg. SNR dB |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['trace']} | {r['k']} | {r['bits_per_second']:.1f} | "
                     f"{r['snr_db']:.2f} | {r['segmental_snr_db']:.2f} |")
    return "\n".join(lines)


EXAMPLES = """examples:
  eqcodec reconstruct event.mseed --out recon --codebooks 1,2,4,8 --plot figure1.png
  eqcodec reconstruct day/*.mseed station.SAC --out recon --codebooks all
  eqcodec reconstruct event.mseed --out recon-mine --codec my-codec/final
  eqcodec reconstruct archive.mseed --out recon-k8 --codebooks 8 --beam-width 4
"""


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    files = parser.add_argument_group("input/output")
    files.add_argument("inputs", nargs="+", metavar="INPUT", help="waveform files obspy can read (miniSEED, SAC, ...)")
    files.add_argument("--out", required=True, metavar="DIR", help="output folder (k{K}/ subfolders, report.json)")
    files.add_argument("--plot", default=None, metavar="FIG.png", help="draw Figure 1 (first trace of the first file)")
    files.add_argument("--allow-clipped", action="store_true", help="code traces that look clipped instead of refusing them")
    codec = parser.add_argument_group("codec")
    codec.add_argument("--codebooks", default="1,2,4,8", metavar="LEVELS",
                       help="levels k to decode, comma-separated, or 'all' (default: %(default)s)")
    codec.add_argument("--codec", default=None, metavar="PATH", help="codec checkpoint folder (default: the shipped EQcodec)")
    codec.add_argument("--beam-width", type=positive_int, default=1, metavar="B",
                       help="search the codebooks with a beam of B code sequences instead of stage by stage: "
                            "about +1 dB at k = 8 for B = 4, slightly less at k = 1, B times the search work "
                            "(default: %(default)s)")
    return parser


def main(args: argparse.Namespace) -> int:
    codec = EQCodec.from_pretrained(args.codec)
    levels = parse_levels(args.codebooks, codec.config.num_codebooks)
    plot_path = Path(args.plot) if args.plot else None
    if plot_path is not None and plot_path.suffix.lower() != ".png":
        raise InputError(f"--plot {plot_path}: expected a .png file name")
    out = Path(args.out)
    inputs_by_output: dict[str, str] = {}
    for name in args.inputs:  # outputs are named after the inputs: two of one name would collide
        output = output_name(Path(name))
        if output in inputs_by_output:
            raise InputError(f"{inputs_by_output[output]} and {name} would both be written as k*/{output}; "
                             "give each input once, under different file names")
        inputs_by_output[output] = name

    # Everything is computed before anything is written, so a bad file leaves no partial output.
    results = []
    for name in args.inputs:
        path = Path(name)
        rows, originals, recon = reconstruct_file(codec, path, levels, allow_clipped=args.allow_clipped,
                                                  beam_width=args.beam_width)
        check_miniseed_ids(recon[levels[0]], str(path))  # the outputs are miniSEED
        results.append((path, rows, originals, recon))

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".reconstruct-", dir=out))
    try:
        written = []
        for path, _, _, recon in results:
            for k, stream in recon.items():
                (staging / f"k{k}").mkdir(exist_ok=True)
                rel = Path(f"k{k}") / output_name(path)
                stream.write(str(staging / rel), format="MSEED", encoding="FLOAT64")
                written.append(rel)
        rows = [row for _, file_rows, _, _ in results for row in file_rows]
        report = {"codec": args.codec or "shipped default", "codec_id": codec.identity(), "rows": rows}
        (staging / "report.json").write_text(json.dumps(report, indent=1))
        written.append(Path("report.json"))
        for rel in written:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, out / rel)
    finally:
        for p in sorted(staging.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        staging.rmdir()
    if plot_path is not None:
        path, _, originals, recon = results[0]
        plot_figure1(originals, recon, recon[levels[0]][0].stats.starttime, plot_path, path.name)
    print(format_table(rows))
    print(f"\nwrote {len(written) - 1} miniSEED files under {out}/k*/ and {out / 'report.json'}"
          + (f"; Figure 1: {plot_path}" if plot_path else ""))
    return 0
