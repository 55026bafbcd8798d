"""`eqcodec reconstruct` and `eqcodec train-codec` end to end on obspy's bundled real recordings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import obspy
import pytest
import torch

from codec import EQCodec
from cli import main as eqcodec
from codec.data import event_split, obspy_recordings


def test_reconstruct_writes_levels_report_and_figure(tmp_path, example_stream, capsys):
    source = tmp_path / "RJOB.mseed"
    example_stream.write(str(source), format="MSEED")
    sac = obspy_recordings()[2]  # a SAC file: any obspy-readable format works
    assert eqcodec(["reconstruct", str(source), str(sac), "--out", str(tmp_path / "out"),
                    "--codebooks", "1,8", "--plot", str(tmp_path / "fig.png")]) == 0
    for k in (1, 8):
        st = obspy.read(str(tmp_path / "out" / f"k{k}" / "RJOB.mseed"))
        assert [tr.id for tr in st] == [tr.id for tr in example_stream]
        assert st[0].stats.starttime == example_stream[0].stats.starttime
        assert st[0].stats.sampling_rate == 40.0
        assert (tmp_path / "out" / f"k{k}" / f"{sac.name}.mseed").is_file()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {(r["trace"], r["k"]): r for r in report["rows"] if r["file"] == "RJOB.mseed"}
    seconds = len(st[0].data) / 40.0  # all side information counts: 88 bits/s + 128 bits of scale and offset
    assert rows[("BW.RJOB..EHZ", 8)]["bits_per_second"] == pytest.approx(88 + 128 / seconds, abs=0.01)
    assert rows[("BW.RJOB..EHZ", 8)]["snr_db"] > rows[("BW.RJOB..EHZ", 1)]["snr_db"]
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    start = example_stream[0].stats.starttime
    assert f"| RJOB.mseed | BW.RJOB..EHZ | {start} | 8 | {88 + 128 / seconds:.1f} |" in capsys.readouterr().out
    edges = rows[("BW.RJOB..EHZ", 8)]
    assert edges["original_frame_edge_ratio"] > 0 and edges["frame_edge_ratio"] > 0


def test_reconstruct_with_a_beam_search_scores_higher_at_k8(tmp_path, example_stream):
    source = tmp_path / "RJOB.mseed"
    example_stream.write(str(source), format="MSEED")
    snr = {}
    for width in (1, 8):
        out = tmp_path / f"beam{width}"
        assert eqcodec(["reconstruct", str(source), "--out", str(out), "--codebooks", "8",
                        "--beam-width", str(width)]) == 0
        snr[width] = np.mean([r["snr_db"] for r in json.loads((out / "report.json").read_text())["rows"]])
    assert snr[8] > snr[1], snr


def test_event_split_keeps_events_together_and_holds_out_a_fifth(tmp_path):
    """Recordings whose times overlap are one event, whatever their file names say."""
    files = []
    for i in range(10):  # ten events an hour apart, 90 s each
        trace = obspy.Trace(np.random.default_rng(i).normal(size=3600),
                            header={"station": f"S{i:02d}", "sampling_rate": 40.0,
                                    "starttime": obspy.UTCDateTime(2010, 1, 1, i)})
        files.append(tmp_path / f"event{i}.mseed")
        obspy.Stream([trace]).write(str(files[-1]), format="MSEED")
    late = obspy.read(str(files[0]))
    late[0].stats.station, late[0].stats.starttime = "T01", late[0].stats.starttime + 60  # overlaps event 0
    files.append(tmp_path / "another-name.mseed")
    late.write(str(files[-1]), format="MSEED")
    train, held = event_split(files, eval_fraction=0.2)
    assert len(held) >= 0.2 * len(files) and train
    assert not set(train) & set(held) and set(train) | set(held) == set(files)
    together = {files[0], files[-1]}
    assert together <= set(train) or together <= set(held)
    assert event_split(files, eval_fraction=0.2) == (train, held)  # deterministic


def write_event_files(data, stream):
    """Five event-window files in nc-events naming, the example shifted in time: a tiny training corpus."""
    data.mkdir()
    for i in range(5):
        st = stream.copy()
        for tr in st:
            tr.data = np.roll(tr.data, 300 * i)
        st.write(str(data / f"BW_RJOB_20050801{i:02d}571985.mseed"), format="MSEED")
    return data


def test_train_codec_runs_checkpoints_and_resumes(tmp_path, example_stream, capsys):
    data = write_event_files(tmp_path / "events", example_stream)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"hidden_channels": 16, "residual_layers": 1, "latent_dim": 8,
                                  "codebook_size": 16, "num_codebooks": 2}))
    out = tmp_path / "run"
    args = ["train-codec", "--kind", "neural", "--data", str(data), "--out", str(out), "--config", str(config),
            "--no-obspy-recordings", "--batch-size", "4", "--crop-seconds", "8", "--eval-every", "2"]
    assert eqcodec(args + ["--steps", "4", "--stop-after", "2"]) == 0  # interrupted after step 2
    first = EQCodec.from_pretrained(out / "final")
    assert first.config.num_codebooks == 2
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 2 and "snr_k1" in metrics[-1]
    assert eqcodec(args + ["--steps", "6"]) == 1  # other run settings: refused, checkpoint untouched
    assert "other settings (steps)" in capsys.readouterr().err
    assert eqcodec(args + ["--steps", "4"]) == 0  # the same command resumes
    assert "resumed from" in (out / "train.log").read_text()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4]
    shutil.rmtree(out)


def test_train_codec_from_baseline_codebooks_keeps_them_frozen(tmp_path, example_stream):
    """The shipped recipe in small: identity_skip, RVQ started from a fitted gain-shape baseline, frozen (EMA decay 1)."""
    from codec.baselines import GainShapeRVQ
    from codec.preprocess import trace_to_codec_input

    data = write_event_files(tmp_path / "events", example_stream)
    baseline = GainShapeRVQ.fit([trace_to_codec_input(tr) for tr in example_stream], num_codebooks=2,
                                codebook_size=16, iters=3, seed=0)
    baseline.save(tmp_path / "baseline.safetensors")
    config = tmp_path / "skip.json"
    config.write_text(json.dumps({"hidden_channels": 16, "residual_layers": 1, "latent_dim": 40, "codebook_size": 16,
                                  "num_codebooks": 2, "identity_skip": True, "ema_decay": 1.0,
                                  "dead_code_threshold": 0.0}))
    out = tmp_path / "run"
    assert eqcodec(["train-codec", "--kind", "neural", "--data", str(data), "--out", str(out),
                    "--config", str(config), "--init-codebooks", str(tmp_path / "baseline.safetensors"), "--segmental-weight", "0.05",
                    "--no-obspy-recordings", "--batch-size", "4", "--crop-seconds", "8", "--steps", "3",
                    "--eval-every", "3"]) == 0
    trained = EQCodec.from_pretrained(out / "final")
    torch.testing.assert_close(trained.quantizer.codebooks, baseline.codebooks)
    assert trained.decoder.model[-1].weight.abs().max() > 0  # the corrections did train
    assert "segmental_db" in (out / "metrics.jsonl").read_text()


def test_reconstruct_codes_each_piece_of_a_gappy_trace_and_keeps_the_gap(tmp_path, example_stream):
    trace = example_stream.select(component="Z")[0]
    t0 = trace.stats.starttime
    gappy = obspy.Stream([trace.slice(t0, t0 + 12), trace.slice(t0 + 15, t0 + 29)])
    source = tmp_path / "gappy.mseed"
    gappy.write(str(source), format="MSEED")
    assert eqcodec(["reconstruct", str(source), "--out", str(tmp_path / "out"), "--codebooks", "8"]) == 0
    pieces = obspy.read(str(tmp_path / "out" / "k8" / "gappy.mseed"))
    assert len(pieces) == 2 and [tr.id for tr in pieces] == [trace.id] * 2
    gaps = pieces.get_gaps()
    assert len(gaps) == 1 and abs(gaps[0][4] - (t0 + 12)) < 0.05 and abs(gaps[0][5] - (t0 + 15)) < 0.05
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["rows"]) == 2 and all(r["snr_db"] > 5 for r in report["rows"])


def test_reconstruct_takes_folders_and_writes_the_good_files_when_one_is_bad(tmp_path, example_stream, capsys):
    folder = tmp_path / "archive"
    folder.mkdir()
    example_stream.write(str(folder / "good.mseed"), format="MSEED")
    (folder / "broken.mseed").write_bytes(b"not a waveform")
    out = tmp_path / "out"
    assert eqcodec(["reconstruct", str(folder), str(tmp_path / "missing.mseed"), "--out", str(out),
                    "--codebooks", "1"]) == 1
    err = capsys.readouterr().err
    assert "broken.mseed" in err and "missing.mseed: no such file" in err
    assert sorted(p.name for p in (out / "k1").iterdir()) == ["good.mseed"]
    report = json.loads((out / "report.json").read_text())
    assert {r["file"] for r in report["rows"]} == {"good.mseed"}
    assert len(report["failures"]) == 2 and any("broken.mseed" in f for f in report["failures"])


def test_overlapping_spans_chain_into_one_group_and_groups_are_held_out_whole():
    from codec.data import held_out_groups, overlap_groups

    spans = {"a": (0, 90), "b": (60, 150), "d": (140, 180), "c": (200, 290), "e": (290, 300)}
    assert overlap_groups(spans) == {"a": "a", "b": "a", "d": "a", "c": "c", "e": "e"}  # touching is not overlapping
    sizes = {f"g{i}": 1 + i % 3 for i in range(20)}
    held = held_out_groups(sizes, 0.2)
    assert sum(sizes[g] for g in held) >= 0.2 * sum(sizes.values()) and len(held) < len(sizes)
    assert held_out_groups(sizes, 0.2, salt="1:") != held  # the salt (a seed) changes which groups
    assert len(held_out_groups({"x": 5, "y": 1}, 0.99)) == 1  # one group always trains
