"""Scale of the similarity search (issue 15, item 7): index size, build time and query time per channel-day,
for archives of 1, 7 and 30 channel-days, beside the FFT matched filter, extrapolated to a channel-year and a
network-year (100 stations x 3 channels) by the measured slopes.

The archive: the continuous days of ../shared/data/public-recordings/ispaq (8 whole or nearly whole days of 5
stations, 20 and 40 Hz); beyond 8 channel-days the same days are used again under other station codes (a copy
is another trace id: OXF -> OXFB, ...), so the 30-day archive holds 8 distinct days. Each channel-day is
written as Steim2 miniSEED (original rate and counts: the archive's size) and tokenized with the shipped
codec into its own corpus (cached in --work; tokenizing is timed once, on a fresh copy of the first day).

For each archive size: `build_index` with the defaults (shards by station: here one per channel-day) is timed
(tokenizing excluded), its files counted; then the same templates (10 s cut around the loudest second of a
few days of the archive: each also matches itself) are searched with `tasks.search.search` (top 10; the
time includes reading the index, its shards and the corpora's tokens for the re-rank) and with the matched
filter: every miniSEED file of the archive read (obspy, Steim2 decoding), band-passed at its own rate (the
same Butterworth 1-8 Hz, zero phase) and correlated with the template (resampled to that rate, band-passed)
by obspy's correlate_template (FFT), top 10 peaks. Both read from the page cache (the files were just
written or read). Prints a markdown table, writes JSON.

    python benchmarks/search_scale_benchmark.py --out benchmarks/results/search_scale.json
    python benchmarks/search_scale_benchmark.py --layout channel --out benchmarks/results/search_scale_channel.json

--layout channel lays the same days out as consecutive days of one channel (40 Hz, the 20 Hz days resampled)
and tokenizes each archive into one corpus, as a station's archive would be: one corpus and one shard to open
per query instead of one per channel-day.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

RECORDINGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "public-recordings" / "ispaq"
#: The continuous days of ../shared (whole or nearly whole days; II.KAPI day 005 holds 2 h only: not used).
REAL_DAYS = ["US.OXF..BHZ.2002.110.M", "TA.109C..BHE.2016.249.M", "IU.ANMO.00.BHZ.2013.006",
             "IU.ANMO.00.BHZ.2010.058.M", "IU.ANMO.00.BH1.2010.058.M", "IU.ANMO.00.BH2.2010.058.M",
             "II.KAPI.00.BHZ.2013.006.M", "II.KAPI.00.BHZ.2013.007.M"]
#: Matched-filter correlations counted as detections when the token search's recall at scale is reported.
DETECTION_CC = (0.7, 0.8, 0.9)
DEFAULT_WORK = Path(__file__).resolve().parents[1] / "runs" / "search-scale"


def day_plan(count: int) -> list[tuple[str, int]]:
    """(real day file, copy number) of each channel-day: the real days first, then copies (copy c > 0: the
    station code gets letter c, so that each copy is another trace id)."""
    return [(REAL_DAYS[i % len(REAL_DAYS)], i // len(REAL_DAYS)) for i in range(count)]


def prepare(work: Path, count: int, progress: bool = False) -> list[dict]:
    """The channel-days as Steim2 miniSEED (original rate and counts) and their token corpora, cached in work."""
    import obspy

    from tokenized_data import tokenize

    days = []
    for k, (name, copy) in enumerate(day_plan(count)):
        stem = f"{k:02d}-{name.removesuffix('.M')}" + (f"-copy{copy}" if copy else "")
        mseed, corpus = work / "days" / f"{stem}.mseed", work / "corpora" / stem
        if not mseed.is_file():
            st = obspy.read(str(RECORDINGS / name))
            for tr in st:
                tr.data = tr.data.astype(np.int32)
                if copy:
                    tr.stats.station = tr.stats.station[:4] + "BCDEFG"[copy - 1]
            mseed.parent.mkdir(parents=True, exist_ok=True)
            tmp = mseed.with_name(mseed.name + ".tmp")
            st.write(str(tmp), format="MSEED", encoding="STEIM2")
            tmp.replace(mseed)
        if not (corpus / "dataset_info.json").is_file():
            tokenize([str(mseed)], corpus, num_proc=1, progress=progress, overwrite=True)
        days.append({"name": stem, "source": name, "copy": copy, "mseed": mseed, "corpus": corpus})
    return days


def prepare_channel(work: Path, days: list[dict], sizes: list[int], progress: bool = False,
                    band=None) -> tuple[list, dict]:
    """--layout channel: the same channel-days as consecutive days of ONE channel (XX.ARCH..BHZ, from
    2020-01-01, at 40 Hz: the 20 Hz days resampled), as an archive holds a station's month; each archive size
    tokenized into one corpus (as `eqcodec tokenize --sds` makes one for a span). -> (days as prepare()
    gives them, {size: corpus folder}), cached in work/channel. band: (low, high) Hz to tokenize the band-passed
    days (`eqcodec tokenize --bandpass`), into corpora of their own."""
    import obspy

    from tokenized_data import tokenize
    from tokenized_data.prepare import Preprocessing

    base, out = obspy.UTCDateTime("2020-01-01"), []
    for k, day in enumerate(days):
        mseed = work / "channel" / "days" / f"{k:02d}-ARCH.mseed"
        if not mseed.is_file():
            st = obspy.read(str(day["mseed"]))
            t0 = min(tr.stats.starttime for tr in st)
            for tr in st:
                if tr.stats.sampling_rate != 40.0:
                    tr.data = tr.data.astype(np.float64)
                    tr.resample(40.0)
                tr.data = np.round(tr.data).astype(np.int32)
                tr.stats.starttime = base + 86400 * k + (tr.stats.starttime - t0)
                tr.stats.network, tr.stats.station, tr.stats.location, tr.stats.channel = "XX", "ARCH", "", "BHZ"
            mseed.parent.mkdir(parents=True, exist_ok=True)
            tmp = mseed.with_name(mseed.name + ".tmp")
            st.write(str(tmp), format="MSEED", encoding="STEIM2")
            tmp.replace(mseed)
        out.append({**day, "name": f"{k:02d}-ARCH", "mseed": mseed})
    corpora = {}
    for n in sizes:
        corpus = work / "channel" / "corpora" / (f"days-{n}" + ("-band-passed" if band else ""))
        if not (corpus / "dataset_info.json").is_file():
            tokenize([str(d["mseed"]) for d in out[:n]], corpus, prep=Preprocessing(bandpass=band) if band else None,
                     num_proc=1, progress=progress, overwrite=True)
        corpora[n] = corpus
    return out, corpora


def steim2_day_bytes(days) -> int:
    return sum(d["mseed"].stat().st_size for d in days)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def cut_templates(days, count: int) -> list:
    """10 s of `count` of the days (40 Hz codec input, raw: the search band-passes it) around their loudest
    second in 1-8 Hz (away from the ends of their pieces): (trace id, start time, obspy.Trace)."""
    import obspy

    from codec.preprocess import trace_to_codec_input
    from tasks.search import bandpass

    chosen = []
    for d in days[:count]:
        st = obspy.read(str(d["mseed"]))
        st.merge(method=-1)
        tr = max(st.split(), key=lambda t: t.stats.npts)
        x = trace_to_codec_input(tr)
        f = bandpass(x, (1.0, 8.0))
        energy = np.convolve(f ** 2, np.ones(40), "valid")
        energy[:3600 * 40] = energy[-3600 * 40:] = 0
        peak = int(np.argmax(energy))
        a = max(0, peak - 4 * 40)
        piece = obspy.Trace(x[a:a + 400].astype(np.float32), header={
            "network": tr.stats.network, "station": tr.stats.station, "location": tr.stats.location,
            "channel": tr.stats.channel, "sampling_rate": 40.0, "starttime": tr.stats.starttime + a / 40.0})
        chosen.append(piece)
    return chosen


def _sos(fs: float):
    from scipy.signal import butter

    return butter(4, [1.0, min(8.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")


def matched_filter(files, template, top: int = 10):
    """The peer: read every file, band-pass each gap-free trace at its rate, correlate the template (resampled to
    that rate, band-passed) by FFT (obspy correlate_template), keep the `top` best peaks. -> [(trace id, time, cc)]"""
    import obspy
    from obspy.signal.cross_correlation import correlate_template
    from scipy.signal import sosfiltfilt

    prepared = {}
    hits = []
    for path in files:
        st = obspy.read(str(path))
        st.merge(method=-1)
        for tr in st.split():
            fs = tr.stats.sampling_rate
            if fs not in prepared:
                t = template.copy()
                if fs != t.stats.sampling_rate:
                    t.resample(fs)
                prepared[fs] = sosfiltfilt(_sos(fs), t.data.astype(np.float64) - t.data.mean())
            tpl = prepared[fs]
            if tr.stats.npts < 2 * len(tpl):
                continue
            data = sosfiltfilt(_sos(fs), tr.data.astype(np.float64) - tr.data.mean())
            cc = np.nan_to_num(correlate_template(data, tpl, mode="valid", normalize="full"))
            # peaks at least half the template apart, as the token search keeps its matches
            kept = []
            for i in np.argsort(-cc[(pool := np.argpartition(-cc, min(len(cc) - 1, 50 * top))[:50 * top + 1])]):
                j = int(pool[i])
                if all(abs(j - k) >= len(tpl) // 2 for k in kept):
                    kept.append(j)
                if len(kept) == top:
                    break
            hits += [(tr.id, tr.stats.starttime + j / fs, float(cc[j])) for j in kept]
    return sorted(hits, key=lambda h: -h[2])[:top]


def fit(xs, ys) -> tuple[float, float]:
    """Least-squares line y = a + b x -> (a, b)."""
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def main() -> int:
    import argparse
    import json
    import shutil
    import time

    import faiss
    import obspy
    import torch

    from tasks.search import HOP_SECONDS, PQ_BYTES, build_index, search
    from tokenized_data import tokenize

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,7,30", help="archive sizes in channel-days (default: %(default)s)")
    parser.add_argument("--templates", type=int, default=3, help="templates searched per archive")
    parser.add_argument("--work", default=str(DEFAULT_WORK), help="cache of the days and corpora (default: %(default)s)")
    parser.add_argument("--index-type", default="auto", help="index type of tasks.search (default: %(default)s)")
    parser.add_argument("--neighbours", type=int, default=None,
                        help="windows retrieved per query vector in each shard (default: the search's own)")
    parser.add_argument("--candidates", type=int, default=None,
                        help="proposals re-ranked per query (default: the search's own)")
    parser.add_argument("--tokenize-band", action="store_true",
                        help="--layout channel: tokenize the band-passed days (`eqcodec tokenize --bandpass 1-8`)")
    parser.add_argument("--layout", choices=("day", "channel"), default="day",
                        help="day: every channel-day its own corpus and shard (other station codes beyond 8 days); "
                             "channel: the days as consecutive days of one channel, one corpus and shard per "
                             "archive (default: %(default)s)")
    parser.add_argument("--out", default="benchmarks/results/search_scale.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    sizes = [int(v) for v in args.sizes.split(",")]
    work = Path(args.work)
    days = prepare(work, max(sizes))
    channel_corpora = None
    if args.layout == "channel":
        days, channel_corpora = prepare_channel(work, days, sizes, band=(1.0, 8.0) if args.tokenize_band else None)
    fresh = work / "tokenize-timing"
    shutil.rmtree(fresh, ignore_errors=True)
    t = time.time()
    tokenize([str(days[0]["mseed"])], fresh, num_proc=1, progress=False)
    tokenize_s = time.time() - t
    shutil.rmtree(fresh, ignore_errors=True)
    templates = cut_templates(days, args.templates)
    # one untimed query of each method first: imports, codec loading and caches are not the archive's cost
    warm = work / "warm-up-index"
    build_index([days[0]["corpus"] if channel_corpora is None else channel_corpora[sizes[0]]], warm,
                index_type=args.index_type, progress=False, log=lambda line: None)
    search(templates[0], warm, top=10)
    matched_filter([days[0]["mseed"]], templates[0], 10)
    shutil.rmtree(warm, ignore_errors=True)
    rows = []
    for n in sizes:
        archive = days[:n]
        out = work / (f"index-{n}" if channel_corpora is None else f"channel-index-{n}")
        corpora = [d["corpus"] for d in archive] if channel_corpora is None else [channel_corpora[n]]
        shutil.rmtree(out, ignore_errors=True)
        t = time.time()
        index = build_index(corpora, out, index_type=args.index_type, progress=False, log=lambda line: None)
        build_s = time.time() - t
        by_file = dict(index.metadata["bytes"])
        by_file["index.json"] = (out / "index.json").stat().st_size
        row = {"channel_days": n, "distinct_days": len({d["source"] for d in archive}),
               "channel_hours": round(sum(c["channel_hours"] for c in index.metadata["corpora"]), 2),
               "steim2_bytes": steim2_day_bytes(archive), "corpus_bytes": sum(folder_bytes(c) for c in corpora),
               "index_bytes": by_file, "index_total_bytes": sum(by_file.values()), "vectors": len(index),
               "shards": len(index.shards), "index_type": index.metadata["index_type"],
               "code_size": index.metadata["code_size"], "build_s": round(build_s, 2), "token_query_s": [], "mf_query_s": [], "mf_top10": [],
               "agree": []}
        for tpl in templates:
            t = time.time()
            matches = search(tpl, out, top=10, neighbours=args.neighbours, candidates=args.candidates)
            row["token_query_s"].append(round(time.time() - t, 3))
            t = time.time()
            hits = matched_filter([d["mseed"] for d in archive], tpl, 10)
            row["mf_query_s"].append(round(time.time() - t, 3))
            # recall at scale: each of the matched filter's top 10 (its cc; found by the token search's top 10
            # within 50 ms?)
            row["mf_top10"].append([(round(h[2], 3), any(m.trace_id == h[0] and abs(obspy.UTCDateTime(m.starttime)
                                                                                  - h[1]) <= 0.05
                                                         for m in matches.itertuples())) for h in hits])
            # sanity: both find the template where it was cut (its own origin, score ~1)
            own = tpl.stats.starttime
            if any(d["mseed"] == days[k]["mseed"] for d in archive for k in range(len(templates))
                   if templates[k] is tpl):  # the template's day is in this archive
                token_own = any(m.trace_id == tpl.id and abs(obspy.UTCDateTime(m.starttime) - own) <= 0.05
                                and m.score > 0.9 for m in matches.itertuples())
                mf_own = any(h[0] == tpl.id and abs(h[1] - own) <= 0.05 and h[2] > 0.9 for h in hits)
                row["agree"].append({"token_finds_origin": token_own, "mf_finds_origin": mf_own})
        row["token_query_mean_s"] = round(float(np.mean(row["token_query_s"])), 3)
        row["mf_query_mean_s"] = round(float(np.mean(row["mf_query_s"])), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)

    xs = [r["channel_days"] for r in rows]
    per_day = {}
    for key in ("index_total_bytes", "steim2_bytes", "corpus_bytes", "build_s", "token_query_mean_s",
                "mf_query_mean_s"):
        per_day[key] = fit(xs, [r[key] for r in rows]) if len(rows) > 1 else (0.0, rows[0][key])
    year, network_year = 365, 365 * 300

    def at(key, days):
        a, b = per_day[key]
        return a + b * days

    kind = rows[-1]["index_type"]
    result = {"settings": {"index": f"{kind}, {PQ_BYTES} bytes per window (+1 list byte for ivfpqfs), hop "
                                    f"{HOP_SECONDS} s, shards by station ("
                                    + ("one per channel-day here)" if args.layout == "day" else
                                       "one channel: one corpus and one shard per archive)"),
                           "layout": args.layout,
                           "tokens": "band-passed days (1-8 Hz)" if args.tokenize_band else "the days as recorded",
                           "neighbours_per_query_vector": args.neighbours or "the search default",
                           "candidates": args.candidates or "the search default",
                           "templates": [f"{t.id} {t.stats.starttime} (10 s)" for t in templates],
                           "days": [d["name"] for d in days[:max(sizes)]],
                           "tokenize_s_per_channel_day": round(tokenize_s, 2),
                           "note": "beyond 8 channel-days the same real days are reused under other station codes; "
                                   "query times include reading the index/shards/tokens (token search) and the "
                                   "miniSEED files (matched filter), both from the page cache"},
              "rows": rows, "fits": {k: {"intercept": round(a, 4), "per_channel_day": round(b, 6)}
                                     for k, (a, b) in per_day.items()},
              "extrapolated": {label: {k: round(at(k, d), 3) for k in per_day}
                               for label, d in (("channel_year", year), ("network_year_300_channels", network_year))}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))

    print(f"\nsearch at scale: index {kind} ({rows[-1]['code_size']} bytes per window, hop {HOP_SECONDS} s), "
          f"{len(templates)} templates of 10 s, top 10; tokenize {tokenize_s:.1f} s per channel-day (not in build)\n")
    print("| channel-days | Steim2 MB | token corpus MB | index MB (codes / pieces / quantizer / json) | index % of "
          "Steim2 | build s (tokenize excl.) | build s (incl.) | query s: token search | matched filter | MF / token |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = r["index_bytes"]
        parts = " / ".join(f"{b[k] / 1e6:.3f}" for k in ("codes.npy", "pieces.parquet", "quantizer.faiss"))
        meta = (b["index.json"] + b["shard.json"]) / 1e6
        print(f"| {r['channel_days']} ({r['distinct_days']} distinct) | {r['steim2_bytes'] / 1e6:.2f} | "
              f"{r['corpus_bytes'] / 1e6:.2f} | {r['index_total_bytes'] / 1e6:.3f} ({parts} / {meta:.3f}) | "
              f"{100 * r['index_total_bytes'] / r['steim2_bytes']:.1f} % | {r['build_s']:.1f} | "
              f"{r['build_s'] + tokenize_s * r['channel_days']:.1f} | {r['token_query_mean_s']:.2f} | "
              f"{r['mf_query_mean_s']:.2f} | {r['mf_query_mean_s'] / r['token_query_mean_s']:.1f}x |")
    for label, d in (("channel-year (extrapolated)", year), ("network-year, 300 channels (extrapolated)", network_year)):
        idx, st, cb = at("index_total_bytes", d), at("steim2_bytes", d), at("corpus_bytes", d)
        tq, mq, bs = at("token_query_mean_s", d), at("mf_query_mean_s", d), at("build_s", d)
        print(f"| {label} | {st / 1e6:,.0f} | {cb / 1e6:,.0f} | {idx / 1e6:,.0f} | {100 * idx / st:.1f} % | "
              f"{bs:,.0f} | {bs + tokenize_s * d:,.0f} | {tq:,.1f} | {mq:,.0f} | {mq / tq:,.0f}x |")
    a, b = per_day["token_query_mean_s"]
    print(f"\nfits (least squares over the sizes): token query {a:.2f} s + {b * 1000:.1f} ms per channel-day; "
          f"matched filter {per_day['mf_query_mean_s'][0]:.2f} s + {per_day['mf_query_mean_s'][1] * 1000:.0f} ms per "
          f"channel-day; index {per_day['index_total_bytes'][1] / 1e6:.3f} MB per channel-day")
    for threshold in DETECTION_CC:
        print(f"matched-filter detections (top 10 peaks half a template apart, cc >= {threshold}) in the token "
              "search's top 10: " + ", ".join(
                  f"{r['channel_days']} d: {sum(f for t in r['mf_top10'] for c, f in t if c >= threshold)}/"
                  f"{sum(1 for t in r['mf_top10'] for c, _ in t if c >= threshold)}" for r in rows))
    print("sanity (template found at its own origin): " + ", ".join(
        f"{r['channel_days']} d: token {sum(x['token_finds_origin'] for x in r['agree'])}/{len(r['agree'])}, "
        f"MF {sum(x['mf_finds_origin'] for x in r['agree'])}/{len(r['agree'])}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
