"""The `secautod` command line: argument parsing and the one error handler.

`main()` is the only place that turns an exception into a message and an
exit status: a `SecautodError` becomes one line on stderr and its own
status; anything else is a bug and keeps its traceback. Command modules
are imported only when a command runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import textwrap
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from secautod import __version__
from secautod.errors import EX_UNEXPECTED, EXIT_STATUS_HELP, SecautodError
from secautod.jobs import JobStatus

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Paragraphs of a command's --help are wrapped to this width (argparse's own, in 80 columns).
HELP_WIDTH = 78
EXIT_STATUSES = "exit statuses:\n" + "".join(
    f"  {status:<3} {meaning}\n" for status, meaning in EXIT_STATUS_HELP.items()
)


def point_in_time(text: str) -> datetime:
    """Parse --since/--until: ISO 8601 (UTC unless an offset is given) or an age like 7d."""
    match = _RELATIVE.match(text.strip())
    try:
        if match:
            seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
            return datetime.now(UTC) - timedelta(seconds=seconds)
        parsed = datetime.fromisoformat(text.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time (2026-01-21T10:00:00Z) nor an age (30m, 24h, 7d)"
        ) from None
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is outside the range of dates") from None


_SQLITE_MAX_INTEGER = 2**63 - 1
_STATUS_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def status_name(text: str) -> str:
    """Parse --status: a known status or another writer's (letters, digits, `_.:-`)."""
    if not _STATUS_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"expected a status name such as failed or queued, got {text!r}"
        )
    return text


def positive_limit(text: str) -> int:
    """Parse --limit: a whole number from 1 to SQLite's largest integer."""
    if not text.isdigit() or not 1 <= int(text) <= _SQLITE_MAX_INTEGER:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {_SQLITE_MAX_INTEGER}, got {text!r}"
        )
    return int(text)


MAX_MIGRATE_BATCH = 100_000


def batch_size(text: str) -> int:
    """Parse --batch: a whole number of jobs per transaction, 1 to 100000."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_MIGRATE_BATCH:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_MIGRATE_BATCH}, got {text!r}"
        )
    return int(text)


def postgres_url(text: str) -> str:
    """Parse --to: a postgresql:// (or postgres://) URL; the text is never echoed (a password)."""
    if text.split("://", 1)[0] not in ("postgresql", "postgres") or "://" not in text:
        raise argparse.ArgumentTypeError("expected a postgresql://USER@HOST/DATABASE URL")
    return text


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SECAUTOD_CONFIG, else ./config.yaml, "
        "else /etc/secautod/config.yaml)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens to stderr")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")

    parser = argparse.ArgumentParser(
        prog="secautod",
        description="Job store supervisor of the SecAuto SOAR engine: recovers interrupted "
        "jobs, prunes old ones, takes verified backups.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"secautod {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str,
        handler: str,
        help_text: str,
        example: str,
        parents: Sequence[argparse.ArgumentParser] = (),
        group: Any = commands,
        note: str = "",
    ) -> argparse.ArgumentParser:
        """Add a command; `note` is a paragraph shown in its --help before the example."""
        shown = textwrap.fill(note, HELP_WIDTH) + "\n\n" if note else ""
        sub: argparse.ArgumentParser = group.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"{shown}example:\n  {example}\n\n{EXIT_STATUSES}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common, *parents],
        )
        sub.set_defaults(handler=handler)
        return sub

    command(
        "run",
        "cmd_run",
        "run the daemon in the foreground (logs to stderr; stop with SIGTERM or Ctrl-C)",
        "secautod run --config /etc/secautod/config.yaml",
    )

    jobs = commands.add_parser(
        "jobs", help="inspect and delete jobs", description="Inspect and delete jobs."
    )
    job_commands = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)

    def job_command(
        name: str, handler: str, help_text: str, example: str, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        parents = [as_json] if json_flag else []
        return command(name, handler, help_text, example, parents, group=job_commands)

    listing = job_command(
        "list",
        "cmd_jobs_list",
        "list jobs, newest first",
        "secautod jobs list --status failed --since 24h",
    )
    listing.add_argument(
        "--status",
        type=status_name,
        metavar="STATUS",
        help=f"only jobs in this status ({', '.join(status.value for status in JobStatus)}, "
        "or another writer's, such as queued)",
    )
    listing.add_argument(
        "--since",
        type=point_in_time,
        metavar="TIME",
        help="created at or after (ISO 8601 or age: 7d)",
    )
    listing.add_argument(
        "--until", type=point_in_time, metavar="TIME", help="created before (ISO 8601 or age: 1h)"
    )
    listing.add_argument(
        "--limit", type=positive_limit, default=50, metavar="N", help="at most N jobs (default 50)"
    )
    listing.add_argument("--after", metavar="ID", help="next page: jobs listed after this job id")
    show = job_command(
        "show", "cmd_jobs_show", "show one job in full", "secautod jobs show 3f2a9c1e-..."
    )
    show.add_argument("job_id", metavar="ID")
    job_command(
        "stats",
        "cmd_jobs_stats",
        "count jobs per status, with the success rate",
        "secautod jobs stats",
    )
    delete = job_command(
        "delete",
        "cmd_jobs_delete",
        "delete one job",
        "secautod jobs delete 3f2a9c1e-...",
        json_flag=False,
    )
    delete.add_argument("job_id", metavar="ID")
    delete.add_argument(
        "--force", action="store_true", help="delete the job even while it is running"
    )

    command(
        "backup",
        "cmd_backup",
        "take a verified backup now (safe while the daemon runs)",
        "secautod backup",
        [as_json],
    )
    restore = command(
        "restore",
        "cmd_restore",
        "restore a backup into the database through SQLite (stop the daemon first; connected "
        "engines see the restored jobs in their next transaction); a copy of the current "
        "database is kept as jobs.db.pre-restore-YYYYMMDD-HHMMSS (the newest 3 are kept)",
        "secautod restore jobs.db.backup.20261122-030000",
        [as_json],
    )
    restore.add_argument(
        "backup", nargs="?", metavar="BACKUP", help="backup file or name (default: the newest)"
    )
    cleanup = command(
        "cleanup",
        "cmd_cleanup",
        "delete finished jobs older than jobs.retention_days (safe while the daemon runs)",
        "secautod cleanup --dry-run",
        [as_json],
    )
    cleanup.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    command(
        "check",
        "cmd_check",
        "validate the config and check the database and newest backup for damage",
        "secautod check --config /etc/secautod/config.yaml",
        [as_json],
    )
    importing = command(
        "import-json",
        "cmd_import_json",
        "import the legacy jobs.json file in one transaction (running it twice changes nothing)",
        "secautod import-json data/jobs.json",
        [as_json],
    )
    importing.add_argument("file", metavar="FILE", help="the legacy JSON job file")
    importing.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out jobs with invalid fields instead of importing nothing",
    )
    recover = command(
        "recover",
        "cmd_recover",
        "fail the running jobs no engine session claims, now (engine_stopped); safe while the "
        "daemon runs, which delivers their webhooks (for the engine unit's ExecStopPost=)",
        "secautod recover --config /etc/secautod/config.yaml",
        [as_json],
    )
    recover.add_argument(
        "--dry-run", action="store_true", help="only list the jobs that would be failed"
    )
    migrating = command(
        "migrate",
        "cmd_migrate",
        "copy the configured SQLite store's jobs into a PostgreSQL store, in committed "
        "batches (running it again goes on and changes nothing), then verify the copy",
        "secautod migrate --config /etc/secautod/config.yaml --to postgresql://secautod@db/secautod",
        [as_json],
        note="Only the jobs table is copied: secautod's own bookkeeping (daemon starts, "
        "maintenance history, backup records, the webhook outbox, engine sessions) stays "
        "behind. Deliver or drop pending webhooks before you stop (secautod status lists "
        "the outbox).",
    )
    migrating.add_argument(
        "--to",
        required=True,
        type=postgres_url,
        metavar="URL",
        help="the PostgreSQL store to copy into (created and migrated if needed); a password "
        "may come from the URL, PGPASSWORD or libpq's passfile",
    )
    migrating.add_argument(
        "--batch",
        type=batch_size,
        default=2000,
        metavar="N",
        help="jobs per transaction (default 2000)",
    )
    command(
        "upgrade",
        "cmd_upgrade",
        "apply pending schema migrations now (for an upgrade window or the engine unit's "
        "ExecStartPre=), so the daemon's first start after an upgrade does not",
        "secautod upgrade --config /etc/secautod/config.yaml",
        [as_json],
    )
    command(
        "status",
        "cmd_status",
        "show daemon, maintenance, backup and webhook state; exits 3 when something needs "
        "attention (usable as a health check)",
        "secautod status --json",
        [as_json],
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        handler = getattr(importlib.import_module("secautod.commands"), args.handler)
        return int(handler(args))
    except SecautodError as exc:
        message = " ".join(str(exc).split())  # always one line, whatever the cause said
        if getattr(args, "json", False):  # a script reading JSON gets its error as JSON
            error = {"error": message, "type": type(exc).__name__, "exit_status": exc.exit_status}
            print(json.dumps(error), file=sys.stderr)
        else:
            print(f"secautod: {message}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("secautod: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`secautod jobs list | head`): not an error worth a word.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EX_UNEXPECTED
    except Exception:
        traceback.print_exc()
        print(
            "secautod: unexpected error (a bug); please report it with the traceback above",
            file=sys.stderr,
        )
        return EX_UNEXPECTED
