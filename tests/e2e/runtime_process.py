"""Running the ``chronik`` command as a user would: one-shot commands and a served process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

CHRONIK = str(Path(sys.executable).with_name("chronik"))
SAMPLE_APP = "reference.tickets:SPEC"
BASE_ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}


@dataclass
class Done:
    """What a finished command left: its exit code and its output."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


async def chronik(*args: str, env: dict[str, str] | None = None, within: float = 60) -> Done:
    """Run ``chronik ARGS`` to its end (within ``within`` s) with a small env plus ``env``."""
    process = await asyncio.create_subprocess_exec(
        CHRONIK,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**BASE_ENV, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Served:
    """A ``chronik serve`` process: its port, its logs, and how it ended."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, logs: Path) -> None:
        self.process = process
        self.port = port
        self.logs = logs
        self.url = f"http://127.0.0.1:{port}"

    @property
    def stderr(self) -> str:
        return (self.logs / "stderr").read_text()

    @property
    def stdout(self) -> str:
        return (self.logs / "stdout").read_text()

    def terminate(self) -> float:
        """Send SIGTERM; the monotonic time it was sent."""
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    async def exit_code(self, within: float) -> int:
        """Wait for the process to end; killed (and failing the caller) if it does not."""
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"chronik serve did not exit within {within:g} s") from None


async def wait_healthy(served: Served, within: float = 20) -> None:
    """Wait until /healthz answers 200; fail with the logs if the process ends first."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=served.url, timeout=2) as client:
        while time.monotonic() < deadline:
            if served.process.returncode is not None:
                raise AssertionError(f"chronik serve exited early:\n{served.stderr}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"chronik serve did not answer within {within:g} s:\n{served.stderr}")


def _log_files(logs: Path) -> tuple[BinaryIO, BinaryIO]:
    logs.mkdir(parents=True, exist_ok=True)
    return (logs / "stdout").open("wb"), (logs / "stderr").open("wb")


@contextlib.asynccontextmanager
async def serving(
    logs: Path, env: dict[str, str], *args: str, stop_within: float = 20
) -> AsyncIterator[Served]:
    """``chronik serve`` on a free port with ``env``, healthy on entry, gone on exit."""
    port = free_port()
    out, err = _log_files(logs)
    with out, err:
        process = await asyncio.create_subprocess_exec(
            CHRONIK,
            "serve",
            "--port",
            str(port),
            *args,
            stdout=out,
            stderr=err,
            env={**BASE_ENV, "CHRONIK_APP": SAMPLE_APP, **env},
        )
    served = Served(process, port, logs)
    try:
        await wait_healthy(served)
        yield served
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), stop_within)
            except TimeoutError:
                process.kill()
                await process.wait()
