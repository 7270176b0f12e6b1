"""The chronik console: server-rendered pages that show what a service holds.

Every service built by ``chronik.http.create_app`` serves it at ``/console`` (behind an
Ingress prefix too): streams and their events, an aggregate's state version by version,
the causation of an event. Pages are Jinja2 templates with a little vendored htmx; no
front-end build, no CDN (docs/console.md, docs/adr/0022-console-server-rendered.md).
"""

from __future__ import annotations

from chronik._extras import require

require("http", "chronik.console (the console's pages)")

from chronik.console.app import Console, Nav
from chronik.console.router import console_router

__all__ = ["Console", "Nav", "console_router"]
