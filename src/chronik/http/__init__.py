"""The HTTP adapter (FastAPI): thin routes, problem+json errors, probes, metrics.

``create_app(runtime)`` is a running service's API; ``chronik serve`` runs it, or an app
of one's own mounts it and runs the runtime with ``lifespan(runtime)`` (docs/fastapi.md).
A context's routes use ``run_command`` (a command in, its result and position out),
``consistent_with`` / ``wait_consistent`` (read-your-writes) and ``PERSONAL_DATA``
(routes that show personal data need the API token). Errors become RFC 9457 problem
details (``chronik.http.problems``).

It needs the http extra; without it, importing any part of it is a ConfigurationError
naming the pip command, not a ModuleNotFoundError from deep inside.
"""

from chronik._extras import require

require("http", "chronik.http (serving HTTP)")

from chronik.http.app import (
    CommandResult,
    consistent_with,
    create_app,
    lifespan,
    operation_ids,
    run_command,
    wait_consistent,
)
from chronik.http.auth import PERSONAL_DATA, Access, personal_data
from chronik.http.fields import WholeNumber
from chronik.http.problems import (
    PROBLEM,
    Problem,
    ProblemResponse,
    install_problem_handlers,
    problem,
)
from chronik.http.serve import serve

__all__ = [
    "PERSONAL_DATA",
    "PROBLEM",
    "Access",
    "CommandResult",
    "Problem",
    "ProblemResponse",
    "WholeNumber",
    "consistent_with",
    "create_app",
    "install_problem_handlers",
    "lifespan",
    "operation_ids",
    "personal_data",
    "problem",
    "run_command",
    "serve",
    "wait_consistent",
]
