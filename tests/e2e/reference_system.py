"""The reference system run as its users run it: ``chronik`` processes and an HTTP client.

``Launcher`` starts ``chronik serve`` and ``chronik relay`` as real subprocesses, each
logging to its own file, and kills every one it started when the test ends (the
fixtures call ``kill_all`` in a finalizer, so a failing test leaves nothing running).
``Api`` is one bounded context's HTTP API; ``System`` is the three of them, however they
are deployed: under one process's /sales, /campaigns and /travel, or at the root of
three services. ``eventually`` polls for the effects that cross contexts (outbox, relay,
broker, inbox) with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

CHRONIK = str(Path(sys.executable).with_name("chronik"))
BASE_ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
T = TypeVar("T")
Json = dict[str, Any]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ChronikProcess:
    """One ``chronik`` command line, started (and restarted) as a subprocess."""

    #: how ``chronik`` is started (a test may wrap it: tests/e2e/traced_chronik.py)
    command: tuple[str, ...] = (CHRONIK,)

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.args = args
        self.env = {**BASE_ENV, **env}
        self.logs = logs
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.logs / f"{self.name}.{self.runs}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the command (again, after a kill), logging to a new file."""
        assert not self.running, f"{self.name} is running already"
        self.runs += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.command, *self.args], stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last checkpoint, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def output(self) -> str:
        """What the latest run wrote so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log(self, lines: int = 40) -> str:
        """The last lines the latest run wrote."""
        return "\n".join(self.output().splitlines()[-lines:]) or "(no output)"

    async def wait_for_output(self, text: str, within: float = 30.0) -> None:
        """Wait until the latest run wrote ``text``; fail if it ends or never does."""
        deadline = time.monotonic() + within
        while text not in self.output():
            if not self.running:
                raise self.exited_early()
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not say {text!r}:\n{self.log()}")
            await asyncio.sleep(0.1)

    def exited_early(self) -> AssertionError:
        assert self.process is not None
        return AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")


class Service(ChronikProcess):
    """``chronik serve`` (or ``chronik demo``) on its own port, kept across restarts."""

    def __init__(
        self, name: str, env: dict[str, str], logs: Path, command: tuple[str, ...] = ("serve",)
    ) -> None:
        self.port = free_port()
        super().__init__(name, [*command, "--port", str(self.port)], env, logs)
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, within: float = 30.0) -> None:
        """Wait until /readyz answers 200; fail with the log if it never does."""
        deadline = time.monotonic() + within
        last = "no answer"
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise self.exited_early()
                try:
                    answer = await client.get("/readyz")
                    if answer.status_code == 200:
                        return
                    last = answer.text
                except httpx.TransportError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {within:g} s ({last}):\n{self.log()}")

    async def restart(self) -> None:
        """Start it again on the same port and data, and wait until it is ready."""
        self.start()
        await self.wait_ready()


class Relay(ChronikProcess):
    """``chronik relay``: the outbox of one store to the broker, as its own process."""

    STARTED = "relaying the outbox"

    def __init__(self, name: str, store_url: str, broker_url: str, logs: Path) -> None:
        env = {"CHRONIK_EVENT_STORE_URL": store_url}
        super().__init__(name, ["relay", "--broker-url", broker_url], env, logs)

    async def wait_started(self, within: float = 30.0) -> None:
        """Wait until it says it relays (its tables exist and the broker is connected)."""
        await self.wait_for_output(self.STARTED, within)

    async def restart(self) -> None:
        self.start()
        await self.wait_started()


class Launcher:
    """Starts chronik processes for one test and kills every one of them at its end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: list[ChronikProcess] = []

    def serve(
        self, name: str, env: dict[str, str], command: tuple[str, ...] = ("serve",)
    ) -> Service:
        service = Service(name, env, self.logs, command)
        self.processes.append(service)
        service.start()
        return service

    def relay(self, name: str, store_url: str, broker_url: str) -> Relay:
        relay = Relay(name, store_url, broker_url, self.logs)
        self.processes.append(relay)
        relay.start()
        return relay

    def kill_all(self) -> None:
        """Kill what still runs; print each log's tail (shown when the test failed)."""
        for process in self.processes:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                process.kill()
        for process in self.processes:
            print(f"--- {process.name} (run {process.runs}) ---\n{process.log(20)}")


@contextlib.contextmanager
def launched(logs: Path) -> Iterator[Launcher]:
    launcher = Launcher(logs)
    try:
        yield launcher
    finally:
        launcher.kill_all()


@dataclass(frozen=True)
class Written:
    """A command's answer: the aggregate's id and the position of its append."""

    id: str
    position: int
    body: Json


class Api:
    """One bounded context's HTTP API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.AsyncClient(base_url=base_url, timeout=15)

    async def close(self) -> None:
        await self.client.aclose()

    async def reconnect(self) -> None:
        """A new connection pool, for a server that was killed and started again."""
        await self.client.aclose()
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=15)

    async def post(self, path: str, body: Json | None = None) -> Written:
        """POST a command; it must succeed and say where it landed (Chronik-Position)."""
        answer = await self.client.post(path, json=body or {})
        assert answer.status_code in (200, 201), f"POST {path}: {answer.status_code} {answer.text}"
        data: Json = answer.json()
        position = int(answer.headers["chronik-position"])
        assert position == data["position"]
        return Written(data["id"], position, data)

    async def refused(self, path: str, body: Json | None = None) -> httpx.Response:
        """POST a command that must be refused (a problem+json answer)."""
        answer = await self.client.post(path, json=body or {})
        assert answer.status_code >= 400, f"POST {path} was accepted: {answer.text}"
        assert answer.headers["content-type"] == "application/problem+json"
        return answer

    async def get(
        self, path: str, after: int | None = None, params: dict[str, str | int] | None = None
    ) -> Any:
        """GET a read model; with ``after``, one that includes the append at that position."""
        headers = {"Chronik-Min-Position": str(after)} if after is not None else {}
        answer = await self.client.get(path, headers=headers, params=params)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()

    async def find(self, path: str) -> Any:
        """GET something that may not exist yet: None for a 404."""
        answer = await self.client.get(path)
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()


@dataclass
class System:
    """Sales, campaigns and travel, wherever they run."""

    sales: Api
    campaigns: Api
    travel: Api

    @classmethod
    def embedded(cls, url: str) -> System:
        return cls(Api(f"{url}/sales"), Api(f"{url}/campaigns"), Api(f"{url}/travel"))

    async def close(self) -> None:
        for api in (self.sales, self.campaigns, self.travel):
            await api.close()

    async def reconnect(self) -> None:
        for api in (self.sales, self.campaigns, self.travel):
            await api.reconnect()


async def eventually(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    what: str,
    within: float = 20.0,
) -> T:
    """Read until ``done`` holds (the effects of messages arrive a little later)."""
    deadline = time.monotonic() + within
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within:g} s; last seen: {value!r}")
        await asyncio.sleep(0.1)


async def stream_events(stream_id: str, where: list[str]) -> list[Json]:
    """A stream's stored events, as ``chronik streams show`` prints them (one JSON each)."""
    process = await asyncio.create_subprocess_exec(
        CHRONIK,
        "streams",
        "show",
        stream_id,
        *where,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=BASE_ENV,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    events: list[Json] = []
    decoder, text, at = json.JSONDecoder(), out.decode().strip(), 0
    while at < len(text):
        event, at = decoder.raw_decode(text, at)
        events.append(event)
        at = len(text) - len(text[at:].lstrip())  # the blank between two documents
    return events


async def event_types(stream_id: str, where: list[str]) -> list[str]:
    return [str(e["type"]) for e in await stream_events(stream_id, where)]
