"""`eqcodec --help` and every subcommand's help follow the help convention of cli/__init__.py.

For each command: `eqcodec COMMAND --help` exits 0 and ends with an "examples:" section,
every option with a default shows it, and every example command line parses with the
command's parser (parsed only, not run).
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


def parser_and_subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and, for commands with sub-commands (`eqcodec evaluate forecast`), each sub-command's parser."""
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                parsers += parser_and_subparsers(sub)
    return parsers


def default_texts(default) -> set[str]:
    """Ways a help text may show a default: as is, and a list comma-separated (1,5,10 for [1.0, 5.0, 10.0])."""
    texts = {str(default)}
    if isinstance(default, (list, tuple)):
        texts |= {",".join(map(str, default)),
                  ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in default)}
    return texts


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_every_default_is_shown(command):
    for parser in parser_and_subparsers(command_parser(command)[1]):
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS) or action.default in (None, False, argparse.SUPPRESS):
                continue
            # What argparse prints for this option: its help with %(default)s etc. filled in.
            shown = action.help % dict(vars(action), prog=parser.prog)
            assert any(f"default: {text}" in shown for text in default_texts(action.default)), (
                f"{parser.prog} {'/'.join(action.option_strings) or action.dest}: the help does not show the "
                f"default {action.default!r}; end it with (default: %(default)s)")


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_arguments_are_grouped(command):
    for parser in parser_and_subparsers(command_parser(command)[1]):
        ungrouped = [action.dest for group in parser._action_groups
                     if group.title in ("options", "positional arguments") for action in group._group_actions
                     if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
                     and action.help != argparse.SUPPRESS]
        assert not ungrouped, f"{parser.prog}: arguments outside an argument group: {ungrouped}"


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
