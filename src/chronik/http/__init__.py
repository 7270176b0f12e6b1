"""The HTTP adapter (FastAPI): thin routes, problem+json errors, probes, metrics.

``create_app(runtime)`` is a running service's API; a context's routes use
``run_command`` (a command in, its result and position out), ``wait_consistent``
(read-your-writes) and ``PERSONAL_DATA`` (routes that show personal data need the API
token). Errors become RFC 9457 problem details (``chronik.http.problems``).

It needs the http extra; without it, importing any part of it is a ConfigurationError
naming the pip command, not a ModuleNotFoundError from deep inside.
"""

from chronik._extras import require

require("http", "chronik.http (serving HTTP)")

from chronik.http.app import CommandResult, create_app, run_command, wait_consistent
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
    "create_app",
    "install_problem_handlers",
    "personal_data",
    "problem",
    "run_command",
    "serve",
    "wait_consistent",
]
