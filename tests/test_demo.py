"""The README's main job: `eqcodec demo` produces every promised file (short settings)."""

from __future__ import annotations

import json

import obspy

from cli import main as eqcodec


def test_demo_writes_every_result(tmp_path, capsys):
    out = tmp_path / "demo"
    assert eqcodec(["demo", "--out", str(out), "--finetune-steps", "4", "--samples", "4"]) == 0
    for k in range(1, 9):
        stream = obspy.read(str(out / "reconstruction" / f"k{k}" / "BW.RJOB.example.mseed"))
        assert stream[0].stats.sampling_rate == 40.0
    rows = json.loads((out / "reconstruction" / "report.json").read_text())
    ehz = {r["k"]: r["snr_db"] for r in rows if r["trace"] == "BW.RJOB..EHZ"}
    assert ehz[8] > ehz[1]
    assert (out / "corpus" / "README.md").is_file()
    assert (out / "lm-finetuned" / "final" / "model.safetensors").is_file()
    continuations = sorted((out / "continuations").glob("*.mseed"))
    assert len(continuations) == 4
    first = obspy.read(str(continuations[0]))[0]
    source = obspy.read(str(out / "input" / "BW.RJOB.example.mseed")).select(component="Z")[0]
    # The context is the first 20 s of the example; the continuation starts one 40 Hz sample after it.
    assert abs(first.stats.starttime - (source.stats.starttime + 20 + 1 / 40)) < 1e-3
    for name in ("figure1_reconstruction.png", "continuation.png", "codebook_usage.png"):
        assert (out / "figures" / name).stat().st_size > 10_000
    assert "Results:" in capsys.readouterr().out
