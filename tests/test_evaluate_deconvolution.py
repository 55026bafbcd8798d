"""`eqcodec evaluate deconvolution` end to end: synthetic (fine-tuning included), real recordings, onsets.

Small settings on obspy's bundled recording (BW.RJOB, 3 x 30 s at 100 Hz), on short
synthetic reverberation traces and on picks written here; the LM is a tiny random one
tied to the shipped codec (the benchmark figures come from the full runs of
benchmarks/deconvolution_benchmark.py). No file outside the repository and obspy is read.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cli import main as cli
from lm.model import load_lm
from tasks.evaluate import (RISE_DETECTORS, RISE_QUANTILES, Detector, at_false_rate, best_of, detection_at,
                            detection_curve, trigger_times)

torch.set_num_threads(1)


@pytest.fixture()
def event_with_picks(example_stream, tmp_path):
    """(file, picks CSV): the example event after 20 s of quiet noise, P picked at its first strong sample."""
    import obspy

    rng = np.random.default_rng(0)
    traces = []
    for trace in example_stream:
        data = trace.data.astype(np.float64) - trace.data.mean()
        quiet = rng.normal(size=int(20 * trace.stats.sampling_rate)) * 0.005 * np.abs(data).max()
        header = {k: trace.stats[k] for k in ("network", "station", "location", "channel", "starttime",
                                              "sampling_rate")}
        traces.append(obspy.Trace(np.r_[quiet, data], header=header))
    z = np.abs(traces[0].data)
    p_s = np.argmax(z > 0.05 * z.max()) / example_stream[0].stats.sampling_rate
    start = example_stream[0].stats.starttime
    path = tmp_path / "event.mseed"
    obspy.Stream(traces).write(str(path), format="MSEED")
    picks = tmp_path / "picks.csv"
    picks.write_text(f"file,p_arrival,s_arrival\n{path.name},{start + p_s},{start + p_s + 2.5}\n")
    return path, picks


def test_evaluate_deconvolution_synthetic_finetunes_and_scores_every_method(example_file, tiny_lm_dir, codec,
                                                                            tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli(["evaluate", "deconvolution", "--synthetic", str(example_file), "--out", str(out),
                "--traces", "2", "--duration", "50", "--train-traces", "2", "--train-duration", "40",
                "--train-steps", "2", "--lm-traces", "1", "--lm-samples", "2", "--lm", str(tiny_lm_dir),
                "--lags", "0.5,1", "--operator-seconds", "1", "--match-window-seconds", "10"]) == 0
    report = json.loads((out / "deconvolution.json").read_text())
    # Fine-tuning ran with the normal tokenize and train-lm code, on traces other than the test traces,
    # drawn with every wavelet family.
    finetuned = load_lm(out / "synthetic-lm" / "final")
    assert finetuned.config.codec_id == codec.identity()
    manifest = json.loads((out / "synthetic-train" / "constant" / "manifest.json").read_text())
    assert {t["parameters"]["seed"] for t in manifest["traces"]} == {100}
    assert manifest["recipe"]["wavelets"] == ["ricker", "minimum-phase", "berlage"]
    assert len(list((out / "synthetic-train" / "drifting" / "waveforms").iterdir())) == 2
    for name in ("constant", "drifting"):
        rows = {r["label"]: r for r in report["synthetic"][name]}
        assert rows["wiener, oracle tau, direct"]["traces"] == 2
        for label in ("wiener, picked tau, adaptive", "wiener time-varying (60 s windows), picked tau, direct",
                      "delay, picked tau, adaptive", "delay, oracle tau(t), adaptive",
                      "delay time-varying (60 s windows), picked tau, adaptive"):
            assert np.isfinite(rows[label]["suppression_db"]) and np.isfinite(rows[label]["matched_snr_db"])
        for subtraction in ("direct", "adaptive"):
            lm_row = rows[f"lm fine-tuned 2 steps, oracle tau, {subtraction}"]
            same_traces = rows["wiener, oracle tau (LM's traces), direct"]
            assert lm_row["traces"] == same_traces["traces"] == 1
            assert [t["lag_s"] for t in lm_row["per_trace"]] == [t["lag_s"] for t in same_traces["per_trace"]]
            assert np.isfinite(lm_row["suppression_db"]) and -1 <= lm_row["correlation_after"] <= 1
        # Direct subtraction subtracts the prediction itself; adaptive subtraction never adds energy.
        wiener = rows["wiener, oracle tau, direct"]
        assert wiener["prediction_snr_db"] == wiener["matched_snr_db"]
        assert rows["delay, picked tau, adaptive"]["matched_snr_db"] > rows["delay, picked tau, adaptive"][
            "prediction_snr_db"]
    # A constant water layer is what the Wiener filter and the matched delay remove well.
    constant = {r["label"]: r for r in report["synthetic"]["constant"]}
    assert constant["wiener, oracle tau, direct"]["suppression_db"] > 3
    assert constant["delay, picked tau, adaptive"]["suppression_db"] > 3
    # Real part: every method on all 3 traces, then on the LM's first trace beside the LM.
    real = [(r["method"], r["subtraction"], r["traces"], r["lag_s"]) for r in report["real"]]
    assert real == [("wiener", s, 3, lag) for lag in (0.5, 1.0) for s in ("direct", "adaptive")] + \
        [("delay", "adaptive", 3, lag) for lag in (0.5, 1.0)] + \
        [("wiener", s, 1, lag) for lag in (0.5, 1.0) for s in ("direct", "adaptive")] + \
        [("delay", "adaptive", 1, lag) for lag in (0.5, 1.0)] + \
        [("lm", s, 1, lag) for lag in (0.5, 1.0) for s in ("direct", "adaptive")]
    for row in report["real"]:
        assert len(row["per_trace"]) == row["traces"]
        if row["subtraction"] == "adaptive":  # checked on every trace, in every window
            assert row["traces_over"] == row["traces_with_a_window_over"] == 0 and row["max_window_db"] <= 0
    tables = (out / "DECONVOLUTION.md").read_text()
    assert "Synthetic set 'drifting'" in tables and "Real recordings (3 traces)" in tables
    assert "prediction SNR dB" in tables and "traces louder than the input" in tables
    assert (out / "deconvolution_synthetic.png").stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out


def test_a_changed_training_recipe_redraws_the_training_sets(tmp_path):
    from tasks.evaluate import DeconvolutionEvaluation, training_recipe

    settings = DeconvolutionEvaluation(out=str(tmp_path), train_traces=3, train_wavelets=["ricker"])
    assert training_recipe(settings, True)["seed"] == 101
    other = DeconvolutionEvaluation(out=str(tmp_path), train_traces=4, train_wavelets=["ricker"])
    assert training_recipe(settings, False) != training_recipe(other, False)


LM_DETECTORS = ["surprisal (all streams summed)", "surprisal of the gain stream",
                "gain exceedance -log P(gain >= observed)", "gain rise over the predicted quantile (1 grid)",
                "gain rise over the predicted quantile, several grids"]


def check_onset_report(onsets):
    assert list(onsets["detectors"]) == ["STA/LTA", *LM_DETECTORS]
    reference = onsets["reference_false_per_hour"]
    for name, result in onsets["detectors"].items():
        curve = result["curve"]
        assert curve and all(0 <= p["detection_rate"] <= 1 and p["false_per_hour"] >= 0 for p in curve)
        assert list(result["detection_at"]) == ["1", "3", "10"]
        for rate, value in [*result["detection_at"].items(), (reference, result["detection_at_reference"])]:
            if value is None:  # the curve never reached that many false triggers
                assert max(p["false_per_hour"] for p in curve) < float(rate)
            else:  # between the best threshold at no more false triggers and the best of all
                below = at_false_rate(curve, float(rate))
                assert (below["detection_rate"] if below else 0) <= value <= max(p["detection_rate"] for p in curve)


def test_evaluate_deconvolution_onsets_sta_lta_and_surprisal(event_with_picks, tiny_lm_dir, tmp_path, capsys):
    event, picks = event_with_picks
    out = tmp_path / "eval"
    assert cli(["evaluate", "deconvolution", str(event), "--picks", str(picks), "--methods", "none",
                "--onsets", "--lm", str(tiny_lm_dir), "--out", str(out)]) == 0
    report = json.loads((out / "deconvolution.json").read_text())
    assert "real" not in report and "synthetic" not in report
    onsets = report["onsets"]
    assert onsets["traces"] == 3 and onsets["hours"] == pytest.approx(3 * 50 / 3600)
    check_onset_report(onsets)
    assert "training" not in onsets  # INPUTS: no training split, so no thresholds fixed on one
    from tasks.surprisal import ONSET_GRIDS, ONSET_QUANTILE

    assert onsets["detectors"][LM_DETECTORS[-1]]["parameters"] == {"quantile": ONSET_QUANTILE, "grids": ONSET_GRIDS}
    assert onsets["detectors"][LM_DETECTORS[-2]]["parameters"] == {"quantile": ONSET_QUANTILE, "grids": 1}
    # A clear local event after quiet noise: STA/LTA finds its P on every channel, with no false trigger,
    # so the rate everything is read at is 0 and STA/LTA detects everything there.
    sta_lta = onsets["detectors"]["STA/LTA"]
    assert onsets["reference_false_per_hour"] == 0 and sta_lta["detection_at_reference"] == 1
    tables = (out / "DECONVOLUTION.md").read_text()
    assert "### Onsets: 3 traces" in tables and "at STA/LTA's 0.0 false/h" in tables
    assert "Thresholds fixed on the training split" not in tables
    assert (out / "deconvolution_onsets.png").stat().st_size > 10_000
    assert tables in capsys.readouterr().out


@pytest.fixture()
def nc_events_like(event_with_picks, tmp_path):
    """An nc-events-like folder: the example event at five stations and five times (five events), picks.csv."""
    import obspy

    event, picks = event_with_picks
    folder = tmp_path / "nc-events"
    folder.mkdir()
    (name, p_arrival, s_arrival), = [line.split(",") for line in picks.read_text().splitlines()[1:]]
    rows = ["file,p_arrival,s_arrival"]
    for i in range(5):
        stream = obspy.read(str(event))
        shift = 3600.0 * (i + 1)  # an hour apart: no overlap, so five events for the split
        for trace in stream:
            trace.stats.station = f"ST{i}"
            trace.stats.starttime += shift
        path = folder / f"XX_ST{i}_event{i}.mseed"
        stream.write(str(path), format="MSEED")
        rows.append(f"{path.name},{obspy.UTCDateTime(p_arrival) + shift},{obspy.UTCDateTime(s_arrival) + shift}")
    (folder / "picks.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_onsets_on_nc_events_choose_parameters_on_the_training_split(nc_events_like, tiny_lm_dir, tmp_path):
    from codec.data import nc_events_split

    train, held_out = nc_events_split(nc_events_like)
    out = tmp_path / "eval"
    assert cli(["evaluate", "deconvolution", "--nc-events", str(nc_events_like), "--methods", "none",
                "--onsets", "--lm", str(tiny_lm_dir), "--out", str(out)]) == 0
    onsets = json.loads((out / "deconvolution.json").read_text())["onsets"]
    assert onsets["traces"] == 3 * len(held_out) and onsets["training"]["traces"] == 3 * len(train)
    check_onset_report(onsets)
    for name, grid_choices in RISE_DETECTORS.items():
        chosen = onsets["detectors"][name]["parameters"]
        assert chosen["quantile"] in RISE_QUANTILES and chosen["grids"] in grid_choices
        assert onsets["rise_parameters"][name] == chosen
    # STA/LTA's threshold comes from the training split (the same event there: all detected, none false),
    # and the held-out rate everything is read at is STA/LTA's at that threshold.
    fixed = onsets["detectors"]["STA/LTA"]["training_threshold"]
    assert fixed["training"]["detection_rate"] == 1 and fixed["training"]["false_per_hour"] == 0
    assert fixed["held_out"]["threshold"] == fixed["training"]["threshold"]
    assert onsets["reference_false_per_hour"] == fixed["held_out"]["false_per_hour"]
    for name in LM_DETECTORS:
        chosen = onsets["detectors"][name]["training_threshold"]
        assert chosen is None or chosen["training"]["false_per_hour"] <= onsets["training"]["sta_lta_false_per_hour"]
    tables = (out / "DECONVOLUTION.md").read_text()
    assert "held-out split of nc-events" in tables and "Thresholds fixed on the training split" in tables


def test_onsets_and_deconvolution_together(event_with_picks, tiny_lm_dir, tmp_path):
    event, picks = event_with_picks
    out = tmp_path / "eval"
    assert cli(["evaluate", "deconvolution", str(event), "--picks", str(picks), "--methods", "delay",
                "--onsets", "--lm", str(tiny_lm_dir), "--lags", "0.5", "--match-window-seconds", "10",
                "--out", str(out)]) == 0
    report = json.loads((out / "deconvolution.json").read_text())
    assert [r["method"] for r in report["real"]] == ["delay"] and report["onsets"]["traces"] == 3


def test_detection_curve_counts_detections_and_false_triggers():
    function = np.zeros(100)
    function[[10, 30, 31, 60]] = [5, 5, 5, 5]  # triggers at 10 (false), 30 (P), 60 (S)
    cases = [{"samples": np.zeros(3600 * 40), "p_s": 30.5, "s_s": 60.0}]  # one hour
    assert list(trigger_times(function, 1.0, 4, 2)) == [10.0, 30.0, 60.0]
    detector = Detector([function], 1.0, 0.0, 0.0)
    (point,) = detection_curve(cases, detector, np.array([4.0]))
    assert point == {"threshold": 4.0, "detection_rate": 1.0, "false_per_hour": 1.0, "csi": 0.5}
    (high,) = detection_curve(cases, detector, np.array([6.0]))
    assert high["detection_rate"] == 0 and high["false_per_hour"] == 0
    assert best_of([point, high]) is point
    assert at_false_rate([point, high], 0.5) is high and at_false_rate([point], 0.5) is None
    # Sample i stands for first_s + i / rate: 2 s later, every trigger is more than 1 s off P and S.
    (late,) = detection_curve(cases, Detector([function], 1.0, 2.0, 0.0), np.array([4.0]))
    assert late["detection_rate"] == 0 and late["false_per_hour"] == 3
    # Nothing triggers in the first LTA_S (10 s), where STA/LTA has no LTA yet.
    early = np.zeros(100)
    early[[5, 30]] = 5
    (blind,) = detection_curve(cases, Detector([early], 1.0, 0.0, 0.0), np.array([4.0]))
    assert blind["detection_rate"] == 1 and blind["false_per_hour"] == 0


def test_detection_at_interpolates_the_upper_envelope_from_the_origin():
    curve = [{"false_per_hour": 2.0, "detection_rate": 0.4}, {"false_per_hour": 6.0, "detection_rate": 0.8},
             {"false_per_hour": 4.0, "detection_rate": 0.3}]  # dominated: a detector can do better at 4/h
    assert detection_at(curve, 1.0) == pytest.approx(0.2)  # half-way from never triggering to (2, 0.4)
    assert detection_at(curve, 4.0) == pytest.approx(0.4)  # the envelope, not the dominated point
    assert detection_at(curve, 5.0) == pytest.approx(0.6)
    assert detection_at(curve, 6.0) == pytest.approx(0.8) and detection_at(curve, 6.5) is None
    assert detection_at(curve, 0.0) == 0


@pytest.mark.parametrize("arguments, code, message", [
    ([], 2, "nothing to evaluate"),
    (["{file}", "--onsets", "--methods", "none"], 2, "--onsets needs analyst picks"),
    (["--synthetic", "--onsets"], 2, "--onsets scores recordings"),
    (["{file}", "--methods", "none"], 2, "--methods none leaves nothing to evaluate"),
    (["{file}", "--methods", "wiener,kalman"], 2, "unknown --methods kalman"),
    (["{file}", "--methods", "wiener", "--match-taps", "6"], 2, "--match-taps must be odd"),
    (["--synthetic", "--train-wavelets", "ricker,sinc"], 2, "unknown --train-wavelets sinc"),
    (["{file}", "--methods", "delay", "--match-window-seconds", "40"], 1, "matching window 40 s is longer"),
    (["{file}", "--methods", "wiener", "--lags", "31"], 1, "lag 31 s is not shorter than the trace"),
    (["{file}", "--picks", "{dir}/missing.csv", "--onsets", "--methods", "none"], 1, "picks file not found"),
])
def test_evaluate_deconvolution_refuses_bad_input_and_writes_nothing(example_file, tmp_path, capsys, arguments,
                                                                     code, message):
    out = tmp_path / "eval"
    argv = ["evaluate", "deconvolution", "--out", str(out),
            *[a.format(file=example_file, dir=tmp_path) for a in arguments]]
    if code == 2:
        with pytest.raises(SystemExit) as exit_info:
            cli(argv)
        assert exit_info.value.code == 2
    else:
        assert cli(argv) == code
    assert message in capsys.readouterr().err
    assert not out.exists()
