"""Similarity search on tokens (`eqcodec index` / `eqcodec search`) against the classical matched filter.

Real event waveforms (nc-events, Z components, the loudest 10 s, band-passed 1-8 Hz) are
injected into a real continuous day with gaps (ispaq US.OXF..BHZ.2002.110, 40 Hz)
at known times off the 1-s grid (random multiples of 25 ms), scaled to an SNR
(band-passed signal power over band-passed noise power in the injection window)
of -5..+20 dB. For each SNR the injected day is tokenized and indexed (exact and
IVF-PQ indexes); each template is searched with `tasks.search.search` (top = its
number of injections) and with the matched filter: obspy's correlate_template of
the band-passed template over every gap-free piece of the ORIGINAL injected
samples, the same top-N peak picking (peaks closer than half the template merged).
An injection is recalled when a match lies within 50 ms (2 samples) of it.
Prints markdown and writes JSON.

    python benchmarks/search_benchmark.py --out benchmarks/results/search_benchmark.json
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


def main() -> int:
    import faiss
    import obspy
    import torch

    from tasks.search import bandpass, build_index, search
    from tokenized_data import tokenize

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", default=DAY)
    parser.add_argument("--events", default=EVENTS)
    parser.add_argument("--templates", type=int, default=4)
    parser.add_argument("--injections", type=int, default=3, help="injections of each template per SNR")
    parser.add_argument("--snr", default="-5,0,5,10,20")
    parser.add_argument("--out", default="benchmarks/results/search_benchmark.json")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)

    day = obspy.read(args.day)
    day.merge(method=-1)
    day = obspy.Stream(sorted(day, key=lambda tr: tr.stats.starttime))
    for tr in day:
        tr.data = tr.data.astype(np.float64)
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

    results = {"day": args.day, "channel_hours": hours, "templates": [name for name, _ in tpls],
               "steim2_bytes_40hz": steim_size, "original_file_bytes": original_size, "snr": []}
    slots = len(tpls) * args.injections
    spacing = (longest.stats.npts - 2 * 40 * 600) // slots
    for snr in [float(s) for s in args.snr.split(",")]:
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
        t = time.time()
        tokenize([str(folder / "day.mseed")], folder / "corpus", num_proc=1, progress=False)
        tokenize_s = time.time() - t
        row = {"snr_db": snr, "tokenize_s": round(tokenize_s, 1), "indexes": {}}
        filtered_day = [(tr, bandpass(tr.data, (1.0, 8.0))) for tr in injected]
        found_mf, mf_time = 0, 0.0
        for which, (name, tpl) in enumerate(tpls):
            t = time.time()
            hits = matched_filter(filtered_day, tpl, args.injections)
            mf_time += time.time() - t
            for w, when in truth:
                if w == which and any(abs(h - when) <= 0.05 for h, _ in hits):
                    found_mf += 1
        row["matched_filter"] = {"recall": found_mf / len(truth), "query_s": round(mf_time / len(tpls), 3)}
        for kind in ("flat", "ivfpq"):
            t = time.time()
            index = build_index([folder / "corpus"], folder / f"index-{kind}", index_type=kind, progress=False)
            build_s = time.time() - t
            found, exact, q_time = 0, 0, 0.0
            for which, (name, tpl) in enumerate(tpls):
                trace = obspy.Trace(tpl.astype(np.float32), header={"sampling_rate": 40.0, "station": "TPL"})
                t = time.time()
                matches = search(trace, folder / f"index-{kind}", top=args.injections)
                q_time += time.time() - t
                times = [obspy.UTCDateTime(s) for s in matches.starttime]
                for w, when in truth:
                    if w == which and any(abs(m - when) <= 0.05 for m in times):
                        found += 1
                    if w == which and any(abs(m - when) <= 0.0125 for m in times):
                        exact += 1
            row["indexes"][kind] = {"recall": found / len(truth), "recall_exact_sample": exact / len(truth),
                                    "query_s": round(q_time / len(tpls), 3), "build_s": round(build_s, 1),
                                    "index_bytes": int(sum(index.metadata["bytes"].values())),
                                    "faiss_bytes": int(index.metadata["bytes"]["vectors.faiss"])}
        results["snr"].append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    corpus_bytes = sum(p.stat().st_size for p in (work / f"snr{results['snr'][0]['snr_db']:+.0f}" / "corpus").rglob("*.arrow"))
    print(f"\n{hours:.1f} channel-hours of {Path(args.day).name}, {len(tpls)} templates x {args.injections} "
          f"injections per SNR; Steim2 at 40 Hz {steim_size / 1e6:.2f} MB (original file {original_size / 1e6:.2f} MB), "
          f"token corpus {corpus_bytes / 1e6:.2f} MB\n")
    print("| SNR (dB) | matched filter recall | token search recall (flat) | (ivfpq) | exact sample (flat) |"
          " query s: MF / flat / ivfpq |")
    print("|---|---|---|---|---|---|")
    for row in results["snr"]:
        f, q = row["indexes"]["flat"], row["indexes"]["ivfpq"]
        print(f"| {row['snr_db']:+.0f} | {row['matched_filter']['recall']:.2f} | {f['recall']:.2f} | {q['recall']:.2f} "
              f"| {f['recall_exact_sample']:.2f} | {row['matched_filter']['query_s']} / {f['query_s']} / {q['query_s']} |")
    first = results["snr"][0]["indexes"]
    print(f"\nindex size: flat {first['flat']['index_bytes'] / 1e6:.2f} MB, ivfpq {first['ivfpq']['index_bytes'] / 1e6:.2f} MB "
          f"(FAISS part {first['ivfpq']['faiss_bytes'] / 1e6:.2f} MB) vs Steim2 {steim_size / 1e6:.2f} MB")
    results["corpus_bytes"] = corpus_bytes
    Path(args.out).write_text(json.dumps(results, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
