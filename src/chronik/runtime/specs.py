"""Finding a service's contexts by reference (``module:attribute``)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from chronik.errors import ConfigurationError
from chronik.runtime.service import ServiceSpec

__all__ = ["load_specs"]


def load_specs(reference: str) -> list[ServiceSpec]:
    """The specs named ``module:attribute``: a ServiceSpec, a list, or a function of them.

    Anything else is a ConfigurationError naming CHRONIK_APP and what it found, never a
    TypeError from deep inside: the reference comes from the environment, not from code.
    """
    module_name, _, attribute = reference.partition(":")
    try:
        value = getattr(importlib.import_module(module_name), attribute or "SPECS")
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"CHRONIK_APP {reference!r}: {exc}") from None
    if callable(value) and not isinstance(value, ServiceSpec):
        value = _call_factory(reference, value)  # specs are built on demand, not at import
    if isinstance(value, ServiceSpec):
        return [value]
    items = _items(value)
    if not items or not all(isinstance(s, ServiceSpec) for s in items):
        raise ConfigurationError(
            f"CHRONIK_APP {reference!r} gives {_kind(value, items)}, not a ServiceSpec or a "
            "list of them"
        )
    return items


def _call_factory(reference: str, factory: Callable[..., Any]) -> Any:
    """Call a factory of specs; one that needs arguments cannot be one."""
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise ConfigurationError(
            f"CHRONIK_APP {reference!r} needs arguments ({exc}): name a ServiceSpec, a list "
            "of them, or a function of none that returns them"
        ) from None
    except ValueError:
        pass  # no signature to inspect (some builtins): let the call say
    return factory()


def _items(value: Any) -> list[Any] | None:
    """The items of a collection of specs, or None if ``value`` is no collection."""
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        return None
    return list(value)


def _kind(value: Any, items: list[Any] | None) -> str:
    """What was found, for the error: ``an int``, ``an empty list``, ``a list of str``."""
    name = type(value).__name__
    if items is None:
        return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
    if not items:
        return f"an empty {name}"
    others = sorted({type(i).__name__ for i in items if not isinstance(i, ServiceSpec)})
    return f"a {name} of {', '.join(others)}"
