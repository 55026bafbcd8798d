"""Frame edges in the LM's decoded continuations (LM v2 issue: ratio within 0.8-1.25), on held-out real data.

    OMP_NUM_THREADS=1 python benchmarks/lm_frame_edges.py [--lm DIR] [--max-cases 20] [--out JSON]

Cases as the forecast benchmark's (tasks.evaluate.forecast_cases, 20-s context, 30-s horizon): the held-out
nc-events split (noise, P+2s, S+5s) and the held-out stations of public-recordings (continuous). For each case
the LM draws 32 continuations, once on one frame grid (as `eqcodec generate`) and once on the LM's own grids
(as `eqcodec forecast`). Per case, pooled over its members:

    edge ratio   RMS of the sample-to-sample step across each member's own 1-s frame boundaries over the
                 RMS of the steps inside its frames (codec.metrics.frame_edge_ratio's definition; a member
                 on frame grid j has its boundaries (j * 40 / G) samples earlier, lm.generate.frame_grid_offsets)
    join ratio   RMS over members of the step from the input's last sample to the member's first, over the
                 same inside RMS: how a continuation joins its input

beside the truth's own ratios at the plain grid's positions (1.0 = no blocking). Medians over cases per kind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"


def edge_and_join(context: np.ndarray, members: np.ndarray, offsets: list[int]) -> tuple[float, float]:
    """(edge ratio, join ratio) of members [S, N] continuing `context`; member j on offsets[j % len(offsets)]."""
    from codec.preprocess import FRAME_LENGTH

    across, inside = [], []
    for j, member in enumerate(members):
        steps = np.diff(member)  # steps[i] = member[i + 1] - member[i]
        # A member whose context ended o samples early has its frame boundaries o samples earlier.
        at_edge = (np.arange(len(steps)) + 1 + offsets[j % len(offsets)]) % FRAME_LENGTH == 0
        across.append(steps[at_edge])
        inside.append(steps[~at_edge])
    inside_rms = np.sqrt(np.mean(np.concatenate(inside) ** 2))
    edge = np.sqrt(np.mean(np.concatenate(across) ** 2)) / inside_rms
    join = np.sqrt(np.mean((members[:, 0] - context[-1]) ** 2)) / inside_rms
    return float(edge), float(join)


def cases_of(max_cases: int) -> list[dict]:
    from codec.data import nc_events_split, public_recordings_split
    from tasks.evaluate import forecast_cases, read_picks, spread_subset

    _, nc_held = nc_events_split(DATA / "nc-events")
    _, public_held = public_recordings_split(DATA / "public-recordings")
    cases = (forecast_cases(nc_held, read_picks(DATA / "nc-events" / "picks.csv"), 20, 30)
             + forecast_cases(public_held, None, 20, 30, cases_per_trace=4))
    kinds = dict.fromkeys(c["kind"] for c in cases)
    return [c for kind in kinds for c in spread_subset([c for c in cases if c["kind"] == kind], max_cases)]


def main(argv=None) -> int:
    import torch

    from lm.generate import frame_grid_offsets
    from tasks.forecast import forecast_samples, load_lm_and_codec

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", default=None, help="LM folder (default: lm/pretrained)")
    parser.add_argument("--max-cases", type=int, default=20, help="cases per kind (default: 20)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "lm_frame_edges.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lm, codec = load_lm_and_codec(args.lm)
    own = lm.sampling_settings()["frame_grids"]
    cases = cases_of(args.max_cases)
    rows: dict = {}
    for i, case in enumerate(cases):
        truth = case["truth"]
        true_edge, true_join = edge_and_join(case["context"], truth[None], [0])
        row = rows.setdefault(case["kind"], {"truth": [], **{f"{g} grid(s)": [] for g in sorted({1, own})}})
        row["truth"].append((true_edge, true_join))
        for grids in sorted({1, own}):
            members = forecast_samples(case["context"], lm, codec, 20, 30, args.samples, seed=i,
                                       source_rate=case["source_rate"], frame_grids=grids)
            offsets = frame_grid_offsets(min(grids, args.samples))
            row[f"{grids} grid(s)"].append(edge_and_join(case["context"], members, offsets))
    summary = {kind: {name: {"edge_ratio": float(np.median([v[0] for v in values])),
                             "join_ratio": float(np.median([v[1] for v in values])), "cases": len(values)}
                      for name, values in row.items()} for kind, row in rows.items()}
    names = list(next(iter(summary.values())))
    lines = ["| cases | " + " | ".join(f"{n}: edge / join" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for kind, by_name in summary.items():
        cells = [f"{by_name[n]['edge_ratio']:.2f} / {by_name[n]['join_ratio']:.2f}" for n in names]
        lines.append(f"| {kind} ({by_name[names[0]]['cases']}) | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    args.out.write_text(json.dumps({"lm": args.lm or "lm/pretrained", "samples": args.samples,
                                    "frame_grids": own, "median_over_cases": summary}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
