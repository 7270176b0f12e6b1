"""The demo and the tour, found in another distribution through the ``chronik.demos`` group.

The framework's wheel holds no example system. ``chronik demo`` and ``chronik tour`` run
the one a distribution registers (chronik's reference system: examples/reference, named
``reference``) under the entry point group ``chronik.demos``. The entry point names an
object, a module say, with:

- ``APP``: the ``CHRONIK_APP`` reference of the services the demo runs (``reference:specs``);
- ``async seed_and_explain(base_url, data_dir, console)``: seeds example data through the
  served API once it is ready, then prints what to try;
- ``async run_tour(data_dir, console)``: the scripted tour of the event store.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from rich.console import Console

from chronik.errors import ConfigurationError

__all__ = ["GROUP", "Demo", "find_demo"]

GROUP = "chronik.demos"
#: the demo ``chronik demo`` prefers when more than one is installed
PREFERRED = "reference"
NOT_INSTALLED = (
    "{command} needs the reference system (the chronik-reference distribution), which is not "
    "installed: in a clone of chronik run `make .venv`, or `pip install -e examples/reference`"
)


@dataclass(frozen=True)
class Demo:
    """A demo a distribution registered: what it serves, how it seeds, its tour."""

    name: str
    app: str
    seed_and_explain: Callable[[str, Path, Console], Coroutine[Any, Any, None]]
    run_tour: Callable[[Path, Console], Coroutine[Any, Any, None]]


def find_demo(command: str, *, group: str = GROUP) -> Demo:
    """The installed demo (``reference`` if there are several); ConfigurationError if none.

    ``command`` names what needs it, for the one-line error.
    """
    found = sorted(entry_points(group=group), key=lambda e: (e.name != PREFERRED, e.name))
    if not found:
        raise ConfigurationError(NOT_INSTALLED.format(command=command))
    return _loaded(found[0])


def _loaded(entry: EntryPoint) -> Demo:
    where = f"entry point {entry.name!r} of {entry.group} ({entry.value})"
    try:
        target: Any = entry.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{where} cannot be loaded: {exc}") from None
    app = getattr(target, "APP", None)
    seed = getattr(target, "seed_and_explain", None)
    tour = getattr(target, "run_tour", None)
    if not isinstance(app, str) or not callable(seed) or not callable(tour):
        raise ConfigurationError(f"{where} needs APP (a str), seed_and_explain and run_tour")
    return Demo(entry.name, app, seed, tour)
