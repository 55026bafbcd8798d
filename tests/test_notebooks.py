"""The walk-through notebooks (notebooks/*.ipynb): stored without outputs, and each runs top to bottom.

Each notebook is executed with nbclient in a kernel running this interpreter, with
EQCODEC_NOTEBOOK_FAST=1 (small settings), in one temporary working directory shared
by the five in order: notebook 3 trains on notebook 2's corpus and notebook 4 uses
notebook 3's LM (run alone, each still works: 3 makes its own corpus, 4 leaves the LM
out). The checks read the files and numbers each notebook writes.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_codec", "02_tokenize", "03_lm", "04_forecast_deconvolution", "05_search"]
KERNEL = "eqcodec-notebook-test"
#: Seconds one cell may take before the run fails (FAST runs take well under a minute per notebook).
CELL_TIMEOUT = 600


def read(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


# ------------------------------------------------------------------ stored form
@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{name} has no code cell"
    for cell in code:
        assert cell.outputs == [], f"{name}: a cell holds outputs (clear them before committing)"
        assert cell.execution_count is None, f"{name}: a cell holds an execution count"
    # The first code cell holds the settings, switched to small ones by the test suite.
    assert "EQCODEC_NOTEBOOK_FAST" in code[0].source
    assert notebook.metadata.kernelspec.name == "python3"


# ------------------------------------------------------------------ execution
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The notebooks' working directory, with a kernelspec for this interpreter and fast settings.

    The kernelspec (found through JUPYTER_PATH) runs sys.executable, so the notebooks see
    exactly the packages of the environment running the tests, whatever kernels the
    machine has installed.
    """
    import ipykernel  # noqa: F401  (the kernel runs in this interpreter)

    root = tmp_path_factory.mktemp("notebooks")
    spec = root / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "eqcodec tests", "language": "python"}))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(root / "jupyter"))
        env.setenv("EQCODEC_NOTEBOOK_FAST", "1")
        env.setenv("EQCODEC_NOTEBOOK_OUTPUT", str(root / "notebook-output"))
        env.setenv("OMP_NUM_THREADS", "1")  # the machine is shared; small models gain nothing from threads
        yield root


def execute(name: str, workdir: Path) -> Path:
    """Run a notebook in `workdir`; returns its output folder. Fails on the first cell that raises."""
    notebook = read(name)
    # One extra cell, in this copy only: which Python ran the notebook.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    printed = "".join(output.get("text", "") for output in notebook.cells[-1].outputs)
    assert Path(printed.strip()) == Path(sys.executable)
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
    return workdir / "notebook-output" / name


def test_01_codec(workdir):
    out = execute("01_codec", workdir)
    for figure in ("figure1.png", "frame_edges.png", "rate_quality.png"):
        assert (out / figure).stat().st_size > 10_000
    result = json.loads((out / "rate_quality.json").read_text())
    from codec import EQCodec, load_codec

    assert result["codec_id"] == load_codec().identity()  # the shipped default, EQcodec v2
    assert result["v1_codec_id"] == EQCodec.from_pretrained().identity()
    assert result["traces"] >= 3
    v2, v1 = result["median"]["EQcodec v2"], result["median"]["EQcodec v1"]
    # Every codebook adds detail: the median SNR grows with k on both measures.
    assert np.all(np.diff(v2["snr_db"]) > 0), v2["snr_db"]
    assert np.all(np.diff(v2["segmental_snr_db"]) > 0), v2["segmental_snr_db"]
    baseline = result["median"]["block coder"]
    assert baseline["snr_db"][-1] > baseline["snr_db"][0]
    # The block coders step at their 1-s frame edges at k = 1; the lapped v2 does not.
    assert v1["frame_edge_ratio"][0] > v2["frame_edge_ratio"][0]
    assert baseline["frame_edge_ratio"][0] > v2["frame_edge_ratio"][0]
    edges = result["edge_example"]["frame_edge_ratio"]
    assert edges["EQcodec v1"] > 2 * edges["EQcodec v2"] and 0.5 < edges["EQcodec v2"] < 1.5, edges
    # Lossless Steim2 costs more than the codec's 88 bits/s at k = 8.
    assert result["steim2_bits_per_second_median"] > result["bits_per_second"][-1]
    from codec.baselines import GainShapeRVQ

    assert GainShapeRVQ.load(out / "gain_shape_rvq.safetensors").num_codebooks == 8


def test_02_tokenize(workdir):
    out = execute("02_tokenize", workdir)
    from tokenized_data import load_tokenized

    result = json.loads((out / "summary.json").read_text())
    corpus = load_tokenized(out / "corpus")
    assert len(corpus) == result["windows"] > 0
    assert result["frames"] == sum(corpus.dataset["num_frames"])
    assert all(0 < h <= math.log2(corpus.codebook_size) + 1e-9 for h in result["entropy_bits"])
    storage = result["kilobytes_per_channel_hour"]
    assert storage["token corpus (Arrow)"] < storage["miniSEED Steim2 (lossless)"]
    assert storage["token corpus (Arrow)"] < storage["miniSEED float32"]
    decoded = sorted((out / "decoded").glob("*.mseed"))
    assert len(decoded) == result["decoded_files"] >= 2
    assert result["round_trip_snr_db"] > 0
    assert set(list(corpus.dataset["augmentation"])) == {""}  # the recordings as they are
    # The augmentation example: every window of obspy's example plus 2 augmented copies of it.
    augmented = load_tokenized(out / "augmented_corpus")
    applied = list(augmented.dataset["augmentation"])
    assert len(augmented) == result["augmented_windows"] == 3 * applied.count("") > 0
    assert len(set(augmented.dataset["event_key"])) == 1  # copies stay with their recording
    for figure in ("codebook_usage.png", "codebook_entropy.png", "gain_levels.png", "storage.png", "round_trip.png",
                   "augmented.png"):
        assert (out / figure).stat().st_size > 5_000


def test_03_lm(workdir):
    out = execute("03_lm", workdir)
    import obspy

    from codec.data import obspy_recordings
    from lm import load_lm
    from tokenized_data import load_tokenized

    result = json.loads((out / "summary.json").read_text())
    lm = load_lm(out / "lm" / "final")
    corpus = load_tokenized(workdir / "notebook-output" / "02_tokenize" / "corpus")
    assert lm.config.codec_id == corpus.codec_id
    assert math.isfinite(result["eval_ce"]) and len(result["eval_ce_streams"]) == corpus.num_codebooks + 1
    assert result["finite"]
    files = sorted(out.glob("continuation.s*.mseed"))
    assert len(files) == result["samples"]
    continuation = obspy.read(str(files[0]))[0]
    source = obspy.read(str(next(p for p in obspy_recordings() if p.name.startswith("BW.UH1"))))[0]
    assert continuation.id == source.id
    assert continuation.stats.sampling_rate == 40.0 and continuation.stats.npts == result["seconds"] * 40
    # The continuation starts where the context ends (33 s after the recording's start).
    assert abs(continuation.stats.starttime - (source.stats.starttime + 33.0)) < 1e-3
    assert (out / "continuations.png").stat().st_size > 10_000


def test_04_forecast_deconvolution(workdir):
    out = execute("04_forecast_deconvolution", workdir)
    result = json.loads((out / "summary.json").read_text())
    synthetic = result["synthetic"]
    # The Wiener filter removes the water layer's reverberation and recovers the primaries.
    assert synthetic["suppression_db"] > 10
    assert synthetic["correlation_after"] > max(synthetic["correlation_before"], 0.9)
    assert abs(synthetic["picked_tau_s"] - synthetic["true_tau_s"]) < 0.05
    real = result["real"]
    assert real["autocorrelation_reduction_db"] > 3 and real["error_energy_db"] < 0
    scores = result["forecast"]["scores"]
    # The zero forecast is the context mean: relative MSE 1 by definition.
    assert scores["zero@1s"]["relative_mse"] == pytest.approx(1.0)
    assert scores["AR ensemble@1s"]["coverage_90"] > 0
    if (workdir / "notebook-output" / "03_lm" / "lm" / "final").is_dir():
        assert result["forecast"]["lm"] is not None and "LM@1s" in scores
    for figure in ("forecasts.png", "deconvolution_synthetic.png", "deconvolution_real.png"):
        assert (out / figure).stat().st_size > 10_000


def test_05_search(workdir):
    out = execute("05_search", workdir)
    result = json.loads((out / "summary.json").read_text())
    single, network = result["single_scores"], result["network_scores"]
    # Every copy of the event is found at its time (to 50 ms), on one channel and stacked, louder ones scoring higher.
    assert None not in single and None not in network, result
    assert single == sorted(single, reverse=True) and network == sorted(network, reverse=True)
    assert single[0] > 0.95 and network[0] > 0.95  # the template's own place
    # Stacking three channels lowers the chance level more than the weakest copy's score.
    assert result["network_background"] < result["single_background"]
    assert network[-1] - result["network_background"] > single[-1] - result["single_background"]
    # In MADs of the chance correlation, the weakest copy stands out further stacked than on one channel.
    assert result["network_significance"][-1] > result["single_significance"][-1] > 0
    # All pairs finds the two loudest copies' lag, to the sample.
    loud = round(result["events"][1][0] - result["events"][0][0], 3)
    assert any(abs(lag - loud) < 0.0125 for lag in result["pair_lags_found"]), result
    assert result["index_bytes"] > 0 and result["steim2_bytes"] > 0
    for figure in ("matches_z.png", "scores.png"):
        assert (out / figure).stat().st_size > 10_000
