"""chronik.testing exports every contract suite, and only suites pytest does not collect alone."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import chronik.testing


def _suites_defined() -> set[str]:
    names = set()
    for module in pkgutil.iter_modules(chronik.testing.__path__):
        if module.name.endswith("_contract"):
            loaded = importlib.import_module(f"chronik.testing.{module.name}")
            names |= {
                name
                for name, value in vars(loaded).items()
                if inspect.isclass(value)
                and value.__module__ == loaded.__name__
                and name.endswith("Contract")
            }
    return names


def test_every_contract_suite_is_exported_from_chronik_testing() -> None:
    assert _suites_defined() <= set(chronik.testing.__all__)
    assert chronik.testing.__all__ == sorted(chronik.testing.__all__)
    # Besides the suites, only what their helpers take (a subclass may call them).
    assert set(chronik.testing.__all__) - _suites_defined() == {"Received"}


def test_each_exported_suite_is_a_class_of_tests_that_pytest_runs_only_subclassed() -> None:
    for name in sorted(_suites_defined()):
        suite = getattr(chronik.testing, name)
        assert inspect.isclass(suite), name
        assert not name.startswith("Test"), f"{name} would run on its own, without an adapter"
        tests = [t for t in dir(suite) if t.startswith("test_")]
        assert tests, f"{name} has no tests"
