"""`eqcodec evaluate forecast` end to end, `--lm` of forecast/deconvolve, and the help convention.

Small settings on obspy's bundled recording (BW.RJOB, 3 x 30 s at 100 Hz) and
on short synthetic reverberation traces; the LM is a tiny random one tied to
the shipped codec (the benchmark figures themselves come from the full runs
described in docs/forecasting_and_deconvolution.md).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from cli import main as cli
from lm.model import load_lm

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_dir):
    return tiny_lm_dir


def test_evaluate_forecast_with_picks_writes_tables_json_and_plot(example_file, example_stream, tiny_lm, tmp_path,
                                                                  capsys):
    start = example_stream[0].stats.starttime
    picks = tmp_path / "picks.csv"
    picks.write_text(f"file,p_arrival,s_arrival\n{example_file.name},{start + 12},{start + 14}\n")
    out = tmp_path / "eval"
    assert cli(["evaluate", "forecast", str(example_file), "--picks", str(picks), "--out", str(out),
                "--context-seconds", "10", "--horizons", "1,5", "--samples", "20", "--lm-samples", "3",
                "--lm", str(tiny_lm)]) == 0
    report = json.loads((out / "forecast.json").read_text())
    # P+2s ends at 14 s and S+5s at 19 s: both fit with 10 s of context and 5 s of truth; the
    # noise case (10 s before P, at 2 s) has no room for its context and is dropped.
    assert report["cases"] == {"P+2s": 3, "S+5s": 3}
    assert report["lm_codec_id"] == load_lm(tiny_lm).config.codec_id
    for kind in ("P+2s", "S+5s"):
        scores = report["median_over_cases"][kind]
        assert set(scores) == {"zero", "persistence", "ar", "noise-ensemble", "ar-ensemble", "lm"}
        assert set(scores["lm"]) == {"1.0", "5.0"}
        # Cases are normalized by their context's mean: the zero forecast scores exactly 1.
        assert scores["zero"]["5.0"]["relative_mse"] == pytest.approx(1.0)
        assert scores["zero"]["5.0"]["coverage_90"] is None or np.isnan(scores["zero"]["5.0"]["coverage_90"])
        for method in ("lm", "ar-ensemble"):
            row = scores[method]["5.0"]
            assert all(np.isfinite(row[m]) for m in ("relative_mse", "log_envelope_rmse", "crps"))
            assert 0 <= row["coverage_90"] <= 1
    tables = (out / "FORECAST.md").read_text()
    assert "### Cases 'S+5s' (3 traces" in tables and "| lm | 5 |" in tables
    assert tables in capsys.readouterr().out
    assert (out / "forecast_examples.png").stat().st_size > 10_000


def test_evaluate_forecast_without_picks_uses_the_end_of_each_trace(example_file, tmp_path):
    out = tmp_path / "eval"
    assert cli(["evaluate", "forecast", str(example_file.parent), "--out", str(out), "--methods", "zero,ar",
                "--context-seconds", "10", "--horizons", "2,10"]) == 0
    report = json.loads((out / "forecast.json").read_text())
    assert report["cases"] == {"end": 3}
    assert report["median_over_cases"]["end"]["ar"]["2.0"]["relative_mse"] < 1.0  # AR beats zero just ahead


def test_evaluate_forecast_spreads_cases_over_continuous_traces(tmp_path):
    """--cases-per-trace N: N contexts per trace whose end points are spread evenly over it."""
    import obspy

    from codec.preprocess import trace_to_codec_input
    from tasks.evaluate import forecast_cases

    rng = np.random.default_rng(0)
    trace = obspy.Trace(np.cumsum(rng.normal(size=40 * 300)), header={"sampling_rate": 40.0, "station": "CONT"})
    path = tmp_path / "cont.mseed"
    obspy.Stream([trace]).write(str(path), format="MSEED")
    cases = forecast_cases([path], None, 20.0, 10.0, cases_per_trace=5)
    assert [c["kind"] for c in cases] == ["continuous"] * 5
    x = trace_to_codec_input(trace)  # the samples the cases are cut from
    ends = []
    for case in cases:  # each context ends where its truth starts, inside the trace
        context = case["context"]
        assert len(context) == 800 and len(case["truth"]) == 400
        ends.append(next(i for i in range(800, len(x) - 399)
                         if np.allclose((x[i - 800:i] - x[i - 800:i].mean()) / x[i - 800:i].std(), context)))
    gaps = np.diff(ends)
    assert (gaps > 0).all() and gaps.max() - gaps.min() <= 1  # evenly spread
    assert ends[0] > 800 and ends[-1] < len(x) - 400
    assert len(forecast_cases([path], None, 20.0, 10.0)) == 1  # the default: one "end" case


@pytest.mark.parametrize("arguments, code, message", [
    (["--picks", "{dir}/missing.csv"], 1, "picks file not found"),
    (["--picks", "{dir}/bad.csv"], 1, "needs the columns file, p_arrival, s_arrival"),
    (["--context-seconds", "25", "--horizons", "10"], 1, "no forecast case fits"),
    (["--methods", "zero,oracle"], 2, "unknown --methods oracle"),
])
def test_evaluate_forecast_refuses_bad_input(example_file, tmp_path, capsys, arguments, code, message):
    (tmp_path / "bad.csv").write_text("file,p\nexample.mseed,2009-08-24T00:20:10\n")
    out = tmp_path / "eval"
    argv = ["evaluate", "forecast", str(example_file), "--out", str(out), "--methods", "zero",
            *[a.format(dir=tmp_path) for a in arguments]]
    if code == 2:
        with pytest.raises(SystemExit) as exit_info:
            cli(argv)
        assert exit_info.value.code == 2
    else:
        assert cli(argv) == code
    assert message in capsys.readouterr().err
    assert not out.exists()


# `eqcodec evaluate deconvolution`: tests/test_evaluate_deconvolution.py


# ----------------------------------------------------------------- --lm of deconvolve and forecast

@pytest.mark.parametrize("command", [
    ["deconvolve", "{file}", "--lag", "1", "--method", "lm", "--out", "{out}"],
    ["forecast", "{file}", "--context-seconds", "10", "--seconds", "2", "--out", "{out}"],
])
def test_lm_option_refuses_missing_and_mismatched_lms(example_file, tiny_lm, tmp_path, capsys, command):
    out = tmp_path / "result.mseed"
    fill = lambda lm: [a.format(file=example_file, out=out) for a in command] + ["--lm", str(lm)]  # noqa: E731
    assert cli(fill(tmp_path / "no-such-lm")) == 1
    assert "no-such-lm: not an LM checkpoint" in capsys.readouterr().err
    other = load_lm(tiny_lm)
    other.config.codec_id = "0000000000000000"
    other.save_pretrained(tmp_path / "other-codec")
    assert cli(fill(tmp_path / "other-codec")) == 1
    err = capsys.readouterr().err
    assert "other-codec was trained on tokens of codec 0000000000000000" in err and "--codec" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.mseed", "other-codec"]


def test_deconvolve_with_a_given_lm(example_file, tiny_lm, tmp_path):
    out = tmp_path / "decon.mseed"
    assert cli(["deconvolve", str(example_file), "--lag", "1", "--method", "lm", "--lm", str(tiny_lm),
                "--out", str(out)]) == 0
    import obspy

    assert len(obspy.read(str(out))) == 3


def test_deconvolve_refuses_lm_options_with_wiener(example_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["deconvolve", str(example_file), "--lag", "1", "--lm", "x", "--out", str(tmp_path / "d.mseed")])
    assert exit_info.value.code == 2
    assert "--method lm only" in capsys.readouterr().err


# ----------------------------------------------------------------- help convention

@pytest.mark.parametrize("module_name, subcommands", [
    ("cli.forecast", [None]), ("cli.deconvolve", [None]), ("cli.evaluate", ["forecast", "deconvolution"])])
def test_help_groups_defaults_and_examples(module_name, subcommands):
    import importlib

    module = importlib.import_module(module_name)
    assert module.EXAMPLES.startswith("examples:\n  eqcodec ")
    parser = module.build_parser(argparse.ArgumentParser())
    for sub in subcommands:
        target = parser if sub is None else next(
            a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[sub]
        titles = [g.title for g in target._action_groups if g._group_actions]
        assert "input/output" in titles and "options" not in titles[1:] and len(titles) >= 3
        for action in target._actions:
            if action.option_strings and action.help not in (None, argparse.SUPPRESS) and not action.required \
                    and not isinstance(action, argparse._HelpAction):
                assert "default" in action.help, f"{module_name} {sub or ''} {action.dest}: default not shown"


def test_the_90_percent_band_of_a_small_ensemble_holds_90_percent_of_new_draws():
    from tasks.scores import band_coverage

    rng = np.random.default_rng(0)
    for size in (32, 100):  # members and truth drawn alike: a calibrated ensemble of `size` (19 or more)
        members, truth = rng.standard_normal((size, 20000)), rng.standard_normal(20000)
        assert band_coverage(truth, members) == pytest.approx(0.90, abs=0.015)
        low, high = np.quantile(members, [0.05, 0.95], axis=0)  # numpy's default narrows it
        assert np.mean((truth >= low) & (truth <= high)) == pytest.approx(0.9 * (size - 1) / (size + 1), abs=0.01)
