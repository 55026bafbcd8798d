"""`eqcodec --help` and every subcommand's help follow the help convention of cli/__init__.py.

For each command: `eqcodec COMMAND --help` exits 0 and ends with an "examples:" section,
every option with a default shows it, every argument sits in a named group, and every
example command line parses with the command's parser (parsed only, not run). Defaults
and groups are read from the printed help (and that of `eqcodec evaluate forecast` /
`deconvolution`), as a user sees it; the defaults it must show are the values the
command's examples parse to for options they leave out.
"""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from cli import COMMANDS, EPILOG, command_parser, main

COMMAND_NAMES = list(COMMANDS)


def example_command_lines(text: str) -> list[list[str]]:
    """The `eqcodec ...` and `... -m cli ...` lines of an examples text, as argv after the program name."""
    lines = []
    for line in text.splitlines():
        match = re.search(r"(?:^|\s)(?:eqcodec|-m cli)\s+(.*)", line)
        if match:
            lines.append(shlex.split(match[1], comments=True))
    return lines


def parse_or_fail(command: str, argv: list[str]) -> argparse.Namespace:
    """Parse `eqcodec COMMAND argv` with the command's parser; a parse error fails the test with argparse's message."""
    _, parser = command_parser(command)
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"`eqcodec {command} {shlex.join(argv)}` does not parse (see stderr above)")


def test_top_level_help_lists_every_command_with_its_summary_and_examples(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in COMMAND_NAMES:
        assert re.search(rf"^  {re.escape(name)}\s+{re.escape(COMMANDS[name][1])}$", text, re.M), name
    assert "examples:" in text
    for argv in example_command_lines(EPILOG):
        assert argv[0] in COMMAND_NAMES, argv
        parse_or_fail(argv[0], argv[1:])


def test_no_arguments_prints_the_top_level_help(capsys):
    assert main([]) == 0
    assert "commands:" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_command_help_exits_0_and_shows_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: eqcodec {command}")
    assert "\nexamples:\n" in text, f"`eqcodec {command} --help` has no examples section (module EXAMPLES)"


# ------------------------------------------------------------------ the rendered help, as a user sees it
# The tests below read the text `eqcodec COMMAND --help` prints (and `eqcodec COMMAND SUB --help` for
# commands with sub-commands), not the parser's internals. The terminal is made wide (COLUMNS) so that
# argparse does not wrap an option's help, which can split a default such as "noise-ensemble".

def rendered_help(argv: list[str], capsys, monkeypatch, columns: int = 1000) -> str:
    """What `eqcodec ARGV --help` prints; it must exit with status 0."""
    monkeypatch.setenv("COLUMNS", str(columns))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0, f"`eqcodec {shlex.join(argv)} --help` exited with {exit_info.value.code}"
    return capsys.readouterr().out


def help_sections(text: str) -> dict[str, list[dict]]:
    """The argument listing of a help text: heading ("options", "input/output", ...) -> its entries.

    An entry is one argument: its `invocation` as shown ("--context-frames T, --length T", "INPUTS"),
    its `help` (continuation lines joined) and the `option_strings` and whether it `takes_value`.
    The listing starts at "positional arguments:" or "options:" (the description before it is free
    text) and ends at the "examples:" epilog.
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("positional arguments:", "options:"))
    end = next((i for i, line in enumerate(lines) if line == "examples:" and i > start), len(lines))
    sections: dict[str, list[dict]] = {}
    heading = None
    for line in lines[start:end]:
        if not line.strip():
            continue
        if not line.startswith(" "):
            assert line.endswith(":"), f"unexpected line in the argument listing: {line!r}"
            heading = line[:-1]
            sections[heading] = []
        elif re.match(r"  \S", line):  # a new argument; its help follows after 2+ spaces or on the next lines
            invocation, *help_text = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            parts = invocation.split(", ")
            sections[heading].append({
                "invocation": invocation,
                "help": " ".join(help_text),
                "option_strings": [part.split()[0] for part in parts if part.startswith("-")],
                "takes_value": any(len(part.split()) > 1 for part in parts),
            })
        else:  # continuation of the last entry's help (or a sub-command listed under its chooser)
            entry = sections[heading][-1]
            entry["help"] = f"{entry['help']} {line.strip()}".strip()
    return sections


def usage_of(text: str) -> str:
    """The usage lines of a help text, joined."""
    usage = text.split("\n\n")[0]
    assert usage.startswith("usage: "), usage
    return " ".join(usage.split())


def sub_commands(command: str, text: str) -> list[str]:
    """Sub-commands listed by `eqcodec COMMAND --help`: usage `... NAME ...`, then one line per choice
    indented by 4 under NAME in "positional arguments"."""
    if not re.search(r"[A-Z_]+ \.\.\.$", usage_of(text)):
        return []
    listing = text.split("\npositional arguments:\n", 1)[1].split("\n\n")[0]
    return re.findall(r"^    (\S+)", listing, re.M)


def help_pages(command: str, capsys, monkeypatch, columns: int = 1000) -> list[tuple[list[str], str]]:
    """(argv, help text) of `eqcodec COMMAND --help` and of each `eqcodec COMMAND SUB --help`."""
    text = rendered_help([command], capsys, monkeypatch, columns)
    pages = [([command], text)]
    for sub in sub_commands(command, text):
        sub_text = rendered_help([command, sub], capsys, monkeypatch, columns)
        assert sub_text.startswith(f"usage: eqcodec {command} {sub} "), sub_text[:80]
        assert "\nexamples:\n" in sub_text, f"`eqcodec {command} {sub} --help` has no examples section"
        pages.append(([command, sub], sub_text))
    return pages


def shown_default(value) -> list[str]:
    """Ways the help may show a parsed value: as is, and numbers or lists as typed (1,5,10 for [1.0, 5.0, 10.0])."""
    def number(x):
        return f"{x:g}" if isinstance(x, float) else str(x)

    texts = [str(value), number(value)]
    if isinstance(value, (list, tuple)):
        texts += [",".join(map(str, value)), ",".join(map(number, value))]
    return texts


def example_namespace(argv: list[str], option_strings: list[str]) -> tuple[argparse.Namespace, str, bool]:
    """The namespace of an example of `eqcodec ARGV` (a command or sub-command) that does not give the
    option, so it holds the value a user gets without it; if every example gives it, the first example's
    namespace and False."""
    command = argv[0]
    examples = [example for example in example_command_lines(command_parser(command)[0].EXAMPLES)
                if example[: len(argv)] == argv]
    assert examples, f"no example of `eqcodec {shlex.join(argv)}`"
    for example in examples:
        if not {token.split("=", 1)[0] for token in example} & set(option_strings):
            return parse_or_fail(command, example[1:]), shlex.join(example), True
    return parse_or_fail(command, examples[0][1:]), shlex.join(examples[0]), False


def dest_of(option_strings: list[str], namespace: argparse.Namespace) -> str:
    """The namespace attribute of an option: argparse's rule, its first long option without the dashes."""
    names = [s.lstrip("-").replace("-", "_") for s in option_strings if s.startswith("--")]
    names += [s.lstrip("-") for s in option_strings]
    found = [name for name in names if hasattr(namespace, name)]
    assert found, f"no attribute of the parsed namespace for {option_strings}: {sorted(vars(namespace))}"
    return found[0]


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_every_default_is_shown(command, capsys, monkeypatch):
    """Each option taking a value whose parsed default is not None shows it as "(default: VALUE"."""
    options = 0
    for argv, text in help_pages(command, capsys, monkeypatch):
        for heading, entries in help_sections(text).items():
            for entry in entries:
                options += bool(entry["option_strings"])
                if not entry["option_strings"] or not entry["takes_value"]:
                    continue  # positionals take their value from the command line; flags default to off
                namespace, example, default_used = example_namespace(argv, entry["option_strings"])
                dest = dest_of(entry["option_strings"], namespace)
                if default_used:
                    value, source = getattr(namespace, dest), f"`eqcodec {example}`"
                elif len(argv) == 1:  # given in every example: the parser's default
                    value, source = command_parser(command)[1].get_default(dest), "the parser's default"
                else:
                    continue
                if value is None or value is False or (isinstance(value, list) and not value):
                    continue
                shown = [re.escape(f"(default: {t}") + r"(?=[),;: ]|$)" for t in shown_default(value)]
                assert any(re.search(pattern, entry["help"]) for pattern in shown), (
                    f"`eqcodec {shlex.join(argv)} --help`, {entry['invocation']} (under '{heading}'): "
                    f"the help does not show the default {value!r} (from {source}): {entry['help']!r}; "
                    f"end it with (default: %(default)s)")
    assert options > 1, f"no option but -h found in `eqcodec {command} --help`"


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_arguments_are_grouped(command, capsys, monkeypatch):
    """Every argument is listed under a heading of its own group, not the generic "options:" (only
    -h/--help) or "positional arguments:" (only the sub-command chooser, `NAME ...` in the usage)."""
    for argv, text in help_pages(command, capsys, monkeypatch, columns=80):  # as printed on a narrow terminal
        sections = help_sections(text)
        assert [entry["invocation"] for entry in sections.get("options", [])] == ["-h, --help"], (
            f"`eqcodec {shlex.join(argv)} --help`: arguments outside an argument group under 'options:': "
            f"{[entry['invocation'] for entry in sections['options'][1:]]}")
        usage = usage_of(text)
        loose = [entry["invocation"] for entry in sections.get("positional arguments", [])
                 if not re.search(rf"\b{re.escape(entry['invocation'])} \.\.\.$", usage)]
        assert not loose, f"`eqcodec {shlex.join(argv)} --help`: positional arguments outside a group: {loose}"
        grouped = [entry for heading, entries in sections.items()
                   if heading not in ("options", "positional arguments") for entry in entries]
        if len(argv) > 1 or not sub_commands(command, text):
            assert grouped, f"`eqcodec {shlex.join(argv)} --help` lists no argument group"


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_every_example_parses(command):
    module, _ = command_parser(command)
    examples = getattr(module, "EXAMPLES", "")
    assert examples.startswith("examples:"), f"{module.__name__}.EXAMPLES must start with 'examples:'"
    lines = example_command_lines(examples)
    assert lines, f"{module.__name__}.EXAMPLES holds no `eqcodec {command} ...` line"
    for argv in lines:
        assert argv[0] == command, f"{module.__name__}.EXAMPLES: {shlex.join(argv)} is not an example of {command}"
        parse_or_fail(command, argv[1:])
