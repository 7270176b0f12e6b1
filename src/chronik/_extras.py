"""The optional dependencies (extras): a missing one is one line naming its pip command.

``pip install chronik`` installs the core; each driver comes with an extra. The code
that needs one checks it (``require``, nothing imported) or imports it inside ``needing``,
so that a user without it reads ``nats:// needs the nats extra: pip install
'chronik[nats]'`` instead of a ModuleNotFoundError traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from chronik.errors import ConfigurationError

__all__ = ["EXTRAS", "missing_extra", "needing", "require"]

#: the top-level modules each extra installs (pyproject.toml's optional dependencies)
EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg", "psycopg_pool"),
    "nats": ("nats",),
    "rabbitmq": ("aio_pika",),
    "http": ("fastapi", "uvicorn", "httpx"),
    "testing": ("pytest", "pytest_asyncio", "hypothesis"),
    "otel": ("opentelemetry",),
}


def missing_extra(extra: str, needed_by: str) -> ConfigurationError:
    """The error for ``needed_by`` (a URL scheme, a command) without ``extra`` installed."""
    return ConfigurationError(
        f"{needed_by} needs the {extra} extra: pip install 'chronik[{extra}]'"
    )


def require(extra: str, needed_by: str) -> None:
    """Refuse, naming the extra, unless every module it installs is there.

    The modules are looked up, not imported: cheap enough for checking settings.
    """
    if any(importlib.util.find_spec(module) is None for module in EXTRAS[extra]):
        raise missing_extra(extra, needed_by)


@contextlib.contextmanager
def needing(extra: str, needed_by: str) -> Iterator[None]:
    """Imports in this block come with ``extra``: a missing one is its ConfigurationError.

    Only a module missing outside chronik counts (the driver, or one of its own
    dependencies); a broken import inside chronik stays the error it is.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "chronik").partition(".")[0] == "chronik":
            raise
        raise missing_extra(extra, needed_by) from exc
