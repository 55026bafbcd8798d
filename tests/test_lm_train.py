"""`eqcodec train-lm`: learning, exact resume, two processes training one model, refused inputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli import main as cli
from lm.model import SeismicLM, load_config, load_lm
from tokenized_data.random_corpus import save_random_token_corpus

torch.set_num_threads(1)  # the machine's cores are shared with other jobs

REPO = Path(__file__).resolve().parents[1]
#: The tiny config with 2 codebooks of 16 entries: small enough to learn something in a few steps.
SMALL = {**json.loads((REPO / "lm" / "configs" / "tiny.json").read_text()), "num_codebooks": 2, "codebook_size": 16}
OPTIONS = ["--context-frames", "16", "--batch-size", "4", "--lr", "3e-3", "--warmup", "2"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(corpus folder, config file) with 3 streams: gain + 2 codebooks of 16 entries."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "small.json").write_text(json.dumps(SMALL))
    corpus = save_random_token_corpus(folder / "tokens", 30, 40, codec_id="codec-a", num_codebooks=2,
                                      codebook_size=16)
    return corpus, folder / "small.json"


def train(small, out, *extra):
    corpus, config = small
    return cli(["train-lm", "--data", str(corpus), "--out", str(out), "--config", str(config), *OPTIONS, *extra])


def records(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def weights(directory):
    return load_file(str(Path(directory) / "model.safetensors"))


def test_training_lowers_validation_loss_and_saves_a_loadable_lm(small, tmp_path):
    assert train(small, tmp_path / "run", "--steps", "80", "--eval-every", "40", "--lr", "1e-2",
                 "--save-dtype", "float16") == 0
    evals = [r for r in records(tmp_path / "run") if "eval_ce" in r]
    assert [r["step"] for r in evals] == [40, 80]
    assert len(evals[0]["eval_ce_streams"]) == 3
    # Learnable synthetic structure: 80 steps already move the LM well below uniform guessing.
    uniform = (torch.tensor([256.0, 16.0, 16.0]).log().mean()).item()
    assert evals[-1]["eval_ce"] < uniform - 0.3
    lm = load_lm(tmp_path / "run" / "final")
    assert lm.config.codec_id == "codec-a" and lm.config.max_frames == 16
    assert weights(tmp_path / "run" / "final")["lm_head.weight"].dtype == torch.float16
    assert next(lm.parameters()).dtype == torch.float32
    assert not (tmp_path / "run" / "final.tmp").exists()
    # best/ holds the LM of the lowest validation cross-entropy: the final one iff the last validation is best.
    last_is_best = evals[-1]["eval_ce"] == min(r["eval_ce"] for r in evals)
    best, final = weights(tmp_path / "run" / "best"), weights(tmp_path / "run" / "final")
    assert torch.equal(best["lm_head.weight"], final["lm_head.weight"]) == last_is_best


def test_rerunning_an_interrupted_run_resumes_exactly(small, tmp_path):
    assert train(small, tmp_path / "straight", "--steps", "6", "--eval-every", "3") == 0
    assert train(small, tmp_path / "resumed", "--steps", "6", "--eval-every", "3", "--stop-after", "3") == 0
    assert not (tmp_path / "resumed" / "final").exists()
    assert json.loads((tmp_path / "resumed" / "checkpoint" / "step.json").read_text())["step"] == 3
    assert train(small, tmp_path / "resumed", "--steps", "6", "--eval-every", "3") == 0
    assert "resumed from" in (tmp_path / "resumed" / "train.log").read_text()
    a, b = weights(tmp_path / "straight" / "final"), weights(tmp_path / "resumed" / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert records(tmp_path / "straight")[-2]["eval_ce"] == records(tmp_path / "resumed")[-2]["eval_ce"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_one_model(tmp_path):
    """accelerate launch on 2 CPU processes (gloo): each reads half of every batch, gradients are
    averaged, both ranks end with identical weights, equal to a 1-process run of the same batch."""
    corpus = save_random_token_corpus(tmp_path / "tokens", 12, 20, codec_id="codec-a")  # 9 streams
    args = ["train-lm", "--data", str(corpus), "--config", "tiny", *OPTIONS, "--steps", "4", "--eval-every", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), "-m", "cli"]
    result = subprocess.run([*launch, *args, "--out", str(tmp_path / "two")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    done = records(tmp_path / "two")[-1]
    assert done["processes"] == 2 and done["windows_per_process_and_pass"] == 2 and done["weights_in_sync"]

    assert cli([*args, "--out", str(tmp_path / "one")]) == 0
    assert records(tmp_path / "one")[-1]["processes"] == 1
    two, one = weights(tmp_path / "two" / "final"), weights(tmp_path / "one" / "final")
    assert any(not torch.equal(two[k], SeismicLM(load_config("tiny")).state_dict()[k]) for k in two)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6)


def test_corpus_from_another_codec_is_refused(small, tmp_path, capsys):
    config = load_config(small[1])
    config.codec_id = "codec-b"
    SeismicLM(config).save_pretrained(tmp_path / "lm-b")
    out = tmp_path / "refused"
    assert train(small, out, "--init", str(tmp_path / "lm-b"), "--steps", "2") == 1
    message = capsys.readouterr().err
    assert "codec-a" in message and "codec-b" in message
    assert not out.exists()


def test_bad_checkpoints_and_settings_are_refused(small, tmp_path, capsys):
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text("{ not json")
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"")
    assert train(small, tmp_path / "a", "--init", str(tmp_path / "corrupt"), "--steps", "2") == 1
    assert "not a valid LM config" in capsys.readouterr().err and not (tmp_path / "a").exists()

    assert train(small, tmp_path / "b", "--steps", "2", "--batch-size", "6", "--grad-accum", "4") == 1
    assert "multiple of" in capsys.readouterr().err and not (tmp_path / "b").exists()

    # A checkpoint left by a run with other settings is not silently continued.
    assert train(small, tmp_path / "c", "--steps", "4", "--eval-every", "2", "--stop-after", "2") == 0
    assert train(small, tmp_path / "c", "--steps", "4", "--eval-every", "2", "--lr", "1e-4") == 1
    assert "other settings (lr)" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        train(small, tmp_path / "d", "--steps", "0")
    assert exit_info.value.code == 2
    assert train((tmp_path / "no-corpus", small[1]), tmp_path / "e", "--steps", "2") == 1
    assert "not a token corpus" in capsys.readouterr().err


def test_settings_file_sets_defaults_and_flags_override_it(tmp_path, capsys):
    from cli import command_parser, main, settings_file

    _, parser = command_parser("train-lm")
    known = set(vars(parser.parse_args(["--data", "d", "--out", "o"])))
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"steps": 7, "batch_size": 4, "lr": 0.01}')
    parser.set_defaults(**settings_file(str(recipe), parser, known))
    args = parser.parse_args(["--data", "d", "--out", "o", "--lr", "0.5"])
    assert (args.steps, args.batch_size, args.lr) == (7, 4, 0.5)
    recipe.write_text('{"stepz": 7}')
    with pytest.raises(SystemExit):
        main(["train-lm", "--data", "d", "--out", str(tmp_path / "o"), "--settings", str(recipe)])
    assert "unknown settings stepz" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
