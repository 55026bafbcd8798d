"""The peer benchmark (benchmarks/lm_vs_musicgen.py) on a tiny config and synthetic tokens.

What the benchmark promises (its docstring) and these tests check: the peer has our sizes and reads
our delayed tokens, neither model sees the token it predicts, both train on the same batches in the
same order and learn from them, the reported frames per second are frames over the timed seconds,
and the printed table and the JSON report hold the same figures for both models.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

STEPS, BATCH, FRAMES, GEN_FRAMES, SPEED_STEPS, ROUNDS = 20, 4, 20, 6, 1, 1
RUN = ["--synthetic", "--synthetic-windows", "30", "--config", "tiny", "--steps", str(STEPS), "--lr", "3e-3",
       "--batch-size", str(BATCH), "--context-frames", str(FRAMES), "--gen-context", "10",
       "--gen-frames", str(GEN_FRAMES), "--speed-steps", str(SPEED_STEPS), "--rounds", str(ROUNDS), "--in-process"]
METRICS = ("params_M", "train_peak_MB", "final_train_loss", "val_ce", "val_ce_streams", "gen_peak_MB_b16",
           "train_frames_per_s", "gen_frames_per_s_b1", "gen_frames_per_s_b16")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("lm_vs_musicgen", REPO / "benchmarks" / "lm_vs_musicgen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_benchmark()


@pytest.fixture(scope="module")
def tiny():
    from lm.model import SeismicLM, load_config

    config = load_config("tiny")
    torch.manual_seed(0)
    return config, SeismicLM(config).eval()


def test_peer_is_the_same_size_and_reads_the_same_tokens(bench, tiny):
    config, ours = tiny
    peer = bench.musicgen_for(config)
    assert peer.config.num_codebooks == config.num_streams == 9
    assert (peer.config.hidden_size, peer.config.num_hidden_layers, peer.config.num_attention_heads,
            peer.config.ffn_dim) == (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                                     config.intermediate_size)
    frames = torch.randint(0, 256, (2, 9, 7))
    inputs, _ = ours.prepare_batch(frames)
    ids = bench.to_musicgen_ids(inputs, config)
    # row b * S + s is stream s of sequence b (MusicGen's codebook-major layout), empty tokens -> its pad id
    for b in range(2):
        for s in range(9):
            expected = torch.where(inputs[b, s] == config.empty_tokens[s], config.codebook_size, inputs[b, s])
            assert torch.equal(ids[b * 9 + s], expected), (b, s)
    logits = bench.logits_of("musicgen", peer, inputs, config)
    assert len(logits) == 9 and all(stream.shape == (2, inputs.shape[-1], 1024) for stream in logits)
    ours_logits = bench.logits_of("ours", ours, inputs, config)
    assert [stream.shape[-1] for stream in ours_logits] == config.vocab_sizes


@pytest.mark.parametrize("name", ["ours", "musicgen"])
def test_no_model_sees_the_step_it_predicts(bench, tiny, name):
    """Changing the delayed inputs from step j on changes the logits of steps >= j only, and in each
    batch row only that row's: the validation CE measures prediction, not copying."""
    config, ours = tiny
    torch.manual_seed(0)
    model = ours if name == "ours" else bench.musicgen_for(config).eval()
    inputs, _ = ours.prepare_batch(torch.randint(0, 256, (2, 9, 8)))
    j = 7
    changed = inputs.clone()
    changed[1, :, j:] = torch.where(inputs[1, :, j:] == 0, 1, 0)  # other real tokens, sequence 1 only
    with torch.no_grad():
        before, after = bench.logits_of(name, model, inputs, config), bench.logits_of(name, model, changed, config)
    for s in range(9):
        assert torch.equal(before[s][0], after[s][0]), f"stream {s}: sequence 0 sees sequence 1"
        assert torch.allclose(before[s][1, :j], after[s][1, :j], atol=1e-6), f"stream {s}: steps < {j} see step {j}"
        assert not torch.allclose(before[s][1, j:], after[s][1, j:], atol=1e-4), f"stream {s}: inputs ignored"


def run_benchmark(bench, monkeypatch, tmp_path, capsys):
    """Run the benchmark on RUN; returns (report, printed text, train_step calls as (model, batch tokens, loss))."""
    calls = []
    original = bench.train_step

    def recording_train_step(name, model, optimizer, scheduler, helper, batch, config):
        loss = original(name, model, optimizer, scheduler, helper, batch, config)
        calls.append((name, batch["tokens"].clone(), float(loss)))
        return loss

    monkeypatch.setattr(bench, "train_step", recording_train_step)
    out = tmp_path / "results.json"
    assert bench.main([*RUN, "--out", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out, calls


def test_both_models_train_on_the_same_batches_and_learn(bench, tiny, monkeypatch, tmp_path, capsys):
    config, _ = tiny
    report, _, calls = run_benchmark(bench, monkeypatch, tmp_path, capsys)
    # train_phase: STEPS steps per model; speed_phase: 1 warm-up step + ROUNDS x SPEED_STEPS timed ones
    per_model = {name: [(tokens, loss) for model, tokens, loss in calls if model == name] for name in bench.MODELS}
    assert all(len(steps) == STEPS + 1 + ROUNDS * SPEED_STEPS for steps in per_model.values())
    training = {name: steps[:STEPS] for name, steps in per_model.items()}
    for (ours_tokens, _), (peer_tokens, _) in zip(training["ours"], training["musicgen"]):
        assert ours_tokens.shape == (BATCH, config.num_streams, FRAMES) and torch.equal(ours_tokens, peer_tokens)
    assert not torch.equal(training["ours"][0][0], training["ours"][1][0])  # the batches do change
    uniform = {"ours": [math.log(v) for v in config.vocab_sizes], "musicgen": [math.log(1024)] * 9}
    for name in bench.MODELS:
        losses = [loss for _, loss in training[name]]
        # a fresh model predicts about uniformly; STEPS steps on 24 windows lower the training loss clearly
        assert abs(losses[0] - sum(uniform[name]) / 9) < 0.1, (name, losses[0])
        assert sum(losses[-3:]) / 3 < losses[0] - 0.3, (name, losses)
        assert report[name]["final_train_loss"] == pytest.approx(losses[-1], abs=1e-4)
        result = report[name]
        streams = result["val_ce_streams"]
        assert len(streams) == 9 and all(math.isfinite(v) for v in streams)
        assert result["val_ce"] == pytest.approx(sum(streams) / 9, abs=1e-3)
        # held-out windows: the gain levels' range is learnable in a few steps, below uniform entropy ...
        assert streams[0] < uniform[name][0] - 0.05, (name, streams)
        # ... the random codebook tokens stay near it (far below it would mean the models see their labels)
        assert all(abs(v - u) < 0.5 for v, u in zip(streams[1:], uniform[name][1:])), (name, streams)


class StepClock:
    """A clock whose every perf_counter() reading is 1 s after the previous one: each timed span lasts 1 s."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1.0
        return self.now

    sleep = staticmethod(time.sleep)


def test_report_has_every_metric_for_both_models_and_the_table_shows_them(bench, tiny, monkeypatch,
                                                                           tmp_path, capsys):
    config, ours = tiny
    monkeypatch.setattr(bench, "time", StepClock())  # the benchmark's clock only
    report, printed, _ = run_benchmark(bench, monkeypatch, tmp_path, capsys)
    for name in (*bench.MODELS, bench.RELAID_PEER):
        assert name in report, name
    for name in bench.MODELS:
        assert set(METRICS) <= set(report[name]), (name, set(METRICS) - set(report[name]))
        assert all(math.isfinite(report[name][key]) for key in METRICS if key != "val_ce_streams"), report[name]
        # frames per second = frames of the timed work / its seconds (1 s per span with StepClock)
        assert report[name]["train_frames_per_s"] == SPEED_STEPS * BATCH * FRAMES
        assert report[name]["gen_frames_per_s_b1"] == GEN_FRAMES
        assert report[name]["gen_frames_per_s_b16"] == 16 * GEN_FRAMES
    assert report[bench.RELAID_PEER]["gen_frames_per_s_b16"] == 16 * GEN_FRAMES
    counts = {"ours": sum(p.numel() for p in ours.parameters()),
              "musicgen": sum(p.numel() for p in bench.musicgen_for(config).parameters())}
    for name, count in counts.items():
        assert report[name]["params_M"] == pytest.approx(count / 1e6, abs=1e-3)
    assert report["settings"]["steps"] == STEPS and report["settings"]["config"] == "tiny"

    # the markdown table: one row per metric, the JSON's figures, their ratio and the target verdict
    rows = {cells[0]: cells[1:] for cells in
            ([cell.strip() for cell in line.strip().strip("|").split("|")]
             for line in printed.splitlines() if line.startswith("| "))}
    labels = {"parameters (M)": "params_M", "training throughput (frames/s)": "train_frames_per_s",
              "generation, batch 1 (frames/s)": "gen_frames_per_s_b1",
              "generation, batch 16 (frames/s)": "gen_frames_per_s_b16",
              "peak memory, training (MB)": "train_peak_MB",
              "peak memory, generation batch 16 (MB)": "gen_peak_MB_b16",
              f"validation CE after {STEPS} steps (nats)": "val_ce"}
    assert set(labels) <= set(rows), set(labels) - set(rows)
    for label, key in labels.items():
        ours_cell, peer_cell, ratio_cell, target_cell = rows[label]
        ours_value, peer_value = report["ours"][key], report["musicgen"][key]
        assert (float(ours_cell), float(peer_cell)) == (ours_value, peer_value), label
        if peer_value:
            assert ratio_cell == f"{ours_value / peer_value:.2f}", label
        if key in bench.TARGETS:
            met = ours_value / peer_value >= bench.TARGETS[key]
            assert target_cell.endswith("NOT met" if not met else ": met"), (label, target_cell)
        if key == "val_ce":
            assert target_cell.endswith(": met" if ours_value <= peer_value else "NOT met"), (label, target_cell)
    assert re.search(r"MusicGen with our generation weight layout .*batch 16 96\.0 frames/s", printed), printed
