"""A missing extra is one ConfigurationError naming its pip command, found before any I/O.

The dev environment has every extra; a missing one is made by pointing the extra at a
module that does not exist (tests/e2e/test_packaging.py does it for real, in a fresh
virtual environment with no extra).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import pytest

from chronik import _extras
from chronik.adapters import check_broker_url, check_database_url, open_broker, open_database
from chronik.errors import ConfigurationError
from chronik.runtime.settings import load_settings

ABSENT = "chronik_test_no_such_driver"


Uninstall = Callable[[str], None]


@pytest.fixture
def uninstall(monkeypatch: pytest.MonkeyPatch) -> Uninstall:
    """Make an extra look missing for the test: ``uninstall("nats")``."""

    def missing(extra: str) -> None:
        monkeypatch.setitem(_extras.EXTRAS, extra, (ABSENT,))

    return missing


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("nats://127.0.0.1:4222", "nats"),
        ("tls://127.0.0.1:4222", "nats"),
        ("amqp://guest:guest@127.0.0.1/", "rabbitmq"),
        ("amqps://guest:guest@127.0.0.1/", "rabbitmq"),
    ],
)
def test_a_broker_url_without_its_extra_is_refused_naming_the_pip_command(
    uninstall: Uninstall, url: str, extra: str
) -> None:
    uninstall(extra)
    scheme = url.split(":", 1)[0]
    expected = f"{scheme}:// needs the {extra} extra: pip install 'chronik[{extra}]'"
    with pytest.raises(ConfigurationError) as caught:
        check_broker_url(url)
    assert str(caught.value) == expected


async def test_opening_a_broker_without_its_extra_is_refused_before_connecting(
    uninstall: Uninstall,
) -> None:
    uninstall("nats")
    with pytest.raises(ConfigurationError, match=r"pip install 'chronik\[nats\]'"):
        await open_broker("nats://127.0.0.1:1", connect_timeout=0.1)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_a_postgresql_url_without_the_postgres_extra_is_refused_naming_it(
    uninstall: Uninstall, scheme: str
) -> None:
    uninstall("postgres")
    url = f"{scheme}://postgres@127.0.0.1:1/test"
    expected = f"{scheme}:// needs the postgres extra: pip install 'chronik[postgres]'"
    with pytest.raises(ConfigurationError) as caught:
        check_database_url(url)
    assert str(caught.value) == expected
    with pytest.raises(ConfigurationError) as opened:
        await open_database(url)
    assert str(opened.value) == expected


def test_the_settings_refuse_a_broker_url_whose_extra_is_missing_naming_the_variable(
    uninstall: Uninstall, monkeypatch: pytest.MonkeyPatch
) -> None:
    uninstall("rabbitmq")
    monkeypatch.delenv("CHRONIK_BROKER_URL", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"broker_url": "amqp://guest:guest@127.0.0.1/"})
    message = str(caught.value)
    assert "CHRONIK_BROKER_URL" in message and "pip install 'chronik[rabbitmq]'" in message
    assert "\n" not in message


def test_urls_that_need_no_extra_are_not_checked_for_one(uninstall: Uninstall) -> None:
    for extra in ("postgres", "nats", "rabbitmq", "http"):
        uninstall(extra)
    check_broker_url("memory://")
    check_database_url("memory://")
    check_database_url("sqlite:///events.db")


def test_a_driver_missing_at_import_is_the_extras_error_with_the_cause_kept() -> None:
    with pytest.raises(ConfigurationError) as caught, _extras.needing("nats", "nats://"):
        importlib.import_module(ABSENT)
    assert str(caught.value) == "nats:// needs the nats extra: pip install 'chronik[nats]'"
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_a_broken_import_inside_chronik_is_not_mistaken_for_a_missing_extra() -> None:
    with (
        pytest.raises(ModuleNotFoundError, match=r"chronik\.no_such_module"),
        _extras.needing("nats", "nats://"),
    ):
        importlib.import_module("chronik.no_such_module")


def test_importing_the_http_adapter_without_the_http_extra_names_it(
    uninstall: Uninstall, monkeypatch: pytest.MonkeyPatch
) -> None:
    uninstall("http")
    for name in [m for m in sys.modules if m.split(".")[:2] == ["chronik", "http"]]:
        monkeypatch.delitem(sys.modules, name)
    hint = r"needs the http extra: pip install 'chronik\[http\]'"
    with pytest.raises(ConfigurationError, match=hint):
        importlib.import_module("chronik.http.app")


def test_every_extra_the_code_names_is_declared_in_pyproject() -> None:
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert set(_extras.EXTRAS) == set(declared["project"]["optional-dependencies"])
