"""Every SQL statement secautod runs, by name (DDL lives in `migrations/`).

Values are always bound parameters. `list_jobs_query` assembles a listing
from the fixed fragments below; no caller text ever becomes SQL.
"""

from __future__ import annotations

from secautod.jobs import JOB_COLUMNS as _COLUMN_NAMES
from secautod.jobs import TERMINAL_STATUSES

JOB_COLUMNS = ", ".join(_COLUMN_NAMES)
_TERMINAL = "(" + ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES)) + ")"

# -- schema bookkeeping ------------------------------------------------------
CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""
MIGRATIONS_TABLE_EXISTS = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
)
SELECT_SCHEMA_VERSION = "SELECT max(version) FROM schema_migrations"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
JOBS_TABLE_INFO = "PRAGMA table_info(jobs)"
PING = "SELECT count(*) FROM schema_migrations"
NORMALIZE_TIMESTAMP = "SELECT strftime('%Y-%m-%d %H:%M:%f', ?)"
# A write takes the write lock up front; a read transaction pins one snapshot
# across several statements (a page of jobs and its anchor, a backup's copy).
BEGIN_WRITE = "BEGIN IMMEDIATE"
BEGIN_READ = "BEGIN"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"
# Backups are single self-contained files, not WAL databases.
USE_ROLLBACK_JOURNAL = "PRAGMA journal_mode = DELETE"
# PASSIVE never waits and never blocks writers; RESTART/TRUNCATE block new writers
# while they wait for readers (a long backup), so they are used only when no one
# else can have the file open (restore, under the lock).
CHECKPOINT_PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"
CHECKPOINT_TRUNCATE = "PRAGMA wal_checkpoint(TRUNCATE)"
# Cleanup checkpoints between its batches itself, so no commit inherits a big WAL.
AUTOCHECKPOINT_OFF = "PRAGMA wal_autocheckpoint = 0"
AUTOCHECKPOINT_DEFAULT = "PRAGMA wal_autocheckpoint = 1000"

# -- jobs ---------------------------------------------------------------------
UPSERT_JOB = f"""
INSERT INTO jobs ({JOB_COLUMNS})
VALUES (:id, :status, :playbook, :context, :results, :error,
        :created_at, :started_at, :completed_at, :updated_at)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status,
    playbook = excluded.playbook,
    context = excluded.context,
    results = excluded.results,
    error = excluded.error,
    created_at = excluded.created_at,
    started_at = excluded.started_at,
    completed_at = excluded.completed_at,
    updated_at = excluded.updated_at"""
# Positional: an import binds millions of rows, and tuples bind faster than dicts.
INSERT_JOB_IF_ABSENT = f"""
INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING"""
# 64 MiB of page cache while an import runs (negative: KiB); then what it was.
CACHE_SIZE = "PRAGMA cache_size"
IMPORT_CACHE_SIZE = "PRAGMA cache_size = -65536"


def set_cache_size(pages_or_kib: int) -> str:
    """Return the PRAGMA that sets the page cache (PRAGMA takes no bound parameters)."""
    return f"PRAGMA cache_size = {int(pages_or_kib)}"


# Refusing a file that names a job twice: ids inserted earlier in this import
# have rowids from the import's first one on; ids that were stored before it
# and mentioned once already are kept in a temporary table.
NEXT_JOB_ROWID = "SELECT coalesce(max(rowid), 0) + 1 FROM jobs"
FIND_IMPORTED_EARLIER = """
SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?)) AND rowid >= ? AND rowid < ?
LIMIT 1"""
CREATE_IMPORT_SEEN = "CREATE TEMP TABLE IF NOT EXISTS import_seen (id TEXT PRIMARY KEY)"
CLEAR_IMPORT_SEEN = "DELETE FROM temp.import_seen"
FIND_IMPORT_SEEN = (
    "SELECT id FROM temp.import_seen WHERE id IN (SELECT value FROM json_each(?)) LIMIT 1"
)
MARK_STORED_BEFORE_IMPORT = """
INSERT INTO temp.import_seen (id)
SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?)) AND rowid < ?"""
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
JOB_EXISTS = "SELECT 1 FROM jobs WHERE id = ?"
# running: (re)started now; terminal: completed now; pending: back in the queue.
UPDATE_JOB_STATUS = f"""
UPDATE jobs SET
    status = :status,
    started_at = CASE :status WHEN 'running' THEN :now WHEN 'pending' THEN NULL
                 ELSE started_at END,
    completed_at = CASE WHEN :status IN {_TERMINAL} THEN :now ELSE NULL END,
    updated_at = :now
WHERE id = :id"""
UPDATE_JOB_RESULTS = """
UPDATE jobs SET results = :results, error = :error, updated_at = :now WHERE id = :id"""
DELETE_JOB = "DELETE FROM jobs WHERE id = ?"
COUNT_ALL_JOBS = "SELECT count(*) FROM jobs"
COUNT_JOBS_BY_STATUS = "SELECT status, count(*) FROM jobs GROUP BY status"
# For metrics: idx_jobs_status_created_julian answers the first from its first entry;
# running jobs are few, so the second reads only them (through idx_jobs_status).
OLDEST_PENDING_CREATED = """
SELECT strftime('%Y-%m-%d %H:%M:%f', min(julianday(created_at)))
FROM jobs WHERE status = 'pending'"""
OLDEST_RUNNING_STARTED = """
SELECT strftime('%Y-%m-%d %H:%M:%f', min(julianday(coalesce(started_at, created_at))))
FROM jobs WHERE status = 'running'"""

_LIST_FILTERS = {
    "status": "status = :status",
    "since": "julianday(created_at) >= julianday(:since)",
    "until": "julianday(created_at) < julianday(:until)",
    # Keyset paging: rows that sort after the job named :after, newest first.
    "after": "(julianday(created_at), rowid) < "
    "(SELECT julianday(created_at), rowid FROM jobs WHERE id = :after)",
}


def list_jobs_query(filters: frozenset[str], limited: bool, columns: str = JOB_COLUMNS) -> str:
    """Return the listing query using the named filters (keys of `_LIST_FILTERS`).

    `columns` is one of the fixed column lists here (`JOB_COLUMNS`,
    `JOB_ENTRY_COLUMNS`, `JOB_SUMMARY_COLUMNS`).
    """
    unknown = filters - _LIST_FILTERS.keys()
    if unknown:
        raise ValueError(f"unknown listing filters: {sorted(unknown)}")
    where = " AND ".join(_LIST_FILTERS[name] for name in sorted(filters)) or "1"
    limit = " LIMIT :limit" if limited else ""
    return (
        f"SELECT {columns} FROM jobs WHERE {where} "
        f"ORDER BY julianday(created_at) DESC, rowid DESC{limit}"
    )


# Tolerant reading (`jobs list`, `jobs show`): the rowid names a row whose id
# cannot, and typeof(id) tells a text id from a BLOB one.
JOB_ENTRY_COLUMNS = f"rowid, typeof(id), {JOB_COLUMNS}"
# A listing prints the playbook's name, never the context or results: they
# stay unread. JSON functions refuse BLOBs (Go binds []byte as one), hence the CASTs.
_PLAYBOOK = "CAST(playbook AS TEXT)"
_PLAYBOOK_KEY = "CASE json_type({0}, '$.{1}') WHEN 'text' THEN json_extract({0}, '$.{1}') END"
_PLAYBOOK_NAME = (
    f"CASE WHEN json_valid({_PLAYBOOK}) AND json_type({_PLAYBOOK}) = 'object' THEN coalesce("
    + ", ".join(_PLAYBOOK_KEY.format(_PLAYBOOK, key) for key in ("name", "id", "title"))
    + ") END"
)
LISTED_ERROR_CHARACTERS = 500
JOB_SUMMARY_COLUMNS = (
    "rowid, typeof(id), id, status, created_at, updated_at, "
    f"{_PLAYBOOK_NAME}, substr(CAST(error AS TEXT), 1, {LISTED_ERROR_CHARACTERS})"
)
SELECT_JOB_ENTRY = f"SELECT {JOB_ENTRY_COLUMNS} FROM jobs WHERE id = ?"
# Copying the store elsewhere (`secautod migrate`): keyset pages by rowid.
EXPORT_JOBS = f"SELECT {JOB_ENTRY_COLUMNS} FROM jobs WHERE rowid > ? ORDER BY rowid LIMIT ?"
# Verifying a copy: (id, status) pages in id order (the primary key's index).
_JOB_KEYS = "SELECT id, CAST(status AS TEXT) FROM jobs WHERE typeof(id) = 'text'"
JOB_KEYS_FIRST = f"{_JOB_KEYS} ORDER BY id LIMIT ?"
JOB_KEYS_AFTER = f"{_JOB_KEYS} AND id > ? ORDER BY id LIMIT ?"


# -- retention ----------------------------------------------------------------
# Go's zero time ('0001-01-01...') in completed_at means "not set", as on reading.
_EXPIRED = (
    f"status IN {_TERMINAL} AND coalesce("
    "CASE WHEN completed_at LIKE '0001-01-01%' THEN NULL ELSE julianday(completed_at) END, "
    "julianday(created_at)) < julianday(:cutoff)"
)
MAX_JOB_ROWID = "SELECT coalesce(max(rowid), 0) FROM jobs"
# Changes when another connection commits (never for this connection's own commits).
DATA_VERSION = "PRAGMA data_version"
EXPIRED_IN_ROWID_RANGE = (
    f"SELECT rowid FROM jobs WHERE rowid > :low AND rowid <= :high AND {_EXPIRED}"
)
DELETE_EXPIRED_ROWIDS = (
    f"DELETE FROM jobs WHERE rowid IN (SELECT value FROM json_each(:rowids)) AND {_EXPIRED}"
)
COUNT_EXPIRED_BY_STATUS = f"SELECT status, count(*) FROM jobs WHERE {_EXPIRED} GROUP BY status"
# Finished jobs no date function can read a date of: `_EXPIRED` is never true for them.
_UNDATABLE = (
    f"julianday(created_at) IS NULL AND status IN {_TERMINAL} AND (completed_at IS NULL "
    "OR completed_at LIKE '0001-01-01%' OR julianday(completed_at) IS NULL)"
)
COUNT_UNDATABLE_JOBS = f"SELECT count(*) FROM jobs WHERE {_UNDATABLE}"
SAMPLE_UNDATABLE_JOBS = f"SELECT rowid FROM jobs WHERE {_UNDATABLE} ORDER BY rowid LIMIT ?"

# -- recovery -----------------------------------------------------------------
# Recovered jobs come back with their times as ISO 8601 UTC for the webhook
# body; a time SQLite cannot read is passed on as stored (a BLOB as hex).
_ISO_TIME = (
    "CASE typeof({0}) WHEN 'blob' THEN hex({0}) "
    "ELSE coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', {0}), {0}) END"
)
_FAIL_JOB = "status = 'failed', completed_at = :now, error = :error, updated_at = :now"
_RETURN_RECOVERED = (
    f"RETURNING id, rowid, {_ISO_TIME.format('created_at')}, {_ISO_TIME.format('started_at')}"
)
# A job some session claims that is neither closed nor declared gone.
_CLAIMED_BY_LIVE_SESSION = """EXISTS (
    SELECT 1 FROM job_claims AS c JOIN engine_sessions AS s ON s.session_id = c.session_id
    WHERE c.job_id = jobs.id AND s.gone_at IS NULL AND s.closed_at IS NULL)"""
DECLARE_SESSION_GONE = """
UPDATE engine_sessions SET gone_at = :now, gone_reason = :reason
WHERE session_id = :session_id AND gone_at IS NULL"""
# Driven by the session's claims (idx_job_claims_session, then the primary key):
# `+status` keeps the planner off idx_jobs_status, which would walk every running
# job of every engine while holding the write lock.
RECOVER_SESSION_JOBS = f"""
UPDATE jobs SET {_FAIL_JOB}
WHERE id IN (SELECT job_id FROM job_claims WHERE session_id = :session_id)
  AND +status = 'running'
{_RETURN_RECOVERED}"""
_UNCLAIMED_TO_RECOVER = f"""status = 'running' AND NOT {_CLAIMED_BY_LIVE_SESSION}
  AND (:started_before IS NULL
       OR coalesce(julianday(started_at), julianday(created_at)) < julianday(:started_before))
  AND (:updated_before IS NULL
       OR coalesce(julianday(updated_at), julianday(started_at), julianday(created_at))
          < julianday(:updated_before))"""
RECOVER_UNCLAIMED_JOBS = f"""
UPDATE jobs SET {_FAIL_JOB}
WHERE {_UNCLAIMED_TO_RECOVER}
{_RETURN_RECOVERED}"""
# Asked with a plain read first, so a check with nothing to recover takes no lock.
ANY_UNCLAIMED_TO_RECOVER = f"SELECT EXISTS (SELECT 1 FROM jobs WHERE {_UNCLAIMED_TO_RECOVER})"
QUEUE_NOTIFICATION = """
INSERT INTO webhook_outbox (endpoint, event, job_id, payload, created_at, next_attempt_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?5)"""

# -- engine sessions -------------------------------------------------------------
OPEN_SESSION = """
INSERT INTO engine_sessions (session_id, name, host, boot_id, pid_namespace, pid,
                             process_start, lease_seconds, opened_at, renewed_at)
VALUES (:session_id, :name, :host, :boot_id, :pid_namespace, :pid,
        :process_start, :lease_seconds, :now, :now)"""
RENEW_SESSION = """
UPDATE engine_sessions SET renewed_at = :now, renewals = renewals + 1
WHERE session_id = :session_id AND gone_at IS NULL"""
CLOSE_SESSION = """
UPDATE engine_sessions SET closed_at = :now WHERE session_id = :session_id AND closed_at IS NULL"""
_SESSION_COLUMNS = """s.session_id, s.name, s.host, s.boot_id, s.pid_namespace, s.pid,
    s.process_start, s.lease_seconds, s.opened_at, s.renewed_at, s.renewals, s.closed_at,
    s.gone_at, s.gone_reason"""
_RUNNING_CLAIMS = """(SELECT count(*) FROM job_claims AS c JOIN jobs ON jobs.id = c.job_id
    WHERE c.session_id = s.session_id AND jobs.status = 'running')"""
# What a supervision check looks at: sessions not declared gone, the closed ones
# only while they still claim a running job. No counting: it runs every few seconds.
SELECT_SESSIONS_TO_CHECK = f"""
SELECT {_SESSION_COLUMNS}, 0 FROM engine_sessions AS s
WHERE s.gone_at IS NULL AND (s.closed_at IS NULL OR EXISTS (
    SELECT 1 FROM job_claims AS c JOIN jobs ON jobs.id = c.job_id
    WHERE c.session_id = s.session_id AND jobs.status = 'running'))
ORDER BY s.opened_at"""
COUNT_LIVE_SESSIONS = (
    "SELECT count(*) FROM engine_sessions WHERE gone_at IS NULL AND closed_at IS NULL"
)
SELECT_ALL_SESSIONS = f"""
SELECT {_SESSION_COLUMNS}, {_RUNNING_CLAIMS} FROM engine_sessions AS s ORDER BY s.opened_at"""
SELECT_JOB_CLAIMS = f"""
SELECT c.job_id, {_SESSION_COLUMNS}, 0 FROM job_claims AS c
JOIN engine_sessions AS s ON s.session_id = c.session_id
WHERE c.job_id IN (SELECT value FROM json_each(:job_ids))"""
# A write from a session that was declared gone, to a job it claims (or would claim).
SESSION_FENCED = """
SELECT s.gone_reason FROM engine_sessions AS s
WHERE s.session_id = :session_id AND s.gone_at IS NOT NULL
  AND (:claiming OR EXISTS (SELECT 1 FROM job_claims AS c
                            WHERE c.job_id = :id AND c.session_id = :session_id))"""
CLAIM_JOB = """
INSERT INTO job_claims (job_id, session_id, claimed_at) VALUES (:id, :session_id, :now)
ON CONFLICT (job_id) DO UPDATE SET session_id = excluded.session_id,
                                   claimed_at = excluded.claimed_at"""
RELEASE_CLAIM = "DELETE FROM job_claims WHERE job_id = :id AND session_id = :session_id"
PRUNE_SESSIONS = """
DELETE FROM engine_sessions
WHERE julianday(coalesce(gone_at, closed_at)) < julianday(:before)
  AND NOT EXISTS (SELECT 1 FROM job_claims AS c JOIN jobs ON jobs.id = c.job_id
                  WHERE c.session_id = engine_sessions.session_id
                    AND jobs.status = 'running' AND engine_sessions.gone_at IS NULL)"""
PRUNE_CLAIMS = """
DELETE FROM job_claims
WHERE session_id NOT IN (SELECT session_id FROM engine_sessions)"""

INSERT_BOOT = """
INSERT INTO boots (boot_id, started_at, pid, version, recovered_jobs)
VALUES (:boot_id, :started_at, :pid, :version, :recovered_jobs)
ON CONFLICT (boot_id) DO UPDATE SET recovered_jobs = excluded.recovered_jobs"""
SELECT_LATEST_BOOT = """
SELECT boot_id, started_at, pid, version, recovered_jobs FROM boots
ORDER BY started_at DESC LIMIT 1"""

# -- webhook outbox -----------------------------------------------------------
SELECT_DUE_NOTIFICATIONS = """
SELECT id, endpoint, event, job_id, payload, attempts FROM webhook_outbox
WHERE endpoint = :endpoint AND (next_attempt_at <= :now OR next_attempt_at > :latest)
ORDER BY next_attempt_at, id LIMIT :limit"""
SELECT_NEXT_NOTIFICATION_DUE = """
SELECT min(next_attempt_at) FROM webhook_outbox WHERE endpoint = ?"""
DELETE_NOTIFICATION = "DELETE FROM webhook_outbox WHERE id = ?"
RESCHEDULE_NOTIFICATION = """
UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
WHERE id = ?"""
SUMMARIZE_OUTBOX = """
SELECT endpoint, count(*), min(created_at), max(attempts), min(next_attempt_at)
FROM webhook_outbox GROUP BY endpoint ORDER BY endpoint"""

# -- maintenance history --------------------------------------------------------
SELECT_MAINTENANCE_RUNS = """
SELECT task, last_success_at, last_attempt_at, last_error, last_result FROM maintenance_runs"""
RECORD_TASK_SUCCESS = """
INSERT INTO maintenance_runs (task, last_success_at, last_attempt_at, last_error, last_result)
VALUES (:task, :at, :at, NULL, :result)
ON CONFLICT (task) DO UPDATE SET
    last_success_at = excluded.last_success_at,
    last_attempt_at = excluded.last_attempt_at,
    last_error = NULL,
    last_result = excluded.last_result"""
RECORD_TASK_FAILURE = """
INSERT INTO maintenance_runs (task, last_attempt_at, last_error)
VALUES (:task, :at, :error)
ON CONFLICT (task) DO UPDATE SET
    last_attempt_at = excluded.last_attempt_at,
    last_error = excluded.last_error"""

# -- backups --------------------------------------------------------------------
RECORD_BACKUP = """
INSERT OR REPLACE INTO backup_log (path, created_at, size_bytes, integrity) VALUES (?, ?, ?, ?)"""
SELECT_BACKUP_RECORD = "SELECT created_at, size_bytes, integrity FROM backup_log WHERE path = ?"
FORGET_BACKUP = "DELETE FROM backup_log WHERE path = ?"
