"""The Kubernetes manifests as kubectl renders them, and a pod of them made into a process.

``render`` runs ``kubectl kustomize`` on an overlay. ``materialise`` gives one workload's
container what the kubelet would: its environment (``env`` and ``envFrom``, ConfigMap
and Secret references resolved, ``$(VAR)`` expanded) and its mounted files (ConfigMaps
and the Secret written as files, empty directories for the other volumes) under a
directory of the test's own, with every variable that names a mounted path pointed there.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("embedded", "distributed")
CONTEXTS = ("sales", "campaigns", "travel")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
KUBECTL = Path(sys.executable).with_name("kubectl")
#: the container every chronik workload names so (deploy/k8s/base/pod patches it)
CONTAINER = "chronik"

#: a Secret chronik as the operator would create it, with values for tests only
TEST_SECRET = {
    "api-token": "rehearsal-token-3f9c",
    "broker-url": "nats://nats:4222",
    "postgres-user": "chronik",
    "postgres-password": "runtime-password",
    "postgres-migrator-user": "chronik_owner",
    "postgres-migrator-password": "owner-password",
}

Obj = dict[str, Any]


@functools.cache
def _rendered(overlay: str) -> str:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed:\n{done.stderr}")
    return done.stdout


def render(overlay: str) -> list[Obj]:
    """The objects ``kubectl kustomize deploy/k8s/overlays/OVERLAY`` prints (fresh copies)."""
    return [doc for doc in yaml.safe_load_all(_rendered(overlay)) if doc]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    """The one object of that kind and name; an assertion names what is missing."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def of_kind(objects: list[Obj], *kinds: str) -> list[Obj]:
    return [o for o in objects if o["kind"] in kinds]


def workloads(objects: list[Obj]) -> list[Obj]:
    return of_kind(objects, *WORKLOAD_KINDS)


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Obj) -> Obj:
    """The chronik container of a workload."""
    found: list[Obj] = [c for c in pod_spec(workload)["containers"] if c["name"] == CONTAINER]
    assert len(found) == 1, f"{workload['metadata']['name']}: no container {CONTAINER!r}"
    return found[0]


def port_of(workload: Obj, port: int | str) -> int:
    """A container port by number or name, as a probe or a Service's targetPort names it."""
    for declared in container(workload).get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"{workload['metadata']['name']} declares no port {port!r}")


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _config_map(objects: list[Obj], name: str) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", name).get("data", {})
    return data


def _secret_value(secret: Mapping[str, str], ref: Obj) -> str:
    assert ref["name"] == "chronik", f"a Secret other than chronik: {ref['name']}"
    assert ref["key"] in secret, f"the Secret chronik has no key {ref['key']!r}"
    return secret[ref["key"]]


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' dependent variables: $(NAME) of an earlier variable, $$ for $."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


def container_env(
    objects: list[Obj], workload: Obj, secret: Mapping[str, str] = TEST_SECRET
) -> dict[str, str]:
    """The variables the kubelet sets for the chronik container (``envFrom``, then ``env``)."""
    spec = container(workload)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = _config_map(objects, source["configMapRef"]["name"])
        else:
            assert source["secretRef"]["name"] == "chronik"
            data = dict(secret)
        env.update({prefix + k: v for k, v in data.items()})
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = _expand(str(var["value"]), env)
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            env[var["name"]] = _secret_value(secret, source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = _config_map(objects, ref["name"])[ref["key"]]
        else:
            raise AssertionError(f"{var['name']}: a source the rehearsal does not know")
    return env


@dataclass(frozen=True)
class Mount:
    """A volume as the container sees it: where, and the files in it (None: a directory)."""

    path: str
    volume: str
    files: dict[str, str] | None


def mounts(
    objects: list[Obj], workload: Obj, secret: Mapping[str, str] = TEST_SECRET
) -> list[Mount]:
    """Each volume mount of the chronik container, with the files a ConfigMap or Secret holds."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
    found = []
    for mount in container(workload).get("volumeMounts", []):
        name = mount["name"]
        files: dict[str, str] | None = None
        if name in claims:
            files = None
        elif "configMap" in volumes[name]:
            source = volumes[name]["configMap"]
            files = _projected(_config_map(objects, source["name"]), source.get("items"))
        elif "secret" in volumes[name]:
            source = volumes[name]["secret"]
            assert source["secretName"] == "chronik"
            files = _projected(dict(secret), source.get("items"))
        else:
            assert "emptyDir" in volumes[name], f"volume {name}: a kind the tests do not know"
        found.append(Mount(mount["mountPath"], name, files))
    return found


def _projected(data: dict[str, str], items: list[Obj] | None) -> dict[str, str]:
    if items is None:
        return dict(data)
    missing = [i["key"] for i in items if i["key"] not in data]
    assert not missing, f"keys the volume projects but the source lacks: {missing}"
    return {i["path"]: data[i["key"]] for i in items}


def materialise(
    objects: list[Obj],
    workload: Obj,
    root: Path,
    secret: Mapping[str, str] = TEST_SECRET,
    image_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Write the container's mounted files under ``root``; its env, with paths pointed there.

    ``image_env`` is what the image sets (its ENV), below what the pod sets.
    """
    placed: list[tuple[str, Path]] = []
    for mount in mounts(objects, workload, secret):
        where = root / mount.path.lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        for file, content in (mount.files or {}).items():
            (where / file).write_text(content)
        placed.append((mount.path.rstrip("/"), where))
    env = {**(image_env or {}), **container_env(objects, workload, secret)}
    for name, value in env.items():
        for path, where in placed:
            if value == path or value.startswith(path + "/"):
                env[name] = str(where) + value[len(path) :]
    return env


def chronik_variables(objects: list[Obj]) -> Iterator[tuple[str, str]]:
    """(where, NAME) for every CHRONIK_* variable the manifests set, directly or by envFrom."""
    for workload in workloads(objects):
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        for var in container_env(objects, workload):
            if var.startswith("CHRONIK_"):
                yield name, var


def dump(objects: list[Obj]) -> str:
    """Objects as one YAML stream (for kubectl or kubernetes-validate)."""
    return yaml.safe_dump_all(json.loads(json.dumps(objects)), sort_keys=False)
