"""The drop-in for the engine's unit: `secautod recover` when the engine stops."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from secautod.cli import build_parser

DROP_IN = Path(__file__).parents[2] / "packaging" / "engine-unit" / "secautod-recover.conf"


def test_drop_in_runs_secautod_recover_as_the_secautod_user() -> None:
    """ExecStopPost= runs a `secautod recover` the CLI accepts, as user secautod, with the packaged config."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(DROP_IN.read_text())
    command = unit["Service"]["ExecStopPost"]
    assert command.startswith("+/usr/sbin/runuser -u secautod -- /usr/bin/secautod ")
    arguments = shlex.split(command)[5:]
    parsed = build_parser().parse_args(arguments)
    assert parsed.handler == "cmd_recover"
    assert parsed.config == "/etc/secautod/config.yaml"


def test_the_package_installs_the_drop_in() -> None:
    """The Debian package ships the drop-in under /usr/share/secautod/engine-unit/."""
    install = (Path(__file__).parents[2] / "packaging" / "debian" / "secautod.install").read_text()
    assert "packaging/engine-unit/secautod-recover.conf usr/share/secautod/engine-unit/" in install
