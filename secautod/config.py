"""The configuration file, parsed once into frozen typed objects.

Every problem becomes a `ConfigError` whose one-line message names the key
path and what is wrong (`jobs.retention_days: expected a positive number,
got 'thirty'`). Loading never creates anything; it only checks that the
directories it names could be created and written. Relative paths resolve
against the config file's folder. No raw YAML leaves this module.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml

from secautod.errors import ConfigError
from secautod.output import shorten
from secautod.store.base import (
    BACKUP_CHECKS,
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    POSTGRES_URL_SCHEMES,
    BackupCheck,
    Synchronous,
)

DEFAULT_CONFIG_PATHS = (Path("config.yaml"), Path("/etc/secautod/config.yaml"))
CONFIG_ENV = "SECAUTOD_CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")
# `supervision.unclaimed` (recovery.py owns their meaning).
AFTER_REBOOT = "after_reboot"
AT_START = "at_start"
UNCLAIMED_RULES = (AFTER_REBOOT, AT_START)
LOG_FORMATS = ("auto", "json", "console")
LogFormat = Literal["auto", "json", "console"]

T = TypeVar("T")


class Secret:
    """A secret value that never shows itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself, for the one place that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# -- value parsers --------------------------------------------------------------------
def _section(value: object, prefix: str, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        where = prefix.rstrip(".") or name
        raise ConfigError(f"{where}: expected a mapping of settings, got {_describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{prefix}{shorten(repr(key))}: setting names must be text")
    return value


def _check_keys(section: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{prefix}{_shown(key)}: unknown setting{hint}")


def _get(
    section: Mapping[str, Any], key: str, prefix: str, parse: Callable[[object], T], default: T
) -> T:
    if key not in section or (section[key] is None and default is None):
        return default
    try:
        return parse(section[key])
    except ValueError as exc:
        raise ConfigError(f"{prefix}{key}: {exc}") from None


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {shorten(repr(value))}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    return shorten(repr(value))


def _shown(text: str) -> str:
    """Show a name or path as is when it is plain, quoted when it holds odd characters."""
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected non-empty text, got {_describe(value)}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def _positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a positive number, got {_describe(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(
            f"expected a positive number, got one too large: {_describe(value)}"
        ) from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"expected a positive number, got {_describe(value)}")
    return number


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive whole number, got {_describe(value)}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {_describe(value)}")
        return value.lower()

    return parse


def _optional(parse: Callable[[object], T]) -> Callable[[object], T | None]:
    def parse_optional(value: object) -> T | None:
        return None if value is None else parse(value)

    return parse_optional


def _postgres_url(value: object) -> str:
    # The value is never echoed: it may hold a password.
    if not isinstance(value, str) or value.split("://", 1)[0] not in POSTGRES_URL_SCHEMES:
        raise ValueError("expected a postgresql:// (or postgres://) URL")
    return value


def _days(value: object) -> timedelta:
    return _duration(value, "days", 86400.0)


def _hours(value: object) -> timedelta:
    return _duration(value, "hours", 3600.0)


def _seconds(value: object) -> timedelta:
    return _duration(value, "seconds", 1.0)


_LONGEST_DURATION = timedelta(days=36500)  # a century: anything longer is a typo


def _duration(value: object, unit: str, seconds_per_unit: float) -> timedelta:
    number = _positive_number(value)
    seconds = number * seconds_per_unit
    if seconds < 0.001:
        raise ValueError(f"{number} {unit} is too short to be meaningful")
    if seconds > _LONGEST_DURATION.total_seconds():
        raise ValueError(f"{number} {unit} is longer than a century")
    return timedelta(seconds=seconds)


def _path(value: object) -> Path:
    """Read a path as written (resolved against the config file's folder later)."""
    text = _text(value)
    if "\0" in text:
        raise ValueError(f"a path cannot contain a NUL character, got {_shown(text)}")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~user naming no user
        raise ValueError(f"cannot expand {_shown(text)}: {exc}") from None


def _file_name(value: object) -> str:
    name = _text(value)
    if "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"expected a plain file name, got {name!r}")
    return name


def _upper_choice(options: tuple[str, ...]) -> Callable[[object], str]:
    choose = _choice(options)
    return lambda value: choose(value).upper()


def _listen_address(value: object) -> tuple[str, int]:
    """Read `host:port` (IPv4 or a name) or `[IPv6]:port` into (host, port)."""
    text = _text(value)
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, as [{host}]:{port}")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port (e.g. 127.0.0.1:9464 or [::1]:9464), got {text!r}")
    return host, int(port)


def _endpoint_list(value: object) -> tuple[WebhookConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"expected a list of endpoints, got {_describe(value)}")
    return tuple(_endpoint(item, f"webhooks[{index}].") for index, item in enumerate(value))


def _endpoint(value: object, p: str) -> WebhookConfig:
    endpoint = _read(WebhookConfig, value, p, p.rstrip("."))
    url = endpoint.url
    if not url:
        raise ConfigError(f"{p}url: required (the endpoint to POST notifications to)")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError as exc:
        raise ConfigError(f"{p}url: {exc} in {redact_url(url)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{p}url: expected an http:// or https:// URL with a host, got {redact_url(url)!r}"
        )
    return endpoint


# -- the settings: each declared once, with its key, parser and default ----------------


def setting(key: str, parse: Callable[[object], Any], default: Any) -> Any:
    """Declare a config field: its key in the YAML section, its parser and its default."""
    return field(default=default, metadata={"key": key, "parse": parse})


def section(key: str, kind: type[Any]) -> Any:
    """Declare a field holding a nested section, read by `kind`'s own settings."""
    return field(default_factory=kind, metadata={"key": key, "section": kind})


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """How the database file is opened."""

    database_file: str = setting("database_file", _file_name, "jobs.db")
    synchronous: Synchronous = setting("synchronous", _upper_choice(("full", "normal")), "FULL")
    busy_timeout: timedelta = setting(
        "busy_timeout_seconds", _seconds, timedelta(seconds=DEFAULT_BUSY_TIMEOUT_SECONDS)
    )
    # A PostgreSQL store (SPEC §11) instead of the file; None: the SQLite file.
    url: str | None = setting("url", _optional(_postgres_url), None)
    # The environment variable holding the PostgreSQL password (else libpq's passfile/service).
    password_env: str | None = setting("password_env", _optional(_text), None)
    password: Secret | None = field(default=None, repr=False)  # from `password_env`
    # Several instances on one PostgreSQL store elect a leader with a lease this long.
    leader_lease: timedelta = setting("leader_lease_seconds", _seconds, timedelta(seconds=15))


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """Retention and backup policy."""

    retention: timedelta = setting("retention_days", _days, timedelta(days=30))
    cleanup_interval: timedelta = setting("cleanup_interval", _hours, timedelta(hours=24))
    backup_enabled: bool = setting("backup_enabled", _boolean, True)
    backup_interval: timedelta = setting("backup_interval", _hours, timedelta(hours=168))
    backup_keep: int = setting("backup_keep", _positive_int, 8)
    # Relative to the config file's folder; None: the data directory.
    backup_directory: Path | None = setting("backup_directory", _optional(_path), None)
    backup_check: BackupCheck = setting("backup_check", _choice(BACKUP_CHECKS), "integrity")
    retry_delay: timedelta = setting("retry_delay_seconds", _seconds, timedelta(minutes=5))
    # How often the daemon runs `PRAGMA quick_check` on the live store (and at start-up).
    check_interval: timedelta = setting("check_interval", _hours, timedelta(hours=24))
    # Unclaimed running jobs with no update for this long fail as `stale` (None: never).
    stale_after: timedelta | None = setting("stale_after", _optional(_hours), None)


@dataclass(frozen=True, slots=True)
class SupervisionConfig:
    """Live supervision of the engines (SPEC §9)."""

    check_interval: timedelta = setting("check_interval", _seconds, timedelta(seconds=5))
    # after_reboot | at_start: which unclaimed running jobs fail when secautod starts.
    unclaimed: str = setting("unclaimed", _choice(UNCLAIMED_RULES), AFTER_REBOOT)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One endpoint that receives notifications."""

    url: str = setting("url", _text, "")
    secret_env: str | None = setting("secret_env", _optional(_text), None)
    timeout: timedelta = setting("timeout_seconds", _seconds, timedelta(seconds=10))
    secret: Secret | None = field(default=None, repr=False)  # from `secret_env`, not the file


@dataclass(frozen=True, slots=True)
class WebhookDeliveryConfig:
    """How failed deliveries are retried."""

    retry_initial: timedelta = setting("retry_initial_seconds", _seconds, timedelta(seconds=5))
    retry_max: timedelta = setting("retry_max_seconds", _seconds, timedelta(hours=1))
    # `secautod status` reports trouble once a notification waits longer than this.
    late_after: timedelta = setting("late_after_seconds", _seconds, timedelta(minutes=15))


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Where Prometheus figures are served or written, and how fresh they are."""

    # (host, port) to serve /metrics on; None: no listener.
    listen: tuple[str, int] | None = setting("listen", _optional(_listen_address), None)
    # Relative to the config file's folder; None: no textfile.
    textfile: Path | None = setting("textfile", _optional(_path), None)
    refresh: timedelta = setting("refresh_seconds", _seconds, timedelta(seconds=15))


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log level and format."""

    level: str = setting("level", _choice(LOG_LEVELS), "info")
    format: LogFormat = setting("format", _choice(LOG_FORMATS), "auto")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    path: Path = field(default=Path("config.yaml"))
    # Relative to the config file's folder.
    data_directory: Path = setting("data_directory", _path, Path("data"))
    storage: StorageConfig = section("storage", StorageConfig)
    jobs: JobsConfig = section("jobs", JobsConfig)
    supervision: SupervisionConfig = section("supervision", SupervisionConfig)
    webhooks: tuple[WebhookConfig, ...] = setting("webhooks", _endpoint_list, ())
    webhook_delivery: WebhookDeliveryConfig = section("webhook_delivery", WebhookDeliveryConfig)
    logging: LoggingConfig = section("logging", LoggingConfig)
    metrics: MetricsConfig = section("metrics", MetricsConfig)
    shutdown_timeout: timedelta = setting(
        "shutdown_timeout_seconds", _seconds, timedelta(seconds=30)
    )

    @property
    def database_path(self) -> Path:
        """The job store's file."""
        return self.data_directory / self.storage.database_file

    @property
    def store_location(self) -> str:
        """Where the job store is, for people: the file, or the URL without its password."""
        if self.storage.url is None:
            return str(self.database_path)
        from secautod.store.base import redact_password

        return redact_password(self.storage.url)

    @property
    def backup_directory(self) -> Path:
        """Where backups go."""
        return self.jobs.backup_directory or self.data_directory


def redact_url(url: str) -> str:
    """Drop credentials and query from a URL before it is shown or logged."""
    parts = urlsplit(url)
    try:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        host = "(invalid host or port)"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def guess_data_directory(path: Path) -> Path:
    """Return the data directory a config file that fails to load most likely names.

    For `secautod status` only: it finds the running daemon's published state
    through it while the file holds an edit that is not valid yet.
    """
    path = path.absolute()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        document = None
    value = document.get("data_directory") if isinstance(document, dict) else None
    written = Path(value) if isinstance(value, str) and value.strip() else Config().data_directory
    return (path.parent / written.expanduser()).absolute()


def find_config_path(explicit: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """Choose the config file: the option, then $SECAUTOD_CONFIG, then the defaults."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return DEFAULT_CONFIG_PATHS[0]


def load_config(
    path: Path, environ: Mapping[str, str] = os.environ, *, require_secrets: bool = True
) -> Config:
    """Read, parse and validate the config file at `path` (see `parse_config`)."""
    path = path.absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    document = _parse_yaml(text, path)
    try:
        return parse_config(document, path, environ, require_secrets=require_secrets)
    except ConfigError as exc:
        message = str(exc)
        if message.startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {message}") from None


# -- reading sections by their declared settings ---------------------------------------
def _read(kind: type[T], value: object, prefix: str, name: str) -> T:
    """Read the mapping `value` into `kind`, by the settings its fields declare."""
    mapping = _section(value, prefix, name)
    declared = [item for item in fields(kind) if "key" in item.metadata]  # type: ignore[arg-type]
    _check_keys(mapping, prefix, tuple(item.metadata["key"] for item in declared))
    values: dict[str, Any] = {}
    for item in declared:
        key = item.metadata["key"]
        if "section" in item.metadata:
            nested = f"{prefix}{key}."
            values[item.name] = _read(item.metadata["section"], mapping.get(key), nested, key)
        else:
            values[item.name] = _get(mapping, key, prefix, item.metadata["parse"], item.default)
    return kind(**values)


def parse_config(
    document: object,
    path: Path,
    environ: Mapping[str, str] = os.environ,
    *,
    require_secrets: bool = True,
) -> Config:
    """Validate a parsed YAML document into a `Config` (`path` anchors relative paths).

    Only the daemon signs webhooks: with `require_secrets=False` a
    `secret_env` that is unset leaves that endpoint's `secret` None.
    """
    if document is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping of settings")
    config = _read(Config, document, "", "top level")
    base = path.parent
    jobs = config.jobs
    if jobs.backup_directory is not None:
        jobs = replace(jobs, backup_directory=(base / jobs.backup_directory).absolute())
    metrics = config.metrics
    if metrics.textfile is not None:
        metrics = replace(metrics, textfile=(base / metrics.textfile).absolute())
    config = replace(
        config,
        path=path,
        data_directory=(base / config.data_directory).absolute(),
        jobs=jobs,
        metrics=metrics,
        storage=_with_password(config.storage, environ),
        webhooks=tuple(
            _with_secret(endpoint, f"webhooks[{index}].", environ if require_secrets else None)
            for index, endpoint in enumerate(config.webhooks)
        ),
    )
    _check_writable_directory(config.data_directory, "data_directory")
    if jobs.backup_directory is not None:
        _check_writable_directory(jobs.backup_directory, "jobs.backup_directory")
    if metrics.textfile is not None:
        _check_writable_directory(metrics.textfile.parent, "metrics.textfile")
    delivery = config.webhook_delivery
    if delivery.retry_max < delivery.retry_initial:
        raise ConfigError(
            "webhook_delivery.retry_max_seconds: must not be less than retry_initial_seconds"
        )
    return config


def _with_password(storage: StorageConfig, environ: Mapping[str, str]) -> StorageConfig:
    """Look up the PostgreSQL password `storage.password_env` names."""
    if storage.password_env is None:
        return storage
    if storage.url is None:
        raise ConfigError("storage.password_env: only used with storage.url (PostgreSQL)")
    if not environ.get(storage.password_env):
        raise ConfigError(
            f"storage.password_env: the environment variable {storage.password_env} "
            f"is not set or empty"
        )
    return replace(storage, password=Secret(environ[storage.password_env]))


def _with_secret(
    endpoint: WebhookConfig, p: str, environ: Mapping[str, str] | None
) -> WebhookConfig:
    """Look up the endpoint's HMAC key (`environ` None: secrets are not needed)."""
    if endpoint.secret_env is None or environ is None:
        return endpoint
    if not environ.get(endpoint.secret_env):
        raise ConfigError(
            f"{p}secret_env: the environment variable {endpoint.secret_env} is not set or empty"
        )
    return replace(endpoint, secret=Secret(environ[endpoint.secret_env]))


# -- YAML --------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, path: Path) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, yaml.reader.ReaderError):
            where = f" character {exc.position + 1}"
            problem = f"unacceptable character {exc.character!r} ({exc.reason})"
        else:
            problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {' '.join(problem.split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None


def _check_writable_directory(path: Path, key: str) -> None:
    """Refuse a directory that cannot be created or written, without creating it."""
    existing = path
    try:
        while not existing.exists():
            if existing.parent == existing:
                break
            existing = existing.parent
        is_directory = existing.is_dir()
    except OSError as exc:  # e.g. a parent this user may not search
        raise ConfigError(
            f"{key}: cannot inspect {_shown(str(existing))}: {exc.strerror} (uid {os.getuid()})"
        ) from None
    if not is_directory:
        raise ConfigError(f"{key}: {_shown(str(existing))} exists and is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = _shown(str(existing))
        what = "is not writable" if existing == path else f"cannot be created in {where}"
        raise ConfigError(f"{key}: {_shown(str(path))} {what} by this user (uid {os.getuid()})")
