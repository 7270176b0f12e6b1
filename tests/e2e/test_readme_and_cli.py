"""The README's example and the chronik command, run as a user would."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHRONIK = Path(sys.executable).with_name("chronik")


def test_the_readme_example_runs_and_prints_what_it_stored(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2 ['tea', 'milk'] ['shop.item_added', 'shop.item_added']"
    assert (tmp_path / "readme.db").exists()


def test_the_tour_runs_twice_on_one_data_directory_and_keeps_everything(tmp_path: Path) -> None:
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [str(CHRONIK), "tour", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "is refused" in outputs[0]
    assert "'[forgotten]'" in outputs[0]
    assert "The store holds 3 events in all" in outputs[0]
    assert "The store holds 6 events in all" in outputs[1]


def test_the_version_is_written_once_and_the_command_and_the_metadata_agree() -> None:
    import chronik

    done = subprocess.run([str(CHRONIK), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"chronik {chronik.__version__}"
    assert importlib.metadata.version("chronik") == chronik.__version__
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in pyproject and "version" in pyproject["dynamic"]


def test_the_command_without_arguments_shows_its_help() -> None:
    done = subprocess.run([str(CHRONIK)], capture_output=True, text=True, timeout=60)
    assert "tour" in done.stdout + done.stderr


def _documented_store_commands() -> set[tuple[str, ...]]:
    """The commands docs/runtime.md says take --store-url and --data-dir."""
    text = " ".join((ROOT / "docs" / "runtime.md").read_text().split())
    listing = text.split("takes `--store-url URL` or `--data-dir DIR`", 1)[1]
    listing = listing.split("defaulting to the settings:", 1)[1].split(". ", 1)[0]
    commands: set[tuple[str, ...]] = set()
    for spelled in re.findall(r"`([^`]+)`", listing):
        *group, last = spelled.split()
        commands |= {(*group, name) for name in last.split("|")}
    return commands


def _commands_with(option: str) -> set[tuple[str, ...]]:
    """Every command of the real CLI that has ``option``."""
    import typer

    from chronik.cli import app

    found: set[tuple[str, ...]] = set()

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        elif any(option in p.opts for p in command.params):
            found.add(path)

    walk(typer.main.get_command(app), ())
    return found


def test_the_commands_the_docs_say_take_the_store_options_are_exactly_those_that_do() -> None:
    documented = _documented_store_commands()
    assert ("config", "show") in documented and ("processes", "show") in documented
    assert _commands_with("--store-url") == documented
    assert _commands_with("--data-dir") == documented | {("tour",), ("demo",)}
