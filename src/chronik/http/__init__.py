"""The HTTP adapter (FastAPI): thin routes, problem+json errors, probes, metrics."""
