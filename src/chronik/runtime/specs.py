"""Finding a service's contexts by reference (``module:attribute``)."""

from __future__ import annotations

import importlib

from chronik.errors import ConfigurationError
from chronik.runtime.service import ServiceSpec

__all__ = ["load_specs"]


def load_specs(reference: str) -> list[ServiceSpec]:
    """The specs named ``module:attribute``: a ServiceSpec, a list, or a function of them."""
    module_name, _, attribute = reference.partition(":")
    try:
        value = getattr(importlib.import_module(module_name), attribute or "SPECS")
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"CHRONIK_APP {reference!r}: {exc}") from None
    if callable(value) and not isinstance(value, ServiceSpec):
        value = value()  # a factory: specs are built on demand, not at import
    specs = [value] if isinstance(value, ServiceSpec) else list(value)
    if not specs or not all(isinstance(s, ServiceSpec) for s in specs):
        raise ConfigurationError(
            f"CHRONIK_APP {reference!r} is not a ServiceSpec or a list of them"
        )
    return specs
