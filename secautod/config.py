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
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import yaml

from secautod.errors import ConfigError
from secautod.store.base import BACKUP_CHECKS, BackupCheck, Synchronous

DEFAULT_CONFIG_PATHS = (Path("config.yaml"), Path("/etc/secautod/config.yaml"))
CONFIG_ENV = "SECAUTOD_CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")
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


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """How the database file is opened."""

    database_file: str = "jobs.db"
    synchronous: Synchronous = "FULL"
    busy_timeout: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """Retention and backup policy."""

    retention: timedelta = timedelta(days=30)
    cleanup_interval: timedelta = timedelta(hours=24)
    backup_enabled: bool = True
    backup_interval: timedelta = timedelta(hours=168)
    backup_keep: int = 8
    backup_directory: Path | None = None  # None: the data directory
    backup_check: BackupCheck = "integrity"
    retry_delay: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One endpoint that receives notifications."""

    url: str
    secret_env: str | None = None
    secret: Secret | None = field(default=None, repr=False)
    timeout: timedelta = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class WebhookDeliveryConfig:
    """How failed deliveries are retried."""

    retry_initial: timedelta = timedelta(seconds=5)
    retry_max: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log level and format."""

    level: str = "info"
    format: LogFormat = "auto"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    path: Path
    data_directory: Path
    storage: StorageConfig = StorageConfig()
    jobs: JobsConfig = JobsConfig()
    webhooks: tuple[WebhookConfig, ...] = ()
    webhook_delivery: WebhookDeliveryConfig = WebhookDeliveryConfig()
    logging: LoggingConfig = LoggingConfig()
    shutdown_timeout: timedelta = timedelta(seconds=30)

    @property
    def database_path(self) -> Path:
        """The job store's file."""
        return self.data_directory / self.storage.database_file

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
    """Read, parse and validate the config file at `path`.

    Only the daemon signs webhooks: with `require_secrets=False` (the other
    commands) a `secret_env` that is unset leaves that endpoint's `secret` None.
    """
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


def parse_config(
    document: object,
    path: Path,
    environ: Mapping[str, str] = os.environ,
    *,
    require_secrets: bool = True,
) -> Config:
    """Validate a parsed YAML document into a `Config` (`path` anchors relative paths)."""
    if document is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping of settings")
    top = _section(document, "", "top level")
    base = path.parent
    _check_keys(top, "", _TOP_KEYS)
    data_directory = _resolve(
        base, _get(top, "data_directory", "", _text, "data"), "data_directory"
    )
    _check_writable_directory(data_directory, "data_directory")
    jobs = _parse_jobs(top.get("jobs"), base)
    if jobs.backup_directory is not None:
        _check_writable_directory(jobs.backup_directory, "jobs.backup_directory")
    return Config(
        path=path,
        data_directory=data_directory,
        storage=_parse_storage(top.get("storage")),
        jobs=jobs,
        webhooks=_parse_webhooks(top.get("webhooks"), environ if require_secrets else None),
        webhook_delivery=_parse_delivery(top.get("webhook_delivery")),
        logging=_parse_logging(top.get("logging")),
        shutdown_timeout=_get(top, "shutdown_timeout_seconds", "", _seconds, timedelta(seconds=30)),
    )


# -- sections --------------------------------------------------------------------
_TOP_KEYS = (
    "data_directory",
    "storage",
    "jobs",
    "webhooks",
    "webhook_delivery",
    "logging",
    "shutdown_timeout_seconds",
)


def _parse_storage(value: object) -> StorageConfig:
    section = _section(value, "storage.", "storage")
    _check_keys(section, "storage.", ("database_file", "synchronous", "busy_timeout_seconds"))
    name = _get(section, "database_file", "storage.", _text, "jobs.db")
    if "/" in name or name in (".", ".."):
        raise ConfigError(f"storage.database_file: expected a plain file name, got {name!r}")
    level = _get(section, "synchronous", "storage.", _choice(("full", "normal")), "full")
    return StorageConfig(
        database_file=name,
        synchronous=cast(Synchronous, level.upper()),
        busy_timeout=_get(
            section, "busy_timeout_seconds", "storage.", _seconds, timedelta(seconds=5)
        ),
    )


def _parse_jobs(value: object, base: Path) -> JobsConfig:
    p = "jobs."
    section = _section(value, p, "jobs")
    _check_keys(
        section,
        p,
        (
            "retention_days",
            "cleanup_interval",
            "backup_enabled",
            "backup_interval",
            "backup_keep",
            "backup_directory",
            "backup_check",
            "retry_delay_seconds",
        ),
    )
    directory = _get(section, "backup_directory", p, _optional(_text), None)
    return JobsConfig(
        retention=_get(section, "retention_days", p, _days, timedelta(days=30)),
        cleanup_interval=_get(section, "cleanup_interval", p, _hours, timedelta(hours=24)),
        backup_enabled=_get(section, "backup_enabled", p, _boolean, True),
        backup_interval=_get(section, "backup_interval", p, _hours, timedelta(hours=168)),
        backup_keep=_get(section, "backup_keep", p, _positive_int, 8),
        backup_directory=None
        if directory is None
        else _resolve(base, directory, "jobs.backup_directory"),
        backup_check=cast(
            BackupCheck, _get(section, "backup_check", p, _choice(BACKUP_CHECKS), "integrity")
        ),
        retry_delay=_get(section, "retry_delay_seconds", p, _seconds, timedelta(minutes=5)),
    )


def _parse_webhooks(value: object, environ: Mapping[str, str] | None) -> tuple[WebhookConfig, ...]:
    """Parse the endpoints; `environ` None means secrets are not looked up."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"webhooks: expected a list of endpoints, got {_describe(value)}")
    return tuple(
        _parse_webhook(item, f"webhooks[{index}].", environ) for index, item in enumerate(value)
    )


def _parse_webhook(value: object, p: str, environ: Mapping[str, str] | None) -> WebhookConfig:
    section = _section(value, p, p.rstrip("."))
    _check_keys(section, p, ("url", "secret_env", "timeout_seconds"))
    if "url" not in section:
        raise ConfigError(f"{p}url: required (the endpoint to POST notifications to)")
    url = _get(section, "url", p, _text, "")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError as exc:
        raise ConfigError(f"{p}url: {exc} in {redact_url(url)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{p}url: expected an http:// or https:// URL with a host, got {redact_url(url)!r}"
        )
    secret_env = _get(section, "secret_env", p, _optional(_text), None)
    secret = None
    if secret_env is not None and environ is not None:
        if not environ.get(secret_env):
            raise ConfigError(
                f"{p}secret_env: the environment variable {secret_env} is not set or empty"
            )
        secret = Secret(environ[secret_env])
    timeout = _get(section, "timeout_seconds", p, _seconds, timedelta(seconds=10))
    return WebhookConfig(url=url, secret_env=secret_env, secret=secret, timeout=timeout)


def _parse_delivery(value: object) -> WebhookDeliveryConfig:
    p = "webhook_delivery."
    section = _section(value, p, "webhook_delivery")
    _check_keys(section, p, ("retry_initial_seconds", "retry_max_seconds"))
    initial = _get(section, "retry_initial_seconds", p, _seconds, timedelta(seconds=5))
    most = _get(section, "retry_max_seconds", p, _seconds, timedelta(hours=1))
    if most < initial:
        raise ConfigError(f"{p}retry_max_seconds: must not be less than retry_initial_seconds")
    return WebhookDeliveryConfig(retry_initial=initial, retry_max=most)


def _parse_logging(value: object) -> LoggingConfig:
    p = "logging."
    section = _section(value, p, "logging")
    _check_keys(section, p, ("level", "format"))
    return LoggingConfig(
        level=_get(section, "level", p, _choice(LOG_LEVELS), "info"),
        format=cast(LogFormat, _get(section, "format", p, _choice(LOG_FORMATS), "auto")),
    )


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


# -- value parsers --------------------------------------------------------------------
def _section(value: object, prefix: str, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        where = prefix.rstrip(".") or name
        raise ConfigError(f"{where}: expected a mapping of settings, got {_describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{prefix}{_shorten(repr(key))}: setting names must be text")
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
        return f"the string {_shorten(repr(value))}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    return _shorten(repr(value))


def _shown(text: str) -> str:
    """Show a name or path as is when it is plain, quoted when it holds odd characters."""
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _resolve(base: Path, value: str, key: str) -> Path:
    if "\0" in value:
        raise ConfigError(f"{key}: a path cannot contain a NUL character, got {_shown(value)}")
    try:
        return (base / Path(value).expanduser()).absolute()
    except RuntimeError as exc:  # ~user naming no user
        raise ConfigError(f"{key}: cannot expand {_shown(value)}: {exc}") from None


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
