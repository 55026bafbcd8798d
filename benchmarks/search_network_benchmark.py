"""Multi-channel templates on real repeats: the Rutford icequake hour at two held-out stations, 6 channels.

    OMP_NUM_THREADS=1 python benchmarks/search_network_benchmark.py [--templates 6] [--tokenize-band]

Archive: ST09 and ST10 (E, N, Z; 1 h at 100 Hz, 2009-01-21 04:00; stations held out of every training) from
../shared/data/public-recordings/quakemigrate/Icequake_Rutford, tokenized into one corpus and indexed with the
defaults. Templates: the loudest icequakes of the hour (peaks of a 1-8 Hz STA/LTA on ST09 Z, at least 20 s
apart), each cut as 5 s (0.5 s before the peak) on all 6 channels, the moveout kept.

Peer and reference, in the same run: the network matched filter on the original samples (each channel
band-passed 1-8 Hz at 40 Hz, obspy's correlate_template, FFT; the 6 correlations averaged lag by lag, as
EQcorrscan stacks its channels). Its detections: peaks of the stack at or above 8 x its MAD (EQcorrscan's
threshold), at least half a template apart, the template's own time left out. The same for one channel
(ST09 Z) alone. Token search: `tasks.search.search` with the 6-channel template (the network stack on decoded
samples) and with ST09 Z alone on its own channel of the archive (`search(..., same_channel=True)`, `eqcodec search --same-channel`); recall = the matched filter's detections (network or one channel) found in the
token search's best max(10, 2 x detections) within 50 ms; false = listed above the lowest-scoring recalled
detection but not a detection of the matched filter. And the token search's own detections at 8 x the MAD of its
correlation (`min_significance=8`: 256 random windows of the decoded archive), compared with the matched filter's. Timed: one query each (after one untimed); the matched
filter's time is its correlations of samples already in memory (reading and preparing the files not counted).

Writes benchmarks/results/search_network.json and prints a table.

--all-pairs instead: `tasks.search.all_pairs` on the same 6-channel index against all-pairs cross-correlation
of each channel (search_benchmark.py's reference: every 4-s window at a 1-s hop against the rest of its
channel, pairs at cc >= 0.8 grouped into repeats as all_pairs lists them), recall of each channel's repeats
(a pair of that channel within 50 ms of the repeat's lag, its window a within 4 s), and both times; writes
benchmarks/results/search_network_all_pairs.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RUTFORD = REPO.parent / "shared/data/public-recordings/quakemigrate/Icequake_Rutford"
STATIONS = ("ST09", "ST10")
BAND = (1.0, 8.0)
RATE = 40.0
TEMPLATE_S, BEFORE_S = 5.0, 0.5
MADS = 8.0
TOLERANCE_S = 0.05


def channel_files() -> list[Path]:
    return sorted(p for p in RUTFORD.rglob("*.m") if any(f"_{s}_" in p.name for s in STATIONS))


def prepared(files) -> dict:
    """{trace id: (start UTCDateTime, band-passed 40 Hz samples)} of the original recordings."""
    import obspy

    from codec.preprocess import trace_to_codec_input
    from tasks.search import bandpass

    out = {}
    for path in files:
        trace = obspy.read(str(path))[0]
        out[trace.id] = (trace.stats.starttime, bandpass(trace_to_codec_input(trace), BAND))
    return out


def loudest_events(samples: np.ndarray, count: int, separation_s: float = 20.0) -> list[int]:
    """Samples of the `count` highest STA/LTA peaks (0.5 s / 10 s), at least `separation_s` apart, away from the ends."""
    from obspy.signal.trigger import classic_sta_lta

    c = classic_sta_lta(samples, int(0.5 * RATE), int(10 * RATE))
    c[: int(15 * RATE)] = 0
    c[-int(15 * RATE):] = 0
    picks = []
    for i in np.argsort(-c):
        if all(abs(i - j) >= separation_s * RATE for j in picks):
            picks.append(int(i))
        if len(picks) == count:
            break
    return picks


def mf_detections(archive: dict, template: dict, own_s: float) -> tuple[list[float], float]:
    """Matched-filter detections of a {trace id: [L] samples} template (all starting at the same time): times
    (s after the archive's start) of the stack's peaks >= MADS x MAD, the template's own time left out, and the
    threshold."""
    from obspy.signal.cross_correlation import correlate_template

    stack = None
    for tid, tpl in template.items():
        cc = np.nan_to_num(np.asarray(correlate_template(archive[tid][1], tpl, mode="valid", normalize="full",
                                                         demean=True)))
        stack = cc if stack is None else stack[:len(cc)] + cc[:len(stack)]
    stack = stack / len(template)
    threshold = MADS * float(np.median(np.abs(stack - np.median(stack))))
    half = int(len(next(iter(template.values()))) / 2)
    found = []
    for i in np.argsort(-stack):
        if stack[i] < threshold:
            break
        if all(abs(i - j) >= half for j in found):
            found.append(int(i))
    return [i / RATE for i in sorted(found) if abs(i / RATE - own_s) > TOLERANCE_S], threshold


def main(argv=None) -> int:
    import obspy

    from tasks.search import build_index, search
    from tokenized_data import tokenize
    from tokenized_data.prepare import Preprocessing

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", type=int, default=6)
    parser.add_argument("--tokenize-band", action="store_true", help="tokens of the band-passed traces (1-8 Hz)")
    parser.add_argument("--all-pairs", action="store_true", help="all pairs on the 6 channels instead of templates")
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/search_network.json"))
    args = parser.parse_args(argv)

    files = channel_files()
    work = Path(args.work or tempfile.mkdtemp(prefix="search-network-"))
    t = time.time()
    tokenize([str(p) for p in files], work / "corpus", prep=Preprocessing(bandpass=BAND) if args.tokenize_band
             else None, num_proc=1, progress=False, overwrite=True)
    shutil.rmtree(work / "index", ignore_errors=True)
    build_index([work / "corpus"], work / "index", progress=False)
    build_s = time.time() - t
    archive = prepared(files)
    start = min(s for s, _ in archive.values())
    if args.all_pairs:
        return all_pairs_run(work, archive, start, args)
    z = next(tid for tid in archive if tid.startswith("ZZ.ST09.") and tid.endswith("Z"))
    rows = []
    for k, peak in enumerate(loudest_events(archive[z][1], args.templates)):
        a = peak - int(BEFORE_S * RATE)
        at = start + a / RATE
        template = {tid: x[a:a + int(TEMPLATE_S * RATE)] for tid, (_, x) in archive.items()}
        stream = obspy.Stream()
        for path in files:  # the template cut from the original files, as a user would
            stream += obspy.read(str(path)).trim(at, at + TEMPLATE_S - 0.001)
        stream.write(str(work / f"template{k}.mseed"), format="MSEED")
        stream.select(id=z).write(str(work / f"template{k}_z.mseed"), format="MSEED")
        row = {"template_s": round(a / RATE, 3)}
        for name, tpl_file, channels in (("network", f"template{k}.mseed", template),
                                         ("one channel", f"template{k}_z.mseed", {z: template[z]})):
            t = time.time()
            truth, threshold = mf_detections(archive, channels, a / RATE)
            mf_s = time.time() - t
            depth = max(10, 2 * len(truth))
            # one channel: its own channel of the archive only, as the matched filter correlates it
            query = lambda: search(work / tpl_file, work / "index", top=depth,  # noqa: E731
                                   same_channel=name == "one channel")
            query()  # first query untimed
            t = time.time()
            matches = query()
            token_s = time.time() - t
            found = np.array([obspy.UTCDateTime(x) - start for x in matches.starttime])
            found_score = matches.score.to_numpy()
            hit = [np.flatnonzero(np.abs(found - s) <= TOLERANCE_S + 1e-6) for s in truth]
            recalled = [h[0] for h in hit if len(h)]
            lowest = min((found_score[i] for i in recalled), default=np.inf)
            own = np.abs(found - a / RATE) <= TOLERANCE_S + 1e-6
            true_rows = {int(i) for h in hit for i in h}
            false = int(sum(1 for i in range(len(found)) if found_score[i] >= lowest and i not in true_rows
                            and not own[i]))
            # the token search's own detections at 8 x the MAD of its correlation (min_significance), as the MF's
            detected = search(work / tpl_file, work / "index", top=200, min_significance=MADS,
                              same_channel=name == "one channel")
            at = np.array([obspy.UTCDateTime(x) - start for x in detected.starttime])
            at = at[np.abs(at - a / RATE) > TOLERANCE_S + 1e-6]  # the template's own time left out, as the MF's
            both = sum(bool(np.any(np.abs(at - s) <= TOLERANCE_S + 1e-6)) for s in truth)
            extra = int(sum(not np.any(np.abs(np.asarray(truth) - t) <= TOLERANCE_S + 1e-6) for t in at))
            row[name] = {"mf_detections": len(truth), "mf_threshold": round(threshold, 4),
                         "recalled": len(recalled), "false_above_lowest_recalled": false,
                         "token_detections_8mad": int(len(at)), "token_8mad_in_mf": int(both),
                         "token_8mad_not_mf": extra, "mf_s": round(mf_s, 3), "token_s": round(token_s, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {}
    for name in ("network", "one channel"):
        d = sum(r[name]["mf_detections"] for r in rows)
        summary[name] = {"mf_detections": d, "recalled": sum(r[name]["recalled"] for r in rows),
                         "recall": round(sum(r[name]["recalled"] for r in rows) / d, 3) if d else None,
                         "false_above_lowest_recalled": sum(r[name]["false_above_lowest_recalled"] for r in rows),
                         **{k: sum(r[name][k] for r in rows)
                            for k in ("token_detections_8mad", "token_8mad_in_mf", "token_8mad_not_mf")},
                         "mf_s": round(float(np.median([r[name]["mf_s"] for r in rows])), 3),
                         "token_s": round(float(np.median([r[name]["token_s"] for r in rows])), 3)}
    result = {"archive": [str(p.relative_to(RUTFORD)) for p in files], "channels": len(archive),
              "tokenized": "band-passed traces" if args.tokenize_band else "traces", "band_hz": BAND,
              "template_s": TEMPLATE_S, "mads": MADS, "tolerance_s": TOLERANCE_S, "index_build_s": round(build_s, 1),
              "templates": rows, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nRutford ST09 + ST10 ({len(archive)} channels, 1 h), {len(rows)} templates of {TEMPLATE_S:g} s, "
          f"matched-filter detections at {MADS:g} x MAD of its stack\n")
    print("| template | MF detections | token recall | false above the lowest recalled | token detections at "
          f"{MADS:g} x MAD: of them MF's / not | MF query s | token query s |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name, s in summary.items():
        print(f"| {name} | {s['mf_detections']} | {s['recall']} ({s['recalled']}) | "
              f"{s['false_above_lowest_recalled']} | {s['token_detections_8mad']}: {s['token_8mad_in_mf']} / "
              f"{s['token_8mad_not_mf']} | {s['mf_s']} | {s['token_s']} |")
    return 0


def all_pairs_run(work: Path, archive: dict, start, args) -> int:
    """--all-pairs: token all pairs over the 6-channel index against each channel's all-pairs CC."""
    import obspy

    from benchmarks.search_benchmark import all_pairs_cc, correlation_mads, reference_repeats
    from tasks.search import all_pairs

    t = time.time()
    pairs = all_pairs(work / "index", min_separation=4.0)
    token_s = time.time() - t
    channels, cc_total = {}, 0.0
    for tid, (_, x) in archive.items():
        t = time.time()
        reference = all_pairs_cc(x, int(4 * RATE), int(RATE), 0.8, int(4 * RATE))
        cc_total += time.time() - t
        repeats = reference_repeats(reference, 4.0, correlation_mads(x, [a for a, _, _ in reference], int(4 * RATE),
                                                                    int(4 * RATE)))
        mine = pairs[(pairs.trace_id_a == tid) & (pairs.trace_id_b == tid)]
        ta = np.array([obspy.UTCDateTime(v) - start for v in mine.starttime_a])
        lag = mine.lag_seconds.to_numpy()
        hit = [bool(np.any((np.abs(lag - r[2]) <= TOLERANCE_S + 1e-6) & (ta >= r[0] - 4) & (ta <= r[1] + 4)))
               for r in repeats]
        channels[tid] = {"reference_pairs": len(reference), "repeats": len(repeats),
                         "significant_repeats": sum(1 for r in repeats if r[4] is not None and r[4] >= MADS),
                         "recalled": int(sum(hit)),
                         "missed_window_a_s": [round(r[0], 2) for r, h in zip(repeats, hit) if not h]}
        print(tid, json.dumps(channels[tid]), flush=True)
    result = {"archive": [str(p.relative_to(RUTFORD)) for p in channel_files()], "threshold": 0.8,
              "tokenized": "band-passed traces" if args.tokenize_band else "traces",
              "token_pairs": int(len(pairs)), "token_all_pairs_s": round(token_s, 1),
              "all_pairs_cc_s": round(cc_total, 1), "channels": channels}
    out = Path(args.out).with_name(Path(args.out).stem + "_all_pairs.json")
    out.write_text(json.dumps(result, indent=1))
    repeats = sum(c["repeats"] for c in channels.values())
    recalled = sum(c["recalled"] for c in channels.values())
    print(f"\nall pairs, Rutford ST09 + ST10 (6 channels, 1 h): all-pairs CC {cc_total:.1f} s, token {token_s:.1f} s "
          f"({cc_total / token_s:.1f}x); CC repeats at cc >= 0.8 recalled {recalled} / {repeats}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
