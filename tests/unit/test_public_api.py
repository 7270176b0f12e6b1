"""The public surface: each package's facade exports what users need, documented, and
every type a public signature uses is itself importable from a facade."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import chronik

#: the subpackages that must have a curated facade (``__all__`` in their __init__)
REQUIRED = (
    "chronik.adapters",
    "chronik.http",
    "chronik.messaging",
    "chronik.processes",
    "chronik.projections",
    "chronik.runtime",
)


def _facades() -> list[str]:
    """chronik, chronik.errors, and every subpackage of chronik whose __init__ has __all__
    (but the command line, which is a program, not an API)."""
    found = ["chronik", "chronik.errors"]
    for info in pkgutil.iter_modules(chronik.__path__, "chronik."):
        if info.name == "chronik.cli" or not info.ispkg:
            continue
        if hasattr(importlib.import_module(info.name), "__all__"):
            found.append(info.name)
    return found


FACADES = _facades()


def _exports() -> Iterator[tuple[str, str, object]]:
    """(facade, name, object) for every name of every facade's __all__."""
    for facade in FACADES:
        module = importlib.import_module(facade)
        for name in module.__all__:
            yield facade, name, getattr(module, name, _MISSING)


_MISSING = object()


@pytest.mark.parametrize("package", REQUIRED)
def test_each_subpackage_has_a_curated_facade(package: str) -> None:
    module = importlib.import_module(package)
    assert package in FACADES
    assert module.__all__, f"{package}.__all__ is empty"
    assert module.__doc__, f"{package} says in its docstring what it is for"


def test_every_exported_name_exists() -> None:
    missing = [f"{facade}.{name}" for facade, name, value in _exports() if value is _MISSING]
    assert not missing, f"in __all__ but not there: {missing}"


def test_every_exported_name_is_documented() -> None:
    undocumented = [
        f"{facade}.{name}"
        for facade, name, value in _exports()
        if value is not _MISSING and not _documented(facade, name, value)
    ]
    assert not undocumented, "exported without a docstring (or a #: comment):\n  " + "\n  ".join(
        undocumented
    )


def _documented(facade: str, name: str, value: object) -> bool:
    if inspect.isclass(value):
        doc = value.__dict__.get("__doc__")
        generated = dataclasses.is_dataclass(value) and str(doc).startswith(f"{value.__name__}(")
        return bool(doc and doc.strip()) and not generated
    if inspect.isroutine(value):
        return bool(inspect.getdoc(value))
    return _commented(facade, name)


def _commented(module_name: str, name: str) -> bool:
    """Whether ``name`` (a constant or an alias) has a ``#:`` comment where it is defined,
    following the imports from the facade to the module that assigns it."""
    module = importlib.import_module(module_name)
    source = Path(inspect.getfile(module)).read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _commented(node.module, alias.name)
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            return above.startswith("#:")
    return False


def _every_chronik_class() -> dict[str, type]:
    """Every class defined in a chronik module, by name: to resolve annotations that
    name types imported only for type checking."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(chronik.__path__, "chronik."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__.startswith("chronik"):
                found.setdefault(name, value)
    return found


def _evaluated(
    annotations: dict[str, Any], module: str, names: dict[str, type]
) -> Iterator[tuple[str, Any]]:
    """Each annotation as a type: strings (``from __future__ import annotations``) are
    evaluated in their module, with chronik's classes for names imported only to type."""
    namespace = {**names, **vars(sys.modules[module])}
    for name, annotation in annotations.items():
        # Our own annotations, evaluated as typing.get_type_hints does (with eval).
        evaluated = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
        yield name, evaluated


def _signatures(value: object, names: dict[str, type]) -> Iterator[tuple[str, Any]]:
    """(where, annotation) for every annotation of a public function, or of a public
    class's constructor, methods, properties and fields (its own, not inherited ones)."""
    if inspect.isfunction(value):
        annotations = inspect.get_annotations(value)
        for _, hint in _evaluated(annotations, value.__module__, names):
            yield value.__qualname__, hint
        return
    if not inspect.isclass(value) or not value.__module__.startswith("chronik"):
        return
    owner = value.__qualname__
    fields = inspect.get_annotations(value)
    for field, hint in _evaluated(fields, value.__module__, names):
        if not field.startswith("_"):
            yield f"{owner}.{field}", hint
    for member, attribute in vars(value).items():
        if member.startswith("_") and member != "__init__":
            continue
        function = attribute
        if isinstance(attribute, (staticmethod, classmethod)):
            function = attribute.__func__
        elif isinstance(attribute, property):
            function = attribute.fget
        if inspect.isfunction(function):
            annotations = inspect.get_annotations(function)
            for _, hint in _evaluated(annotations, function.__module__, names):
                yield f"{owner}.{member}", hint


def _chronik_types(hint: Any) -> Iterator[type]:
    """The chronik classes an annotation names, at any depth."""
    if isinstance(hint, type) and hint.__module__.startswith("chronik"):
        yield hint
    if isinstance(hint, typing.TypeVar):
        return
    args = typing.get_args(hint)
    if isinstance(hint, types.GenericAlias) or args:
        origin = typing.get_origin(hint)
        if isinstance(origin, type) and origin.__module__.startswith("chronik"):
            yield origin
        for arg in args:
            if not isinstance(arg, (str, int, bool, type(None), type(...))) or isinstance(
                arg, type
            ):
                yield from _chronik_types(arg)


def test_every_type_a_public_signature_uses_is_importable_from_a_facade() -> None:
    names = _every_chronik_class()
    exported = {id(value) for _, _, value in _exports()}
    unexported: dict[str, set[str]] = {}
    for _, _, value in _exports():
        for where, hint in _signatures(value, names):
            for used in _chronik_types(hint):
                if id(used) not in exported and not used.__name__.startswith("_"):
                    unexported.setdefault(f"{used.__module__}.{used.__qualname__}", set()).add(
                        where
                    )
    listed = [f"{name}  (in {', '.join(sorted(w))})" for name, w in sorted(unexported.items())]
    assert not listed, "used by public signatures, exported by no facade:\n  " + "\n  ".join(listed)


def test_the_top_level_package_exports_the_types_its_own_signatures_use() -> None:
    names = _every_chronik_class()
    top = {id(getattr(chronik, name)) for name in chronik.__all__}
    facades = {id(value) for _, _, value in _exports()}
    missing: set[str] = set()
    for name in chronik.__all__:
        for _, hint in _signatures(getattr(chronik, name), names):
            for used in _chronik_types(hint):
                private = used.__name__.startswith("_")
                if id(used) not in top and id(used) not in facades and not private:
                    missing.add(f"{used.__module__}.{used.__qualname__}")
    assert not missing, f"used by chronik's own exports, importable from no facade: {missing}"
