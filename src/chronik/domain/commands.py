"""Commands: frozen dataclasses named in the imperative, registered under a stable name.

Processes send commands to handlers (in this context or another); a command's name,
not its class, identifies it in a process's stored steps.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["command", "command_name"]

T = TypeVar("T")

_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


def command(name: str) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass as the command ``name`` ("context.do_something")."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"command name {name!r} must be lowercase words joined by '.', like "
            "'travel.book_flight'"
        )

    def mark(cls: type[T]) -> type[T]:
        params = getattr(cls, "__dataclass_params__", None)
        if not dataclasses.is_dataclass(cls) or params is None or not params.frozen:
            raise TypeError(f"@command({name!r}) needs a frozen dataclass: {cls.__qualname__}")
        setattr(cls, "__chronik_command__", name)  # noqa: B010 - the attribute is not declared
        return cls

    return mark


def command_name(cls: type) -> str:
    """The stable name a ``@command`` class was given (TypeError for another class)."""
    name = cls.__dict__.get("__chronik_command__")
    if not isinstance(name, str):
        raise TypeError(
            f"{cls.__qualname__} is not a registered command: decorate it with @command"
        )
    return name
