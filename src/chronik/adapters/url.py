"""Reading database and broker URLs: their scheme, their options, a password hidden.

Nothing here imports a driver: a URL is checked (for settings, before anything is
opened) where the adapter it names may not even be installed.
"""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from chronik.errors import ConfigurationError

__all__ = ["number", "query_options", "redact", "scheme_of"]


def redact(url: str) -> str:
    """The URL with its password (user-info or ``password=`` parameter) hidden: safe to show."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


def scheme_of(url: object) -> str:
    """The URL's scheme in lowercase; '' when it is no URL at all."""
    if not isinstance(url, str) or "://" not in url:
        return ""
    return url.split("://", 1)[0].lower()


def query_options(
    url: str, allowed: set[str], *, passthrough: bool, what: str = "event store URL"
) -> tuple[dict[str, str], str]:
    """chronik's options of the URL's query, and the URL without them.

    An option not in ``allowed`` is kept in the URL with ``passthrough`` (for the
    driver: ``sslmode``, say), else refused naming the ones that are known.
    """
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key in allowed:
            ours[key] = value
        elif passthrough:
            rest.append((key, value))
        else:
            raise ConfigurationError(
                f"{what} option {key!r} is not known; use {', '.join(sorted(allowed))}"
            )
    # %20, not '+', for a space: libpq does not read '+' as one.
    return ours, urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))


def number(
    options: dict[str, str],
    key: str,
    default: float,
    kind: type[float] | type[int],
    *,
    what: str = "event store URL",
) -> float:
    """Option ``key`` as a positive, finite number of ``kind`` (``default`` when absent)."""
    raw = options.get(key)
    if raw is None:
        return default
    noun = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{what} option {key}={raw!r} is not {noun}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{what} option {key}={raw!r} must be positive and finite")
    return value
