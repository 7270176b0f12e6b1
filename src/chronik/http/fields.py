"""Request field types whose JSON Schema says exactly what the server accepts."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["WholeNumber"]


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true or false")
    return value


#: A JSON Schema "integer": 12 and 12.0 are accepted (JSON Schema calls both integers),
#: true and false are not (pydantic's lax int would take them as 1 and 0; a strict int
#: would refuse 12.0, which the document calls valid).
WholeNumber = Annotated[int, BeforeValidator(_not_a_boolean)]
