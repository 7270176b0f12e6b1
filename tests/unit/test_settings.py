"""Settings: every source, their precedence, one-line errors, and a secret that never shows."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from chronik.errors import ConfigurationError
from chronik.runtime.settings import ROLES, Settings, load_settings

SECRET = "s3cr3t-7c1f0a-never-printed"
SOURCES = ("flag", "env", "secrets", "file")

Place = Callable[[str, str, Any], dict[str, Any]]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CHRONIK_* variable of the machine running the tests leaks in; a private cwd."""
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Place:
    """Put a setting in a source; returns the flags to pass (empty unless a flag)."""
    secrets = tmp_path / "secrets"
    config = tmp_path / "chronik.toml"

    def put(source: str, name: str, value: Any) -> dict[str, Any]:
        if source == "flag":
            return {name: value}
        if source == "env":
            monkeypatch.setenv(f"CHRONIK_{name.upper()}", str(value))
        elif source == "secrets":
            secrets.mkdir(exist_ok=True)
            (secrets / name).write_text(f"{value}\n")
            monkeypatch.setenv("CHRONIK_SECRETS_DIR", str(secrets))
        elif source == "file":
            with config.open("a") as out:
                out.write(f"{name} = {_toml(value)}\n")
            monkeypatch.setenv("CHRONIK_CONFIG_FILE", str(config))
        return {}

    return put


def _toml(value: Any) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


# -- each source --------------------------------------------------------------------


def test_without_any_source_every_setting_has_its_default() -> None:
    loaded = load_settings()
    assert loaded.settings == Settings.model_validate({})
    assert loaded.sources == {}
    assert {source for _, _, source in loaded.rows()} == {"default"}
    assert loaded.settings.http_port == 8000
    assert loaded.settings.roles == frozenset(ROLES)


@pytest.mark.parametrize("source", SOURCES)
def test_each_source_sets_a_value_and_is_named_as_where_it_came_from(
    place: Place, source: str
) -> None:
    flags = place(source, "http_port", 9123)
    loaded = load_settings(flags)
    assert loaded.settings.http_port == 9123
    assert loaded.sources["http_port"] == source
    assert ("CHRONIK_HTTP_PORT", "9123", source) in loaded.rows()


def test_a_flag_given_as_none_is_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONIK_HTTP_PORT", "9001")
    loaded = load_settings({"http_port": None})
    assert loaded.settings.http_port == 9001
    assert loaded.sources["http_port"] == "env"


def test_auto_migrate_is_on_by_default_and_turned_off_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Long-running pods set CHRONIK_AUTO_MIGRATE=false; a migration Job migrates."""
    assert load_settings().settings.auto_migrate is True
    monkeypatch.setenv("CHRONIK_AUTO_MIGRATE", "false")
    loaded = load_settings()
    assert loaded.settings.auto_migrate is False
    assert ("CHRONIK_AUTO_MIGRATE", "False", "env") in loaded.rows()


@pytest.mark.parametrize("name", ["api_token", "API_TOKEN", "CHRONIK_API_TOKEN"])
def test_a_secrets_file_may_be_named_like_the_setting_or_like_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    secrets = tmp_path / "mounted"
    secrets.mkdir()
    (secrets / name).write_text(SECRET + "\n")
    (secrets / "event_store_url").write_text("sqlite:///from-secret.db")
    (secrets / "..data").mkdir()  # as a mounted Kubernetes Secret has
    monkeypatch.setenv("CHRONIK_SECRETS_DIR", str(secrets))
    loaded = load_settings()
    assert loaded.settings.api_token == SecretStr(SECRET)
    assert loaded.settings.event_store_url == "sqlite:///from-secret.db"
    assert loaded.sources["api_token"] == loaded.sources["event_store_url"] == "secrets"


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".yml"])
def test_a_toml_or_yaml_config_file_sets_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str
) -> None:
    config = tmp_path / f"settings{suffix}"
    if suffix == ".toml":
        config.write_text('service = "sales"\nhttp_port = 9200\nrun = "http, projections"\n')
    else:
        config.write_text("service: sales\nhttp_port: 9200\nrun: http, projections\n")
    monkeypatch.setenv("CHRONIK_CONFIG_FILE", str(config))
    loaded = load_settings()
    assert loaded.settings.service == "sales"
    assert loaded.settings.http_port == 9200
    assert loaded.settings.roles == {"http", "projections"}
    assert loaded.sources == {
        "service": "file",
        "http_port": "file",
        "run": "file",
        "config_file": "env",
    }


def test_the_config_file_may_name_the_secrets_directory(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api_token").write_text(SECRET)
    config = tmp_path / "chronik.yaml"
    config.write_text(f"secrets_dir: {secrets}\n")
    loaded = load_settings({"config_file": config})
    assert loaded.settings.api_token == SecretStr(SECRET)
    assert loaded.sources["api_token"] == "secrets"
    assert loaded.sources["config_file"] == "flag"


# -- variables that are not settings ------------------------------------------------

#: what Kubernetes sets in every pod of a namespace with Services chronik and chronik-http
SERVICE_LINKS = {
    "CHRONIK_SERVICE_HOST": "10.0.0.1",
    "CHRONIK_SERVICE_PORT": "80",
    "CHRONIK_SERVICE_PORT_HTTP": "80",
    "CHRONIK_PORT": "tcp://10.0.0.1:80",
    "CHRONIK_PORT_80_TCP": "tcp://10.0.0.1:80",
    "CHRONIK_PORT_80_TCP_PROTO": "tcp",
    "CHRONIK_PORT_80_TCP_PORT": "80",
    "CHRONIK_PORT_80_TCP_ADDR": "10.0.0.1",
    "CHRONIK_HTTP_SERVICE_HOST": "10.0.0.2",
    "CHRONIK_HTTP_SERVICE_PORT": "8000",
    "CHRONIK_HTTP_PORT": "tcp://10.0.0.2:8000",
    "CHRONIK_HTTP_PORT_8000_TCP": "tcp://10.0.0.2:8000",
    "CHRONIK_HTTP_PORT_8000_TCP_ADDR": "10.0.0.2",
    "CHRONIK_METRICS_PORT_9090_UDP": "udp://[fd00::7]:9090",
}


def test_the_variables_kubernetes_sets_for_a_chronik_service_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SERVICE_LINKS.items():
        monkeypatch.setenv(name, value)
    loaded = load_settings()
    assert loaded.sources == {}
    # A Service named chronik-http collides with the setting: its tcp:// value is not a port.
    assert loaded.settings.http_port == 8000


@pytest.mark.parametrize(
    "name", ["CHRONIK_REQUIRE_SERVICES", "CHRONIK_TEST_POSTGRES_URL", "CHRONIK_BENCH_NATS_URL"]
)
def test_the_names_the_test_suite_and_benchmarks_use_are_reserved_and_ignored(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "1")
    assert load_settings().sources == {}


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("CHRONIK_HTTP_PROT", "CHRONIK_HTTP_PORT"),
        ("chronik_http_prot", "CHRONIK_HTTP_PORT"),
        ("CHRONIK_HTPP_PORT", "CHRONIK_HTTP_PORT"),  # a _PORT name, but not a link's value
        ("CHRONIK_EVENTSTORE_URL", "CHRONIK_EVENT_STORE_URL"),
        ("CHRONIK_API_TOKN", "CHRONIK_API_TOKEN"),
    ],
)
def test_an_unknown_chronik_variable_is_refused_naming_the_setting_it_is_nearest(
    monkeypatch: pytest.MonkeyPatch, name: str, meant: str
) -> None:
    monkeypatch.setenv(name, "9000")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"{name} (from env): not a chronik setting (did you mean {meant}?)")
    assert "CHRONIK_ALLOW_UNKNOWN_SETTINGS=1" in message
    assert "\n" not in message


def test_an_unknown_variable_like_no_setting_is_refused_without_a_guess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHRONIK_ZZZ", "1")
    with pytest.raises(
        ConfigurationError, match=r"^CHRONIK_ZZZ \(from env\): not a chronik setting;"
    ):
        load_settings()


def test_several_unknown_variables_are_all_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHRONIK_HTTP_PROT", "9000")
    monkeypatch.setenv("CHRONIK_LOG_LEVLE", "debug")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert "CHRONIK_HTTP_PROT (from env)" in message
    assert "CHRONIK_LOG_LEVLE (from env)" in message
    assert "\n" not in message


@pytest.mark.parametrize("source", SOURCES)
def test_allowing_unknown_settings_turns_the_refusal_into_a_warning(
    place: Place, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, source: str
) -> None:
    monkeypatch.setenv("CHRONIK_HTTP_PROT", "9000")
    flags = place(source, "allow_unknown_settings", "true")
    with caplog.at_level(logging.WARNING, logger="chronik.runtime.settings"):
        loaded = load_settings(flags)
    assert loaded.settings.allow_unknown_settings is True
    assert loaded.settings.http_port == 8000
    [warning] = [r.getMessage() for r in caplog.records if r.name == "chronik.runtime.settings"]
    assert warning.startswith("CHRONIK_HTTP_PROT (from env): not a chronik setting (did you mean")
    assert warning.endswith("; ignored")


# -- precedence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "present",
    [
        ("flag", "env", "secrets", "file"),
        ("env", "secrets", "file"),
        ("secrets", "file"),
        ("file",),
        ("flag", "file"),
        ("env", "file"),
        ("flag", "secrets"),
        ("flag", "env"),
    ],
    ids=lambda present: ">".join(present),
)
def test_a_flag_beats_env_beats_secrets_beats_file_beats_default(
    place: Place, present: tuple[str, ...]
) -> None:
    ports = {"flag": 9001, "env": 9002, "secrets": 9003, "file": 9004}
    flags: dict[str, Any] = {}
    for source in present:
        flags |= place(source, "http_port", ports[source])
    loaded = load_settings(flags)
    winner = next(source for source in SOURCES if source in present)
    assert loaded.settings.http_port == ports[winner]
    assert loaded.sources["http_port"] == winner


def test_sources_combine_setting_by_setting(place: Place) -> None:
    flags = place("flag", "http_port", 9001)
    place("env", "service", "from-env")
    place("secrets", "api_token", SECRET)
    place("file", "log_level", "debug")
    place("file", "service", "from-file")
    loaded = load_settings(flags)
    settings = loaded.settings
    assert (settings.http_port, settings.service, settings.log_level) == (9001, "from-env", "debug")
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == SECRET
    assert {k: v for k, v in loaded.sources.items() if not k.endswith(("_dir", "_file"))} == {
        "http_port": "flag",
        "service": "env",
        "api_token": "secrets",
        "log_level": "file",
    }


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_value_names_the_variable_and_its_source_in_one_line(
    place: Place, source: str
) -> None:
    flags = place(source, "http_port", "eighty")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(flags)
    message = str(raised.value)
    assert message.startswith(f"CHRONIK_HTTP_PORT (from {source}): ")
    assert "'eighty'" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CHRONIK_HTTP_PORT", "70000", "less than or equal to 65535"),
        ("CHRONIK_RUN", "http,bogus", "roles must be 'all' or some of"),
        ("CHRONIK_HTTP_ROOT_PATH", "sales/", "a path prefix starts with '/'"),
        ("CHRONIK_LOG_LEVEL", "verbose", "'debug', 'info', 'warning' or 'error'"),
        ("CHRONIK_SHUTDOWN_GRACE", "0", "greater than 0"),
        ("CHRONIK_READY_MAX_LAG", "-1", "greater than or equal to 0"),
        ("CHRONIK_BROKER_CONNECT_TIMEOUT", "0", "greater than 0"),
        ("CHRONIK_EVENT_STORE_URL", "mysql://db", "event store URL scheme 'mysql' is not"),
        ("CHRONIK_EVENT_STORE_URL", "sqlite://host/x.db", "has a host part"),
        ("CHRONIK_EVENT_STORE_URL", "postgresql://h/db?pool_max=0", "pool_max='0' must be"),
        ("CHRONIK_BROKER_URL", "ftp://broker", "broker URL scheme 'ftp' is not supported"),
        ("CHRONIK_BROKER_URL", "nats://h:4222?namespace=Bad", "namespace 'Bad'"),
        ("CHRONIK_BROKER_URL", "nats", "is not a URL"),
        ("CHRONIK_CLOCK", "sundial", "'system' or 'virtual'"),
        ("CHRONIK_PARTNER_TIMEOUT", "0", "greater than 0"),
    ],
)
def test_each_kind_of_bad_value_is_explained_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"{variable} (from env): ")
    assert says in message
    assert "\n" not in message


def test_several_bad_values_are_all_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONIK_HTTP_PORT", "eighty")
    monkeypatch.setenv("CHRONIK_LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert "CHRONIK_HTTP_PORT (from env)" in message
    assert "CHRONIK_LOG_FORMAT (from env)" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (
            {"CHRONIK_CONFIG_FILE": "missing.toml"},
            "CHRONIK_CONFIG_FILE: missing.toml is not a file",
        ),
        ({"CHRONIK_CONFIG_FILE": "settings.json"}, "must end in .toml, .yaml or .yml"),
        ({"CHRONIK_SECRETS_DIR": "nowhere"}, "CHRONIK_SECRETS_DIR: nowhere is not a directory"),
    ],
)
def test_a_config_file_or_secrets_directory_that_is_not_there_is_named(
    monkeypatch: pytest.MonkeyPatch, setup: dict[str, str], says: str
) -> None:
    Path("settings.json").write_text("{}")
    for name, value in setup.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_unknown_key_in_the_config_file_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("http_prot = 9000\n")
    monkeypatch.setenv("CHRONIK_CONFIG_FILE", str(config))
    with pytest.raises(
        ConfigurationError,
        match=r"^'http_prot' in the file: not a chronik setting \(did you mean 'http_port'\?\)$",
    ):
        load_settings()


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".toml", "http_port = \n"),
        (".yaml", "http_port: [\n"),
    ],
)
def test_a_config_file_that_does_not_parse_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str, text: str
) -> None:
    config = tmp_path / f"broken{suffix}"
    config.write_text(text)
    monkeypatch.setenv("CHRONIK_CONFIG_FILE", str(config))
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"CHRONIK_CONFIG_FILE: {config} does not parse")
    assert "\n" not in message


@pytest.mark.parametrize("variable", ["CHRONIK_EVENT_STORE_URL", "CHRONIK_BROKER_URL"])
def test_a_url_that_cannot_work_is_refused_with_its_password_hidden(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, f"ftp://app:{SECRET}@host/x")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value).startswith(f"{variable} (from env): ")
    assert "ftp://app:***@host/x" in str(raised.value)
    assert SECRET not in str(raised.value)


# -- the secret ----------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_the_api_token_is_masked_in_repr_str_and_the_rows_shown(place: Place, source: str) -> None:
    loaded = load_settings(place(source, "api_token", SECRET))
    settings = loaded.settings
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == SECRET
    shown = [repr(settings), str(settings), repr(loaded), str(loaded.rows()), repr(loaded.sources)]
    shown += [str(settings.model_dump()), settings.model_dump_json()]
    for text in shown:
        assert SECRET not in text
    assert ("CHRONIK_API_TOKEN", "********", source) in loaded.rows()


def test_an_unset_api_token_is_shown_as_unset() -> None:
    assert ("CHRONIK_API_TOKEN", "-", "default") in load_settings().rows()


@pytest.mark.parametrize(
    "config",
    [
        f'api_token = ["{SECRET}"]\n',
        f'api_token = {{ value = "{SECRET}" }}\n',
        f'api_tokn = "{SECRET}"\n',
        f'api_token = "{SECRET}"\nhttp_port = "eighty"\n',
        f'api_token = "{SECRET}\n',
    ],
    ids=["list", "table", "misspelt", "beside-bad-value", "unterminated"],
)
def test_the_api_token_never_appears_in_an_error_from_a_toml_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(config)
    monkeypatch.setenv("CHRONIK_CONFIG_FILE", str(path))
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert SECRET not in str(raised.value)
    assert SECRET not in repr(raised.value)


@pytest.mark.parametrize(
    "config",
    [
        f"api_token: [{SECRET}]\n",
        f'api_token: "{SECRET}\n',
        f"api_token: {SECRET}\nhttp_port: [\n",
        f"api_token: {SECRET}\n  bad: indentation\n",
    ],
    ids=["list", "unterminated", "beside-broken-line", "bad-indentation"],
)
def test_the_api_token_never_appears_in_an_error_from_a_yaml_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    monkeypatch.setenv("CHRONIK_CONFIG_FILE", str(path))
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("source", SOURCES)
def test_the_api_token_never_appears_in_an_error_about_another_setting(
    place: Place, source: str
) -> None:
    flags = place(source, "api_token", SECRET)
    flags |= place("env", "http_port", "eighty")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(flags)
    assert "CHRONIK_HTTP_PORT (from env)" in str(raised.value)
    assert SECRET not in str(raised.value)


# -- the demo's clock ----------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_the_virtual_clock_is_refused_unless_the_process_is_a_demo(
    place: Place, source: str
) -> None:
    flags = place(source, "clock", "virtual")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(flags)
    message = str(raised.value)
    assert message.startswith(f"CHRONIK_CLOCK (from {source}): 'virtual' is for demos only")
    assert "CHRONIK_DEMO=1" in message
    assert "\n" not in message


def test_a_demo_may_run_the_virtual_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONIK_CLOCK", "virtual")
    monkeypatch.setenv("CHRONIK_DEMO", "1")
    settings = load_settings().settings
    assert (settings.clock, settings.demo) == ("virtual", True)


def test_the_system_clock_and_a_two_minute_partner_timeout_are_the_defaults() -> None:
    settings = load_settings().settings
    assert (settings.clock, settings.demo, settings.partner_timeout) == ("system", False, 120.0)


def test_the_partner_timeout_is_a_setting_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONIK_PARTNER_TIMEOUT", "300")
    assert load_settings().settings.partner_timeout == 300.0
