"""Layers point one way: codec <- tokenized_data <- lm <- tasks <- cli.

Every import of every module (top-level or inside a function) is read from the
source with `ast`, so an import that only runs in one command still counts.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Package -> layer: a module may import its own layer and those below (smaller numbers).
LAYERS = {"codec": 0, "tokenized_data": 1, "lm": 2, "tasks": 3, "cli": 4}


def imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in a module; relative imports count as `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, package if node.level else (node.module or "").split(".")[0]))
    return found


def layer_violations(root: Path = ROOT) -> list[str]:
    problems = []
    for package, layer in LAYERS.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, name in imports(path, package):
                if LAYERS.get(name, -1) > layer:
                    problems.append(f"{path.relative_to(root)}:{line} ({package}) imports {name}")
    return problems


def test_no_lower_layer_imports_a_higher_one():
    assert layer_violations() == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    (tmp_path / "codec").mkdir()
    (tmp_path / "codec" / "bad.py").write_text("def f():\n    from lm.model import load_lm\n    return load_lm\n")
    for package in LAYERS:
        (tmp_path / package).mkdir(exist_ok=True)
    assert layer_violations(tmp_path) == ["codec/bad.py:2 (codec) imports lm"]


@pytest.mark.parametrize("package", [p for p in LAYERS if p != "cli"])
def test_argparse_lives_in_the_cli_only(package):
    users = [str(path.relative_to(ROOT)) for path in (ROOT / package).rglob("*.py")
             if any(name == "argparse" for _, name in imports(path, package))]
    assert users == []
