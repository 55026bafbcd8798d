"""Similarity search on tokens (`eqcodec index` / `eqcodec search`) against the classical matched filter.

Real event waveforms (nc-events, Z components, the loudest 10 s, band-passed 1-8 Hz) are
injected into a real continuous day with gaps (ispaq US.OXF..BHZ.2002.110, 40 Hz)
at known times off the 1-s grid (random multiples of 25 ms), scaled to an SNR
(band-passed signal power over band-passed noise power in the injection window)
of -5..+20 dB. For each SNR the injected day is tokenized and indexed by each of
the --variants (index type, bytes per window, hop, proposals re-ranked; the size
of each index is set beside the day's Steim2 size); each template is searched
with `tasks.search.search` (top = its
number of injections) and with the matched filter: obspy's correlate_template of
the band-passed template over every gap-free piece of the ORIGINAL injected
samples, the same top-N peak picking (peaks closer than half the template merged).
An injection is recalled when a match lies within 50 ms (2 samples) of it.
Prints markdown and writes JSON.

    python benchmarks/search_benchmark.py --out benchmarks/results/search_benchmark.json
    python benchmarks/search_benchmark.py --variants flat:0:1,pq:16:1,pqfs:8:1,pqfs:8:2,pq:8:2 --out ...

--all-pairs measures the template-free mode instead (issue 15, item 4): the first --pairs-seconds (3 h)
of the day's longest piece, each template injected --injections times at --pairs-snr (10 dB), is
tokenized and indexed (flat, --pairs-hop: 1 s); tasks.search.all_pairs runs beside all-pairs cross-correlation of the
ORIGINAL band-passed samples (every 4-s window at 1-s hops against the rest of the channel, obspy's
correlate_template). The reference pairs (cc >= --pairs-threshold, 0.8; lags of 4 s or more) are grouped
into repeats as all_pairs groups its own; a repeat (or an injected pair) is recalled when a token pair has
its lag within 50 ms and its window a within 4 s of the repeat's windows. Reports recall and the time of
both (index build and tokenizing apart). Repeats are also counted by significance: cc >= 8 x the MAD of
window a's correlation with the trace (matched-filter practice) or not (a narrow-band window, such as a
large earthquake's long coda, exceeds a fixed cc at many chance lags). On long archives --pairs-cc-every K times the cross-correlation
on every K-th window and scales it by K (then only the injected pairs' recall is measured). (The Rutford
hour at 40 Hz, 1-8 Hz or 5-16 Hz, 4-s windows, holds almost no pairs above cc 0.7 but a ~300-s periodic
signal: not used.)

    python benchmarks/search_benchmark.py --all-pairs --pairs-seconds 3600 --out benchmarks/results/search_all_pairs.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DAY = "/work/shared/data/public-recordings/ispaq/US.OXF..BHZ.2002.110.M"
EVENTS = "/work/shared/data/nc-events"


def templates(directory: str, count: int, seconds: float = 10.0):
    """The loudest `seconds` (1-8 Hz) of the Z channel of the first `count` usable nc-events files, at 40 Hz."""
    import obspy

    from codec.preprocess import trace_to_codec_input
    from tasks.search import bandpass

    found = []
    for path in sorted(Path(directory).glob("*.mseed")):
        try:
            st = obspy.read(str(path)).select(channel="*Z")
            st.merge(method=-1)
            if len(st) != 1:
                continue
            x = trace_to_codec_input(st[0])
        except Exception:
            continue
        f = bandpass(x, (1.0, 8.0))
        width = int(seconds * 40)
        if len(f) < width + 40:
            continue
        energy = np.convolve(f ** 2, np.ones(width), "valid")
        a = int(np.argmax(energy))
        found.append((path.name, f[a:a + width]))  # band-passed: raw windows can carry 98 % of their energy below 1 Hz
        if len(found) == count:
            break
    return found


def parse_variant(text: str) -> tuple:
    """TYPE:PQ_BYTES:HOP[:CANDIDATES[:NEIGHBOURS[:CODEBOOKS[:ANCHORS]]]] -> (type, pq bytes, hop, proposals
    re-ranked, windows retrieved per query vector, codebooks the coarse windows are decoded from, anchors
    searched; None: the default)."""
    kind, pq_bytes, hop, *rest = text.split(":") + ["", "", "", ""]
    candidates, neighbours, codebooks, anchors = (int(r) if r else None for r in rest[:4])
    return kind, int(pq_bytes or 0), int(hop), candidates, neighbours, codebooks, anchors


def variant_label(variant) -> str:
    kind, pq_bytes, hop, candidates, neighbours, codebooks, anchors = variant
    label = f"{kind}-hop{hop}" if kind == "flat" else f"{kind}{pq_bytes}-hop{hop}"
    return (label + (f"-c{candidates}" if candidates else "") + (f"-k{neighbours}" if neighbours else "")
            + (f"-cb{codebooks}" if codebooks else "") + (f"-a{anchors}" if anchors else ""))


def top_peaks(cc: np.ndarray, n: int, separation: int) -> list[int]:
    candidates = np.argpartition(-cc, min(len(cc) - 1, 50 * n))[: 50 * n + 1]
    kept = []
    for i in candidates[np.argsort(-cc[candidates])]:
        if all(abs(int(i) - k) >= separation for k in kept):
            kept.append(int(i))
        if len(kept) == n:
            break
    return kept


def matched_filter(day, template: np.ndarray, n: int):
    """Top-n (trace time, cc) of the band-passed template over every gap-free piece of `day` (40 Hz)."""
    from obspy.signal.cross_correlation import correlate_template

    from tasks.search import bandpass

    tpl = bandpass(template, (1.0, 8.0))
    hits = []
    for trace, filtered in day:
        cc = np.nan_to_num(correlate_template(filtered, tpl, mode="valid", normalize="full"))
        for i in top_peaks(cc, n, len(tpl) // 2):
            hits.append((trace.stats.starttime + i / 40.0, float(cc[i])))
    return sorted(hits, key=lambda h: -h[1])[:n]


def true_and_false_scores(hits, injections, tolerance: float = 0.05):
    """hits [(time, score)] of one template, injections [time] of it -> (the best score of a hit within
    `tolerance` s of each injection, -inf where none; scores of the hits near no injection: false alarms)."""
    best = [max((score for when, score in hits if abs(when - at) <= tolerance), default=-np.inf)
            for at in injections]
    false = [score for when, score in hits if all(abs(when - at) > tolerance for at in injections)]
    return best, false


def false_alarms_at_recall(true_scores, false_scores, recall: float) -> float | None:
    """False alarms scoring at least the threshold that recalls `recall` of the injections (None: not reached)."""
    found = np.sort(np.asarray(true_scores, float))[::-1]
    need = int(np.ceil(recall * len(found) - 1e-9))
    if need == 0:
        return 0.0
    if need > len(found) or not np.isfinite(found[need - 1]):
        return None
    return float(np.sum(np.asarray(false_scores, float) >= found[need - 1]))


# ---------------------------------------------------------------------------- all pairs (--all-pairs)


def all_pairs_cc(samples: np.ndarray, window: int, hop: int, threshold: float, separation: int):
    """Reference: all-pairs cross-correlation of one band-passed 40 Hz trace (obspy's correlate_template, FFT).

    Every window (`window` samples, hopped by `hop`) is correlated with the whole trace; each run of lags
    with cc >= threshold at least `separation` samples later than the window gives its peak.
    Returns [(window start sample, lag in samples, cc)].
    """
    from obspy.signal.cross_correlation import correlate_template

    pairs = []
    for a in range(0, len(samples) - window + 1, hop):
        tpl = samples[a:a + window]
        if not np.any(tpl) or len(samples) - a - separation < window:
            continue
        cc = np.nan_to_num(np.asarray(correlate_template(samples[a + separation:], tpl, mode="valid",
                                                         normalize="full", demean=True)))
        above = np.flatnonzero(cc >= threshold)
        if not len(above):
            continue
        runs = np.split(above, np.flatnonzero(np.diff(above) > 1) + 1)
        for run in runs:
            best = int(run[np.argmax(cc[run])])
            pairs.append((a, separation + best, float(cc[best])))
    return pairs


#: A reference repeat is significant when its cc is at least this many MADs of its window's correlation with
#: the trace (single-channel matched-filter practice: 8-9 x MAD).
SIGNIFICANT_MADS = 8.0
SIGNIFICANCE_BINS = (0.0, SIGNIFICANT_MADS, 9.0, 10.0, np.inf)


def reference_repeats(pairs, window_s: float, mads: dict | None = None):
    """Reference pairs (window start, lag, cc) grouped into repeats as tasks.search.all_pairs lists its own:
    pairs of the same lag (to 0.1 s) whose windows lie within two windows of each other, chained, are one
    repeat; then, best first, a repeat whose best window lies within two windows of a better repeat's and
    whose lag lies within one window of its lag is dropped (in a narrow-band stretch the correlation peaks
    again a period later: one likeness, which all_pairs lists once). -> [(t_a0, t_a1, lag, cc, significance)]:
    significance is the best cc / MAD of a pair's window a (`correlation_mads`), or None."""
    from tasks.search import PAIR_SAME_LAG, _cluster_pairs

    if not pairs:
        return []
    ta = np.array([p[0] / 40.0 for p in pairs])
    lag = np.array([p[1] / 40.0 for p in pairs])
    cc = np.array([p[2] for p in pairs])
    zeros = np.zeros(len(pairs), np.int64)
    labels = _cluster_pairs(zeros, zeros, ta, lag, 2 * window_s, PAIR_SAME_LAG)
    groups = []  # (best cc, its window's time, repeat)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        best = members[np.argmax(cc[members])]
        ratio = None if mads is None else max(pairs[m][2] / max(mads[pairs[m][0]], 1e-9) for m in members)
        groups.append((float(cc[best]), float(ta[best]),
                       (float(ta[members].min()), float(ta[members].max()), float(lag[best]), float(cc[best]), ratio)))
    kept: list = []
    for best_cc, t_best, repeat in sorted(groups, key=lambda g: -g[0]):
        if not any(abs(t_best - t) < 2 * window_s and abs(repeat[2] - other[2]) < window_s for _, t, other in kept):
            kept.append((best_cc, t_best, repeat))
    return sorted(repeat for _, _, repeat in kept)


def correlation_mads(samples: np.ndarray, starts, window: int, separation: int, step: int = 4) -> dict:
    """MAD of each window's normalized cross-correlation with the rest of the trace, as all_pairs_cc computes
    it (every `step`-th lag: the correlation of a band-passed trace is smooth) -> {window start: MAD}.
    A peak of cc >= 8 x MAD is what matched-filter practice (EQcorrscan's MAD threshold) counts as a detection;
    a window of narrow band (a long coda, monochromatic noise) has a wide spread of chance correlations, and a
    fixed cc threshold lists many chance peaks of it."""
    from obspy.signal.cross_correlation import correlate_template

    mads = {}
    for a in sorted(set(int(a) for a in starts)):
        cc = np.nan_to_num(np.asarray(correlate_template(samples[a + separation:], samples[a:a + window],
                                                         mode="valid", normalize="full", demean=True)))[::step]
        mads[a] = float(np.median(np.abs(cc - np.median(cc))))
    return mads


def run_all_pairs(args) -> dict:
    """--all-pairs: tasks.search.all_pairs on a token index of a few hours of the day, with templates injected
    several times each, beside all-pairs cross-correlation of the original samples; recall of the
    cross-correlation's repeats (pairs above --pairs-threshold) and of the injected pairs, and the time of both."""
    import obspy

    from codec.preprocess import trace_to_codec_input
    from tasks.search import all_pairs as token_all_pairs
    from tasks.search import bandpass, build_index
    from tokenized_data import tokenize
    from tokenized_data.prepare import Preprocessing

    rng = np.random.default_rng(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="all-pairs-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    window_s, separation_s, tau = 4.0, 4.0, args.pairs_threshold
    band = (1.0, 8.0)
    day = obspy.read(args.day)
    day.merge(method=-1)
    trace = max(day, key=lambda tr: tr.stats.npts).copy()
    trace.data = trace.data.astype(np.float64)
    trace.trim(trace.stats.starttime, trace.stats.starttime + args.pairs_seconds - 1 / trace.stats.sampling_rate)
    if trace.stats.sampling_rate != 40.0:  # a 20 Hz day: at the codec's 40 Hz, as tokenizing would (and the CC)
        trace.resample(40.0)
    tpls = templates(args.events, args.templates)
    n = trace.stats.npts
    slots = len(tpls) * args.injections
    spacing = (n - 2 * 40 * 60) // slots
    background = bandpass(trace.data, band)
    injected = []  # (template, start sample)
    for slot in range(slots):
        which = slot % len(tpls)
        tpl = tpls[which][1]
        i0 = 40 * 60 + slot * spacing + int(rng.integers(0, spacing - len(tpl) - 40))
        noise_power = float(np.mean(background[i0:i0 + len(tpl)] ** 2))
        gain = np.sqrt(noise_power / float(np.mean(tpl ** 2)) * 10 ** (args.pairs_snr / 10))
        trace.data[i0:i0 + len(tpl)] += gain * tpl
        injected.append((which, i0))
    truth = [(b - a) / 40.0 for k, (w, a) in enumerate(injected) for (v, b) in injected[k + 1:] if v == w]
    truth_at = [a / 40.0 for k, (w, a) in enumerate(injected) for (v, b) in injected[k + 1:] if v == w]
    folder = work / "all-pairs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    trace.data = trace.data.astype(np.float32)
    trace.write(str(folder / "cut.mseed"), format="MSEED", encoding="FLOAT32")
    # --tokenize-band: tokens of the band-passed trace (`eqcodec tokenize --bandpass 1-8`)
    prep = Preprocessing(bandpass=band) if args.tokenize_band else None
    t = time.time()
    tokenize([str(folder / "cut.mseed")], folder / "corpus", prep=prep, num_proc=1, progress=False)
    tokenize_s = time.time() - t
    t = time.time()
    build_index([folder / "corpus"], folder / "index", index_type=args.pairs_index_type, band=band,
                hop=args.pairs_hop, progress=False)
    build_s = time.time() - t
    samples = bandpass(trace_to_codec_input(obspy.read(str(folder / "cut.mseed"))[0]), band)
    # the reference is the same for the same cut, injections and threshold: kept in --work when one is given
    every = max(1, args.pairs_cc_every)
    cached = work / (f"reference-{args.pairs_seconds:g}s-{args.pairs_snr:+g}dB-{tau:g}"
                     f"{f'-every{every}' if every > 1 else ''}.json")
    if args.work and cached.is_file():
        saved = json.loads(cached.read_text())
        reference, cc_s = [(int(a), int(lag), float(cc)) for a, lag, cc in saved["pairs"]], saved["seconds"]
    else:
        t = time.time()
        reference = all_pairs_cc(samples, int(window_s * 40), 40 * every, tau, int(separation_s * 40))
        # every window costs in proportion to the samples after it: a regular sample of them, scaled, times all
        cc_s = (time.time() - t) * every
        if args.work:
            cached.write_text(json.dumps({"pairs": [list(map(float, r)) for r in reference], "seconds": cc_s}))
    mads = None
    if every == 1:  # each reference window's spread of chance correlations (cached beside the reference)
        cached_mads = cached.with_name(cached.stem + "-mads.json")
        if args.work and cached_mads.is_file():
            mads = {int(a): v for a, v in json.loads(cached_mads.read_text()).items()}
        else:
            mads = correlation_mads(samples, [a for a, _, _ in reference], int(window_s * 40), int(separation_s * 40))
            if args.work:
                cached_mads.write_text(json.dumps(mads))
    repeats = reference_repeats(reference, window_s, mads) if every == 1 else []
    significance = np.array([r[4] for r in repeats], float)
    t = time.time()
    pairs = token_all_pairs(folder / "index", min_separation=separation_s, candidates=args.pairs_candidates,
                            neighbours=args.pairs_neighbours)
    token_s = time.time() - t
    t0 = trace.stats.starttime
    ta = np.array([obspy.UTCDateTime(s) - t0 for s in pairs.starttime_a])
    lag, score = pairs.lag_seconds.to_numpy(), pairs.score.to_numpy()
    significant = np.nan_to_num(pairs.significance.to_numpy(), nan=0.0) >= SIGNIFICANT_MADS

    def found(ta_found, lag_found, a0, a1, want_lag):
        ok = (np.abs(lag_found - want_lag) <= 0.05 + 1e-6) & (ta_found >= a0 - window_s) & (ta_found <= a1 + window_s)
        return bool(ok.any())

    ref_ta = np.array([r[0] for r in repeats]), np.array([r[1] for r in repeats])
    ref_lag = np.array([r[2] for r in repeats])
    tpl_s = len(tpls[0][1]) / 40.0
    result = {"day": args.day, "channel": trace.id, "tokenized": "band-passed trace" if args.tokenize_band
              else "trace", "channel_hours": round(n / 40 / 3600, 3), "band_hz": band,
              "templates": [name for name, _ in tpls], "injections_per_template": args.injections,
              "snr_db": args.pairs_snr, "threshold": tau, "neighbours": args.pairs_neighbours,
              "index_type": args.pairs_index_type, "hop_s": args.pairs_hop,
              "candidates": args.pairs_candidates, "window_s": window_s, "min_separation_s": separation_s,
              "reference": "all-pairs cross-correlation (obspy correlate_template, FFT) of every 4-s window "
                           "(1-s hop) of the band-passed original 40 Hz samples with the rest of the channel",
              "recalled_when": "a pair with |lag - true lag| <= 50 ms and its window a within 4 s of the repeat's",
              "reference_pairs": len(reference), "reference_repeats": len(repeats),
              "injected_pairs": len(truth), "token_pairs": int(len(pairs)),
              "token_pairs_above_threshold": int((score >= tau).sum()),
              "tokenize_s": round(tokenize_s, 1), "index_s": round(build_s, 1),
              "all_pairs_cc_s": round(cc_s, 1), "token_all_pairs_s": round(token_s, 1),
              "all_pairs_cc_timed_on": "every window" if every == 1 else
              f"every {every}th window (its time x {every}; the reference pairs and repeats not computed)",
              "reference_recall_of_injected": round(np.mean([found(ref_ta[0], ref_lag, a - 0, a + tpl_s, L)
                                                              for a, L in zip(truth_at, truth)]), 3)
              if truth and every == 1 else None,
              "significance": "a repeat's best cc / the MAD of its window a's correlation with the rest of the "
                              f"trace; matched-filter practice counts >= {SIGNIFICANT_MADS:g} as a detection",
              "reference_repeats_by_significance": {}, "recall_of_reference_repeats": {},
              "recall_of_reference_repeats_by_significance": {}, "recall_of_injected_pairs": {}}
    bins = {f"{lo:g}-{hi:g} MAD" if hi < np.inf else f">= {lo:g} MAD": (significance >= lo) & (significance < hi)
            for lo, hi in zip(SIGNIFICANCE_BINS[:-1], SIGNIFICANCE_BINS[1:])}
    result["reference_repeats_by_significance"] = {k: int(v.sum()) for k, v in bins.items()}
    floors = (("any score", score >= -1.0), (f"score >= {tau - 0.1:.2f}", score >= tau - 0.1),
              (f"score >= {tau:.2f}", score >= tau), (f"significance >= {SIGNIFICANT_MADS:g}", significant))
    result["token_pairs_listed"] = {label: int(keep.sum()) for label, keep in floors}
    for label, keep in floors:
        hit = np.array([found(ta[keep], lag[keep], a0, a1, L) for a0, a1, L, _, _ in repeats], bool)
        result["recall_of_reference_repeats"][label] = round(float(hit.mean()), 3) if repeats else None
        result["recall_of_reference_repeats_by_significance"][label] = {
            k: round(float(hit[v].mean()), 3) if v.any() else None for k, v in bins.items()}
        result["recall_of_injected_pairs"][label] = round(np.mean(
            [found(ta[keep], lag[keep], a, a + tpl_s, L) for a, L in zip(truth_at, truth)]), 3) if truth else None
    above = np.flatnonzero(score >= tau)
    result["token_pairs_above_threshold_in_reference"] = int(sum(
        any(abs(lag[i] - r[2]) <= 0.05 + 1e-6 and r[0] - window_s <= ta[i] <= r[1] + window_s for r in repeats)
        for i in above))
    print(json.dumps(result, indent=1), flush=True)
    print(f"\nall pairs on {result['channel_hours']:g} channel-hours of {trace.id} ({Path(args.day).name}), "
          f"{len(tpls)} templates x {args.injections} injections at {args.pairs_snr:+g} dB, band "
          f"{band[0]:g}-{band[1]:g} Hz, reference cc >= {tau}\n")
    print("| | reference (all-pairs CC) | token all-pairs: any score | score >= tau - 0.1 | score >= tau | "
          f"significance >= {SIGNIFICANT_MADS:g} |")
    print("|---|---|---|---|---|---|")
    rr, ri = list(result["recall_of_reference_repeats"].values()), list(result["recall_of_injected_pairs"].values())
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    if every == 1:
        print(f"| recall of the reference's {len(repeats)} repeats ({len(reference)} pairs) | 1 | "
              f"{' | '.join(map(fmt, rr))} |")
        by = result["recall_of_reference_repeats_by_significance"]
        for key, count in result["reference_repeats_by_significance"].items():
            print(f"| ... the {count} of cc / MAD {key} | 1 | {' | '.join(fmt(by[label][key]) for label in by)} |")
    print(f"| recall of the {len(truth)} injected pairs | {fmt(result['reference_recall_of_injected'])} | "
          f"{' | '.join(map(fmt, ri))} |")
    print(f"| pairs listed | {len(reference)} | {' | '.join(str(v) for v in result['token_pairs_listed'].values())} |")
    timed = f" (every {every}th window, x {every})" if every > 1 else ""
    print(f"| time (s) | {cc_s:.1f}{timed} | {token_s:.1f} (index build {build_s:.1f}, tokenize {tokenize_s:.1f}) | | | |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    import faiss
    import obspy
    import torch

    from tasks.search import bandpass, build_index, search
    from tokenized_data import tokenize
    from tokenized_data.prepare import Preprocessing

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", default=DAY)
    parser.add_argument("--events", default=EVENTS)
    parser.add_argument("--templates", type=int, default=4)
    parser.add_argument("--injections", type=int, default=3, help="injections of each template per SNR")
    parser.add_argument("--snr", default="-5,0,5,10,20")
    parser.add_argument("--variants", default="flat:0:1,pqfs:8:2",
                        help="indexes compared, TYPE:PQ_BYTES:HOP[:CANDIDATES[:NEIGHBOURS]] comma-separated "
                             "(PQ_BYTES ignored by flat; CANDIDATES: proposals re-ranked, NEIGHBOURS: windows per "
                             "query vector, default the search's own), e.g. "
                             "flat:0:1,pq:16:1,pqfs:8:2:1000 (default: %(default)s)")
    parser.add_argument("--false-alarm-depth", type=int, default=10,
                        help="matches beyond the injections listed per template (both methods) to count false "
                             "alarms at equal recall (default: %(default)s)")
    parser.add_argument("--out", default="benchmarks/results/search_benchmark.json")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--all-pairs", action="store_true",
                        help="run the all-pairs measurement instead (tasks.search.all_pairs vs all-pairs CC)")
    parser.add_argument("--pairs-seconds", type=float, default=3 * 3600.0,
                        help="--all-pairs: seconds of the day's longest piece used")
    parser.add_argument("--pairs-snr", type=float, default=10.0, help="--all-pairs: SNR (dB) of the injections")
    parser.add_argument("--pairs-threshold", type=float, default=0.8,
                        help="--all-pairs: cross-correlation threshold of the reference pairs")
    parser.add_argument("--pairs-neighbours", type=int, default=10,
                        help="--all-pairs: neighbours per window of all_pairs")
    parser.add_argument("--pairs-hop", type=int, default=1,
                        help="--all-pairs: hop (s) of the index (the measurement of search_all_pairs_3h.json: 1)")
    parser.add_argument("--pairs-index-type", default="auto",
                        help="--all-pairs: index type (default: %(default)s, as `eqcodec index` chooses: pqfs for "
                             "3 h at a 1-s hop, the measurement of search_all_pairs_3h.json; flat: exact)")
    parser.add_argument("--tokenize-band", action="store_true",
                        help="tokenize the band-passed day (1-8 Hz, `eqcodec tokenize --bandpass`) instead of the "
                             "day itself, so that the codec spends its bits in the search band (the matched filter "
                             "and the all-pairs reference are unchanged)")
    parser.add_argument("--pairs-cc-every", type=int, default=1,
                        help="--all-pairs: time the cross-correlation on every K-th window only and scale its time "
                             "by K (long archives); the recall of its repeats is then not measured, that of the "
                             "injected pairs is")
    parser.add_argument("--pairs-candidates", type=int, default=None,
                        help="--all-pairs: clusters re-ranked by all_pairs (default: its own)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    if args.all_pairs:
        run_all_pairs(args)
        return 0
    variants = [parse_variant(v) for v in args.variants.split(",")]

    day = obspy.read(args.day)
    day.merge(method=-1)
    day = obspy.Stream(sorted(day, key=lambda tr: tr.stats.starttime))
    rates = sorted({tr.stats.sampling_rate for tr in day})
    for tr in day:
        tr.data = tr.data.astype(np.float64)
        if tr.stats.sampling_rate != 40.0:  # a 20 Hz day: at the codec's 40 Hz, as tokenizing would (and the MF)
            tr.resample(40.0)
    tpls = templates(args.events, args.templates)
    longest = max(day, key=lambda tr: tr.stats.npts)
    work = Path(args.work or tempfile.mkdtemp(prefix="search-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    original_size = Path(args.day).stat().st_size
    steim = work / "day-steim2.mseed"
    int_day = day.copy()
    for tr in int_day:
        tr.data = np.round(tr.data).astype(np.int32)
    int_day.write(str(steim), format="MSEED", encoding="STEIM2")
    steim_size = steim.stat().st_size
    hours = sum(tr.stats.npts for tr in day) / 40 / 3600

    results = {"day": args.day, "tokenized": "band-passed day" if args.tokenize_band else "day",
               "channel_hours": hours, "templates": [name for name, _ in tpls],
               "variants": [variant_label(v) for v in variants],
               "steim2_bytes_40hz": steim_size, "original_file_bytes": original_size, "original_rates_hz": rates,
               "snr": []}
    slots = len(tpls) * args.injections
    spacing = (longest.stats.npts - 2 * 40 * 600) // slots
    for snr in [float(s) for s in args.snr.split(",")]:
        rng = np.random.default_rng([0, int(round(10 * snr)) + 1000])  # the same injections whatever --snr lists
        injected = day.copy()
        target = max(injected, key=lambda tr: tr.stats.npts)
        truth = []  # (template index, time)
        background = bandpass(target.data, (1.0, 8.0))
        for slot in range(slots):
            which = slot % len(tpls)
            tpl = tpls[which][1]
            i0 = 40 * 600 + slot * spacing + int(rng.integers(0, spacing - len(tpl) - 40 * 60))
            noise_power = float(np.mean(background[i0:i0 + len(tpl)] ** 2))
            signal_power = float(np.mean(bandpass(tpl, (1.0, 8.0)) ** 2))
            gain = np.sqrt(noise_power / signal_power * 10 ** (snr / 10))
            target.data[i0:i0 + len(tpl)] += gain * tpl
            truth.append((which, target.stats.starttime + i0 / 40.0))
        folder = work / f"snr{snr:+.0f}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for tr in injected:
            tr.data = tr.data.astype(np.float32)
        injected.write(str(folder / "day.mseed"), format="MSEED", encoding="FLOAT32")
        for tr in injected:
            tr.data = tr.data.astype(np.float64)
        # --tokenize-band: tokens of the band-passed day (`eqcodec tokenize --bandpass 1-8`)
        prep = Preprocessing(bandpass=(1.0, 8.0)) if args.tokenize_band else None
        t = time.time()
        tokenize([str(folder / "day.mseed")], folder / "corpus", prep=prep, num_proc=1, progress=False)
        tokenize_s = time.time() - t
        row = {"snr_db": snr, "tokenize_s": round(tokenize_s, 1), "indexes": {},
               "injections": [{"template": tpls[w][0], "starttime": str(when)} for w, when in truth]}
        filtered_day = [(tr, bandpass(tr.data, (1.0, 8.0))) for tr in injected]
        found_mf, mf_time = 0, 0.0
        mf_true, mf_false = [], []
        depth = args.injections + args.false_alarm_depth
        for which, (name, tpl) in enumerate(tpls):
            t = time.time()
            hits = matched_filter(filtered_day, tpl, depth)
            mf_time += time.time() - t
            for w, when in truth:
                if w == which and any(abs(h - when) <= 0.05 for h, _ in hits[:args.injections]):
                    found_mf += 1
            best, false = true_and_false_scores(hits, [when for w, when in truth if w == which])
            mf_true += best
            mf_false += false
        template_hours = hours * len(tpls)
        row["matched_filter"] = {"recall": found_mf / len(truth), "query_s": round(mf_time / len(tpls), 3)}
        for variant in variants:
            kind, pq_bytes, hop, candidates, neighbours, codebooks, anchors = variant
            label = variant_label(variant)
            t = time.time()
            index = build_index([folder / "corpus"], folder / f"index-{label}", index_type=kind, hop=hop,
                                pq_bytes=pq_bytes or 8, progress=False, log=lambda line: None,
                                **({"coarse_codebooks": codebooks} if codebooks else {}))
            build_s = time.time() - t
            found, exact, q_time = 0, 0, 0.0
            token_true, token_false = [], []
            for which, (name, tpl) in enumerate(tpls):
                trace = obspy.Trace(tpl.astype(np.float32), header={"sampling_rate": 40.0, "station": "TPL"})
                t = time.time()
                matches = search(trace, folder / f"index-{label}", top=depth, candidates=candidates,
                                 neighbours=neighbours, searched_anchors=anchors)
                q_time += time.time() - t
                best, false = true_and_false_scores(
                    [(obspy.UTCDateTime(s), score) for s, score in zip(matches.starttime, matches.score)],
                    [when for w, when in truth if w == which])
                token_true += best
                token_false += false
                times = [obspy.UTCDateTime(s) for s in matches.starttime[:args.injections]]
                for w, when in truth:
                    if w == which and any(abs(m - when) <= 0.05 for m in times):
                        found += 1
                    if w == which and any(abs(m - when) <= 0.0125 for m in times):
                        exact += 1
            # false alarms per template-hour at the recall the token search reaches with its deep list, for both
            reached = float(np.mean(np.isfinite(token_true)))
            fa_token = false_alarms_at_recall(token_true, token_false, reached)
            fa_mf = false_alarms_at_recall(mf_true, mf_false, reached)
            row["indexes"][label] = {"recall": found / len(truth), "recall_exact_sample": exact / len(truth),
                                     "recall_deep": reached,
                                     "false_alarms_per_hour": None if fa_token is None else fa_token / template_hours,
                                     "mf_false_alarms_per_hour_same_recall":
                                         None if fa_mf is None else fa_mf / template_hours,
                                     "query_s": round(q_time / len(tpls), 3), "build_s": round(build_s, 1),
                                     "index_bytes": int(sum(index.metadata["bytes"].values())),
                                     "code_bytes": int(index.metadata["bytes"]["codes.npy"]),
                                     "vectors": len(index), "code_size": int(index.metadata["code_size"])}
            shutil.rmtree(folder / f"index-{label}", ignore_errors=True)
        results["snr"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "injections"}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    corpus_bytes = sum(p.stat().st_size for p in (work / f"snr{results['snr'][0]['snr_db']:+.0f}" / "corpus").rglob("*.arrow"))
    print(f"\n{hours:.1f} channel-hours of {Path(args.day).name}, {len(tpls)} templates x {args.injections} "
          f"injections per SNR; Steim2 at 40 Hz {steim_size / 1e6:.2f} MB (original file {original_size / 1e6:.2f} MB), "
          f"token corpus {corpus_bytes / 1e6:.2f} MB\n")
    labels = [variant_label(v) for v in variants]
    print("| SNR (dB) | matched filter | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for row in results["snr"]:
        print(f"| {row['snr_db']:+.0f} | {row['matched_filter']['recall']:.2f} | "
              + " | ".join(f"{row['indexes'][k]['recall']:.2f}" for k in labels) + " |")
    first = results["snr"][0]["indexes"]
    print("| index bytes per channel-day, % of Steim2 | - | " + " | ".join(
        f"{first[k]['index_bytes'] * 24 / hours / 1e6:.2f} MB, {100 * first[k]['index_bytes'] / steim_size:.0f} %"
        for k in labels) + " |")
    print("| mean query s (MF: correlate_template, samples in memory) | "
          f"{np.mean([r['matched_filter']['query_s'] for r in results['snr']]):.2f} | " + " | ".join(
              f"{np.mean([r['indexes'][k]['query_s'] for r in results['snr']]):.2f}" for k in labels) + " |")
    print("\nfalse alarms per template-hour (matches more than 50 ms from every injection of their template, "
          f"among the top {args.injections} + {args.false_alarm_depth}) at the threshold where the token search "
          "reaches its recall (within that list), token / matched filter at the same recall:\n")
    print("| SNR (dB) | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for row in results["snr"]:
        print(f"| {row['snr_db']:+.0f} | " + " | ".join(
            f"{row['indexes'][k]['recall_deep']:.2f}: {fmt(row['indexes'][k]['false_alarms_per_hour'])} / "
            f"{fmt(row['indexes'][k]['mf_false_alarms_per_hour_same_recall'])}" for k in labels) + " |")
    print(f"\nrecall: injections found within 50 ms by the top-{args.injections} matches of their template; "
          "variants: index type, bytes per window, hop (s)")
    results["corpus_bytes"] = corpus_bytes
    Path(args.out).write_text(json.dumps(results, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
