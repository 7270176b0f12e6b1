"""Run the benchmarks: every (workload, backend, system) in a fresh worker process.

    python -m benchmarks.run [--quick] [--backends sqlite,postgres,nats,rabbitmq]
        [--systems chronik,eventsourcing,raw,broker] [--workloads a_create,...]
        [--out benchmarks/results/latest.json] [--markdown docs/benchmarks.md]
        [--markdown-only]

The loops nest workload, then backend, then system, so the systems of one workload run
back to back; each workload runs only on the backends and systems it names (the event-store
workloads on sqlite/postgres with chronik, eventsourcing and raw; the messaging workloads on
nats/rabbitmq, i.e. PostgreSQL + that broker, with chronik and the broker alone). Results
are merged into an existing results file of the same size: only the (workload, backend,
system) entries measured now are replaced. The markdown report is rendered from the merged
file.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import BACKENDS, DEFAULT_POSTGRES_URL, SYSTEMS, WORKLOADS
from benchmarks.report import render_markdown, sort_key
from benchmarks.worker import drop_schema, target_prefix

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "latest.json"
DEFAULT_MARKDOWN = REPO_ROOT / "docs" / "benchmarks.md"
TIMEOUTS = {"quick": 30.0, "full": 600.0}
#: seconds a whole run may take (None: no limit): the quick run stays under 5 minutes even
#: when a row hangs; a row the budget cannot start is reported as not run, never dropped
BUDGETS: dict[str, float | None] = {"quick": 270.0, "full": None}
SPLIT_OUT = REPO_ROOT / "benchmarks" / "results" / "split.json"
SPLIT_TIMEOUTS = {"quick": 180.0, "full": 900.0}


def _csv(value: str, known: list[str] | tuple[str, ...], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="the small sizes (a smoke run)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="re-render the markdown from the existing results file; run nothing",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CHRONIK_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per worker (30 quick, 600 full)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for the whole run (270 quick, no limit full); 0 for no limit",
    )
    parser.add_argument(
        "--only",
        choices=["split"],
        default=None,
        help="split: only the split deployment (benchmarks.split), nothing else",
    )
    parser.add_argument(
        "--no-split",
        action="store_true",
        help="leave out the split deployment, which a run of every workload includes",
    )
    args = parser.parse_args(argv)
    # The split deployment runs with every workload (the full run), or alone.
    args.split = args.only == "split" or (
        not args.no_split and args.workloads == ",".join(WORKLOADS)
    )
    try:
        args.backends = _csv(args.backends, BACKENDS, "backends")
        args.systems = _csv(args.systems, list(SYSTEMS), "systems")
        args.workloads = _csv(args.workloads, list(WORKLOADS), "workloads")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return args


# ---------------------------------------------------------------------------------------
# The machine description


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """A read-only git query in the repository; None if it fails (e.g. no commit yet)."""
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run(
        [git, *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=10
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _postgres_info(url: str) -> dict[str, Any]:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            info: dict[str, Any] = {}
            for setting in ("server_version", "synchronous_commit", "fsync", "wal_sync_method"):
                row = conn.execute(f"SHOW {setting}").fetchone()
                info[setting] = row[0] if row else None
            return info
    except psycopg.Error as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _load_average() -> list[float] | None:
    """The machine's load average over 1, 5 and 15 minutes (None where there is none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def machine_description(postgres_url: str) -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_mib": _memory_mib(),
        "sqlite_version": sqlite3.sqlite_version,
        "postgres": _postgres_info(postgres_url),
        "psycopg": {"version": psycopg.__version__, "implementation": psycopg.pq.__impl__},
        "eventsourcing_version": _version("eventsourcing"),
        "chronik_version": _version("chronik"),
        "chronik_commit": commit,
        "chronik_dirty": bool(dirty) if commit else None,
    }


# ---------------------------------------------------------------------------------------
# Running the workers


def _chronik_on_path() -> bool:
    """Put src/ on the path when chronik is not installed, so a checkout can be measured."""
    if importlib.util.find_spec("chronik") is not None:
        return False
    sys.path.insert(0, str(REPO_ROOT / "src"))
    return True


def import_error(system: str) -> str | None:
    """Why the system's module cannot be imported, or None if it can."""
    module = SYSTEMS[system].partition(":")[0]
    try:
        importlib.import_module(f"benchmarks.systems.{module}")
    except Exception as exc:
        return f"cannot import benchmarks.systems.{module}: {type(exc).__name__}: {exc}"
    return None


def _worker_env(with_src: bool) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT)]
    if with_src:
        paths.append(str(REPO_ROOT / "src"))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _clean_up(system: str, workload: str, pid: int, postgres_url: str) -> None:
    """Drop what a failed or killed worker may have left behind."""
    name = target_prefix(system, workload, pid)
    for directory in glob.glob(os.path.join(tempfile.gettempdir(), f"{name}_*")):
        shutil.rmtree(directory, ignore_errors=True)
    try:
        drop_schema(postgres_url, name)
    except psycopg.Error as exc:
        print(f"    could not drop schema {name}: {exc}", flush=True)


def _last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def run_worker(
    system: str,
    workload: str,
    backend: str,
    size: str,
    postgres_url: str,
    timeout: float,
    env: dict[str, str],
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.worker",
        system,
        workload,
        backend,
        "--size",
        size,
        "--postgres-url",
        postgres_url,
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        _clean_up(system, workload, process.pid, postgres_url)
        return {"error": f"timed out after {timeout:.0f} s", "timed_out": True}
    output = _last_json_line(stdout)
    if process.returncode != 0 or output is None or output.get("error"):
        _clean_up(system, workload, process.pid, postgres_url)
        if output is not None and output.get("error"):
            return output
        tail = " ".join(stderr.strip().splitlines()[-3:])
        return {"error": f"worker exited with status {process.returncode}: {tail}"}
    return output


def _result(
    workload: str,
    backend: str,
    system: str,
    size: str,
    output: dict[str, Any],
    machine: dict[str, Any],
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "workload": workload,
        "backend": backend,
        "system": system,
        "events_per_s": output.get("events_per_s"),
    }
    if output.get("ops_per_s") is not None:
        result["ops_per_s"] = output["ops_per_s"]
    for key in ("p50_ms", "p99_ms", "peak_rss_mib", "seconds", "events", "ops", "note"):
        if output.get(key) is not None:
            result[key] = output[key]
    if output.get("error"):
        result["error"] = output["error"]
        if output.get("not_applicable"):
            result["not_applicable"] = True
        if output.get("timed_out"):
            result["timed_out"] = True
    result["size"] = size
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"] = machine
    return result


def _progress(index: int, total: int, result: dict[str, Any], wall: float) -> str:
    head = (
        f"[{index:>3}/{total}] {result['workload']:<16} {result['backend']:<8} "
        f"{result['system']:<13}"
    )
    if result.get("error"):
        label = (
            "N/A"
            if result.get("not_applicable")
            else "TIMED OUT"
            if result.get("timed_out")
            else "ERROR"
        )
        return f"{head} {label} {result['error']}"
    unit = WORKLOADS[result["workload"]].unit
    if unit == "ms":
        figure = f"p99 {result['p99_ms']:>8,.2f} ms, p50 {result['p50_ms']:,.2f} ms"
        if result.get("events_per_s") is not None:
            figure += f", {result['events_per_s']:,.0f} events/s"
    else:
        rate = result["ops_per_s"] if unit == "loads" else result["events_per_s"]
        figure = f"{rate:>12,.1f} {unit}/s"
    return (
        f"{head} {figure}  {result['seconds']:7.2f} s timed"
        f"  {result.get('peak_rss_mib', 0):5.0f} MiB  ({wall:.1f} s wall)"
    )


# ---------------------------------------------------------------------------------------
# The results file


def _load(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def merge(
    existing: dict[str, Any] | None, new: list[dict[str, Any]], size: str
) -> tuple[list[dict[str, Any]], int]:
    """The new results plus the existing ones of the same size that were not re-measured."""
    if existing is None or existing.get("size") != size:
        return sorted(new, key=sort_key), 0
    measured = {(r["workload"], r["backend"], r["system"]) for r in new}
    kept = [
        r
        for r in existing.get("results", [])
        if (r.get("workload"), r.get("backend"), r.get("system")) not in measured
    ]
    return sorted(new + kept, key=sort_key), len(kept)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def run_split(
    size: str, args: argparse.Namespace, render: bool = True, limit: float | None = None
) -> int:
    """The split deployment (benchmarks.split) in a process of its own, to SPLIT_OUT.

    ``limit`` is what is left of the run's budget: the split run gets no more than that.
    """
    timeout = SPLIT_TIMEOUTS[size] if limit is None else min(SPLIT_TIMEOUTS[size], limit)
    if timeout < 30:
        print(f"split deployment not run: the run's budget was spent ({timeout:.0f} s left)")
        return 1
    command = [sys.executable, "-m", "benchmarks.split", "--size", size, "--out", str(SPLIT_OUT)]
    command += ["--postgres-url", args.postgres_url, "--markdown", str(args.markdown)]
    if not render:
        command.append("--no-markdown")
    print(f"split deployment, size {size}", flush=True)
    env = _worker_env(_chronik_on_path())
    # A session of its own: on a timeout its chronik processes are stopped with it.
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, start_new_session=True)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(f"the split deployment timed out after {timeout:.0f} s", flush=True)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    if args.markdown_only:
        doc = _load(args.out)
        if doc is None:
            print(f"no results file at {args.out}", file=sys.stderr)
            return 1
        _write_text(args.markdown, render_markdown(doc, _load(SPLIT_OUT)))
        print(f"wrote {args.markdown}")
        return 0

    size = "quick" if args.quick else "full"
    if args.only == "split":
        return run_split(size, args)
    timeout = args.timeout if args.timeout is not None else TIMEOUTS[size]
    budget = args.budget if args.budget is not None else BUDGETS[size]
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = _load_average()
    machine = machine_description(args.postgres_url)
    if any(b != "sqlite" for b in args.backends) and "error" in machine["postgres"]:
        print(f"PostgreSQL is not reachable: {machine['postgres']['error']}", flush=True)

    with_src = _chronik_on_path()
    import_errors = {s: import_error(s) for s in args.systems}
    for system, reason in import_errors.items():
        if reason:
            print(f"{system}: {reason}; recorded as an error for every workload", flush=True)
    env = _worker_env(with_src)

    plan = [
        (w, b, s)
        for w in args.workloads
        for b in args.backends
        for s in args.systems
        if WORKLOADS[w].applies_to(b, s)
    ]
    print(
        f"{len(plan)} measurements, size {size}, timeout {timeout:.0f} s per worker",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    for index, (workload, backend, system) in enumerate(plan, start=1):
        t0 = time.perf_counter()
        reason = import_errors[system]
        left = budget - (t0 - started) if budget else timeout
        if reason:
            output: dict[str, Any] = {"error": reason}
        elif left < 1:
            output = {"error": f"not run: the run's budget of {budget:g} s was spent"}
        else:
            output = run_worker(
                system, workload, backend, size, args.postgres_url, min(timeout, left), env
            )
        result = _result(workload, backend, system, size, output, machine)
        results.append(result)
        print(_progress(index, len(plan), result, time.perf_counter() - t0), flush=True)

    merged, kept = merge(_load(args.out), results, size)
    doc = {
        "machine": machine,
        "size": size,
        "started_at": started_at,
        "load_average": {"start": load_at_start, "end": _load_average()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "results": merged,
    }
    _write_text(args.out, json.dumps(doc, indent=2) + "\n")
    if args.split:
        left = budget - (time.perf_counter() - started) if budget else None
        run_split(size, args, render=False, limit=left)
    markdown = render_markdown(doc, _load(SPLIT_OUT))
    _write_text(args.markdown, markdown)
    print()
    print(markdown)
    note = f" (kept {kept} earlier entries)" if kept else ""
    print(f"wrote {args.out}{note} and {args.markdown}")
    failed = sum(1 for r in results if r.get("error") and not r.get("not_applicable"))
    timed_out = sum(1 for r in results if r.get("timed_out"))
    not_applicable = sum(1 for r in results if r.get("not_applicable"))
    print(
        f"{len(results)} measurements, {failed} failed ({timed_out} timed out),"
        f" {not_applicable} not applicable,"
        f" {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
