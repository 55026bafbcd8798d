"""Every command and Python example shown in README.md works.

- Every `eqcodec ...` command line of the README (code blocks, the command table, inline
  code) parses with its command's parser, placeholders (FILE, CORPUS, ...) replaced by
  real paths.
- The commands that are quick on obspy's bundled recordings run for real, with small
  settings appended, in the README's order of work: tokenize -> detokenize -> train-lm
  (a few steps) -> generate with the fine-tuned LM; reconstruct and deconvolve on an event.
  `eqcodec demo` runs in test_demo.py, `train-codec` in test_reconstruct_cli.py and
  `tokenize --sds` in test_tokenized_data.py.
- The README's ```python blocks run top to bottom in a folder holding `archive/`.
"""

from __future__ import annotations

import itertools
import re
import shlex
import shutil
from pathlib import Path

import obspy
import pytest

from cli import COMMANDS, command_parser, main as eqcodec
from codec.data import obspy_recordings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

#: The event the README's FILE stands for: obspy's bundled GSE2 recording of BW.RJOB
#: (60 s at 200 Hz), long enough for the README's 30-s generation context.
EVENT_NAME = "loc_RJOB20050831023349.z"

#: The README's INPUTS and `archive/`: obspy's bundled recordings of four events, 5 to 10 minutes each.
ARCHIVE_NAMES = {"dataselect_example.mseed", "II.TLY.BHZ.SAC", "CRLZ.HHZ.10.NZ.SAC", "test.mseed"}

#: The README commands run for real: command -> (keep its [optional] parts?, options appended).
#: The README's settings stay, only run length and parallelism shrink (argparse keeps the
#: last value). deconvolve's optional `--lm DIR` goes with `--method lm` only, so it is left out.
RUNS = {
    "tokenize": (True, ["--num-proc", "1", "--no-progress"]),
    "detokenize": (True, ["--no-progress"]),
    "train-lm": (True, ["--steps", "1", "--batch-size", "2", "--warmup", "0", "--eval-every", "1",
                        "--eval-batches", "1"]),
    "generate": (True, ["--seconds", "2", "--samples", "2", "--seed", "0"]),
    "reconstruct": (True, []),
    "deconvolve": (False, []),
}


# ------------------------------------------------------------------ reading the README
def shell_texts(markdown: str) -> list[str]:
    """Lines of the shell code blocks and inline code spans outside code blocks, in README order."""
    texts = []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", markdown, re.S):
        if language in ("bash", "sh", "console", ""):
            texts += body.splitlines()
    texts += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", markdown, flags=re.S))
    return texts


def readme_command_lines(markdown: str = README, *, optional: bool = True) -> list[list[str]]:
    """Every eqcodec command line of the README as argv after the program name (COMMAND first).

    `.venv/bin/eqcodec ...`, `eqcodec ...` and `accelerate launch -m cli ...` count;
    `a && b` gives two lines; optional parts in [brackets] are kept without the brackets
    (or left out with optional=False); `a|b` gives one line per alternative.
    """
    lines = []
    for text in shell_texts(markdown):
        for piece in text.split("&&"):
            match = re.search(r"(?:^|[\s/])(?:eqcodec|-m cli)\s+(.*)", piece)
            if not match:
                continue
            arguments = re.sub(r"[\[\]]", "", match[1]) if optional else re.sub(r"\[[^]]*\]", "", match[1])
            alternatives = [word.split("|") for word in shlex.split(arguments)]  # `--method wiener|lm`
            lines += [list(argv) for argv in itertools.product(*alternatives)]
    return lines


def python_blocks(markdown: str = README) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


# ------------------------------------------------------------------ placeholders
def make_archive(folder: Path) -> Path:
    """A small archive of real recordings: copies of a few files bundled with obspy (four events, 0.5 channel-h)."""
    folder.mkdir(parents=True)
    for path in obspy_recordings():
        if path.name in ARCHIVE_NAMES:
            shutil.copy(path, folder)
    return folder


def event_file() -> Path:
    return next(path for path in obspy_recordings() if path.name == EVENT_NAME)


def substitute(argv: list[str], work: Path) -> list[str]:
    """README placeholders -> real values; output placeholders become folders of `work` named per command."""
    command = argv[0]
    values = {
        "FILE": str(event_file()), "FILES": str(event_file()),
        "INPUTS": str(work / "archive"), "CORPUS": str(work / "corpus"),
        "DIR": str(work / f"{command}-dir"), "RUN": str(work / f"{command}-run"),
        "ROOT": str(work / "sds"), "T0": "2024-01-01", "T1": "2024-01-02",
        "INDEX": str(work / "index"), "TEMPLATE": str(event_file()), "S": "0.5",
        "N": "1", "R": "2", "I/N": "0/2", "k": "4", "COMMAND": "tokenize", "ID": "*",
        "lm/pretrained": str(ROOT / "lm" / "pretrained"),  # the README runs from the repository root
    }
    unknown = [word for word in argv if re.fullmatch(r"[A-Z][A-Z0-9]*(/[A-Z0-9]+)?", word) and word not in values]
    assert not unknown, f"README command `eqcodec {shlex.join(argv)}`: add a value for {unknown} to substitute()"
    lm = str(ROOT / "lm" / "pretrained")  # `--lm DIR`: an LM folder
    return [lm if previous == "--lm" and word in values else values.get(word, word)
            for previous, word in zip([None, *argv], argv)]


def exit_status(argv: list[str]) -> int:
    """Exit status of `eqcodec argv`, also when argparse exits (as `eqcodec COMMAND --help` does)."""
    try:
        return eqcodec(argv)
    except SystemExit as exit:
        return exit.code


def parse_or_fail(argv: list[str]):
    _, parser = command_parser(argv[0])
    try:
        return parser.parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"README command `eqcodec {shlex.join(argv)}` does not parse (see stderr above)")


# ------------------------------------------------------------------ tests
def test_readme_shows_every_command():
    shown = {argv[0] for argv in readme_command_lines()}
    assert {"demo", "reconstruct", "train-codec", "tokenize", "detokenize", "train-lm", "generate"} <= shown


def test_every_readme_command_line_parses(tmp_path, capsys):
    for argv in readme_command_lines():
        argv = substitute(argv, tmp_path)
        if "--help" in argv:
            assert exit_status(argv) == 0, f"`eqcodec {shlex.join(argv)}` failed"
            assert "examples:" in capsys.readouterr().out
            continue
        assert argv[0] in COMMANDS, f"README shows `eqcodec {argv[0]}`, which is no command"
        if len(argv) > 1:  # a bare `eqcodec COMMAND` in the text names the command
            parse_or_fail(argv)


def first_readme_line(command: str, optional: bool) -> list[str]:
    """The first README command line of `command` on files (not an SDS archive)."""
    return next(argv for argv in readme_command_lines(optional=optional)
                if argv[0] == command and len(argv) > 1 and "--sds" not in argv)


def run_readme_command(command: str, work: Path, *extra: str):
    """Run the README's first `eqcodec COMMAND ...` line with small settings; its parsed arguments."""
    optional, small_settings = RUNS[command]
    argv = substitute(first_readme_line(command, optional), work) + small_settings + list(extra)
    args = parse_or_fail(argv)
    assert eqcodec(argv) == 0, f"`eqcodec {shlex.join(argv)}` failed"
    return args


def test_readme_token_workflow_runs(tmp_path, monkeypatch):
    """tokenize -> detokenize -> train-lm (fine-tuning the shipped LM) -> generate with it."""
    from lm.generate import output_paths
    from tokenized_data import load_tokenized

    monkeypatch.chdir(tmp_path)  # relative output names of the README (cont.mseed) land here
    make_archive(tmp_path / "archive")

    tokenize = run_readme_command("tokenize", tmp_path)
    assert len(load_tokenized(tokenize.out)) > 0

    detokenize = run_readme_command("detokenize", tmp_path)
    decoded = sorted(Path(detokenize.out).glob("*.mseed"))
    assert decoded and obspy.read(str(decoded[0]))[0].stats.sampling_rate == 40.0

    train = run_readme_command("train-lm", tmp_path)
    final = Path(train.out) / "final"
    assert (final / "model.safetensors").is_file()

    generate = run_readme_command("generate", tmp_path, "--lm", str(final))
    for path in output_paths(Path(generate.out), generate.samples):
        assert obspy.read(str(path))[0].stats.npts == generate.seconds * 40
    assert Path(generate.out).with_suffix(".png").stat().st_size > 10_000


def test_readme_reconstruct_and_deconvolve_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    reconstruct = run_readme_command("reconstruct", tmp_path)
    for k in reconstruct.codebooks.split(","):
        assert (Path(reconstruct.out) / f"k{k}" / f"{EVENT_NAME}.mseed").is_file()
    if reconstruct.plot:
        assert Path(reconstruct.plot).stat().st_size > 10_000

    deconvolve = run_readme_command("deconvolve", tmp_path)
    assert len(obspy.read(deconvolve.out)) == len(obspy.read(str(event_file())))
    if deconvolve.plot:
        assert Path(deconvolve.plot).stat().st_size > 10_000


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """The ```python blocks, in order, in one namespace, in a folder holding `archive/`."""
    blocks = python_blocks()
    assert blocks, "README.md holds no ```python block"
    monkeypatch.chdir(tmp_path)
    make_archive(tmp_path / "archive")
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md (python block)", "exec"), namespace)
    # What the README's comments promise.
    assert namespace["tokens"][0].encoded.codes.shape[1] == 8
    assert {trace.stats.sampling_rate for trace in namespace["approx"]} == {40.0}
    assert tuple(namespace["examples"][0]["tokens"].shape) == (9, 128)
    assert len(namespace["samples"]) == 8 and all(isinstance(s, obspy.Stream) for s in namespace["samples"])
