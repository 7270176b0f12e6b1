"""deploy/k8s/monitoring: the Prometheus Operator objects render and fit the overlays.

ServiceMonitor, PodMonitor and PrometheusRule are custom resources: kubernetes-validate
knows only Kubernetes' own kinds, so ``--strict`` cannot check them. They are checked
here against a schema of the fields they use, written from the operator's API reference
(monitoring.coreos.com/v1) with no other field allowed where they set one, so a
misspelt field fails; and by what they must do: every long-running pod of either
overlay is scraped exactly once, on a port it listens on, and every alert names series
that chronik exports (the table in docs/operations.md, which the exposition test checks
against a scrape) and links a section of that page.
"""

from __future__ import annotations

import copy
import re
import subprocess
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev dependencies
import pytest
import yaml
from rendered_manifests import (
    KUBECTL,
    OVERLAYS,
    ROOT,
    Obj,
    labels_match,
    of_kind,
    pod_spec,
    render,
)

MONITORING = ROOT / "deploy" / "k8s" / "monitoring"
OPERATIONS = ROOT / "docs" / "operations.md"
API = "monitoring.coreos.com/v1"
PART_OF = "app.kubernetes.io/part-of"
DURATION = r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"  # the operator's Duration pattern

_STRING = {"type": "string"}
_LABELS = {"type": "object", "additionalProperties": _STRING}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": _LABELS,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": _STRING,
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": _STRING},
                },
            },
        },
    },
}
_RELABELING = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_]"}},
        "targetLabel": _STRING,
        "action": _STRING,
        "regex": _STRING,
        "replacement": _STRING,
        "separator": _STRING,
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port", "path"],
    "properties": {
        "port": _STRING,
        "path": {"type": "string", "pattern": "^/"},
        "interval": {"type": "string", "pattern": DURATION},
        "scrapeTimeout": {"type": "string", "pattern": DURATION},
        "relabelings": {"type": "array", "items": _RELABELING},
    },
}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STRING, "labels": _LABELS},
}


def _kind(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


SCHEMAS = {
    "ServiceMonitor": _kind(
        "ServiceMonitor",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _SELECTOR,
                "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
            },
        },
    ),
    "PodMonitor": _kind(
        "PodMonitor",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": _SELECTOR,
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
            },
        },
    ),
    "PrometheusRule": _kind(
        "PrometheusRule",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": _STRING,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z]+$"},
                                        "expr": _STRING,
                                        "for": {"type": "string", "pattern": DURATION},
                                        "labels": _LABELS,
                                        "annotations": _LABELS,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
}


def _rendered() -> list[Obj]:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize deploy/k8s/monitoring failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _validate(obj: Obj) -> None:
    jsonschema.validate(obj, SCHEMAS[obj["kind"]])


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    if not labels_match(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def _alerts() -> list[Obj]:
    [rules] = of_kind(_rendered(), "PrometheusRule")
    return [rule for group in rules["spec"]["groups"] for rule in group["rules"]]


def _documented_metrics() -> set[str]:
    """The series names of the metrics table in docs/operations.md (first column)."""
    return set(re.findall(r"^\| `(chronik_[a-z_]+)`", OPERATIONS.read_text(), re.MULTILINE))


# -- rendering and schemas ---------------------------------------------------------------


def test_the_monitoring_kustomization_renders_a_service_monitor_pod_monitor_and_rules() -> None:
    objects = _rendered()
    assert sorted(o["kind"] for o in objects) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    for obj in objects:
        _validate(obj)
        assert obj["metadata"]["labels"][PART_OF] == "chronik"


BREAKAGES = ("a misspelt field", "a port as a number", "a duration in words", "no selector")


@pytest.mark.parametrize("how", BREAKAGES)
def test_the_schema_rejects_a_deliberately_broken_copy(how: str) -> None:
    objects = {o["kind"]: o for o in _rendered()}
    pod = copy.deepcopy(objects["PodMonitor"])
    if how == "a misspelt field":
        pod["spec"]["podMetricEndpoints"] = pod["spec"].pop("podMetricsEndpoints")
    elif how == "a port as a number":
        pod["spec"]["podMetricsEndpoints"][0]["port"] = 8000
    elif how == "a duration in words":
        pod["spec"]["podMetricsEndpoints"][0]["interval"] = "thirty seconds"
    else:
        assert how == "no selector"
        del pod["spec"]["selector"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(pod)


# -- what gets scraped -------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_long_running_pod_is_scraped_once_on_its_http_port(overlay: str) -> None:
    monitors = {o["kind"]: o for o in _rendered()}
    service_monitor, pod_monitor = monitors["ServiceMonitor"], monitors["PodMonitor"]
    objects = render(overlay)
    services = [
        s
        for s in of_kind(objects, "Service")
        if s["spec"].get("selector") and _selects(service_monitor["spec"]["selector"], _labels(s))
    ]
    endpoint_ports = {e["port"] for e in service_monitor["spec"]["endpoints"]}
    for service in services:
        names = {p["name"] for p in service["spec"]["ports"]}
        assert endpoint_ports <= names, f"Service {service['metadata']['name']} lacks a port"
    pod_ports = {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]}
    for workload in of_kind(objects, "Deployment", "StatefulSet"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        name = workload["metadata"]["name"]
        behind = [s for s in services if labels_match(s["spec"]["selector"], labels)]
        direct = _selects(pod_monitor["spec"]["selector"], labels)
        assert len(behind) + direct == 1, f"{name}: scraped {len(behind) + direct} times"
        listens = {p["name"] for c in pod_spec(workload)["containers"] for p in c["ports"]}
        targets = {s["spec"]["ports"][0]["targetPort"] for s in behind} if behind else pod_ports
        assert targets <= listens, f"{name} does not listen on {targets - listens}"


def _labels(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = obj["metadata"].get("labels", {})
    return labels


# -- the alerts --------------------------------------------------------------------------


def test_the_alerts_cover_lag_outbox_dead_letters_parked_events_and_readiness() -> None:
    expressions = " ".join(rule["expr"] for rule in _alerts())
    for series in (
        "chronik_projection_lag_seconds",
        "chronik_outbox_oldest_pending_age_seconds",
        "chronik_dead_letter_messages",
        "chronik_projection_parked_events",
        "chronik_ready",
    ):
        assert series in expressions, f"no alert on {series}"


def test_every_alert_names_exported_series_and_links_its_section_of_operations_md() -> None:
    documented = _documented_metrics()
    assert len(documented) >= 15, "the metrics table of docs/operations.md was not found"
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    for rule in _alerts():
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")"), rule["alert"]
        named = set(re.findall(r"\bchronik_[a-z_]+", expr))
        assert named and named <= documented, f"{rule['alert']}: {named - documented}"
        assert rule["labels"]["severity"] in ("warning", "critical")
        links = re.findall(r"docs/operations\.md#([a-z0-9-]+)", rule["annotations"]["description"])
        assert links and set(links) <= anchors, f"{rule['alert']}: {links}"
        assert rule["alert"] in OPERATIONS.read_text(), f"{rule['alert']} not in the docs"


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
