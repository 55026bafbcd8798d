"""Smoke test of the peer benchmark (benchmarks/lm_vs_musicgen.py) on a tiny config and synthetic tokens."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def load_benchmark():
    spec = importlib.util.spec_from_file_location("lm_vs_musicgen", REPO / "benchmarks" / "lm_vs_musicgen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peer_is_the_same_size_and_reads_the_same_tokens():
    bench = load_benchmark()
    from lm.model import SeismicLM, load_config

    config = load_config("tiny")
    peer = bench.musicgen_for(config)
    assert peer.config.num_codebooks == config.num_streams == 9
    assert (peer.config.hidden_size, peer.config.num_hidden_layers, peer.config.num_attention_heads,
            peer.config.ffn_dim) == (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                                     config.intermediate_size)
    ours = SeismicLM(config)
    frames = torch.randint(0, 256, (2, 9, 7))
    inputs, labels = ours.prepare_batch(frames)
    ids = bench.to_musicgen_ids(inputs, config)
    assert ids.shape == (2 * 9, inputs.shape[-1]) and ids.max() == config.codebook_size  # empty -> pad id
    logits = bench.logits_of("musicgen", peer, inputs, config)
    assert len(logits) == 9 and logits[0].shape == (2, inputs.shape[-1], 1024)


def test_benchmark_reports_every_metric(tmp_path, capsys):
    bench = load_benchmark()
    out = tmp_path / "results.json"
    assert bench.main(["--synthetic", "--synthetic-windows", "30", "--config", "tiny", "--steps", "4",
                       "--batch-size", "4", "--context-frames", "20", "--gen-context", "10", "--gen-frames", "6",
                       "--speed-steps", "1", "--rounds", "1", "--in-process", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for label in ("training throughput", "generation, batch 1", "generation, batch 16", "peak memory",
                  "validation CE after 4 steps"):
        assert label in printed
    report = json.loads(out.read_text())
    for name in ("ours", "musicgen"):
        result = report[name]
        assert result["train_frames_per_s"] > 0 and result["gen_frames_per_s_b16"] > 0
        assert math.isfinite(result["val_ce"]) and 0 < result["val_ce"] < 10
        assert len(result["val_ce_streams"]) == 9
    assert report["musicgen_relaid"]["gen_frames_per_s_b1"] > 0  # the peer with our weight layout, for information
    assert "MusicGen with our generation weight layout" in printed
