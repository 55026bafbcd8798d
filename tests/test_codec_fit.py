"""`eqcodec train-codec` (--kind lapped): fitting EQcodec v2's codebooks on one's own files (codec/fit.py).

Tiny fits (2 codebooks of 16, a few iterations) on obspy.read()'s example event
and a generated random-walk trace; no file outside the repository and obspy is read.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import obspy
import pytest
import torch

from cli import main as eqcodec
from codec import EQCodec, EQCodecConfig, LappedGainShapeRVQ, load_codec
from codec.fit import draw_training_vectors, fit_codebooks
from codec.lapped import GainQuantizer
from codec.metrics import snr_db
from codec.preprocess import trace_to_codec_input

REPO = Path(__file__).resolve().parents[1]
TINY = ["--no-obspy-recordings", "--num-codebooks", "2", "--codebook-size", "16", "--iters", "3"]


@pytest.fixture()
def inputs(tmp_path, example_stream):
    """rjob.mseed (obspy's example event, 3 x 30 s at 100 Hz) and gen.mseed (10 min of a random walk at 40 Hz)."""
    folder = tmp_path / "data"
    folder.mkdir()
    example_stream.write(str(folder / "rjob.mseed"), format="MSEED")
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(size=40 * 600)) + 3 * rng.normal(size=40 * 600)
    trace = obspy.Trace(walk.astype(np.float32), header={"station": "GEN", "sampling_rate": 40.0})
    obspy.Stream([trace]).write(str(folder / "gen.mseed"), format="MSEED")
    return folder


def fit(args, out) -> int:
    return eqcodec(["train-codec", "--data", *map(str, args), "--out", str(out), *TINY])


def test_a_tiny_fit_gives_a_codec_that_loads_and_codes(tmp_path, inputs, example_stream):
    out = tmp_path / "run"
    assert fit([inputs], out) == 0
    codec = load_codec(out / "final")
    assert isinstance(codec, LappedGainShapeRVQ)
    assert (codec.num_codebooks, codec.codebook_size) == (2, 16)
    assert codec.identity() != load_codec().identity()
    report = json.loads((out / "fit.json").read_text())
    assert report["identity"] == codec.identity()
    assert sorted(Path(s["file"]).name for s in report["sources"]) == ["gen.mseed", "rjob.mseed"]
    assert report["traces"] == 4 and report["skipped"] == []
    assert report["vectors"]["drawn"] == report["vectors"]["pool"] > 0  # below --max-vectors: the whole pool
    assert "stage 2: training SNR" in (out / "train.log").read_text()

    x = trace_to_codec_input(example_stream[0])  # a training trace
    encoded = codec.encode(x)
    snr = {k: snr_db(x, codec.decode(encoded, k)[0].numpy()) for k in (1, 2)}
    assert snr[2] > snr[1] > 0, snr


def test_the_fitted_codec_serves_reconstruct(tmp_path, inputs):
    assert fit([inputs], tmp_path / "run") == 0
    assert eqcodec(["reconstruct", str(inputs / "rjob.mseed"), "--codec", str(tmp_path / "run" / "final"),
                    "--codebooks", "1,2", "--out", str(tmp_path / "recon")]) == 0
    report = json.loads((tmp_path / "recon" / "report.json").read_text())
    assert report["codec_id"] == load_codec(tmp_path / "run" / "final").identity()


def test_the_same_seed_gives_the_same_codebooks(tmp_path, inputs):
    books = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert eqcodec(["train-codec", "--data", str(inputs), "--out", str(tmp_path / name), *TINY,
                        "--seed", str(seed)]) == 0
        books[name] = load_codec(tmp_path / name / "final").codebooks
    assert torch.equal(books["a"], books["b"])
    assert not torch.equal(books["a"], books["c"])


def test_a_bad_file_is_named_and_skipped_while_the_others_are_used(tmp_path, inputs, capsys):
    bad = tmp_path / "broken.mseed"
    bad.write_text("not a waveform\n")
    out = tmp_path / "run"
    assert fit([inputs / "rjob.mseed", bad, tmp_path / "missing.mseed", inputs / "gen.mseed"], out) == 0
    err = capsys.readouterr().err
    assert "broken.mseed" in err and "missing.mseed" in err
    report = json.loads((out / "fit.json").read_text())
    assert sorted(Path(s["file"]).name for s in report["sources"]) == ["gen.mseed", "rjob.mseed"]
    assert any("broken.mseed" in s for s in report["skipped"]) and any("missing.mseed" in s for s in report["skipped"])
    assert load_codec(out / "final").num_codebooks == 2


def test_inputs_that_are_all_unusable_fail_and_write_nothing(tmp_path, capsys):
    bad = tmp_path / "broken.mseed"
    bad.write_text("not a waveform\n")
    out = tmp_path / "run"
    assert fit([bad], out) == 1
    assert "broken.mseed" in capsys.readouterr().err
    assert not out.exists()


def test_too_few_frames_for_a_codebook_fail_and_write_nothing(tmp_path, inputs, capsys):
    out = tmp_path / "run"
    assert eqcodec(["train-codec", "--data", str(inputs), "--out", str(out), *TINY, "--max-vectors", "10"]) == 1
    assert "fewer than the 16 entries" in capsys.readouterr().err
    assert not out.exists()


def test_init_of_a_neural_codec_is_refused_and_the_reverse_too(tmp_path, inputs, capsys):
    neural = tmp_path / "neural"
    EQCodec(EQCodecConfig(hidden_channels=16, residual_layers=1, latent_dim=8, codebook_size=16,
                          num_codebooks=2)).save_pretrained(neural)
    assert eqcodec(["train-codec", "--data", str(inputs), "--out", str(tmp_path / "a"), *TINY,
                    "--init", str(neural)]) == 1
    assert "neural EQcodec v1 checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert eqcodec(["train-codec", "--kind", "neural", "--data", str(inputs), "--out", str(tmp_path / "b"),
                    "--no-obspy-recordings", "--init", str(REPO / "codec" / "pretrained"), "--steps", "1"]) == 1
    assert "lapped EQcodec v2 codec" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_init_starts_from_a_lapped_codec_and_keeps_its_sizes(tmp_path, inputs):
    first = tmp_path / "first"
    assert fit([inputs], first) == 0
    tuned = tmp_path / "tuned"
    assert eqcodec(["train-codec", "--data", str(inputs), "--out", str(tuned), "--no-obspy-recordings",
                    "--init", str(first / "final"), "--iters", "2"]) == 0
    before, after = (json.loads((run / "fit.json").read_text()) for run in (first, tuned))
    assert after["init_identity"] == before["identity"] != after["identity"]
    assert (after["num_codebooks"], after["codebook_size"]) == (2, 16)
    # the same frames (same data and seed): Lloyd iterations from the first codebook can only lower its error
    assert after["training_shape_snr_db"][0] >= before["training_shape_snr_db"][0] - 1e-6
    with pytest.raises(SystemExit) as exit_info:  # another size than the init codec's: a usage error
        eqcodec(["train-codec", "--data", str(inputs), "--out", str(tmp_path / "c"), "--no-obspy-recordings",
                 "--init", str(first / "final"), "--codebook-size", "32"])
    assert exit_info.value.code == 2


def test_an_interrupted_fit_leaves_no_final(tmp_path, inputs, monkeypatch):
    out = tmp_path / "run"
    assert fit([inputs], out) == 0
    finished = load_codec(out / "final").identity()
    finished_report = (out / "fit.json").read_text()

    def interrupted_save(self, directory):  # a part of final/ is written, then Ctrl-C
        (Path(directory) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(LappedGainShapeRVQ, "save_pretrained", interrupted_save)
    assert eqcodec(["train-codec", "--data", str(inputs), "--out", str(tmp_path / "new"), *TINY]) == 130
    assert not (tmp_path / "new" / "final").exists() and not (tmp_path / "new" / "fit.json").exists()
    # over an earlier fit (--overwrite): the earlier final/ and fit.json stay as they were
    assert eqcodec(["train-codec", "--data", str(inputs), "--out", str(out), *TINY, "--seed", "1",
                    "--overwrite"]) == 130
    assert load_codec(out / "final").identity() == finished
    assert (out / "fit.json").read_text() == finished_report
    assert sorted(p.name for p in out.iterdir()) == ["final", "fit.json", "train.log"]  # no staging folder left


def test_an_existing_final_is_kept_unless_overwrite(tmp_path, inputs, capsys):
    out = tmp_path / "run"
    assert fit([inputs], out) == 0
    first = load_codec(out / "final").identity()
    assert eqcodec(["train-codec", "--data", str(inputs), "--out", str(out), *TINY, "--seed", "1"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert load_codec(out / "final").identity() == first
    assert eqcodec(["train-codec", "--data", str(inputs), "--out", str(out), *TINY, "--seed", "1",
                    "--overwrite"]) == 0
    assert load_codec(out / "final").identity() == json.loads((out / "fit.json").read_text())["identity"] != first


@pytest.mark.parametrize("argv", [["--steps", "5"], ["--kind", "neural", "--offsets", "3"],
                                  ["--kind", "neural", "--data", "a", "b"]])
def test_flags_of_the_other_kind_are_usage_errors(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eqcodec(["train-codec", "--data", "a", "--out", str(tmp_path / "run"), *argv])
    assert exit_info.value.code == 2
    assert "--kind" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def load_benchmark():
    spec = importlib.util.spec_from_file_location("codec_lapped_benchmark",
                                                  REPO / "benchmarks" / "codec_lapped_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flip, max_vectors", [(True, 3000), (False, None)])
def test_the_fit_is_the_benchmarks_procedure(tmp_path, example_stream, flip, max_vectors):
    """The same traces in the same order give the codebooks benchmarks/codec_lapped_benchmark.py fitted
    the shipped codec with (its fit_coders, at a tiny budget): the draw of frames and the k-means agree."""
    benchmark = load_benchmark()
    traces = [trace_to_codec_input(tr) for tr in example_stream]
    traces.append(np.cumsum(np.random.default_rng(1).normal(size=40 * 300)))
    args = Namespace(offsets=3, flip=flip, max_vectors=max_vectors, iters=2, codebook_size=16, gain_step=0.75,
                     broadband_hours=4, subset=False, out_dir=tmp_path)
    theirs = benchmark.fit_coders(traces, args, {}, names=("lapped",))["lapped"]
    vectors, pool = draw_training_vectors(traces, GainQuantizer(), offsets=3, flip=flip, max_vectors=max_vectors)
    ours, _ = fit_codebooks(vectors, 8, 16, iters=2)
    assert theirs.fit_info["training_vectors"] == len(vectors) <= pool
    torch.testing.assert_close(ours, theirs.codebooks, rtol=0, atol=0)
