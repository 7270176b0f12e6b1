"""Settings: read once at start into one frozen object, from flags, env, a file, secrets.

Precedence, highest first: command-line flag > ``CHRONIK_*`` environment variable >
a file in the secrets directory (``CHRONIK_SECRETS_DIR``, one file per setting, as a
mounted Secret provides) > the config file (``CHRONIK_CONFIG_FILE``, TOML or YAML, as a
mounted ConfigMap provides) > default. Each value remembers where it came from
(``chronik config show``). Secrets are ``SecretStr``: masked in ``repr``, logs and
errors. This module is the only one that reads the environment.

A ``CHRONIK_*`` variable that is not a setting is refused with the nearest setting's
name (``CHRONIK_ALLOW_UNKNOWN_SETTINGS=1`` makes it a warning), except the variables
Kubernetes injects for a Service named ``chronik`` or ``chronik-*`` and the names
reserved for chronik's own tests and benchmarks (see ``_ignored``).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from chronik.adapters import DEFAULT_CONNECT_TIMEOUT, check_broker_url, check_database_url
from chronik.adapters.url import redact
from chronik.errors import BrokerUnavailableError, ConfigurationError, StoreUnavailableError

__all__ = ["ROLES", "LoadedSettings", "Settings", "load_settings", "opened_from"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the roles a process can run (``CHRONIK_RUN``)
ROLES = ("http", "projections", "relay", "consumers", "processes")
PREFIX = "CHRONIK_"

#: names that are never settings: chronik's test suite and benchmarks use them
RESERVED = ("CHRONIK_REQUIRE_SERVICES", "CHRONIK_TEST_*", "CHRONIK_BENCH_*")
# Kubernetes service links for a Service S (here chronik or chronik-*): S_SERVICE_HOST,
# S_SERVICE_PORT[_NAME], S_PORT=tcp://IP:PORT, S_PORT_<port>_<PROTO>=tcp://IP:PORT and
# S_PORT_<port>_<PROTO>_{PROTO,PORT,ADDR}.
_LINK_URL = re.compile(r"(tcp|udp|sctp)://\S+:\d+", re.IGNORECASE)
_LINK_URL_NAME = re.compile(r"CHRONIK(_\w+)?_PORT(_\d+_(TCP|UDP|SCTP))?")
_LINK_NAME = re.compile(
    r"CHRONIK(_\w+)?_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)_(PROTO|PORT|ADDR))"
)


class Settings(BaseSettings):
    """Every setting of a chronik service; ``CHRONIK_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given: ``load_settings`` reads and merges the sources itself."""
        return (init_settings,)

    service: str = Field("chronik", description="The service's name, for logs.")
    app: str | None = Field(
        None, description="The service's contexts, as module:attribute (ServiceSpec or a list)."
    )
    data_dir: Path = Field(Path(".chronik"), description="Where the embedded mode keeps its files.")
    event_store_url: str | None = Field(
        None,
        description="memory://, sqlite:///PATH or postgresql://...; default: SQLite in data_dir.",
    )
    broker_url: str = Field("memory://", description="memory://, nats://HOST:4222 or amqp://...")
    broker_connect_timeout: float = Field(
        DEFAULT_CONNECT_TIMEOUT,
        gt=0,
        description="Seconds a start keeps trying to reach the broker before it gives up.",
    )
    consumer_lanes: int = Field(
        8,
        ge=1,
        le=256,
        description="Per-stream lanes of each consumer: messages of different source streams "
        "handled side by side; one stream's in order.",
    )
    consumer_batch: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Messages a consumer fetches at once; it holds at most twice as many "
        "unacked, and fetches no more until there is room.",
    )
    run: str = Field(
        "all", description=f"What this process runs: 'all' or a comma list of {', '.join(ROLES)}."
    )
    http_host: str = Field("127.0.0.1", description="The address the HTTP server binds.")
    http_port: int = Field(8000, ge=1, le=65535, description="The HTTP port.")
    http_root_path: str = Field(
        "", description="The path prefix an Ingress routes to this service."
    )
    api_token: SecretStr | None = Field(
        None, description="When set, write requests need it as a Bearer token."
    )
    read_auth: Literal["personal", "all", "none"] = Field(
        "personal",
        description="With an API token, the reads that need it too: those that return "
        "personal data, all, or none.",
    )
    console_actions: bool = Field(
        False,
        description="Let the console (/console) take actions (rebuild, replay, redeliver); "
        "off: it only shows. With an API token, actions need it.",
    )
    console_peers: str = Field(
        "",
        description="The other services' consoles, linked from this one's: a comma list of "
        "name=URL (sales=https://sales.example/console).",
    )
    api_title: str | None = Field(
        None, description="The OpenAPI document's title (default: the contexts' names)."
    )
    api_version: str = Field(
        "0.1.0", min_length=1, description="The OpenAPI document's version of the API."
    )
    api_description: str = Field("", description="The OpenAPI document's description.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )
    log_format: Literal["json", "console"] = Field("json", description="JSON lines, or for people.")
    ready_max_lag: int = Field(
        1000, ge=0, description="Readiness: most events a projection may lag."
    )
    ready_max_lag_seconds: float = Field(30.0, ge=0, description="Readiness: most seconds of lag.")
    stale_after: float = Field(
        30.0,
        gt=0,
        description=(
            "Seconds without a heartbeat after which a projection or process runner shows "
            "as stale (status, readiness); runners beat every third of it, at most every 5 s."
        ),
    )
    consistency_wait: float = Field(
        5.0, ge=0, description="Longest a read waits for its consistency token."
    )
    shutdown_grace: float = Field(25.0, gt=0, description="Seconds from SIGTERM to exit.")
    shutdown_drain_delay: float = Field(
        2.0, ge=0, description="Seconds /readyz answers 503 before the server stops accepting."
    )
    demo: bool = Field(
        False,
        description="This process is a demo (`chronik demo` sets it): demo-only features, "
        "such as the virtual clock, may be turned on.",
    )
    clock: Literal["system", "virtual"] = Field(
        "system",
        description="The processes' clock: the system's, or 'virtual' (demo only, needs "
        f"{PREFIX}DEMO=1): the system's plus an offset moved forward by "
        "`chronik clock advance` or POST /admin/clock/advance.",
    )
    partner_timeout: float = Field(
        120.0,
        gt=0,
        description="The reference system's campaigns: seconds the publishing saga waits "
        "for the partner's answer before it cancels the campaign.",
    )
    auto_migrate: bool = Field(
        True,
        description="Create and migrate the store's tables at start; off when a Job migrates.",
    )
    config_file: Path | None = Field(None, description="A TOML or YAML file of settings.")
    secrets_dir: Path | None = Field(None, description="A directory of secrets, one file each.")
    allow_unknown_settings: bool = Field(
        False, description="Warn about unknown CHRONIK_* variables instead of refusing them."
    )

    @field_validator("event_store_url")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_database_url(value)
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        check_broker_url(value)
        return value

    @field_validator("run")
    @classmethod
    def _roles(cls, value: str) -> str:
        roles = [r.strip() for r in value.split(",") if r.strip()]
        unknown = [r for r in roles if r not in (*ROLES, "all")]
        if not roles or unknown:
            raise ValueError(f"roles must be 'all' or some of {', '.join(ROLES)}; got {value!r}")
        return ",".join(roles)

    @field_validator("http_root_path")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and (not value.startswith("/") or value.endswith("/")):
            raise ValueError("a path prefix starts with '/' and does not end with one, like /sales")
        return value

    @field_validator("console_peers")
    @classmethod
    def _peers(cls, value: str) -> str:
        for item in (i.strip() for i in value.split(",")):
            name, equals, url = item.partition("=")
            if item and not (
                equals and name.strip() and url.strip().startswith(("http://", "https://", "/"))
            ):
                raise ValueError(
                    f"{item!r} is no name=URL pair (sales=https://sales.example/console)"
                )
        return value

    @property
    def console_peer_urls(self) -> list[tuple[str, str]]:
        """``console_peers`` as (name, URL) pairs, in the order given."""
        pairs = (i.strip().partition("=") for i in self.console_peers.split(",") if i.strip())
        return [(name.strip(), url.strip().rstrip("/")) for name, _, url in pairs]

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty token would read as "set" yet match an empty Bearer credential: refuse
        # it rather than guess whether auth was meant to be on or off.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("the API token is empty: unset the variable to turn auth off")
        return value

    @field_validator("read_auth")
    @classmethod
    def _reads(cls, value: str, info: ValidationInfo) -> str:
        # Every read protected, yet no token to protect them with: refuse rather than
        # serve every read openly.
        if value == "all" and info.data.get("api_token") is None:
            raise ValueError(f"'all' needs {PREFIX}API_TOKEN: without a token no read is protected")
        return value

    @field_validator("clock")
    @classmethod
    def _clock(cls, value: str, info: ValidationInfo) -> str:
        # A clock anyone with the token can turn would let them fire every timeout early:
        # a demo's toy, refused unless the process says it is a demo.
        if value == "virtual" and not info.data.get("demo"):
            raise ValueError(
                f"'virtual' is for demos only: set {PREFIX}DEMO=1 as well (`chronik demo` "
                "does), or leave the clock to the system"
            )
        return value

    @property
    def roles(self) -> frozenset[str]:
        parts = set(self.run.split(","))
        return frozenset(ROLES) if "all" in parts else frozenset(parts)

    @property
    def store_url(self) -> str:
        """The event store URL, defaulting to the embedded SQLite file in ``data_dir``."""
        if self.event_store_url:
            return self.event_store_url
        return f"sqlite:///{self.data_dir.resolve()}/chronik.db"


class LoadedSettings:
    """Settings plus where each value came from."""

    def __init__(self, settings: Settings, sources: dict[str, str]) -> None:
        self.settings = settings
        self.sources = sources

    def rows(self) -> list[tuple[str, str, str]]:
        """(variable, shown value, source) for every setting; secrets and passwords masked."""
        out = []
        for name in Settings.model_fields:
            value = getattr(self.settings, name)
            if isinstance(value, SecretStr):
                shown = "********"
            elif value is None:
                shown = "-"
            elif name in _URL_FIELDS:
                shown = _redact(str(value))
            else:
                shown = str(value)
            out.append((PREFIX + name.upper(), shown, self.sources.get(name, "default")))
        return out


#: settings that are URLs, which may carry a password (``postgresql://app:pw@db/x``)
_URL_FIELDS = frozenset(n for n in Settings.model_fields if n.endswith("_url"))


def _redact(url: str) -> str:
    """The URL with its password hidden, by the helper every other place uses."""
    return redact(url)


def _secret_fields() -> set[str]:
    return {n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}


def load_settings(flags: dict[str, Any] | None = None) -> LoadedSettings:
    """Read the settings once; ConfigurationError with one line naming what is wrong."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = EnvSettingsSource(Settings, case_sensitive=False, env_prefix=PREFIX)()
    # A Service named chronik-http makes Kubernetes set CHRONIK_HTTP_PORT=tcp://IP:PORT.
    env = {k: v for k, v in env.items() if not _ignored(PREFIX + k.upper(), str(v))}
    unknown = _unknown_variables(os.environ)
    located = {**env, **flags}
    file_values: dict[str, Any] = {}
    file_name = located.get("config_file")
    if file_name:
        file_values = _read_file(Path(str(file_name)))
    secret_values: dict[str, Any] = {}
    secrets_dir = located.get("secrets_dir") or file_values.get("secrets_dir")
    if secrets_dir:
        path = Path(str(secrets_dir))
        if not path.is_dir():
            raise ConfigurationError(f"{PREFIX}SECRETS_DIR: {path} is not a directory")
        secret_values = _read_secrets(path)
    layers = [("file", file_values), ("secrets", secret_values), ("env", env), ("flag", flags)]
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            name = key.lower()
            if name not in Settings.model_fields:
                close = difflib.get_close_matches(name, list(Settings.model_fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigurationError(f"{name!r} in the {source}: not a chronik setting{hint}")
            merged[name] = value
            sources[name] = source
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, sources)) from None
    if unknown and not settings.allow_unknown_settings:
        raise ConfigurationError(
            "; ".join(
                f"{_unknown(name)}; set {PREFIX}ALLOW_UNKNOWN_SETTINGS=1 to allow it"
                for name in unknown
            )
        )
    for name in unknown:
        log.warning("%s; ignored", _unknown(name))
    return LoadedSettings(settings, sources)


def _ignored(name: str, value: str) -> bool:
    """Whether a ``CHRONIK_*`` variable is someone else's: a service link or a reserved name.

    Kubernetes sets ``<SERVICE>_SERVICE_HOST``, ``<SERVICE>_PORT=tcp://IP:PORT`` and the
    like in every pod of the namespace (unless ``enableServiceLinks: false``); a Service
    named ``chronik-http`` even sets ``CHRONIK_HTTP_PORT`` so. Names ending in ``_PORT``
    count as links only with such a value, so that ``CHRONIK_HTPP_PORT=9000`` is caught.
    """
    name = name.upper()
    if name in RESERVED or name.startswith(tuple(r[:-1] for r in RESERVED if r.endswith("*"))):
        return True
    if _LINK_NAME.fullmatch(name):
        return True
    return bool(_LINK_URL_NAME.fullmatch(name) and _LINK_URL.fullmatch(value.strip()))


def _unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``CHRONIK_*`` variables that name no setting and are not someone else's."""
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        name
        for name, value in environ.items()
        if name.upper().startswith(PREFIX)
        and name.upper() not in known
        and not _ignored(name, value)
    )


def _unknown(name: str) -> str:
    """'CHRONIK_X (from env): not a chronik setting', with the nearest setting's name."""
    close = difflib.get_close_matches(name[len(PREFIX) :].lower(), list(Settings.model_fields), n=1)
    hint = f" (did you mean {PREFIX}{close[0].upper()}?)" if close else ""
    return f"{name} (from env): not a chronik setting{hint}"


async def opened_from(setting: str, opening: Awaitable[T]) -> T:
    """What ``opening`` opens; if it fails, its one-line error begins with ``setting``.

    For the composition root and the commands: the adapters name the URL (password
    hidden) and the cause, not the setting the URL came from.
    """
    try:
        return await opening
    except (ConfigurationError, BrokerUnavailableError, StoreUnavailableError) as exc:
        raise type(exc)(f"{setting}: {exc}") from None


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigurationError(f"{PREFIX}CONFIG_FILE: {path} is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            values = TomlConfigSettingsSource(Settings, toml_file=path)()
        elif suffix in (".yaml", ".yml"):
            values = YamlConfigSettingsSource(Settings, yaml_file=path)()
        else:
            raise ConfigurationError(
                f"{PREFIX}CONFIG_FILE: {path} must end in .toml, .yaml or .yml"
            )
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"{PREFIX}CONFIG_FILE: {path} does not parse: {_parse_error(exc)}"
        ) from None
    return {str(k).lower().removeprefix(PREFIX.lower()): v for k, v in values.items()}


def _parse_error(exc: Exception) -> str:
    """A parser's error in one line, with the line and column where it has them.

    PyYAML's message spans several lines (the context, the problem, each with a mark
    and a snippet of the file); its marks count from 0. tomllib's is one line already.
    """
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or exc.context or type(exc).__name__
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(exc).split())


def _read_secrets(path: Path) -> dict[str, Any]:
    """Files named like the setting (``api_token`` or ``CHRONIK_API_TOKEN``)."""
    values = SecretsSettingsSource(Settings, secrets_dir=path, case_sensitive=False)()
    found = {k.lower(): v for k, v in values.items()}
    for entry in path.iterdir():
        name = entry.name.lower().removeprefix(PREFIX.lower())
        if entry.is_file() and name in Settings.model_fields and name not in found:
            found[name] = entry.read_text().strip()
    return {k: (v.strip() if isinstance(v, str) else v) for k, v in found.items()}


def _describe(exc: ValidationError, sources: dict[str, str]) -> str:
    secrets = _secret_fields()
    parts = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        where = sources.get(name, "default")
        message = str(error["msg"]).removeprefix("Value error, ")
        if name not in secrets and "input" in error and where != "default":
            shown = error["input"]
            if name in _URL_FIELDS and isinstance(shown, str):
                shown = _redact(shown)
            message += f" (got {shown!r})"
        parts.append(f"{PREFIX}{name.upper()} (from {where}): {message}")
    return "; ".join(parts)
