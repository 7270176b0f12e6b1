"""A cluster without a cluster: the rendered workloads as local processes behind nginx.

What Kubernetes would do for the distributed overlay, played by the test:

- the **kubelet**: ``Pod.start`` runs ``chronik`` with exactly the container's args, the
  environment and the mounted files ``materialise`` gives it, and stops it as the kubelet
  does (SIGTERM, then SIGKILL after the grace period);
- the **endpoints controller**: ``Cluster.sync`` puts a Service's pods that answer their
  readiness probe, and are not terminating, behind it;
- **ingress-nginx**: ``Ingress`` turns the rendered Ingress rules into an nginx
  configuration (a Prefix path matches the path and everything under it; the prefix is
  passed on; an upstream per Service; ingress-nginx's defaults for retries and upstream
  keep-alive) and reloads nginx when the endpoints change. nginx runs as ``nobody``.

Only the external addresses are replaced: PostgreSQL and NATS point at 127.0.0.1 (a
schema and roles of the rehearsal's own, a NATS namespace of its own), each pod gets a
free port of its own (in a cluster each has its own IP).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from dockerfile_model import DOCKERFILE, stages
from rendered_manifests import (
    TEST_SECRET,
    Obj,
    container,
    labels_match,
    materialise,
    named,
    of_kind,
    port_of,
    render,
)

CHRONIK = str(Path(sys.executable).with_name("chronik"))
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def image_env() -> dict[str, str]:
    """The CHRONIK_* variables the image sets; the pod's own override them."""
    env = stages(DOCKERFILE.read_text())[-1].env
    return {k: v for k, v in env.items() if k.startswith("CHRONIK_")}


async def eventually(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, within: float = 30.0
) -> T:
    """Read until ``done`` holds; an AssertionError with the last value after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within:g} s; last seen: {value!r}")
        await asyncio.sleep(0.1)


@dataclass
class Pod:
    """One replica of a workload, run as the kubelet would run its chronik container."""

    name: str
    workload: Obj
    env: dict[str, str]
    args: list[str]
    cwd: Path
    port: int | None
    process: subprocess.Popen[bytes] | None = None
    terminating: bool = False
    ready: bool = False

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.workload["spec"]["template"]["metadata"]["labels"]
        return labels

    @property
    def log(self) -> Path:
        return self.cwd / "chronik.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [CHRONIK, *self.args],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}):\n" + "\n".join(text.splitlines()[-lines:])

    async def readyz(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        """The readiness probe's answer (its JSON), or None when nothing answers."""
        if self.port is None or not self.running:
            return None
        try:
            answer = await client.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5)
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = answer.json() if answer.content else {}
        body["_status"] = answer.status_code
        return body

    def terminate(self) -> None:
        """SIGTERM, as the kubelet sends it; the endpoints forget the pod at once."""
        self.terminating = True
        self.ready = False
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a node gone, an OOM kill; nothing runs after it."""
        self.terminating = True
        self.ready = False
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    async def exited(self, within: float) -> int:
        assert self.process is not None
        process = self.process
        deadline = time.monotonic() + within
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{self.name} did not exit within {within:g} s\n{self.tail()}")
            await asyncio.sleep(0.1)
        return process.returncode


@dataclass
class Postgres:
    """The operator's part for PostgreSQL: a schema per context owned by the migrator role,
    whose tables the runtime role may read and write (default privileges), nothing more."""

    url: str  # postgresql://postgres@127.0.0.1:5432/test, a superuser's
    prefix: str
    owner: str = ""
    runtime: str = ""

    def __post_init__(self) -> None:
        self.owner = f"{self.prefix}_owner"
        self.runtime = f"{self.prefix}_app"

    def schema(self, context: str) -> str:
        return f"{self.prefix}_{context}"

    def _run(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # our own names only

    def prepare(self, contexts: tuple[str, ...]) -> None:
        statements = [f"CREATE ROLE {self.owner} LOGIN", f"CREATE ROLE {self.runtime} LOGIN"]
        for context in contexts:
            s, o, r = self.schema(context), self.owner, self.runtime
            statements += [
                f"CREATE SCHEMA {s} AUTHORIZATION {o}",
                f"GRANT USAGE ON SCHEMA {s} TO {r}",
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} "
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}",
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} "
                f"GRANT USAGE, SELECT ON SEQUENCES TO {r}",
            ]
        self._run(*statements)

    def drop(self, contexts: tuple[str, ...]) -> None:
        with contextlib.suppress(Exception):
            self._run(*[f"DROP SCHEMA IF EXISTS {self.schema(c)} CASCADE" for c in contexts])
        for role in (self.runtime, self.owner):
            with contextlib.suppress(Exception):
                self._run(f"DROP OWNED BY {role}", f"DROP ROLE {role}")

    def may_create(self, role: str, context: str) -> bool:
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                "SELECT has_schema_privilege(%s, %s, 'CREATE') "
                "OR has_database_privilege(%s, current_database(), 'CREATE')",
                (role, self.schema(context), role),
            ).fetchone()
            return bool(row and row[0])

    def count(self, context: str, sql: str) -> int:
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql.replace("{s}", self.schema(context))).fetchone()
            return int(row[0]) if row else 0


class Ingress:
    """ingress-nginx for the rendered Ingress: an nginx of its own, run as ``nobody``."""

    def __init__(self, ingress: Obj, nginx: str) -> None:
        self.ingress = ingress
        self.nginx = nginx
        self.port = free_port()
        # Readable and writable by nobody: nginx's workers and, unprivileged, its master.
        self.root = Path(tempfile.mkdtemp(prefix="chronik-ingress-"))
        self.root.chmod(0o755)
        (self.root / "tmp").mkdir()
        self.process: subprocess.Popen[bytes] | None = None
        self.upstreams: dict[str, list[int]] = {}
        self.reloads = 0

    @property
    def routes(self) -> list[tuple[str, str, str]]:
        """(path, pathType, Service) of every rule, as the Ingress lists them."""
        found = []
        for rule in self.ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                found.append((path["path"], path["pathType"], path["backend"]["service"]["name"]))
        return found

    def config(self) -> str:
        upstreams = []
        for service, ports in sorted(self.upstreams.items()):
            # An upstream without a ready pod answers 503, as ingress-nginx does.
            servers = "".join(f"    server 127.0.0.1:{p} max_fails=0;\n" for p in ports)
            servers = servers or "    server 127.0.0.1:9 down;\n"
            upstreams.append(f"  upstream {service} {{\n{servers}    keepalive 32;\n  }}\n")
        locations = []
        for path, kind, service in self.routes:
            assert kind in ("Prefix", "Exact"), f"pathType {kind}: the rehearsal knows no other"
            proxy = f"proxy_pass http://{service};"
            if kind == "Exact":
                locations.append(f"    location = {path} {{ {proxy} }}\n")
            else:  # Prefix: the path itself and every path under it, element by element
                base = path.rstrip("/")
                locations.append(f"    location = {base} {{ {proxy} }}\n")
                locations.append(f"    location {base}/ {{ {proxy} }}\n")
        root = self.root
        return (
            "worker_processes 1;\n"
            f"pid {root}/nginx.pid;\n"
            f"error_log {root}/error.log warn;\n"
            "daemon off;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"  access_log {root}/access.log;\n"
            f"  client_body_temp_path {root}/tmp/body;\n"
            f"  proxy_temp_path {root}/tmp/proxy;\n"
            f"  fastcgi_temp_path {root}/tmp/fastcgi;\n"
            f"  uwsgi_temp_path {root}/tmp/uwsgi;\n"
            f"  scgi_temp_path {root}/tmp/scgi;\n"
            # ingress-nginx's defaults: keep-alive upstreams, retry another pod on a
            # connection error or timeout (never a POST that may have arrived)
            "  proxy_http_version 1.1;\n"
            '  proxy_set_header Connection "";\n'
            "  proxy_set_header Host $host;\n"
            "  proxy_set_header X-Forwarded-For $remote_addr;\n"
            "  proxy_set_header X-Forwarded-Proto $scheme;\n"
            "  proxy_next_upstream error timeout;\n"
            "  proxy_next_upstream_tries 3;\n"
            "  proxy_connect_timeout 5s;\n"
            "  proxy_read_timeout 60s;\n"
            + "".join(upstreams)
            + f"  server {{\n    listen 127.0.0.1:{self.port};\n"
            + "".join(locations)
            + "    location / { return 404; }\n  }\n}\n"
        )

    def _write(self) -> None:
        (self.root / "nginx.conf").write_text(self.config())
        (self.root / "nginx.conf").chmod(0o644)
        _give_to_nobody(self.root)

    def _command(self) -> list[str]:
        command = [self.nginx, "-p", str(self.root), "-c", str(self.root / "nginx.conf")]
        command += ["-e", str(self.root / "error.log")]
        if os.geteuid() == 0:  # unprivileged, as the controller's nginx runs
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        return command

    def check(self, upstreams: dict[str, list[int]]) -> str:
        """``nginx -t`` on the configuration: '' when it is valid, else nginx's words."""
        self.upstreams = {s: sorted(p) for s, p in upstreams.items()}
        self._write()
        done = subprocess.run(
            [*self._command(), "-t"], capture_output=True, text=True, timeout=30, check=False
        )
        return "" if done.returncode == 0 else done.stderr

    def start(self, upstreams: dict[str, list[int]]) -> None:
        self.upstreams = {s: sorted(p) for s, p in upstreams.items()}
        self._write()
        with (self.root / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen(
                self._command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def update(self, upstreams: dict[str, list[int]]) -> bool:
        """New endpoints: rewrite the configuration and reload (SIGHUP) if they changed.

        A reload is graceful: the old workers finish the requests they have.
        """
        wanted = {s: sorted(p) for s, p in upstreams.items()}
        if wanted == self.upstreams:
            return False
        self.upstreams = wanted
        self._write()
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)
        self.reloads += 1
        return True

    async def serving(self, client: httpx.AsyncClient, within: float = 30.0) -> None:
        async def answer() -> int:
            try:
                return (await client.get(f"{self.url}/nowhere")).status_code
            except httpx.HTTPError:
                return 0

        await eventually(answer, lambda s: s == 404, "nginx answering", within)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _give_to_nobody(root: Path) -> None:
    if os.geteuid() != 0:
        return
    nobody = pwd.getpwnam("nobody")
    for path in [root, *root.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


@dataclass
class Cluster:
    """The distributed overlay's objects, their pods, Services and Ingress, on this machine."""

    root: Path
    postgres: Postgres
    nats_url: str
    objects: list[Obj] = field(default_factory=lambda: render("distributed"))
    pods: list[Pod] = field(default_factory=list)
    ingress: Ingress | None = None
    _counts: dict[str, int] = field(default_factory=dict)

    @property
    def secret(self) -> dict[str, str]:
        """The Secret chronik as the operator made it for these servers."""
        return {
            **TEST_SECRET,
            "broker-url": self.nats_url,
            "postgres-user": self.postgres.runtime,
            "postgres-migrator-user": self.postgres.owner,
        }

    def workload(self, kind: str, name: str) -> Obj:
        return named(self.objects, kind, name)

    def _external(self, env: dict[str, str]) -> dict[str, str]:
        """The rendered env with the external addresses made this machine's."""
        store = env.get("CHRONIK_EVENT_STORE_URL")
        if store is not None:
            parts = urlsplit(store)
            assert parts.hostname == "postgres", store  # the ExternalName Service
            schema = dict(p.split("=", 1) for p in parts.query.split("&"))["schema"]
            base = urlsplit(self.postgres.url)
            env["CHRONIK_EVENT_STORE_URL"] = (
                urlunsplit(
                    (parts.scheme, f"{base.hostname}:{base.port or 5432}", base.path, "", "")
                )
                + f"?schema={self.postgres.prefix}_{schema}"
            )
        return env

    def pod(self, kind: str, name: str) -> Pod:
        """A new replica of a workload: its files written, its env, a port of its own."""
        workload = self.workload(kind, name)
        number = self._counts[name] = self._counts.get(name, 0) + 1
        pod_name = f"{name}-{number}"
        where = self.root / pod_name
        env = materialise(self.objects, workload, where / "fs", self.secret, image_env())
        env = self._external(env)
        spec = container(workload)
        port = None
        if "readinessProbe" in spec:
            declared = port_of(workload, spec["readinessProbe"]["httpGet"]["port"])
            assert env.get("CHRONIK_HTTP_PORT") == str(declared), env
            port = free_port()
            env["CHRONIK_HTTP_PORT"] = str(port)
        # The image's WORKDIR, here the pod's own directory.
        pod = Pod(pod_name, workload, {"PATH": "/usr/bin:/bin", **env}, spec["args"], where, port)
        self.pods.append(pod)
        return pod

    async def run_job(self, name: str, within: float = 120.0) -> Pod:
        """A Job's pod to completion (restartPolicy OnFailure: a failure fails the test)."""
        job = self.pod("Job", name)
        job.start()
        code = await job.exited(within)
        assert code == 0, f"Job {name} failed ({code})\n{job.tail()}"
        return job

    def services(self) -> list[Obj]:
        return [s for s in of_kind(self.objects, "Service") if s["spec"].get("selector")]

    def endpoints(self) -> dict[str, list[int]]:
        """Per Service: the ports of its pods that are ready and not terminating."""
        found: dict[str, list[int]] = {}
        for service in self.services():
            selector = service["spec"]["selector"]
            found[service["metadata"]["name"]] = [
                p.port
                for p in self.pods
                if p.port is not None
                and p.ready
                and not p.terminating
                and p.running
                and labels_match(selector, p.labels)
            ]
        return found

    async def probe(self, client: httpx.AsyncClient) -> None:
        """Every long-running pod's readiness probe, once; the endpoints follow."""
        live = [p for p in self.pods if p.port is not None and not p.terminating]
        answers = await asyncio.gather(*(p.readyz(client) for p in live))
        for pod, answer in zip(live, answers, strict=True):
            pod.ready = answer is not None and answer["_status"] == 200
        if self.ingress is not None and self.ingress.process is not None:
            self.ingress.update(self.endpoints())

    async def controller(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """The readiness probes and the endpoints controller, every half second."""
        while not stop.is_set():
            await self.probe(client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def wait_ready(self, client: httpx.AsyncClient, pods: list[Pod], within: float) -> None:
        async def states() -> dict[str, bool]:
            await self.probe(client)
            for pod in pods:
                if not pod.running:
                    code = pod.process and pod.process.returncode
                    raise AssertionError(f"{pod.name} exited ({code})\n{pod.tail()}")
            return {p.name: p.ready for p in pods}

        try:
            await eventually(states, lambda s: all(s.values()), "every pod ready", within)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + "\n".join(p.tail() for p in pods)) from None

    def stop_all(self) -> None:
        for pod in self.pods:
            if pod.process is not None and pod.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pod.process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    pod.process.wait(timeout=10)
        if self.ingress is not None:
            self.ingress.stop()


def unique_prefix() -> str:
    return f"reh_{uuid.uuid4().hex[:10]}"
