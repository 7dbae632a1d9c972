"""`jobs list` and `jobs show` against rows a foreign or hostile writer left."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from harness import run_cli, write_config

from secautod import JobStore

COLUMNS = "id, status, playbook, context, results, error, created_at"
WHEN = "2026-01-21 10:00:00.000"


def installation_with(tmp_path: Path, *rows: tuple[Any, ...]) -> Path:
    """A config and a store holding `rows`, written as a foreign program would."""
    config = write_config(tmp_path)
    path = tmp_path / "data" / "jobs.db"
    JobStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.executemany(f"INSERT INTO jobs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    return config


def cli(config: Path, *args: str) -> Any:
    return run_cli(*args, "--config", str(config))


def test_jobs_list_shows_readable_rows_and_marks_the_unreadable_one(tmp_path: Path) -> None:
    """One BLOB id and one non-JSON context: exit 0, both readable rows, the bad one by rowid."""
    config = installation_with(
        tmp_path,
        ("ok-1", "completed", '{"name":"triage"}', "{}", None, None, WHEN),
        (b"\x01\x02", "running", "{}", "{}", None, None, WHEN),
        ("ok-2", "failed", "{}", "{not json", None, None, WHEN),
    )
    result = cli(config, "jobs", "list")
    assert result.returncode == 0, result.stderr
    assert "ok-1" in result.stdout
    assert "ok-2" in result.stdout
    assert "(rowid 2)" in result.stdout
    assert "warning: rowid 2" in result.stderr
    assert "1 row could not be read" in result.stderr

    as_json = cli(config, "jobs", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert {entry.get("rowid") for entry in listed} == {None, 2, 3}
    assert [entry["id"] for entry in listed if "rowid" not in entry] == ["ok-1"]
    assert "warning: rowid 3" in as_json.stderr


def test_jobs_show_of_an_unreadable_row_exits_0_with_a_warning(tmp_path: Path) -> None:
    """`jobs show` of a row with a non-JSON context says what is wrong instead of exit 74."""
    config = installation_with(tmp_path, ("bad", "failed", "{}", "{oops", None, None, WHEN))
    result = cli(config, "jobs", "show", "bad")
    assert result.returncode == 0, result.stderr
    assert "unreadable:" in result.stdout
    assert "context" in result.stdout
    assert "warning: rowid 1" in result.stderr


def test_jobs_list_accepts_a_status_only_foreign_writers_use(tmp_path: Path) -> None:
    """`--status queued` lists the rows another writer put in that status."""
    config = installation_with(
        tmp_path,
        ("q", "queued", "{}", "{}", None, None, WHEN),
        ("p", "pending", "{}", "{}", None, None, WHEN),
    )
    result = cli(config, "jobs", "list", "--status", "queued")
    assert result.returncode == 0, result.stderr
    ids = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert ids == ["q"]


def test_human_output_escapes_terminal_control_characters(tmp_path: Path) -> None:
    """An id with a newline cannot forge a row, and ESC/OSC sequences never reach the terminal."""
    forged = "real\nforged-row  completed  1h ago"
    error = "boom\x1b[2J\x1b]0;owned\x07"
    config = installation_with(
        tmp_path,
        (forged, "failed", '{"name":"x\\u009b31m"}', "{}", None, error, WHEN),
    )
    listing = cli(config, "jobs", "list")
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 2  # the header and one row
    assert "\x1b" not in listing.stdout
    assert "\x9b" not in listing.stdout
    assert "real\\nforged-row" in listing.stdout

    shown = cli(config, "jobs", "show", forged)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout
    assert "\x07" not in shown.stdout
    assert "\x9b" not in shown.stdout
    assert "boom\\x1b[2J" in shown.stdout
