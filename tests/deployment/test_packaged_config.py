"""packaging/config.yaml: the config of the Debian package and the container image."""

from __future__ import annotations

from pathlib import Path

import yaml
from deploy_support import PACKAGED_CONFIG, REPO, write_packaged_config

from secautod.config import load_config

# The only settings in which a packaged install differs from the source tree's defaults.
PACKAGED = {"data_directory": "/var/lib/secautod", "logging.format": "json"}


def flatten(document: dict[str, object], prefix: str = "") -> dict[str, object]:
    """Map dotted key paths (`jobs.retention_days`) to values."""
    flat: dict[str, object] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_packaged_config_differs_from_the_defaults_only_where_intended() -> None:
    """Apart from data_directory and logging.format, the packaged config keeps config.yaml's defaults."""
    defaults = flatten(yaml.safe_load((REPO / "config.yaml").read_text()))
    packaged = flatten(yaml.safe_load(PACKAGED_CONFIG.read_text()))
    assert packaged == {**defaults, **PACKAGED}


def test_packaged_config_is_valid(tmp_path: Path) -> None:
    """secautod's own loader accepts the packaged config (with its data moved into tmp_path)."""
    config = load_config(write_packaged_config(tmp_path, tmp_path / "data"))
    assert config.logging.format == "json"
    assert config.data_directory == tmp_path / "data"
