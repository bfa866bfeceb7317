"""Layers, enforced: the import contracts in pyproject.toml, and the size limits of STYLE.md.

games (envs) -> base (config, records, distributed) -> models -> rollout | learning ->
evaluate -> training -> commands; nothing imports upward, imports inside functions included.
`lint-imports` checks that (the contracts are ``[tool.importlinter]`` in pyproject.toml), and
an AST pass keeps modules within 400 lines and functions within 60.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("spiral", "envs", "tasks")  # not tests/ or bench/
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# lint-imports through its console-script entry point, in this interpreter.
LINT_IMPORTS = (
    "import sys; from importlib.metadata import entry_points; "
    "sys.exit(entry_points(group='console_scripts', name='lint-imports')['lint-imports'].load()())"
)


def test_import_contracts_hold():
    if importlib.util.find_spec("importlinter") is None:
        pytest.fail("import-linter is not installed: pip install -e '.[dev]'")
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    broken = output[output.find("Broken contracts") :] if "Broken contracts" in output else output
    assert result.returncode == 0, f"import contracts broken (lint-imports):\n{broken}"


def _python_files() -> list[Path]:
    return sorted(path for package in CHECKED for path in (REPO / package).rglob("*.py"))


def test_modules_stay_within_the_line_limit():
    too_long = []
    for path in _python_files():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(too_long)


def test_functions_stay_within_the_line_limit():
    too_long = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    too_long.append(f"{where} {node.name}(): {lines} lines")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)
