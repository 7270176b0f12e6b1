"""Messaging under faults: a relay killed with SIGKILL, a broker that goes away (guarantees 4, 8).

The relay runs in a real process (``messaging_relay_worker.py``) that the test kills
at random moments and starts again. A broker outage happens to a private server: a
nats-server on a free port with its own store directory, or a RabbitMQ node under a
name and ports of its own, stopped and started by the test; the shared servers are
never touched. Each test ends with the consumer's store as the
witness, as in ``test_messaging_flow``: every message's effect once, in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg
import pytest
from messaging_harness import (
    NATS_URL,
    ConsumingContext,
    CountingBroker,
    Producer,
    assert_exactly_once_in_order,
    close_broker,
    drained,
    forget_broker_state,
    nats_problem,
    rabbitmq_problem,
    running_relay,
    subscribed,
    unique_context,
    wait_until,
)

from chronik.adapters import open_broker
from chronik.adapters.nats import NatsBroker
from chronik.adapters.rabbitmq import RabbitMQBroker
from chronik.messaging import OutgoingMessage, Relay
from chronik.messaging.port import Broker
from conftest import service_missing

B = TypeVar("B", bound=Broker)

WORKER = Path(__file__).with_name("messaging_relay_worker.py")
KILLS = 20


@dataclass(frozen=True)
class Databases:
    """The producer's and the consumer's PostgreSQL schemas."""

    producer: str
    consumer: str


@pytest.fixture
def databases(postgres_url: str) -> Iterator[Databases]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield Databases(f"{postgres_url}?schema={schema}_p", f"{postgres_url}?schema={schema}_c")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for suffix in ("p", "c"):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema}_{suffix} CASCADE")


@pytest.fixture
async def shared_nats() -> str:
    problem = await nats_problem(NATS_URL)
    if problem is not None:
        service_missing(problem)
    return NATS_URL


def _streams(count: int) -> list[str]:
    return [f"account-{i:03d}" for i in range(count)]


# -- a. the relay killed -----------------------------------------------------------------


class WorkerProcess:
    """A worker script in a real process, its reports (stdout lines) read as they come.

    It says ``ready`` once started; every other line goes to ``report``.
    """

    what = "worker"
    start_within = 30.0

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.is_ready = asyncio.Event()
        self.progressed = asyncio.Event()  # set on each report, and at the end of its output
        self.reader_done = False
        self._reader = asyncio.create_task(self._read())

    def report(self, line: str) -> None:
        raise NotImplementedError

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            line = raw.decode().strip()
            if line == "ready":
                self.is_ready.set()
            else:
                self.report(line)
            self.progressed.set()
        self.reader_done = True
        self.progressed.set()

    async def ready(self) -> None:
        exited = asyncio.create_task(self.process.wait())
        ready = asyncio.create_task(self.is_ready.wait())
        done, _ = await asyncio.wait(
            {exited, ready}, timeout=self.start_within, return_when="FIRST_COMPLETED"
        )
        exited.cancel()
        ready.cancel()
        if ready not in done:
            raise AssertionError(
                f"the {self.what} did not start (exit code {self.process.returncode}): "
                f"{self.log.read_text()[-3000:]}"
            )

    async def reported(self, count: Callable[[], int], target: int, within: float) -> None:
        """Return once ``count()`` reached ``target``, the output ended, or ``within`` s passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while count() < target and not self.reader_done:
                    self.progressed.clear()
                    await self.progressed.wait()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()  # SIGKILL
        await self.process.wait()
        await self._reader
        assert self.process.returncode == -signal.SIGKILL, self.log.read_text()[-3000:]


class RelayProcess(WorkerProcess):
    """messaging_relay_worker.py in a real process: its state and count of relayed messages."""

    what = "relay worker"

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.state = "starting"
        self.relayed = 0
        super().__init__(process, log)

    def report(self, line: str) -> None:
        state, relayed = line.split()
        self.state, self.relayed = state, int(relayed)

    @classmethod
    async def start(cls, store_url: str, broker_url: str, log: Path, batch: int) -> RelayProcess:
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                store_url,
                broker_url,
                str(batch),
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        return cls(process, log)

    async def relaying(self, count: int, *, within: float) -> None:
        """Return once it reported ``count`` messages published, or ``within`` s passed."""
        await self.reported(lambda: self.relayed, count, within)


@dataclass(frozen=True)
class Kill:
    state: str  # what the relay last said it was doing
    relayed: int  # what it had marked published in its life
    pending: int  # outbox rows not yet marked published when it died


@pytest.mark.slow
async def test_killing_the_relay_twenty_times_loses_no_message_and_keeps_stream_order(
    databases: Databases, shared_nats: str, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    producer = await Producer.open(databases.producer, unique_context())
    consuming = await ConsumingContext.open(databases.consumer, producer)
    broker = CountingBroker(await open_broker(shared_nats))
    log = tmp_path / "relay.log"
    kills: list[Kill] = []
    try:
        async with subscribed(consuming, broker):
            streams = _streams(50)
            await producer.write(streams, 80, batch=10)  # a backlog before any relay runs
            # ... and the rest while the relays come and go.
            writer = asyncio.create_task(
                producer.write(streams, 20, batch=5, writers=2, pause=0.05)
            )
            for _ in range(KILLS):
                relay = await RelayProcess.start(databases.producer, shared_nats, log, batch=20)
                try:
                    await relay.ready()
                    # Die after a random share of the backlog, a little into the next batch.
                    share = rng.randint(0, min(300, await producer.pending()))
                    await relay.relaying(share, within=30)
                    await asyncio.sleep(rng.uniform(0.0, 0.02))
                    pending = await producer.pending()
                finally:
                    await relay.kill()
                kills.append(Kill(relay.state, relay.relayed, pending))
            await writer
            assert producer.written == 5000

            last = await RelayProcess.start(databases.producer, shared_nats, log, batch=20)
            try:
                await last.ready()
                await drained(producer, consuming, within=300)
            finally:
                await last.kill()
            await asyncio.sleep(0.5)  # room for a late duplicate to show

        note = f"(seed {seed}; kills as (state, relayed, pending): {kills})"
        await assert_exactly_once_in_order(producer, consuming)
        # The kills landed while the relay had work: some while it was relaying.
        assert sum(k.pending > 0 for k in kills) >= KILLS // 2, note
        assert any(k.state == "relaying" for k in kills), note
        # Republished messages kept their event id, so JetStream dropped every copy.
        copies = {m: n for m, n in broker.deliveries.items() if n > 1}
        assert not copies, f"JetStream delivered copies of {len(copies)} messages {note}"
    finally:
        await close_broker(broker)
        await consuming.store.close()
        await producer.store.close()
        await forget_broker_state(shared_nats, consuming.name, producer.context)


# -- b. the broker stopped ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateNats:
    """A nats-server of this test's own: a free port, a JetStream directory in tmp_path."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = directory / "jetstream"
        self.log = directory / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start the server and wait until it answers, JetStream included."""
        self._spawn()

        async def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            return await nats_problem(self.url) is None

        await wait_until(f"nats-server on port {self.port}", answers, within=20, every=0.1)

    def _spawn(self) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            [
                self.executable,
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.store),
                "-l",
                str(self.log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop this server (only this one: it is our child process)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(sig)
                self.process.wait(timeout=20)
            self.process = None

    def broker(self) -> Broker:
        # A short ack timeout: the acks of what was on the wire when the server went never
        # come, and the relay gives up on them sooner.
        return NatsBroker(self.url, ack_timeout=0.5)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    executable = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None
    )
    if executable is None:
        service_missing("nats-server is not installed: the broker fault tests start their own")
    assert executable is not None
    server = PrivateNats(executable, tmp_path)
    yield server
    if server.process is not None and server.process.poll() is None:
        server.resume()  # a paused server would not hear SIGTERM
    server.stop()


class PrivateRabbitMQ:
    """A RabbitMQ node of this test's own: its node name, free ports, its own directory.

    rabbitmq-server run as root drops to the rabbitmq user, so the node's directory is
    made outside tmp_path (which only root may enter) and given to that user. The node
    reads a config file of its own, not the shared node's, and is stopped by its name.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.node = f"chronik{uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/?reconnect_interval=0.5"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(directory / "feature_flags"),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_PID_FILE": str(directory / "node.pid"),
        }
        (directory / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (directory / "enabled_plugins").write_text("[].\n")
        for sub in ("mnesia", "log"):
            (directory / sub).mkdir()
        for path in (directory, *directory.iterdir()):
            shutil.chown(path, "rabbitmq", "rabbitmq")

    async def start(self) -> None:
        self._spawn()

        async def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited: {self._log_tail()}")
            return await rabbitmq_problem(self.url) is None

        await wait_until(f"RabbitMQ node {self.node}", answers, within=60, every=0.25)

    def _spawn(self) -> None:
        assert self.process is None
        with (self.directory / "server.out").open("ab") as out:
            self.process = subprocess.Popen(
                ["rabbitmq-server"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        """Stop this node, by its name; the shared node is another."""
        if self.process is None:
            return
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, "stop", str(self.directory / "node.pid")],
            capture_output=True,
            timeout=60,
            check=False,
        )
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pid_file = self.directory / "node.pid"
            if pid_file.exists():  # the node's own Erlang VM, by the pid it wrote
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def broker(self) -> Broker:
        return RabbitMQBroker(self.url, confirm_timeout=2.0)

    def _log_tail(self) -> str:
        return (self.directory / "server.out").read_text(errors="replace")[-2000:]


@pytest.fixture
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        service_missing("rabbitmq-server is not installed: the broker fault tests start their own")
    if os.geteuid() != 0:
        service_missing("a private RabbitMQ node needs root (rabbitmq-server runs as rabbitmq)")
    directory = Path(tempfile.mkdtemp(prefix="chronik-rabbitmq-"))
    try:
        node = PrivateRabbitMQ(directory)
        try:
            yield node
        finally:
            node.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class PrivateBroker(Protocol):
    async def start(self) -> None: ...

    def stop(self) -> None: ...

    def broker(self) -> Broker: ...


@pytest.fixture(params=["nats", "rabbitmq"])
def private_broker(request: pytest.FixtureRequest) -> PrivateBroker:
    server: PrivateBroker = request.getfixturevalue(f"private_{request.param}")
    return server


@contextlib.asynccontextmanager
async def _connected(broker: B) -> AsyncIterator[B]:
    await broker.connect()
    try:
        yield broker
    finally:
        await close_broker(broker)


@pytest.mark.slow
async def test_a_broker_outage_grows_the_outbox_which_drains_once_the_broker_is_back(
    databases: Databases, private_broker: PrivateBroker
) -> None:
    await private_broker.start()
    producer = await Producer.open(databases.producer, unique_context())
    consuming = await ConsumingContext.open(databases.consumer, producer)
    broker = private_broker.broker()
    relay = Relay(
        producer.store, broker, storage=producer.outbox.storage, batch=64, max_backoff=1.0
    )
    try:
        async with (
            _connected(broker),
            subscribed(consuming, broker),
            running_relay(relay),
        ):
            streams = _streams(20)
            before = asyncio.create_task(producer.write(streams, 25, batch=5, pause=0.01))

            async def flowing() -> bool:
                return consuming.consumer.handled >= 150

            await wait_until("the first messages to flow", flowing, within=30)
            private_broker.stop()  # a clean stop: the broker keeps what it acked
            await before
            backlog = [await producer.pending()]
            for _ in range(8):  # several seconds without a broker, appends going on
                await producer.write(streams, 3, batch=3)
                await asyncio.sleep(0.4)
                backlog.append(await producer.pending())
            # Nothing written in the outage can have been marked published: no broker acked it.
            assert backlog[-1] >= 8 * 20 * 3, f"the outbox did not grow: {backlog}"
            assert backlog[-1] > backlog[0], f"the outbox did not grow: {backlog}"
            assert relay.status().state != "idle"

            await private_broker.start()  # the same port and store directory
            await producer.write(streams, 26, batch=5, pause=0.005)
            await drained(producer, consuming, within=300, stall=30)
            await asyncio.sleep(0.5)  # room for a late duplicate to show
        await assert_exactly_once_in_order(producer, consuming)
        assert producer.written == 1500
    finally:
        await consuming.store.close()
        await producer.store.close()


async def test_publishing_to_a_nats_server_that_stopped_answering_fails_within_the_ack_timeout(
    private_nats: PrivateNats,
) -> None:
    await private_nats.start()
    context = unique_context()
    async with _connected(NatsBroker(private_nats.url, ack_timeout=0.5)) as broker:
        messages = [
            OutgoingMessage(f"{context}-{i}", f"{context}.numbered.v1", "account-000", b"{}")
            for i in range(12)
        ]
        assert await broker.publish(messages[:2]) == [None, None]
        # SIGSTOP: the connection stays up, nothing is acked. (The broker once waited out
        # the ack timeout message after message: a relay batch of 256 took 43 minutes.)
        private_nats.pause()
        publishing = asyncio.create_task(broker.publish(messages[2:]))
        try:
            done, _ = await asyncio.wait({publishing}, timeout=2)  # ack timeout 0.5 s
        finally:
            private_nats.resume()
        outcomes = await publishing
        assert done, f"10 messages took over 2 s to fail with ack_timeout=0.5 s: {outcomes[:2]}"


# -- c. the consumer killed ---------------------------------------------------------------

CONSUMER_WORKER = Path(__file__).with_name("messaging_consumer_worker.py")
CONSUMER_KILLS = 12


class ConsumerProcess(WorkerProcess):
    """messaging_consumer_worker.py in a real process, its count of handled messages read."""

    what = "consumer worker"
    start_within = 60.0

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.handled = 0
        super().__init__(process, log)

    def report(self, line: str) -> None:
        if line.startswith("handled "):
            self.handled = int(line.split()[1])

    @classmethod
    async def start(
        cls, store_url: str, broker_url: str, context: str, name: str, log: Path
    ) -> ConsumerProcess:
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(CONSUMER_WORKER),
                store_url,
                broker_url,
                context,
                name,
                "8",  # lanes
                "16",  # batch: 32 held at most
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        return cls(process, log)

    async def handling(self, count: int, *, within: float) -> None:
        """Return once it reported ``count`` messages handled, or ``within`` s passed."""
        await self.reported(lambda: self.handled, count, within)


@pytest.fixture(params=["nats", "rabbitmq"])
async def shared_broker(request: pytest.FixtureRequest) -> str:
    from messaging_harness import RABBITMQ_URL

    url = NATS_URL if request.param == "nats" else RABBITMQ_URL
    problem = await (nats_problem(url) if request.param == "nats" else rabbitmq_problem(url))
    if problem is not None:
        service_missing(problem)
    return url


@pytest.mark.slow
async def test_killing_a_consumer_with_many_streams_in_flight_keeps_each_effect_once_in_order(
    databases: Databases, shared_broker: str, tmp_path: Path
) -> None:
    # Many streams, eight lanes: the consumer dies with messages of several streams in
    # hand, some handled and not acked, others fetched and not started. Each new process
    # must take up every stream where its effects end, neither twice nor out of order.
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    producer = await Producer.open(databases.producer, unique_context())
    consuming = await ConsumingContext.open(databases.consumer, producer)  # to read, not run
    relay_broker = await open_broker(shared_broker)
    relay = Relay(
        producer.store, relay_broker, storage=producer.outbox.storage, batch=64, idle_wait=0.1
    )
    log = tmp_path / "consumer.log"
    kills: list[int] = []  # what each process had handled when it died
    try:
        # Subscribed once, so that the broker keeps what comes before a consumer runs
        # (RabbitMQ drops what no queue is bound for).
        async with subscribed(consuming, relay_broker):
            pass
        async with running_relay(relay):
            streams = _streams(100)
            await producer.write(streams, 20, batch=5)  # a backlog before any consumer runs
            writer = asyncio.create_task(
                producer.write(streams, 10, batch=2, writers=4, pause=0.02)
            )
            for _ in range(CONSUMER_KILLS):
                process = await ConsumerProcess.start(
                    databases.consumer, shared_broker, producer.context, consuming.name, log
                )
                try:
                    await process.ready()
                    await process.handling(rng.randint(1, 250), within=30)
                    await asyncio.sleep(rng.uniform(0.0, 0.05))
                finally:
                    await process.kill()
                kills.append(process.handled)
            await writer
            assert producer.written == 3000

            last = await ConsumerProcess.start(
                databases.consumer, shared_broker, producer.context, consuming.name, log
            )
            try:
                await last.ready()

                async def all_effected() -> bool:
                    return (
                        await producer.pending() == 0
                        and len(await consuming.seen()) >= producer.written
                    )

                await wait_until("every effect", all_effected, within=300, every=0.25)
                await asyncio.sleep(0.5)  # room for a late second effect to show
            finally:
                await last.kill()

        note = f"(seed {seed}; handled by each killed process: {kills})"
        assert sum(k > 0 for k in kills) >= CONSUMER_KILLS // 2, note
        await assert_exactly_once_in_order(producer, consuming)
    finally:
        await close_broker(relay_broker)
        await consuming.store.close()
        await producer.store.close()
        await forget_broker_state(shared_broker, consuming.name, producer.context)
