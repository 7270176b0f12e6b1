"""One measurement in a fresh process: create the target, run the system, drop the target.

Run as ``python -m benchmarks.worker SYSTEM WORKLOAD BACKEND --size quick|full``. Prints one
JSON line on stdout: the measurement (``events_per_s``, ``ops_per_s``, ``seconds``,
``events``, ``peak_rss_mib``; for a latency workload ``p50_ms`` and ``p99_ms``, with
``events_per_s`` null; an optional ``note``) or, if anything failed, an ``error`` (exit
status 1), marked ``not_applicable`` when the system cannot do the workload on the backend.

The SQLite target is a fresh temporary directory named ``bench_<system>_<workload>_<pid>_*``
and the PostgreSQL target a fresh schema ``bench_<system>_<workload>_<pid>``, so that the
runner can clean either up after a worker it had to kill. The messaging backends
(``nats``, ``rabbitmq``) are a fresh PostgreSQL schema plus the broker's URL; a system
may create more schemas named ``<schema>_<suffix>``, which are dropped with it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg import sql

from benchmarks.common import (
    BACKENDS,
    DEFAULT_POSTGRES_URL,
    MESSAGING_BACKENDS,
    SIZES,
    SYSTEMS,
    WORKLOADS,
    Measurement,
    NotApplicable,
    Size,
    System,
    Target,
    broker_url,
)


def target_prefix(system: str, workload: str, pid: int) -> str:
    """The name of a worker's schema, and the prefix of its temporary directory."""
    return f"bench_{system}_{workload}_{pid}".lower()


def drop_schema(postgres_url: str, schema: str) -> None:
    """Drop the schema and the extra ones a system made beside it (``<schema>_<suffix>``)."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        extra = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (f"{schema}_",)
        ).fetchall()
        for name in [schema, *(row[0] for row in extra)]:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@contextmanager
def fresh_target(backend: str, postgres_url: str, name: str) -> Iterator[Target]:
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix=f"{name}_")
        try:
            yield Target("sqlite", str(Path(directory) / "events.db"), postgres_url, "")
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    elif backend == "postgres" or backend in MESSAGING_BACKENDS:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield Target(backend, "", postgres_url, name, broker_url(backend))
        finally:
            drop_schema(postgres_url, name)
    else:
        raise ValueError(f"unknown backend {backend!r}")


@dataclass(frozen=True)
class _EntryPoint:
    """A variant's ``run`` under another name in a module that measures several variants."""

    run: Callable[[str, Target, Size], Measurement]


def load_system(system: str) -> System:
    module_name, _, function = SYSTEMS[system].partition(":")
    module = importlib.import_module(f"benchmarks.systems.{module_name}")
    if function:
        return _EntryPoint(getattr(module, function))
    return cast(System, module)


def peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB.

    On Linux, ``getrusage(RUSAGE_SELF).ru_maxrss`` of a process started by fork/vfork + exec
    starts from the peak RSS of the *parent* (the kernel carries the old address space's
    high-water mark over the exec), so every worker would report at least the runner's
    peak. The kernel's own high-water mark of this address space, ``VmHWM`` in
    /proc/self/status, does not have that floor; ru_maxrss is the fallback elsewhere.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def result_fields(measurement: Measurement, workload: str | None = None) -> dict[str, Any]:
    known = WORKLOADS.get(workload) if workload is not None else None
    latency = known.lower_is_better if known is not None else measurement.p99_ms is not None
    if latency and (measurement.p50_ms is None or measurement.p99_ms is None):
        raise RuntimeError(f"latency workload {workload!r} without p50_ms/p99_ms: {measurement}")
    # A rate means nothing for a latency workload whose loop is paced by its own progress;
    # under a steady offered load it is the rate achieved.
    offered = known is not None and known.offered_per_s is not None
    fields: dict[str, Any] = {
        "events": measurement.events,
        "seconds": measurement.seconds,
        "events_per_s": (
            None if latency and not offered else measurement.events / measurement.seconds
        ),
    }
    if measurement.ops is not None:
        fields["ops"] = measurement.ops
        fields["ops_per_s"] = measurement.ops / measurement.seconds
    if measurement.p50_ms is not None:
        fields["p50_ms"] = measurement.p50_ms
    if measurement.p99_ms is not None:
        fields["p99_ms"] = measurement.p99_ms
    if measurement.note:
        fields["note"] = measurement.note
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("workload")
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args(argv)

    out: dict[str, Any] = {
        "system": args.system,
        "workload": args.workload,
        "backend": args.backend,
        "size": args.size,
    }
    name = target_prefix(args.system, args.workload, os.getpid())
    try:
        known = WORKLOADS.get(args.workload)
        if known is not None and args.backend not in known.backends:
            raise ValueError(
                f"{args.workload} runs on {', '.join(known.backends)}, not on {args.backend}"
            )
        system = load_system(args.system)
        with fresh_target(args.backend, args.postgres_url, name) as target:
            measurement = system.run(args.workload, target, SIZES[args.size])
        if measurement.seconds <= 0 or measurement.events <= 0:
            raise RuntimeError(f"implausible measurement: {measurement}")
        out.update(result_fields(measurement, args.workload))
    except NotApplicable as exc:
        out["error"] = f"not applicable: {exc}"
        out["not_applicable"] = True
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(out), flush=True)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
