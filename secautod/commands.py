"""What each `secautod` subcommand does, given its parsed arguments.

Each handler returns the exit status and prints data to stdout; errors are
raised and turned into one line by `cli.main()`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from secautod.backup import (
    PRE_RESTORE_KEEP,
    future_backups,
    list_backups,
    newest_backup,
    pre_restore_name,
    prune_pre_restore_files,
    resolve_backup,
    restore_backup,
    restore_hint,
    unused_path,
    with_restore_hint,
)
from secautod.config import (
    Config,
    find_config_path,
    guess_data_directory,
    load_config,
    redact_url,
)
from secautod.errors import (
    EX_NEEDS_ATTENTION,
    EX_OK,
    ConfigError,
    InvalidJobError,
    JobNotFoundError,
    NotFoundError,
    StoreCorruptError,
)
from secautod.files import prepare_directory, probe_directory
from secautod.health import DaemonState, config_digest, running_daemon_state
from secautod.jobs import Job, JobStats, JobStatus
from secautod.lock import DirectoryLock, holder_pid
from secautod.log import configure_logging
from secautod.maintenance import CLEANUP, run_backup, run_cleanup
from secautod.output import (
    Progress,
    bar,
    duration_text,
    plural,
    print_json,
    printable,
    relative_age,
    shorten,
    size_text,
    table,
)
from secautod.recovery import recover, unclaimed_now
from secautod.runtime import open_store
from secautod.status import StatusReport, build_status
from secautod.store import JobStore, verify_database_file, verify_restore_source
from secautod.store.records import JobSummary, SessionRecord, UnreadableRow, describe_problems
from secautod.timestamps import format_timestamp, utc_now


def load(args: argparse.Namespace, *, logs: bool = True) -> Config:
    """Load the config the arguments point at and set up quiet CLI logging.

    Read-only commands log nothing, so they skip the setup (`logs=False`)
    unless --verbose asks for it: it is a fair share of their start-up time.
    No command but `run` sends webhooks, so none needs their secrets: an
    operator's shell rarely has the service's environment file loaded.
    """
    config = load_config(find_config_path(args.config), require_secrets=False)
    if logs or args.verbose:
        configure_logging("info" if args.verbose else "critical", config.logging.format)
    return config


def store_for(config: Config) -> JobStore:
    """Open the existing store for a CLI command (never creates one)."""
    return open_store(config, create=False)


# -- run ----------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground."""
    config = load_config(find_config_path(args.config))
    from secautod.daemon import run_daemon  # keeps APScheduler out of the other commands

    return run_daemon(config)


# -- jobs ---------------------------------------------------------------------------
def cmd_jobs_list(args: argparse.Namespace) -> int:
    """List jobs, newest first; a row secautod cannot read is marked, not fatal."""
    filters = {
        "status": args.status,
        "limit": args.limit,
        "since": args.since,
        "until": args.until,
        "after": args.after,
    }
    with store_for(load(args, logs=False)) as store:
        if args.json:
            entries: Sequence[Job | JobSummary | UnreadableRow] = store.list_job_entries(**filters)
            claims = store.job_claims(
                [e.id for e in entries if isinstance(e, Job) and e.status is JobStatus.RUNNING]
            )
        else:
            summaries = store.list_job_summaries(**filters)  # reads no context
            entries = summaries
    if args.json:
        print_json(
            [
                {**entry.to_dict(), "claimed_by": _claim_of(claims, entry.id)}
                if isinstance(entry, Job)
                else entry.to_dict()
                for entry in entries
                if not isinstance(entry, JobSummary)
            ]
        )
    else:
        now = utc_now()
        rows = [_listing_row(entry, now) for entry in summaries]
        print(table(["id", "status", "created", "updated", "playbook", "error"], rows))
        anchor = _entry_id(entries[-1]) if entries else None
        if args.limit is not None and len(entries) == args.limit and anchor is not None:
            print(f"(first {args.limit}; next page: --after {printable(anchor)})")
    _warn_unreadable([entry for entry in entries if isinstance(entry, UnreadableRow)])
    known = {status.value for status in JobStatus}
    if not entries and args.status is not None and args.status not in known:
        print(
            f"secautod: warning: no job has the status {args.status!r}, which secautod does not "
            f"know (its own: {', '.join(sorted(known))}); other writers' statuses are listed too",
            file=sys.stderr,
        )
    return EX_OK


def cmd_jobs_show(args: argparse.Namespace) -> int:
    """Show one job in full (or what can be read of it)."""
    with store_for(load(args, logs=False)) as store:
        entry = store.load_job_entry(args.job_id)
        claim = store.job_claims([entry.id]).get(entry.id) if isinstance(entry, Job) else None
    if entry is None:
        raise JobNotFoundError(args.job_id)
    if args.json and isinstance(entry, Job):
        print_json({**entry.to_dict(), "claimed_by": None if claim is None else _claim_dict(claim)})
    elif args.json:
        print_json(entry.to_dict())
    elif isinstance(entry, UnreadableRow):
        for name, value in entry.to_dict().items():
            print(f"{name + ':':<14}{printable(str(value)) if value is not None else '-'}")
    else:
        _print_job(entry, claim)
    if isinstance(entry, UnreadableRow):
        _warn_unreadable([entry])
    return EX_OK


def _print_job(job: Job, claim: SessionRecord | None) -> None:
    now = utc_now()
    fields = job.to_dict()
    for name in ("id", "status", "error"):
        value = fields[name]
        print(f"{name + ':':<14}{printable(value) if value is not None else '-'}")
    if claim is not None:
        state = "alive" if claim.alive else (claim.gone_reason or "closed")
        who = printable(claim.describe())
        print(f"{'claimed by:':<14}{who} (session {claim.session_id}, {state})")
    for name in ("created_at", "started_at", "completed_at", "updated_at"):
        moment = getattr(job, name)
        when = f"{fields[name]} ({relative_age(moment, now)})" if moment else "-"
        print(f"{name + ':':<14}{when}")
    for name in ("playbook", "context", "results"):
        print(f"{name}:")
        print_json(fields[name], for_terminal=True)


def _listing_row(entry: JobSummary | UnreadableRow, now: datetime) -> list[str]:
    if isinstance(entry, UnreadableRow):
        shown_id = entry.job_id if entry.job_id is not None else f"(rowid {entry.rowid})"
        return [shown_id, entry.status or "?", "-", "-", "-", "unreadable: see below"]
    return [
        entry.id,
        entry.status,
        relative_age(entry.created_at, now),
        relative_age(entry.updated_at, now),
        shorten(entry.playbook_name or "-", 30),
        shorten(entry.error or "", 40),
    ]


def _entry_id(entry: JobSummary | Job | UnreadableRow) -> str | None:
    return entry.job_id if isinstance(entry, UnreadableRow) else entry.id


_WARNED_ROWS_SHOWN = 5


def _warn_unreadable(rows: Sequence[UnreadableRow]) -> None:
    """Say on stderr which rows could not be read, and that the file itself is fine."""
    if not rows:
        return
    for row in rows[:_WARNED_ROWS_SHOWN]:
        print(f"secautod: warning: rowid {row.rowid}: {printable(row.problem)}", file=sys.stderr)
    more = len(rows) - _WARNED_ROWS_SHOWN
    print(
        f"secautod: warning: {plural(len(rows), 'row')} could not be read"
        + (f" ({more} not shown above)" if more > 0 else "")
        + "; another program wrote them and the database file itself is sound: fix or "
        "delete those rows (secautod jobs delete ID, or by rowid in the sqlite3 shell)",
        file=sys.stderr,
    )


def cmd_jobs_stats(args: argparse.Namespace) -> int:
    """Count jobs per status."""
    with store_for(load(args, logs=False)) as store:
        stats = store.get_stats()
    if args.json:
        print_json(_stats_dict(stats))
        return EX_OK
    largest = max(stats.by_status.values(), default=0)
    rows = [
        [status.value, str(count), bar(count, largest)] for status, count in stats.by_status.items()
    ]
    if stats.other:
        rows.append(["(other)", str(stats.other), bar(stats.other, largest)])
    rows.append(["total", str(stats.total), ""])
    print(table(["status", "jobs", ""], rows))
    rate = stats.success_rate
    print(
        f"success rate: {'-' if rate is None else f'{rate:.1%}'} (completed / (completed + failed))"
    )
    return EX_OK


def cmd_jobs_delete(args: argparse.Namespace) -> int:
    """Delete one job."""
    with store_for(load(args)) as store:
        entry = store.load_job_entry(args.job_id)
        if entry is None:
            raise JobNotFoundError(args.job_id)
        status = entry.status if isinstance(entry, UnreadableRow) else entry.status.value
        if status == JobStatus.RUNNING.value and not args.force:
            raise InvalidJobError(
                f"job {args.job_id!r} is running: an engine may still be working on it; "
                "delete it anyway with --force"
            )
        if not store.delete_job(args.job_id):
            raise JobNotFoundError(args.job_id)
    print(f"deleted job {args.job_id}")
    return EX_OK


# -- maintenance ------------------------------------------------------------------------
def cmd_backup(args: argparse.Namespace) -> int:
    """Take a verified backup now."""
    config = load(args)
    progress = Progress("backup")
    progress.update("copying")
    with store_for(config) as store:
        outcome = run_backup(store, config, utc_now())
    progress.done()
    if args.json:
        print_json(
            {
                "path": str(outcome.path),
                "size_bytes": outcome.size_bytes,
                "duration_ms": outcome.duration_ms,
                "pruned": [str(path) for path in outcome.pruned],
            }
        )
        return EX_OK
    print(f"backup written and verified: {outcome.path} ({size_text(outcome.size_bytes)})")
    if outcome.pruned:
        print(f"removed {len(outcome.pruned)} old backup(s), keeping {config.jobs.backup_keep}")
    return EX_OK


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup into the database (no daemon may run; engines may stay connected)."""
    config = load(args)
    now = utc_now()
    if config.storage.url is not None:
        return _restore_postgres(args, config, config.storage.url, now)
    chosen = _chosen_backup(args, config, config.database_path.name, now)
    progress = Progress("restore")
    prepare_directory(config.data_directory)  # a fresh machine restoring its first database
    # The lock first: with a daemon running, the answer is 75 at once, not
    # after a full integrity check of the backup.
    with DirectoryLock(config.data_directory).acquire("restore"):
        progress.update(f"verifying {chosen.name}")
        verified = verify_restore_source(chosen)  # a bad backup is refused before anything else
        result = restore_backup(
            chosen,
            config.database_path,
            now,
            on_progress=lambda done, total: progress.update(
                f"{size_text(done)} of {size_text(total)}"
            ),
            verified=verified,
        )
        pruned = prune_pre_restore_files(config.database_path, PRE_RESTORE_KEEP, result.previous)
    progress.done()
    with store_for(config) as store:  # brings an older backup's schema up to date
        store.ping()
    if args.json:
        print_json(
            {
                "restored_from": str(chosen),
                "database": str(result.database),
                "jobs": result.backup.jobs,
                "previous_database": str(result.previous) if result.previous else None,
                "replaced_damaged_file": result.swapped,
                "pruned": [str(path) for path in pruned],
            }
        )
        return EX_OK
    print(f"restored {result.database} from {chosen} ({plural(result.backup.jobs, 'job')})")
    if result.swapped:
        print("the database file was too damaged to restore into and was replaced")
    if result.previous is not None:
        print(f"the previous database is kept as {result.previous}")
    if pruned:
        print(f"removed {len(pruned)} older pre-restore file(s), keeping {PRE_RESTORE_KEEP}")
    return EX_OK


def _chosen_backup(
    args: argparse.Namespace, config: Config, database_name: str, now: datetime
) -> Path:
    """Find the backup to restore, warning about newer ones dated in the future."""
    chosen = resolve_backup(args.backup, config.backup_directory, database_name, now=now)
    if args.backup is None:
        backups = list_backups(config.backup_directory, database_name)
        for backup in future_backups(backups, now):
            print(
                f"secautod: warning: passed over {backup.path.name}, dated in the future; "
                "name it to restore it",
                file=sys.stderr,
            )
    return chosen


def _restore_postgres(args: argparse.Namespace, config: Config, url: str, now: datetime) -> int:
    """Restore a pg_dump backup into the configured PostgreSQL database.

    Refuses (75) while a daemon holds the data directory's lock, or while
    other secautod connections (daemons, engines, on any host) use the database.
    """
    from secautod.store.postgres.dump import Server, database_name, restore_dump

    name = database_name(url)
    chosen = _chosen_backup(args, config, name, now)
    password = config.storage.password
    server = Server(url, None if password is None else password.reveal())
    progress = Progress("restore")
    prepare_directory(config.data_directory)
    with DirectoryLock(config.data_directory).acquire("restore"):
        progress.update(f"verifying {chosen.name} in a scratch database")
        # Two restores in one second must not dump over the file the second restores.
        aside = unused_path(config.backup_directory, pre_restore_name(name, now))
        result = restore_dump(server, chosen, aside)
        pruned = prune_pre_restore_files(
            config.backup_directory / name, PRE_RESTORE_KEEP, result.previous
        )
    progress.done()
    with store_for(config) as store:  # brings an older backup's schema up to date
        store.ping()
    if args.json:
        print_json(
            {
                "restored_from": str(chosen),
                "database": config.store_location,
                "jobs": result.backup.jobs,
                "previous_database": str(result.previous) if result.previous else None,
                "replaced_damaged_file": False,
                "pruned": [str(path) for path in pruned],
            }
        )
        return EX_OK
    print(f"restored {config.store_location} from {chosen} ({plural(result.backup.jobs, 'job')})")
    if result.previous is not None:
        print(f"the previous tables are kept as {result.previous}")
    if pruned:
        print(f"removed {len(pruned)} older pre-restore file(s), keeping {PRE_RESTORE_KEEP}")
    return EX_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete finished jobs older than the retention period (or count them)."""
    config = load(args)
    now = utc_now()
    with store_for(config) as store:
        if args.dry_run:
            counts = store.count_expired_jobs(config.jobs.retention, now=now)
            return _print_cleanup_preview(args, config, counts, now)
        progress = Progress("cleanup")
        outcome = run_cleanup(
            store, config, now, on_progress=lambda deleted: progress.update(f"{deleted} deleted")
        )
        progress.done()
    if args.json:
        print_json({"deleted": outcome.deleted, "duration_ms": outcome.duration_ms})
    else:
        days = config.jobs.retention.total_seconds() / 86400
        print(f"deleted {outcome.deleted} finished job(s) older than {days:g} days")
    return EX_OK


def _print_cleanup_preview(
    args: argparse.Namespace, config: Config, counts: dict[JobStatus, int], now: datetime
) -> int:
    cutoff = now - config.jobs.retention
    if args.json:
        print_json(
            {
                "would_delete": sum(counts.values()),
                "by_status": {status.value: count for status, count in counts.items()},
                "finished_before": cutoff,
            }
        )
        return EX_OK
    detail = ", ".join(f"{status.value}: {count}" for status, count in counts.items())
    print(
        f"would delete {sum(counts.values())} job(s) finished before "
        f"{format_timestamp(cutoff)[:19]} UTC ({detail}); nothing was deleted"
    )
    return EX_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config as `run` would and check the database's integrity."""
    # Everything `run` refuses, `check` refuses: an unset secret_env too.
    config = load_config(find_config_path(args.config))
    configure_logging("info" if args.verbose else "critical", config.logging.format)
    probe_directory(config.data_directory, "data_directory")
    if config.jobs.backup_enabled or config.jobs.backup_directory is not None:
        probe_directory(config.backup_directory, "jobs.backup_directory")
    lines = [f"config: ok ({config.path})"]
    if config.storage.url is None and not config.database_path.exists():
        return _print_fresh_install(args, config, lines)
    with store_for(config) as store:
        problems = store.integrity_check()
        if problems:
            raise StoreCorruptError(
                f"{config.store_location} failed its integrity check: "
                f"{describe_problems(problems)}; {restore_hint(config)}"
            )
        try:
            stats = store.get_stats()
        except StoreCorruptError as exc:
            raise with_restore_hint(exc, config) from exc
        version = store.schema_version
    lines.append(
        f"database: ok ({config.store_location}, {plural(stats.total, 'job')}, "
        f"schema version {version})"
    )
    latest = newest_backup(config.backup_directory, store.path.name)
    if latest is not None:
        jobs = _verified_backup_jobs(config, latest.path)
        lines.append(f"newest backup: ok ({latest.path}, {plural(jobs, 'job')})")
    else:
        lines.append(f"newest backup: none in {config.backup_directory}")
    if args.json:
        print_json(
            {
                "config": str(config.path),
                "database": config.store_location,
                "database_created": True,
                "jobs": stats.total,
                "schema_version": version,
                "integrity": "ok",
                "newest_backup": str(latest.path) if latest is not None else None,
            }
        )
    else:
        print("\n".join(lines))
    return EX_OK


def _verified_backup_jobs(config: Config, backup: Path) -> int:
    """Verify a backup as `restore` would; return how many jobs it holds.

    On PostgreSQL the dump is restored into a scratch database (needs CREATEDB).
    """
    if config.storage.url is None:
        return verify_database_file(backup).jobs
    from secautod.store.postgres.dump import Server, verify_dump

    password = config.storage.password
    server = Server(config.storage.url, None if password is None else password.reveal())
    return verify_dump(server, backup).jobs


def _print_fresh_install(args: argparse.Namespace, config: Config, lines: list[str]) -> int:
    """Report a good config whose store the daemon has not created yet (not an error)."""
    note = "not created yet: the daemon creates it on its first start"
    if args.json:
        print_json(
            {
                "config": str(config.path),
                "database": str(config.database_path),
                "database_created": False,
                "jobs": 0,
                "integrity": None,
                "newest_backup": None,
            }
        )
    else:
        lines.append(f"database: {note} ({config.database_path})")
        print("\n".join(lines))
    return EX_OK


def cmd_import_json(args: argparse.Namespace) -> int:
    """Import the legacy JSON job file."""
    # Imported here: the importer brings multiprocessing, which other commands do not need.
    from secautod.legacy_import import import_legacy_file

    config = load(args)
    source = Path(args.file)
    if not source.exists():  # before the store is opened (and maybe created)
        raise NotFoundError(f"no file to import at {source.absolute()}")
    progress = Progress("import")
    with open_store(config) as store:
        report = import_legacy_file(
            store,
            source,
            skip_invalid=args.skip_invalid,
            on_progress=lambda done, total: progress.update(f"{done * 100 // max(total, 1)}%"),
        )
    progress.done()
    if args.json:
        print_json(
            {
                "imported": report.imported,
                "skipped": report.skipped,
                "rejected": [{"job_id": job_id, "reason": why} for job_id, why in report.rejected],
            }
        )
        return EX_OK
    print(
        f"imported {report.imported}, skipped {report.skipped} (already present), "
        f"rejected {len(report.rejected)}"
    )
    for job_id, why in report.rejected:
        print(f"rejected {job_id}: {why}")
    return EX_OK


# -- migrate --------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy the configured store's jobs into the PostgreSQL store named by --to, then verify."""
    from secautod.migrate import check_copy, migrate_jobs, target_name

    config = load(args)
    progress = Progress("migrate")
    if not progress.enabled:  # progress as JSON events on stderr instead of a bar
        configure_logging("info", "json")
    with store_for(config) as source, JobStore(args.to) as target:
        report = migrate_jobs(
            source, target, batch=args.batch, on_progress=_migrate_progress(progress)
        )
        progress.done()
        name = target_name(target)
    if args.json:
        print_json({"to": name, **report.to_dict()})
    else:
        print(
            f"copied {plural(report.copied, 'job')} to {name}; "
            f"{report.already_present} already there, "
            f"{plural(report.unreadable_count, 'unreadable row')} left behind"
        )
        for row in report.unreadable:
            print(f"  unreadable rowid {row.rowid}: {printable(row.problem)}")
        if report.unreadable_count > len(report.unreadable):
            print(f"  ... and {report.unreadable_count - len(report.unreadable)} more")
        if report.matches:
            figures = ", ".join(f"{s} {n}" for s, n in sorted(report.target.by_status.items()))
            print(
                f"verified: {plural(report.target.total, 'job')} ({figures or 'none'}), "
                f"id checksum {report.target.checksum:016x}"
            )
    check_copy(report, target)
    return EX_OK


def _migrate_progress(progress: Progress) -> Callable[[str, int, int], None]:
    """Show migration progress as a bar on a terminal, else as `migrate_progress` events."""
    from secautod.log import get_logger

    log = get_logger("secautod.migrate")

    def report(phase: str, done: int, total: int) -> None:
        if progress.enabled:
            width = 30
            filled = bar(done, total, width).ljust(width)
            progress.update(f"{phase} [{filled}] {done}/{total}")
        else:
            log.info("migrate_progress", phase=phase, done=done, total=total)

    return report


def cmd_recover(args: argparse.Namespace) -> int:
    """Fail the running jobs no engine session claims (the engine stopped)."""
    config = load(args)
    now = utc_now()
    with store_for(config) as store:
        if args.dry_run:
            # Summaries read neither context nor results, and tolerate other writers' rows.
            running = [
                entry.id
                for entry in store.list_job_summaries(status=JobStatus.RUNNING.value)
                if isinstance(entry, JobSummary)
            ]
            claimed = store.job_claims(running)
            ids = [job_id for job_id in running if not _claimed_alive(claimed, job_id)]
        else:
            endpoints = [webhook.url for webhook in config.webhooks]
            ids = [
                job.id or f"rowid {job.rowid}"
                for job in recover(store, unclaimed_now(now), now, endpoints)
            ]
    if args.json:
        print_json({"recovered" if not args.dry_run else "would_recover": ids})
        return EX_OK
    verb = "would fail" if args.dry_run else "failed"
    print(f"{verb} {len(ids)} running job(s) no engine session claims (engine_stopped)")
    for job_id in ids:
        print(f"  {job_id}")
    return EX_OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Apply pending schema migrations now."""
    config = load(args)
    with store_for(config) as store:
        found, now_at = store.schema_version_found, store.schema_version
    if args.json:
        print_json({"database": str(config.database_path), "from": found, "to": now_at})
    elif found == now_at:
        print(f"{config.database_path}: schema already at version {now_at}; nothing to do")
    else:
        print(f"{config.database_path}: schema upgraded from version {found} to {now_at}")
    return EX_OK


def _status_config(args: argparse.Namespace) -> tuple[Config, DaemonState | None, list[str]]:
    """Return the config the running daemon uses, what it published, and notes on the file.

    While a daemon runs, its published settings win over `config.yaml`: an
    edit it has not loaded yet is a note, not a failure. Without a running
    daemon, a config that does not load is the error it will be at start.
    """
    path = find_config_path(args.config)
    try:
        config = load(args, logs=False)
    except ConfigError as exc:
        published = running_daemon_state(guess_data_directory(path))
        if published is None:
            raise
        base = Config(path=path.absolute(), data_directory=guess_data_directory(path))
        note = (
            f"{path} does not load ({exc}); the running daemon keeps the configuration it "
            f"loaded, but a reload will be refused and a restart will fail until it is fixed"
        )
        return published.effective_config(base), published, [note]
    published = running_daemon_state(config.data_directory)
    if published is None:
        return config, None, []
    notes = []
    if published.config_sha256 != config_digest(config.path):
        notes.append(
            f"{config.path} was edited since the daemon loaded it; reload it to apply "
            f"(systemctl reload secautod, or SIGHUP to pid {published.pid})"
        )
    return published.effective_config(config), published, notes


def cmd_status(args: argparse.Namespace) -> int:
    """Summarise the daemon, maintenance, backups and notifications."""
    config, published, notes = _status_config(args)
    now = utc_now()
    if config.storage.url is None and not config.database_path.exists():
        pid = holder_pid(config.data_directory)
        problem = f"no job store at {config.database_path} yet"
        if args.json:
            print_json({"daemon_pid": pid, "problems": [problem]})
        else:
            print(f"daemon: {'pid ' + str(pid) if pid else 'not running'}\nattention: {problem}")
        return EX_NEEDS_ATTENTION
    with store_for(config) as store:
        report = build_status(config, store, now, published, notes)
        cleanup = store.state.task_runs().get(CLEANUP)
    never_expire = int(cleanup.last_result.get("undatable", 0)) if cleanup is not None else 0
    if args.json:
        print_json({**_status_dict(report), "jobs_never_expire": never_expire})
    else:
        _print_status(report, now)
        if never_expire:
            print(
                f"note:          {plural(never_expire, 'finished job')} without a readable date "
                "never expire (see the jobs_never_expire log event for their rowids)"
            )
    return EX_NEEDS_ATTENTION if report.problems else EX_OK


# -- helpers ----------------------------------------------------------------------------
def _claim_of(claims: dict[str, SessionRecord], job_id: str) -> dict[str, Any] | None:
    return _claim_dict(claims[job_id]) if job_id in claims else None


def _claimed_alive(claims: dict[str, SessionRecord], job_id: str) -> bool:
    return job_id in claims and claims[job_id].alive


def _claim_dict(session: SessionRecord) -> dict[str, Any]:
    return {
        "session": session.session_id,
        "name": session.name,
        "host": session.host,
        "pid": session.pid,
        "alive": session.alive,
    }


def _playbook_name(job: Job) -> str:
    playbook: Any = job.playbook
    if isinstance(playbook, dict):
        for key in ("name", "id", "title"):
            if isinstance(playbook.get(key), str):
                return str(playbook[key])
    return "-"


def _stats_dict(stats: JobStats) -> dict[str, Any]:
    return {
        "total": stats.total,
        "by_status": {status.value: count for status, count in stats.by_status.items()},
        "other": stats.other,
        "success_rate": stats.success_rate,
    }


def _status_dict(report: StatusReport) -> dict[str, Any]:
    backup = report.newest_backup
    return {
        "daemon_pid": report.daemon_pid,
        "database": str(report.database),
        "database_bytes": report.database_bytes,
        "last_boot": None
        if report.last_boot is None
        else {
            "boot_id": report.last_boot.boot_id,
            "started_at": report.last_boot.started_at,
            "pid": report.last_boot.pid,
            "version": report.last_boot.version,
            "recovered_jobs": report.last_boot.recovered_jobs,
        },
        "tasks": {
            task.task: {
                "interval_seconds": task.interval.total_seconds(),
                "last_success_at": task.last_success_at,
                "last_error": task.last_error,
                "next_run_at": task.next_run_at,
                "overdue": task.overdue,
            }
            for task in report.tasks
        },
        "newest_backup": None
        if backup is None
        else {
            "path": str(backup.path),
            "taken_at": backup.taken_at,
            "size_bytes": backup.size_bytes,
            "verified": backup.verified,
        },
        "engine_sessions": [
            {**_claim_dict(session), "running_jobs": session.running_jobs}
            for session in report.sessions
        ],
        "undelivered_notifications": {
            redact_url(summary.endpoint): summary.count for summary in report.outbox
        },
        "store_check": None
        if report.store_check is None
        else {
            "checked_at": report.store_check.checked_at,
            "ok": report.store_check.ok,
            "problems": list(report.store_check.problems),
        },
        "leader": _leader_dict(report),
        "problems": report.problems,
        "notes": report.notes,
    }


def _leader_dict(report: StatusReport) -> dict[str, Any] | None:
    """Who leads a shared store (None on SQLite, where this daemon is the only one)."""
    leader = report.leader
    if not report.elects_leader or leader is None:
        return None
    return {
        "term": leader.term,
        "instance": leader.holder.instance_id,
        "host": leader.holder.host,
        "pid": leader.holder.pid,
        "since": leader.acquired_at,
        "lease_expires_at": leader.expires_at,
        "current": leader.current,
        "this_instance": report.leading_here,
    }


def _leader_text(report: StatusReport, now: datetime) -> str:
    leader = report.leader
    if leader is None:
        return "none yet"
    who = "this instance" if report.leading_here else leader.holder.describe()
    if not leader.current:
        ran_out = relative_age(leader.expires_at, now)
        return f"none: the lease of {who} (term {leader.term}) ran out {ran_out}"
    return f"{who} (term {leader.term}, since {relative_age(leader.acquired_at, now)})"


def _print_status(report: StatusReport, now: datetime) -> None:
    daemon = f"running (pid {report.daemon_pid})" if report.daemon_pid else "not running"
    if report.daemon_pid == 0:
        daemon = "running (pid unknown)"
    print(f"daemon:        {daemon}")
    print(f"database:      {report.database} ({size_text(report.database_bytes)})")
    for task in report.tasks:
        last = relative_age(task.last_success_at, now) if task.last_success_at else "never"
        due = "now" if task.next_run_at <= now else relative_age(task.next_run_at, now)
        every = duration_text(task.interval)
        print(f"{task.task + ':':<15}last {last}, next {due} (every {every})")
    backup = report.newest_backup
    if backup is None:
        print("newest backup: none")
    else:
        verified = "verified" if backup.verified else "not verified by this store"
        print(
            f"newest backup: {backup.path.name} ({relative_age(backup.taken_at, now)}, "
            f"{size_text(backup.size_bytes)}, {verified})"
        )
    if report.elects_leader:
        print(f"leader:        {_leader_text(report, now)}")
    print(f"engines:       {len(report.sessions)} session(s) alive")
    for session in report.sessions:
        renewed = relative_age(session.renewed_at, now)
        print(
            f"  {session.describe()}: {session.running_jobs} running job(s), "
            f"lease renewed {renewed}"
        )
    waiting = sum(summary.count for summary in report.outbox)
    print(f"webhooks:      {waiting} notification(s) undelivered")
    check = report.store_check
    if check is not None:
        verdict = "ok" if check.ok else "DAMAGED"
        print(f"store check:   {verdict} ({relative_age(check.checked_at, now)})")
    for problem in report.problems:
        print(f"attention:     {problem}")
    for note in report.notes:
        print(f"note:          {note}")
