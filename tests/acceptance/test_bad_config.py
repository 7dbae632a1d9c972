"""Every class of bad configuration: exit 78, one line naming the key, nothing created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import run_cli

CASES = {
    "invalid YAML": ("jobs: [retention_days: 3\n", "invalid YAML"),
    "top level not a mapping": ("- data_directory: data\n", "top level: expected a mapping"),
    "empty file": ("", "empty"),
    "unknown key with hint": (
        "data_directory: data\njobs:\n  retention_dayz: 3\n",
        "jobs.retention_dayz: unknown setting (did you mean jobs.retention_days?)",
    ),
    "unknown top-level key": (
        "data_directory: data\nwebhookz: []\n",
        "webhookz: unknown setting (did you mean webhooks?)",
    ),
    "wrong type": (
        "data_directory: data\njobs:\n  retention_days: thirty\n",
        "jobs.retention_days: expected a positive number, got the string 'thirty'",
    ),
    "string for boolean": (
        "data_directory: data\njobs:\n  backup_enabled: 'true'\n",
        "jobs.backup_enabled: expected true or false, got the string 'true'",
    ),
    "negative interval": (
        "data_directory: data\njobs:\n  cleanup_interval: -1\n",
        "jobs.cleanup_interval: expected a positive number, got -1",
    ),
    "zero retention": (
        "data_directory: data\njobs:\n  retention_days: 0\n",
        "jobs.retention_days: expected a positive number",
    ),
    "zero backups kept": (
        "data_directory: data\njobs:\n  backup_keep: 0\n",
        "jobs.backup_keep: expected a positive whole number",
    ),
    "fractional backups kept": (
        "data_directory: data\njobs:\n  backup_keep: 2.5\n",
        "jobs.backup_keep: expected a positive whole number",
    ),
    "bad log level": (
        "data_directory: data\nlogging:\n  level: loud\n",
        "logging.level: expected one of debug, info, warning, error",
    ),
    "bad webhook url": (
        "data_directory: data\nwebhooks:\n  - url: ftp://example.org/x\n",
        "webhooks[0].url: expected an http:// or https:// URL",
    ),
    "webhook secret env unset": (
        "data_directory: data\nwebhooks:\n  - url: https://example.org/x\n    secret_env: SECAUTOD_TEST_UNSET_SECRET\n",
        "webhooks[0].secret_env: the environment variable SECAUTOD_TEST_UNSET_SECRET is not set",
    ),
    "duplicate key": (
        "data_directory: data\ndata_directory: other\n",
        "duplicate key 'data_directory'",
    ),
    "section of wrong type": (
        "data_directory: data\njobs: 5\n",
        "jobs: expected a mapping of settings, got 5",
    ),
    "absurd interval": (
        "data_directory: data\njobs:\n  backup_interval: 1.0e+300\n",
        "jobs.backup_interval: 1e+300 hours is longer than a century",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exits_78_with_one_line_and_creates_nothing(tmp_path: Path, case: str) -> None:
    """The daemon refuses the config with status 78 and one line; no data directory appears."""
    text, expected = CASES[case]
    config = tmp_path / "config.yaml"
    config.write_text(text)
    before = sorted(path.name for path in tmp_path.iterdir())
    result = run_cli(
        "run", "--config", str(config), env={"SECAUTOD_TEST_UNSET_SECRET": ""}, timeout=20
    )
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert lines[0].startswith(f"secautod: {config}")
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    """A config path that does not exist is a config error naming the path."""
    result = run_cli("run", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 78
    assert "cannot read config file" in result.stderr
    assert str(tmp_path / "nope.yaml") in result.stderr


def test_config_path_from_environment(tmp_path: Path) -> None:
    """SECAUTOD_CONFIG is used when --config is not given."""
    config = tmp_path / "from-env.yaml"
    config.write_text("jobs: {retention_days: -5}\n")
    result = run_cli("check", env={"SECAUTOD_CONFIG": str(config)})
    assert result.returncode == 78
    assert str(config) in result.stderr


def test_unwritable_data_directory_exits_78(tmp_path: Path) -> None:
    """A data directory that cannot be created (its parent is a file) is refused up front."""
    (tmp_path / "blocker").write_text("a file, not a directory")
    config = tmp_path / "config.yaml"
    config.write_text("data_directory: blocker/data\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 78
    assert "data_directory" in result.stderr
    assert "is not a directory" in result.stderr


def test_read_only_data_directory_exits_78(tmp_path: Path, small_tmpfs_ro: Path) -> None:
    """A data directory on a read-only filesystem is refused with 78, nothing written."""
    config = tmp_path / "config.yaml"
    config.write_text(f"data_directory: {small_tmpfs_ro}/data\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 78
    assert "not writable" in result.stderr or "cannot be created" in result.stderr
    assert os.listdir(small_tmpfs_ro) == []
