"""The split deployment's benchmark (benchmarks/split.py) at its tiny size, for correctness.

It starts sales, campaigns and travel with their relays as real processes on PostgreSQL
and NATS, as its users' full run does, and must account for every order it offered:
acknowledged by sales, effected in campaigns' budget and visible in its read model. No
figure of speed is checked here (that is what the benchmark reports).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from conftest import service_missing

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO_ROOT = Path(__file__).resolve().parents[2]
NATS = ("127.0.0.1", 4222)


def _nats_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(NATS, 3):
        return True
    return False


def test_the_tiny_split_run_accounts_for_every_order(postgres_url: str, tmp_path: Path) -> None:
    if not _nats_reachable():
        service_missing(f"NATS is not reachable at {NATS[0]}:{NATS[1]}")
    out = tmp_path / "split.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONIK_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.split",
            "--size",
            "tiny",
            "--out",
            str(out),
            "--no-markdown",
            "--logs",
            str(tmp_path / "logs"),
            "--postgres-url",
            postgres_url,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    doc = json.loads(out.read_text())
    assert "error" not in doc
    assert doc["size"] == "tiny"
    assert len(doc["load_average"]["start"]) == 3

    alone = doc["sales_alone"]
    assert alone["steps"], "no step of the sales-alone run"
    for step in alone["steps"]:
        assert step["acked"] == step["offered"] > 0, step
        assert step["http"]["n"] == step["offered"]
    assert alone["sustained_per_s"] > 0
    assert alone["closed_loop"]["orders"] > 0

    [cross] = doc["cross"]
    assert cross["offered"] > 0
    # Every order offered was acknowledged, effected once and made visible in campaigns.
    assert cross["acked"] == cross["effected"] == cross["visible"] == cross["offered"], cross
    for stage in ("relay + broker", "delivery + load", "effect append", "end to end"):
        assert cross["stages"][stage]["n"] == cross["offered"], stage
        assert cross["stages"][stage]["p99_ms"] is not None
    assert cross["backlog"]["at_end"] >= 0

    assert doc["library"]["orders"] > 0 and doc["library"]["orders_per_s"] > 0
    assert set(doc["ratios"]) == {"sales_sustained_to_library", "sales_closed_loop_to_library"}

    # Nothing of the run is left behind in PostgreSQL.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
            (f"bench_split_%_{doc['run']}",),
        ).fetchall()
    assert left == []
