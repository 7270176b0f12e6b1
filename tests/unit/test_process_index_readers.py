"""The process index is read by name in one module: everyone else asks ``ProcessesAdmin``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _naming_the_index() -> list[str]:
    """The modules under src/ with the index's name as a string literal (not in __all__,
    where it names the function ``process_index``)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        exported = {
            id(element)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for element in ast.walk(node.value)
        }
        if any(
            isinstance(node, ast.Constant)
            and node.value == "process_index"
            and id(node) not in exported
            for node in ast.walk(tree)
        ):
            found.append(path.relative_to(SRC).as_posix())
    return found


def test_only_the_process_index_module_reads_the_index_by_its_name() -> None:
    assert _naming_the_index() == ["chronik/processes/index.py"]
