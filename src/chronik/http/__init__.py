"""The HTTP adapter (FastAPI): thin routes, problem+json errors, probes, metrics.

It needs the http extra; without it, importing any part of it is a ConfigurationError
naming the pip command, not a ModuleNotFoundError from deep inside.
"""

from chronik._extras import require

require("http", "chronik.http (serving HTTP)")
