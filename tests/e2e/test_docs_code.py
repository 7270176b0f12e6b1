"""Every Python block in docs/*.md runs, as a reader would run the page top to bottom.

The blocks of one page run in order in one namespace (a page is one script: a later
block uses what an earlier one defined), each page in a fresh interpreter of its own,
in an empty working directory; top-level ``await`` is allowed, as in ``python -m
asyncio``. A page imports what it uses in its own blocks. A block that cannot run says
so in its info string with the reason, ```` ```python no-run: why ````, and is only
compiled; the README's example is run by test_readme_and_cli.py.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_BLOCK = re.compile(r"^( *)```python([^\n]*)\n(.*?)^\1```[ \t]*$", re.S | re.M)

RUNNER = """
import ast, asyncio, inspect, json, sys, types

async def main(page, blocks):
    # A module of its own, as a script would be: what looks classes up by module finds it.
    module = types.ModuleType("page")
    sys.modules["page"] = module
    namespace = module.__dict__
    for line, source in blocks:
        padded = "\\n" * line + source  # tracebacks name the page's own line numbers
        code = compile(padded, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            await result

page, blocks = json.loads(sys.stdin.read())
asyncio.run(main(page, blocks))
"""


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the block's first line of code, from 1
    source: str
    info: str  # what follows ```python

    @property
    def runs(self) -> bool:
        return not self.info.strip().startswith("no-run")


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        indent = len(match.group(1))
        line = text[: match.start(3)].count("\n") + 1
        source = "\n".join(row[indent:] for row in match.group(3).splitlines())
        found.append(Block(f"docs/{path.name}", line, source + "\n", match.group(2)))
    return found


PAGES = sorted(p for p in DOCS.glob("*.md") if blocks_of(p))


def test_the_pages_with_python_are_found_and_no_block_is_missed() -> None:
    for path in DOCS.glob("*.md"):
        opened = len(re.findall(r"^ *```python", path.read_text(), flags=re.M))
        assert opened == len(blocks_of(path)), f"{path.name}: a ```python block not found"
    assert len(PAGES) >= 10, PAGES


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_block_that_does_not_say_why_it_cannot_run_runs(path: Path, tmp_path: Path) -> None:
    blocks = blocks_of(path)
    for block in blocks:
        if not block.runs:
            reason = block.info.strip().removeprefix("no-run").lstrip(":").strip()
            assert reason, f"{block.page}:{block.line}: no-run without a reason"
            compile(block.source, block.page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    runnable = [(b.line - 1, b.source) for b in blocks if b.runs]
    done = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([f"docs/{path.name}", runnable]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def test_the_docs_cite_only_files_the_repository_holds() -> None:
    """A page that says "see X.md" names a file a reader of this repository can open."""
    trees = ("docs", "src", "examples", "tests", "benchmarks", "deploy")
    held = {p.name for tree in trees for p in (ROOT / tree).rglob("*") if p.is_file()}
    held |= {p.name for p in ROOT.iterdir() if p.is_file()}
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.rglob("*.md")]
    missing = {
        f"{page.relative_to(ROOT)}: {name}"
        for page in pages
        for name in re.findall(r"\b([A-Za-z0-9_.-]+\.md)\b", page.read_text())
        if name not in held
    }
    assert not missing, sorted(missing)
