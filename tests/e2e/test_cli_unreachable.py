"""``chronik serve`` and ``chronik relay`` given a broker or database they cannot use.

docs/runtime.md: at start a service keeps trying to reach its broker for
``CHRONIK_BROKER_CONNECT_TIMEOUT`` seconds, then exits 1 with one line naming the setting,
the URL (password hidden) and the cause; a broker or database that answers but refuses
(a wrong password, a database that does not exist) is a configuration problem: exit 2 at
once. Never a traceback. Each command runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runtime_process import Done, chronik, free_port

from conftest import service_missing

WRONG = "wr0ng-pa55-never-printed"
RABBITMQ = "127.0.0.1:5672"
#: a broker-using context; the sample service has no published language or consumer
APP = "sales:spec"
#: the bounded wait, small here; the command must end well within the test's allowance
QUICK = {"CHRONIK_BROKER_CONNECT_TIMEOUT": "1"}


def _one_line_without_traceback(done: Done, code: int, *says: str) -> str:
    """The command exited with ``code`` after one line on stderr holding each of ``says``."""
    assert done.code == code, (done.out, done.err)
    assert "Traceback" not in done.out + done.err
    assert len(done.err_lines) == 1, done.err
    line = done.err_lines[0]
    for part in says:
        assert part in line, line
    return line


async def _serve(data_dir: Path, env: dict[str, str], *args: str) -> Done:
    return await chronik(
        "serve",
        "--port",
        str(free_port()),
        *args,
        env={"CHRONIK_APP": APP, "CHRONIK_DATA_DIR": str(data_dir), **QUICK, **env},
        within=60,
    )


async def _relay(data_dir: Path, broker_url: str) -> Done:
    return await chronik(
        "relay", "--broker-url", broker_url, "--data-dir", str(data_dir), env=QUICK, within=60
    )


def _closed_port_url(scheme: str) -> str:
    port = free_port()
    return f"nats://127.0.0.1:{port}" if scheme == "nats" else f"amqp://guest:x@127.0.0.1:{port}/"


# -- unreachable: exit 1 after the bounded wait -------------------------------------------


@pytest.mark.parametrize("scheme", ["nats", "amqp"])
async def test_serve_with_the_broker_on_a_closed_port_gives_up_after_the_connect_timeout(
    tmp_path: Path, scheme: str
) -> None:
    url = _closed_port_url(scheme)
    done = await _serve(tmp_path / "data", {"CHRONIK_BROKER_URL": url})
    line = _one_line_without_traceback(
        done, 1, "CHRONIK_BROKER_URL", url.replace(":x@", ":***@"), "connection refused", "1 s"
    )
    assert ":x@" not in line
    # The broker is tried first: a service that cannot start leaves no store behind.
    assert not (tmp_path / "data" / "chronik.db").exists()


@pytest.mark.parametrize("scheme", ["nats", "amqp"])
async def test_relay_with_the_broker_on_a_closed_port_gives_up_after_the_connect_timeout(
    tmp_path: Path, scheme: str
) -> None:
    url = _closed_port_url(scheme)
    done = await _relay(tmp_path / "data", url)
    _one_line_without_traceback(done, 1, "CHRONIK_BROKER_URL", "connection refused")


async def test_serve_with_a_broker_host_that_does_not_resolve_says_so(tmp_path: Path) -> None:
    done = await _serve(
        tmp_path / "data", {"CHRONIK_BROKER_URL": "nats://no-such-host.invalid:4222"}
    )
    _one_line_without_traceback(
        done, 1, "CHRONIK_BROKER_URL", "no-such-host.invalid", "host not found"
    )


# -- refused: exit 2 at once -----------------------------------------------------------


@pytest.fixture
async def rabbitmq() -> str:
    """The shared RabbitMQ's address, once it answers to guest/guest."""
    import aio_pika

    try:
        connection = await aio_pika.connect(f"amqp://guest:guest@{RABBITMQ}/", timeout=5)
    except Exception as exc:
        service_missing(f"RabbitMQ is not reachable at {RABBITMQ}: {exc!r}")
    await connection.close()
    return RABBITMQ


async def test_serve_with_a_wrong_rabbitmq_password_says_so_in_one_line_and_exits_2(
    tmp_path: Path, rabbitmq: str
) -> None:
    url = f"amqp://guest:{WRONG}@{rabbitmq}/"
    # A long wait allowed: a refusal is not waited out.
    done = await _serve(
        tmp_path / "data",
        {"CHRONIK_BROKER_URL": url, "CHRONIK_BROKER_CONNECT_TIMEOUT": "300"},
    )
    line = _one_line_without_traceback(
        done, 2, "CHRONIK_BROKER_URL", f"amqp://guest:***@{rabbitmq}/", "authentication failed"
    )
    assert WRONG not in done.out + done.err, line


async def test_relay_with_a_wrong_rabbitmq_password_says_so_in_one_line_and_exits_2(
    tmp_path: Path, rabbitmq: str
) -> None:
    done = await _relay(tmp_path / "data", f"amqp://guest:{WRONG}@{rabbitmq}/")
    _one_line_without_traceback(done, 2, "CHRONIK_BROKER_URL", "authentication failed")
    assert WRONG not in done.out + done.err


async def test_serve_with_a_rabbitmq_virtual_host_that_does_not_exist_exits_2(
    tmp_path: Path, rabbitmq: str
) -> None:
    url = f"amqp://guest:guest@{rabbitmq}/no-such-vhost"
    done = await _serve(tmp_path / "data", {"CHRONIK_BROKER_URL": url})
    _one_line_without_traceback(done, 2, "CHRONIK_BROKER_URL", "virtual host 'no-such-vhost'")


class _NatsWithPassword:
    """A nats-server of this test's own that wants a user and password."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / "nats-server.log"
        command = [executable, "-a", "127.0.0.1", "-p", str(self.port), "-l", str(self.log)]
        self.process = subprocess.Popen(
            [*command, "--user", "app", "--pass", "right"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def listening(self, within: float = 20) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"nats-server did not listen on {self.port} within {within:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)


@pytest.fixture
async def nats_with_password(tmp_path: Path) -> AsyncIterator[int]:
    executable = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None
    )
    if executable is None:
        service_missing("nats-server is not installed: this test starts its own")
    assert executable is not None
    server = _NatsWithPassword(executable, tmp_path)
    try:
        await server.listening()
        yield server.port
    finally:
        server.stop()


async def test_serve_with_a_wrong_nats_password_says_so_in_one_line_and_exits_2(
    tmp_path: Path, nats_with_password: int
) -> None:
    url = f"nats://app:{WRONG}@127.0.0.1:{nats_with_password}"
    done = await _serve(
        tmp_path / "data",
        {"CHRONIK_BROKER_URL": url, "CHRONIK_BROKER_CONNECT_TIMEOUT": "300"},
    )
    _one_line_without_traceback(done, 2, "CHRONIK_BROKER_URL", "authentication failed")
    assert WRONG not in done.out + done.err


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CHRONIK_BROKER_URL", "ftp://broker", "'ftp' is not supported"),
        ("CHRONIK_EVENT_STORE_URL", "mysql://db", "'mysql' is not supported"),
    ],
)
async def test_serve_with_an_unknown_url_scheme_names_the_setting_and_exits_2(
    tmp_path: Path, variable: str, value: str, says: str
) -> None:
    done = await _serve(tmp_path / "data", {variable: value})
    _one_line_without_traceback(done, 2, f"{variable} (from env)", says)
    assert not (tmp_path / "data").exists()


async def test_the_relay_refuses_the_in_process_broker_since_nothing_would_receive(
    tmp_path: Path,
) -> None:
    done = await _relay(tmp_path / "data", "memory://")
    _one_line_without_traceback(done, 2, "CHRONIK_BROKER_URL", "memory://")


# -- the event store -----------------------------------------------------------------------


async def test_serve_with_a_postgres_database_that_does_not_exist_exits_2_at_once(
    tmp_path: Path, postgres_url: str
) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database_chronik?connect_timeout=300"
    done = await _serve(tmp_path / "data", {"CHRONIK_EVENT_STORE_URL": url})
    _one_line_without_traceback(
        done, 2, "CHRONIK_EVENT_STORE_URL", 'database "no_such_database_chronik" does not exist'
    )


async def test_serve_with_postgres_on_a_closed_port_says_why_after_its_connect_timeout(
    tmp_path: Path,
) -> None:
    url = f"postgresql://app:{WRONG}@127.0.0.1:{free_port()}/x?connect_timeout=1"
    done = await _serve(tmp_path / "data", {"CHRONIK_EVENT_STORE_URL": url})
    _one_line_without_traceback(
        done, 1, "CHRONIK_EVENT_STORE_URL", "postgresql://app:***@127.0.0.1:", "connection refused"
    )
    assert WRONG not in done.out + done.err
