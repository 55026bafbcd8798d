"""The whole pipeline on real recordings bundled with obspy, into one output folder. No network needed.

Steps (each prints what it does and where its results are):
  1. codec: reconstruct obspy's example event at levels k = 8..1 (Figure 1, miniSEED, quality table)

example:
  eqcodec demo --out eqcodec-demo
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", default="eqcodec-demo", help="output folder (default: %(default)s)")
    return parser


def step(message: str) -> float:
    print(f"\n== {message}", flush=True)
    return time.time()


def run_codec_step(out: Path) -> dict:
    """Reconstruct obspy's example at every level; write miniSEED per level, Figure 1 and a table."""
    import obspy

    from codec import EQCodec
    from codec.reconstruct import format_table, plot_figure1, reconstruct_file

    codec = EQCodec.from_pretrained()
    source = out / "input" / "BW.RJOB.example.mseed"
    source.parent.mkdir(parents=True, exist_ok=True)
    obspy.read().write(str(source), format="MSEED")
    rows, originals, recon = reconstruct_file(codec, source, list(range(1, 9)))
    for k, stream in recon.items():
        path = out / "reconstruction" / f"k{k}" / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        stream.write(str(path), format="MSEED", encoding="FLOAT64")
    (out / "reconstruction" / "report.json").write_text(json.dumps(rows, indent=1))
    figure = out / "figures" / "figure1_reconstruction.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_figure1(originals, recon, obspy.read(str(source))[0].stats.starttime, figure, "EQcodec levels 8..1")
    print(format_table([r for r in rows if r["trace"].endswith("EHZ")]))
    return {"reconstructions": out / "reconstruction", "Figure 1": figure}


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    t0 = step("1/1 codec: reconstruct obspy's example event at k = 8..1")
    results.update(run_codec_step(out))
    print(f"   done in {time.time() - t0:.1f} s")
    print("\nResults:")
    for name, path in results.items():
        print(f"  {name:<18} {path}")
    return 0
