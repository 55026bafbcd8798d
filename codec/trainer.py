"""The training core shared by `train-codec` and `train-lm`: what every run folder needs.

A run folder OUT holds:
    checkpoint/     accelerate state (model, optimizer, scheduler, RNGs) + step.json + run.json;
                    written whole or not at all (save_checkpoint); rerunning the same command resumes
                    from it exactly, and a rerun with other run settings is refused (check_resume)
    metrics.jsonl   one JSON record per validation (RunLog.record)
    train.log       timestamped log lines (RunLog.log)

Schedules are transformers' (linear warm-up, then cosine decay); the loops
themselves stay in codec/train.py and lm/train.py, which differ in data and losses.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .errors import CheckpointError
from .files import replace_folder


class RunLog:
    """log(message): a timestamped line in OUT/train.log, printed above the progress bar;
    record(values): a JSON line in OUT/metrics.jsonl, logged too. Main process only."""

    def __init__(self, accelerator, out: Path):
        self.accelerator, self.out = accelerator, Path(out)

    def log(self, message: str) -> None:
        from tqdm.auto import tqdm

        if self.accelerator.is_main_process:
            line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
            with open(self.out / "train.log", "a") as f:
                f.write(line + "\n")
            tqdm.write(line)

    def record(self, values: dict) -> None:
        if self.accelerator.is_main_process:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(values) + "\n")
        self.log(json.dumps(values))


def check_resume(checkpoint: Path, run: dict) -> dict | None:
    """The saved step.json of a checkpoint made with the same run settings, or None without a checkpoint.

    A checkpoint made with other settings raises CheckpointError naming the settings that differ:
    resuming it would not continue the same run.
    """
    if not (checkpoint / "step.json").is_file():
        return None
    saved = json.loads((checkpoint / "run.json").read_text()) if (checkpoint / "run.json").is_file() else None
    if saved != run:
        changed = sorted(k for k in run if saved is None or saved.get(k) != run[k])
        raise CheckpointError(f"{checkpoint}: made by a run with other settings ({', '.join(changed)}); "
                              "rerun the same command to resume, or choose another --out "
                              "(use --init OUT/final to continue training a finished model)")
    return json.loads((checkpoint / "step.json").read_text())


def save_checkpoint(accelerator, checkpoint: Path, run: dict, state: dict) -> None:
    """accelerate state of every process + step.json (`state`) + run.json (`run`), written atomically."""
    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "step.json").write_text(json.dumps(state))
        (tmp / "run.json").write_text(json.dumps(run))
        replace_folder(tmp, checkpoint)
    accelerator.wait_for_everyone()


def save_model_atomically(save_pretrained, directory: Path) -> None:
    """save_pretrained(folder) into a temporary folder, then renamed over `directory`."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(tmp)
    replace_folder(tmp, directory)
