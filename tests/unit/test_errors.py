"""Every public error chronik raises lives in chronik.errors, under ChronikError, in its tree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import chronik
import chronik.errors


def _public_errors_defined_elsewhere() -> list[str]:
    found = []
    for module in pkgutil.walk_packages(chronik.__path__, "chronik."):
        if module.name == "chronik.errors":
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
                and not name.startswith("_")
            ):
                found.append(f"{module.name}.{name}")
    return sorted(found)


def test_no_public_error_is_defined_outside_chronik_errors() -> None:
    assert _public_errors_defined_elsewhere() == []


def test_every_error_of_chronik_errors_is_a_chronik_error_drawn_in_the_tree() -> None:
    tree = chronik.errors.__doc__ or ""
    for name in chronik.errors.__all__:
        error = getattr(chronik.errors, name)
        assert issubclass(error, chronik.errors.ChronikError), name
        assert re.search(rf"\b{name}\b", tree), f"{name} is not drawn in the tree of chronik.errors"
