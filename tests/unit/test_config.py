from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from secautod.config import Config, Secret, find_config_path, load_config, parse_config
from secautod.errors import EX_CONFIG, ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "config.yaml"


def parse(document: object, tmp_path: Path, **environ: str) -> Config:
    return parse_config(document, tmp_path / "config.yaml", environ)


def test_shipped_config_is_valid_and_matches_the_defaults(tmp_path: Path) -> None:
    """The repository's config.yaml loads, and every value in it is the built-in default."""
    shipped = load_config(SHIPPED)
    defaults = parse({}, SHIPPED.parent)
    assert shipped.jobs == defaults.jobs
    assert shipped.storage == defaults.storage
    assert shipped.logging == defaults.logging
    assert shipped.webhook_delivery == defaults.webhook_delivery
    assert shipped.shutdown_timeout == defaults.shutdown_timeout
    assert shipped.webhooks == ()
    assert shipped.data_directory == SHIPPED.parent / "data"


def test_values_become_typed_durations_and_paths(tmp_path: Path) -> None:
    """Hours, days and seconds become timedeltas; relative paths resolve against the config's folder."""
    config = parse(
        {
            "data_directory": "state",
            "storage": {"synchronous": "NORMAL", "busy_timeout_seconds": 2.5},
            "jobs": {
                "retention_days": 7,
                "cleanup_interval": 0.5,
                "backup_interval": 12,
                "backup_directory": "../bk",
                "backup_check": "quick",
            },
            "shutdown_timeout_seconds": 9,
        },
        tmp_path,
    )
    assert config.data_directory == tmp_path / "state"
    assert config.database_path == tmp_path / "state" / "jobs.db"
    assert config.backup_directory == (tmp_path / ".." / "bk").absolute()
    assert config.storage.synchronous == "NORMAL"
    assert config.storage.busy_timeout == timedelta(seconds=2.5)
    assert config.jobs.retention == timedelta(days=7)
    assert config.jobs.cleanup_interval == timedelta(minutes=30)
    assert config.jobs.backup_check == "quick"
    assert parse({}, tmp_path).jobs.backup_check == "integrity"
    assert config.shutdown_timeout == timedelta(seconds=9)


def test_backup_directory_defaults_to_the_data_directory(tmp_path: Path) -> None:
    """Without jobs.backup_directory, backups go next to the database."""
    assert parse({"data_directory": "d"}, tmp_path).backup_directory == tmp_path / "d"


@pytest.mark.parametrize("shipped", [SHIPPED, SHIPPED.parent / "packaging" / "config.yaml"])
def test_commented_webhook_example_is_valid_once_uncommented(tmp_path: Path, shipped: Path) -> None:
    """Following the config's instructions for webhooks gives a config that loads."""
    lines = shipped.read_text().splitlines()
    start = lines.index("# webhooks:")
    example = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        example.append(line[2:])
    config = parse_config(
        yaml.safe_load("\n".join(example)),
        tmp_path / "config.yaml",
        {"SECAUTOD_WEBHOOK_SECRET": "k"},
    )
    assert config.webhooks[0].url == "https://soar.example.org/hooks/secautod"
    assert config.webhooks[0].timeout.total_seconds() == 10


def test_config_is_frozen(tmp_path: Path) -> None:
    """A parsed config cannot be changed by accident."""
    config = parse({}, tmp_path)
    with pytest.raises(AttributeError):
        config.data_directory = tmp_path  # type: ignore[misc]


def test_webhook_secret_comes_from_the_environment_and_hides_itself(tmp_path: Path) -> None:
    """secret_env reads the key from the environment; reprs never show it."""
    config = parse(
        {"webhooks": [{"url": "https://h.example/x", "secret_env": "HOOK"}]},
        tmp_path,
        HOOK="topsecret",
    )
    webhook = config.webhooks[0]
    assert webhook.secret == Secret("topsecret")
    assert webhook.secret is not None
    assert webhook.secret.reveal() == "topsecret"
    assert "topsecret" not in repr(config)
    assert "topsecret" not in repr(webhook.secret)


def test_webhook_secret_is_required_only_where_it_is_used(tmp_path: Path) -> None:
    """The daemon refuses an unset secret_env; other commands load the config without it."""
    document = {"webhooks": [{"url": "https://h.example/x", "secret_env": "HOOK"}]}
    with pytest.raises(ConfigError, match="environment variable HOOK is not set or empty"):
        parse(document, tmp_path)
    config = parse_config(document, tmp_path / "config.yaml", {}, require_secrets=False)
    assert config.webhooks[0].secret_env == "HOOK"
    assert config.webhooks[0].secret is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"jobs": {"retention_days": True}},
            "jobs.retention_days: expected a positive number, got the boolean true",
        ),
        ({"jobs": {"backup_enabled": 1}}, "jobs.backup_enabled: expected true or false, got 1"),
        (
            {"jobs": {"cleanup_interval": float("nan")}},
            "jobs.cleanup_interval: expected a positive number",
        ),
        (
            {"jobs": {"cleanup_interval": float("inf")}},
            "jobs.cleanup_interval: expected a positive number",
        ),
        (
            {"jobs": {"retention_days": None}},
            "jobs.retention_days: expected a positive number, got nothing",
        ),
        ({"storage": {"synchronous": "off"}}, "storage.synchronous: expected one of full, normal"),
        ({"jobs": {"backup_check": "none"}}, "jobs.backup_check: expected one of integrity, quick"),
        (
            {"storage": {"database_file": "../x.db"}},
            "storage.database_file: expected a plain file name",
        ),
        ({"webhooks": {"url": "x"}}, "webhooks: expected a list of endpoints"),
        ({"webhooks": [{"secret_env": "X"}]}, "webhooks[0].url: required"),
        ({"webhooks": [{"url": "https://", "x": 1}]}, "webhooks[0].x: unknown setting"),
        (
            {"webhook_delivery": {"retry_initial_seconds": 10, "retry_max_seconds": 5}},
            "retry_max_seconds: must not be less",
        ),
        ({"logging": {"format": "xml"}}, "logging.format: expected one of auto, json, console"),
        ({1: "x"}, "1: setting names must be text"),
        ({"jobs": {"retry_delay_seconds": 0.0000001}}, "too short"),
        ({"data_directory": ""}, "data_directory: expected non-empty text"),
    ],
)
def test_invalid_values_name_the_key_path(tmp_path: Path, document: object, message: str) -> None:
    """Each invalid value gives a ConfigError (exit 78) naming the key path and the problem."""
    with pytest.raises(ConfigError) as caught:
        parse(document, tmp_path)
    assert message in str(caught.value)
    assert caught.value.exit_status == EX_CONFIG
    assert "\n" not in str(caught.value)


def test_yaml_errors_give_line_and_column(tmp_path: Path) -> None:
    """Invalid YAML is reported with the file, line and column."""
    path = tmp_path / "config.yaml"
    path.write_text("jobs:\n  retention_days: 3\n   backup_keep: 2\n")
    with pytest.raises(ConfigError, match=r"config\.yaml line 3, column \d+: invalid YAML"):
        load_config(path)


def test_unhashable_and_nested_yaml_is_refused(tmp_path: Path) -> None:
    """Exotic YAML (complex keys) is a one-line error, not a crash."""
    path = tmp_path / "config.yaml"
    path.write_text("? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    """A config that is not UTF-8 text is a config error."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"data_directory: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_loading_creates_nothing(tmp_path: Path) -> None:
    """Validating a config checks directories without creating them."""
    path = tmp_path / "config.yaml"
    path.write_text("data_directory: deep/new/data\njobs:\n  backup_directory: other/backups\n")
    config = load_config(path)
    assert config.data_directory == tmp_path / "deep" / "new" / "data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config wins over $SECAUTOD_CONFIG, which wins over ./config.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("{}")
    assert find_config_path("explicit.yaml", {"SECAUTOD_CONFIG": "env.yaml"}) == Path(
        "explicit.yaml"
    )
    assert find_config_path(None, {"SECAUTOD_CONFIG": "env.yaml"}) == Path("env.yaml")
    assert find_config_path(None, {}) == Path("config.yaml")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"webhooks": [{"url": "https://h.example:99999/x"}]},
            "webhooks[0].url: Port out of range",
        ),
        ({"webhooks": [{"url": "https://user:pw@h.example:abc/x?token=t"}]}, "webhooks[0].url:"),
        (
            {"jobs": {"retention_days": 10**400}},
            "jobs.retention_days: expected a positive number, got one too large",
        ),
        (
            {"data_directory": "~no-such-user-here/data"},
            "data_directory: cannot expand ~no-such-user-here/data",
        ),
        ({"data_directory": "nd\0x"}, "data_directory: a path cannot contain a NUL character"),
        (
            {"jobs": {"backup_directory": "b\0"}},
            "jobs.backup_directory: a path cannot contain a NUL character",
        ),
    ],
)
def test_values_that_used_to_crash_are_config_errors(
    tmp_path: Path, document: object, message: str
) -> None:
    """Bad ports, huge numbers and unknown ~users are one-line ConfigErrors (and hide credentials)."""
    with pytest.raises(ConfigError) as caught:
        parse(document, tmp_path)
    assert message in str(caught.value)
    assert "pw" not in str(caught.value)
    assert "token" not in str(caught.value)
