"""Every SQL statement the PostgreSQL backend runs, by name (DDL lives in `migrations/`).

Values are always bound parameters (psycopg's `%(name)s`). `list_jobs_query`
assembles a listing from the fixed fragments below; no caller text ever
becomes SQL.
"""

from __future__ import annotations

from secautod.jobs import JOB_COLUMNS as _COLUMN_NAMES
from secautod.jobs import TERMINAL_STATUSES

JOB_COLUMNS = ", ".join(_COLUMN_NAMES)
_TERMINAL = "(" + ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES)) + ")"

# -- sessions and schema bookkeeping --------------------------------------------
# Every connection works in UTC, so text timestamps without a zone (secautod's
# own form, in imports) mean UTC, as on SQLite.
SET_UTC = "SET TIME ZONE 'UTC'"
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, false)"
SET_SYNCHRONOUS_COMMIT = "SELECT set_config('synchronous_commit', %s, false)"
# A cleanup batch's commit does not wait for its WAL to reach the disk: its row
# locks go at once, and a crash can only bring back jobs the next run deletes.
SET_LOCAL_ASYNCHRONOUS_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"
# Migrations run one secautod at a time, whichever instance starts first.
MIGRATION_LOCK_KEY = 0x5EC0_0001
TAKE_MIGRATION_LOCK = "SELECT pg_advisory_lock(%s)"
RELEASE_MIGRATION_LOCK = "SELECT pg_advisory_unlock(%s)"
CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)"""
# to_regclass follows search_path: a store may live in its own schema.
MIGRATIONS_TABLE_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"
SELECT_SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)"
PING = "SELECT count(*) FROM schema_migrations"
# A snapshot read: several statements see one consistent state (a page and its anchor).
SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# secautod's tables the search path does not find (the checks: checks.py).
MISSING_TABLES = """
SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL ORDER BY name"""
SECAUTOD_TABLES = (
    "jobs",
    "boots",
    "maintenance_runs",
    "backup_log",
    "webhook_outbox",
    "engine_sessions",
    "job_claims",
    "schema_migrations",
)

# -- jobs ---------------------------------------------------------------------
UPSERT_JOB = f"""
INSERT INTO jobs ({JOB_COLUMNS})
VALUES (%(id)s, %(status)s, %(playbook)s, %(context)s, %(results)s, %(error)s,
        %(created_at)s, %(started_at)s, %(completed_at)s, %(updated_at)s)
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
# Imports bind one text array per column (timestamps in secautod's UTC form;
# the session zone is UTC): one statement per batch, rows kept in order. The
# arrays go in binary (`%b`): the text form escapes every quote in Python.
INSERT_JOBS_IF_ABSENT = f"""
INSERT INTO jobs ({JOB_COLUMNS})
SELECT id, status, playbook, context, results, error, created_at::timestamptz,
       started_at::timestamptz, completed_at::timestamptz, updated_at::timestamptz
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::text[], %b::text[], %b::text[])
     WITH ORDINALITY AS batch ({JOB_COLUMNS}, position)
ORDER BY position
ON CONFLICT (id) DO NOTHING"""
# The ids one import has met, to tell "stored before" from "named twice".
CREATE_IMPORT_SEEN = (
    "CREATE TEMP TABLE IF NOT EXISTS import_seen (id TEXT PRIMARY KEY) ON COMMIT DROP"
)
FIND_IMPORT_SEEN = "SELECT id FROM import_seen WHERE id = ANY(%s::text[]) LIMIT 1"
MARK_IMPORT_SEEN = """
INSERT INTO import_seen (id) SELECT unnest(%s::text[]) ON CONFLICT (id) DO NOTHING"""
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s"
JOB_EXISTS = "SELECT 1 FROM jobs WHERE id = %s"
UPDATE_JOB_STATUS = f"""
UPDATE jobs SET
    status = %(status)s,
    started_at = CASE %(status)s WHEN 'running' THEN %(now)s WHEN 'pending' THEN NULL
                 ELSE started_at END,
    completed_at = CASE WHEN %(status)s IN {_TERMINAL} THEN %(now)s ELSE NULL END,
    updated_at = %(now)s
WHERE id = %(id)s"""
UPDATE_JOB_RESULTS = """
UPDATE jobs SET results = %(results)s, error = %(error)s, updated_at = %(now)s
WHERE id = %(id)s"""
DELETE_JOB = "DELETE FROM jobs WHERE id = %s"
COUNT_JOBS_BY_STATUS = "SELECT status, count(*) FROM jobs GROUP BY status"
OLDEST_PENDING_CREATED = "SELECT min(created_at) FROM jobs WHERE status = 'pending'"
OLDEST_RUNNING_STARTED = (
    "SELECT min(coalesce(started_at, created_at)) FROM jobs WHERE status = 'running'"
)

_LIST_FILTERS = {
    "status": "status = %(status)s",
    "since": "created_at >= %(since)s",
    "until": "created_at < %(until)s",
    # Keyset paging: rows that sort after the job named by `after`, newest first.
    "after": "(created_at, rowid) < (SELECT created_at, rowid FROM jobs WHERE id = %(after)s)",
}


# What a tolerant listing reads: the row's rowid before the columns, so a row
# that cannot be read is still named; a summary leaves context and results unread.
JOB_ENTRY_COLUMNS = f"rowid, {JOB_COLUMNS}"
LISTED_ERROR_CHARACTERS = 500  # as on SQLite
JOB_SUMMARY_COLUMNS = (
    f"rowid, id, status, created_at, updated_at, playbook, left(error, {LISTED_ERROR_CHARACTERS})"
)
SELECT_JOB_ENTRY = f"SELECT {JOB_ENTRY_COLUMNS} FROM jobs WHERE id = %s"
# Copying the store elsewhere: keyset pages by rowid (not indexed here: the
# PostgreSQL side is normally a migration's target, read by `JOB_KEYS_*`).
EXPORT_JOBS = f"SELECT {JOB_ENTRY_COLUMNS} FROM jobs WHERE rowid > %s ORDER BY rowid LIMIT %s"
# Verifying a copy: (id, status) pages in id order (the primary key's index).
JOB_KEYS_FIRST = "SELECT id, status FROM jobs ORDER BY id LIMIT %s"
JOB_KEYS_AFTER = "SELECT id, status FROM jobs WHERE id > %s ORDER BY id LIMIT %s"


def list_jobs_query(filters: frozenset[str], limited: bool, columns: str = JOB_COLUMNS) -> str:
    """Return the listing query using the named filters (keys of `_LIST_FILTERS`).

    `columns` is one of the fixed column lists above (`JOB_COLUMNS` by default).
    """
    unknown = filters - _LIST_FILTERS.keys()
    if unknown:
        raise ValueError(f"unknown listing filters: {sorted(unknown)}")
    where = " AND ".join(_LIST_FILTERS[name] for name in sorted(filters)) or "true"
    limit = " LIMIT %(limit)s" if limited else ""
    return f"SELECT {columns} FROM jobs WHERE {where} ORDER BY created_at DESC, rowid DESC{limit}"


# -- retention ------------------------------------------------------------------
# Matches idx_jobs_expiry's expression, so cleanup reads only expired rows.
_EXPIRED = f"status IN {_TERMINAL} AND coalesce(completed_at, created_at) < %(cutoff)s"
# One short batch: rows an engine is writing are skipped (SKIP LOCKED), so
# cleanup never waits for an engine and an engine waits at most one batch.
# The rows are found again by primary key (`rowid` has no index: matching on
# it scanned the whole table, while holding the batch's row locks).
DELETE_EXPIRED_BATCH = f"""
DELETE FROM jobs WHERE id = ANY(ARRAY(
    SELECT id FROM jobs WHERE {_EXPIRED} LIMIT %(limit)s FOR UPDATE SKIP LOCKED))"""
COUNT_EXPIRED_BY_STATUS = f"SELECT status, count(*) FROM jobs WHERE {_EXPIRED} GROUP BY status"

# -- recovery -------------------------------------------------------------------
_FAIL_JOB = "status = 'failed', completed_at = %(now)s, error = %(error)s, updated_at = %(now)s"
_RETURN_RECOVERED = "RETURNING id, rowid, created_at, started_at"
_CLAIMED_BY_LIVE_SESSION = """EXISTS (
    SELECT 1 FROM job_claims AS c JOIN engine_sessions AS s ON s.session_id = c.session_id
    WHERE c.job_id = jobs.id AND s.gone_at IS NULL AND s.closed_at IS NULL)"""
DECLARE_SESSION_GONE = """
UPDATE engine_sessions SET gone_at = %(now)s, gone_reason = %(reason)s
WHERE session_id = %(session_id)s AND gone_at IS NULL"""
RECOVER_SESSION_JOBS = f"""
UPDATE jobs SET {_FAIL_JOB}
WHERE status = 'running'
  AND id IN (SELECT job_id FROM job_claims WHERE session_id = %(session_id)s)
{_RETURN_RECOVERED}"""
RECOVER_UNCLAIMED_JOBS = f"""
UPDATE jobs SET {_FAIL_JOB}
WHERE status = 'running' AND NOT {_CLAIMED_BY_LIVE_SESSION}
  AND (%(started_before)s::timestamptz IS NULL
       OR coalesce(started_at, created_at) < %(started_before)s)
  AND (%(updated_before)s::timestamptz IS NULL
       OR coalesce(updated_at, started_at, created_at) < %(updated_before)s)
{_RETURN_RECOVERED}"""
QUEUE_NOTIFICATION = """
INSERT INTO webhook_outbox (endpoint, event, job_id, payload, created_at, next_attempt_at)
VALUES (%s, %s, %s, %s, %s, %s)"""

# -- engine sessions --------------------------------------------------------------
OPEN_SESSION = """
INSERT INTO engine_sessions (session_id, name, host, boot_id, pid_namespace, pid,
                             process_start, lease_seconds, opened_at, renewed_at)
VALUES (%(session_id)s, %(name)s, %(host)s, %(boot_id)s, %(pid_namespace)s, %(pid)s,
        %(process_start)s, %(lease_seconds)s, %(now)s, %(now)s)"""
RENEW_SESSION = """
UPDATE engine_sessions SET renewed_at = %(now)s, renewals = renewals + 1
WHERE session_id = %(session_id)s AND gone_at IS NULL"""
CLOSE_SESSION = """
UPDATE engine_sessions SET closed_at = %(now)s
WHERE session_id = %(session_id)s AND closed_at IS NULL"""
_SESSION_COLUMNS = """s.session_id, s.name, s.host, s.boot_id, s.pid_namespace, s.pid,
    s.process_start, s.lease_seconds, s.opened_at, s.renewed_at, s.renewals, s.closed_at,
    s.gone_at, s.gone_reason"""
_RUNNING_CLAIMS = """(SELECT count(*) FROM job_claims AS c JOIN jobs ON jobs.id = c.job_id
    WHERE c.session_id = s.session_id AND jobs.status = 'running')"""
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
WHERE c.job_id = ANY(%(job_ids)s::text[])"""
CLAIM_JOB = """
INSERT INTO job_claims (job_id, session_id, claimed_at) VALUES (%(id)s, %(session_id)s, %(now)s)
ON CONFLICT (job_id) DO UPDATE SET session_id = excluded.session_id,
                                   claimed_at = excluded.claimed_at"""
RELEASE_CLAIM = "DELETE FROM job_claims WHERE job_id = %(id)s AND session_id = %(session_id)s"
PRUNE_SESSIONS = """
DELETE FROM engine_sessions
WHERE coalesce(gone_at, closed_at) < %(before)s
  AND NOT EXISTS (SELECT 1 FROM job_claims AS c JOIN jobs ON jobs.id = c.job_id
                  WHERE c.session_id = engine_sessions.session_id
                    AND jobs.status = 'running' AND engine_sessions.gone_at IS NULL)"""

# -- boots ------------------------------------------------------------------------
INSERT_BOOT = """
INSERT INTO boots (boot_id, started_at, pid, version, recovered_jobs)
VALUES (%(boot_id)s, %(started_at)s, %(pid)s, %(version)s, %(recovered_jobs)s)
ON CONFLICT (boot_id) DO UPDATE SET recovered_jobs = excluded.recovered_jobs"""
SELECT_LATEST_BOOT = """
SELECT boot_id, started_at, pid, version, recovered_jobs FROM boots
ORDER BY started_at DESC LIMIT 1"""

# -- webhook outbox ---------------------------------------------------------------
SELECT_DUE_NOTIFICATIONS = """
SELECT id, endpoint, event, job_id, payload, attempts FROM webhook_outbox
WHERE endpoint = %(endpoint)s
  AND (next_attempt_at <= %(now)s OR next_attempt_at > %(latest)s)
ORDER BY next_attempt_at, id LIMIT %(limit)s"""
SELECT_NEXT_NOTIFICATION_DUE = "SELECT min(next_attempt_at) FROM webhook_outbox WHERE endpoint = %s"
DELETE_NOTIFICATION = "DELETE FROM webhook_outbox WHERE id = %s"
RESCHEDULE_NOTIFICATION = """
UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = %s, last_error = %s
WHERE id = %s"""
SUMMARIZE_OUTBOX = """
SELECT endpoint, count(*), min(created_at), max(attempts), min(next_attempt_at)
FROM webhook_outbox GROUP BY endpoint ORDER BY endpoint"""

# -- maintenance history ------------------------------------------------------------
SELECT_MAINTENANCE_RUNS = """
SELECT task, last_success_at, last_attempt_at, last_error, last_result FROM maintenance_runs"""
RECORD_TASK_SUCCESS = """
INSERT INTO maintenance_runs (task, last_success_at, last_attempt_at, last_error, last_result)
VALUES (%(task)s, %(at)s, %(at)s, NULL, %(result)s)
ON CONFLICT (task) DO UPDATE SET
    last_success_at = excluded.last_success_at,
    last_attempt_at = excluded.last_attempt_at,
    last_error = NULL,
    last_result = excluded.last_result"""
RECORD_TASK_FAILURE = """
INSERT INTO maintenance_runs (task, last_attempt_at, last_error)
VALUES (%(task)s, %(at)s, %(error)s)
ON CONFLICT (task) DO UPDATE SET
    last_attempt_at = excluded.last_attempt_at,
    last_error = excluded.last_error"""

# -- backups ------------------------------------------------------------------------
RECORD_BACKUP = """
INSERT INTO backup_log (path, created_at, size_bytes, integrity) VALUES (%s, %s, %s, %s)
ON CONFLICT (path) DO UPDATE SET created_at = excluded.created_at,
    size_bytes = excluded.size_bytes, integrity = excluded.integrity"""
SELECT_BACKUP_RECORD = "SELECT created_at, size_bytes, integrity FROM backup_log WHERE path = %s"
FORGET_BACKUP = "DELETE FROM backup_log WHERE path = %s"

# -- backups (pg_dump archives, verified in a scratch database) -----------------
# The schema secautod's tables live in (the one `jobs` resolves to on the search path).
STORE_SCHEMA = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass('jobs')"""
# Run inside a REPEATABLE READ transaction: pg_dump --snapshot reads the same state.
EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"
CURRENT_ROLE = "SELECT current_user"
# Identifiers are composed with psycopg.sql.Identifier, never from text.
# template0: never connected to, so never "being accessed by other users".
CREATE_DATABASE = "CREATE DATABASE {database} TEMPLATE template0"
DROP_DATABASE = "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
SET_SEARCH_PATH = "SELECT set_config('search_path', %s, false)"
# Other connections of secautod (daemons, engines, CLI) to this database.
OTHER_SECAUTOD_CONNECTIONS = """
SELECT count(*), string_agg(DISTINCT coalesce(host(client_addr), 'local'), ', ')
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()"""

# -- leader election (SPEC §11; migrations/0002_leader_lease.sql) ------------------
LEASE_NAME = "maintenance"
# The holder renews its lease (the same term). The row lock this takes (FOR NO
# KEY UPDATE) lets the holder's own fenced transactions (FOR KEY SHARE) be: a
# renewal never waits for the leader's writes. No row: this instance does not hold it.
RENEW_LEADERSHIP = """
UPDATE leader_lease SET renewed_at = now(), expires_at = now() + make_interval(secs => %(lease)s)
WHERE name = %(name)s AND holder = %(holder)s
RETURNING term"""
# Take a lease that ran out, with the next term (or the first, on an empty
# table). FOR UPDATE waits for every fenced transaction of the old term to end,
# then sees whether the lease still ran out (another claimant may have been
# first). The new term is recorded, the one before it ended. No row: another leads.
TAKE_LEADERSHIP = """
WITH expired AS (
    SELECT name FROM leader_lease WHERE name = %(name)s AND expires_at <= now() FOR UPDATE
), taken AS (
    UPDATE leader_lease AS lease SET term = lease.term + 1, holder = %(holder)s,
        host = %(host)s, pid = %(pid)s, acquired_at = now(), renewed_at = now(),
        expires_at = now() + make_interval(secs => %(lease)s)
    FROM expired WHERE lease.name = expired.name
    RETURNING lease.term, lease.holder, lease.host, lease.pid, lease.acquired_at
), first AS (
    INSERT INTO leader_lease (name, term, holder, host, pid, acquired_at, renewed_at, expires_at)
    SELECT %(name)s, 1, %(holder)s, %(host)s, %(pid)s, now(), now(),
        now() + make_interval(secs => %(lease)s)
    WHERE NOT EXISTS (SELECT 1 FROM leader_lease WHERE name = %(name)s)
    ON CONFLICT (name) DO NOTHING
    RETURNING term, holder, host, pid, acquired_at
), claimed AS (
    SELECT * FROM taken UNION ALL SELECT * FROM first
), began AS (
    INSERT INTO leader_terms (term, holder, host, pid, acquired_at)
    SELECT term, holder, host, pid, acquired_at FROM claimed
    ON CONFLICT (term) DO NOTHING
    RETURNING term
), ended AS (
    UPDATE leader_terms SET ended_at = now()
    WHERE ended_at IS NULL AND term < (SELECT term FROM began)
)
SELECT term FROM claimed"""
RELEASE_LEADERSHIP = """
WITH released AS (
    UPDATE leader_lease SET expires_at = now()
    WHERE name = %(name)s AND term = %(term)s AND holder = %(holder)s AND expires_at > now()
    RETURNING term
)
UPDATE leader_terms SET ended_at = now() WHERE term = (SELECT term FROM released)"""
SELECT_LEADER = """
SELECT term, holder, host, pid, acquired_at, expires_at, expires_at - now()
FROM leader_lease WHERE name = %(name)s"""
# The fence, first in every write of a leader: the FOR KEY SHARE lock on the
# lease keeps the next term (TAKE_LEADERSHIP's FOR UPDATE) from beginning until
# this transaction ends, and the token
# is set for the transaction (`secautod.fence`: term:instance), where triggers
# and audits can read it. The term's row records when fenced transactions ran,
# best effort: one already busy with another of the leader's transactions is
# skipped, so fenced transactions never queue behind each other (tests read it).
CHECK_FENCE = """
WITH lease AS (
    SELECT term FROM leader_lease
    WHERE name = %(name)s AND term = %(term)s AND holder = %(holder)s AND expires_at > now()
    FOR KEY SHARE
), recorded AS (
    UPDATE leader_terms SET writes = writes + 1,
        first_write_at = coalesce(first_write_at, now()), last_write_at = now()
    WHERE term = (
        SELECT term FROM leader_terms WHERE term = (SELECT term FROM lease)
        FOR UPDATE SKIP LOCKED)
)
SELECT term, set_config('secautod.fence', %(term)s || ':' || %(holder)s, true) FROM lease"""
# A fenced transaction left idle (its process paused) must not hold the lease
# row past the lease: the server ends such a session after this long.
SET_IDLE_IN_TRANSACTION_TIMEOUT = (
    "SELECT set_config('idle_in_transaction_session_timeout', %s, true)"
)

# -- every table of secautod's ---------------------------------------------------------
# Leader election's tables (migrations/0002_leader_lease.sql) are not among
# SECAUTOD_TABLES, which backups dump and restores replace; the store's size
# and its damage checks cover them too.
LEADER_TABLES = ("leader_lease", "leader_terms")
STORE_TABLES = SECAUTOD_TABLES + LEADER_TABLES

# -- the store's size -----------------------------------------------------------------
# secautod's tables as the search path resolves them (indexes and TOAST included).
TABLES_SIZE = """
SELECT coalesce(sum(pg_total_relation_size(to_regclass(name))), 0)
FROM unnest(%s::text[]) AS name"""

# -- fencing under READ COMMITTED ------------------------------------------------------
# The gone reason of a session declared gone, when that fences the write (it
# claims the job, or claimed it). The session's row is share-locked first,
# whatever its state: a recovery declaring it gone then waits for this
# transaction, or this one waits for the recovery and sees it. A plain read may
# see the session alive just before a recovery commits, and the write then
# overwrote the job the recovery had failed.
SESSION_FENCED = """
WITH session AS MATERIALIZED (
    SELECT gone_at, gone_reason FROM engine_sessions
    WHERE session_id = %(session_id)s FOR SHARE)
SELECT s.gone_reason FROM session AS s
WHERE s.gone_at IS NOT NULL
  AND (%(claiming)s OR EXISTS (SELECT 1 FROM job_claims AS c
                               WHERE c.job_id = %(id)s AND c.session_id = %(session_id)s))"""

# -- checking for damage (checks.py) -------------------------------------------------------
# Every row, every column turned to text: every heap page is read, and every
# TOAST value through its index.
READ_EVERY_ROW = "SELECT count(*), sum(octet_length(t::text)) FROM {table} AS t"
READ_ONE_ROW = "SELECT 1 FROM {table} LIMIT 1"
# amcheck's schema, and whether this role may run its two checks (EXECUTE is
# revoked from PUBLIC when it is installed). No row: not installed.
AMCHECK_FUNCTIONS = """
SELECT n.nspname,
       coalesce(has_function_privilege(to_regprocedure(
           quote_ident(n.nspname) || '.bt_index_check(regclass, boolean)'), 'EXECUTE'), false),
       coalesce(has_function_privilege(to_regprocedure(
           quote_ident(n.nspname)
           || '.verify_heapam(regclass, boolean, boolean, text, bigint, bigint)'), 'EXECUTE'),
           false)
FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'amcheck'"""
# The B-tree indexes of secautod's tables, as the search path resolves them.
TABLE_INDEXES = """
SELECT i.indexrelid::bigint, i.indexrelid::regclass::text
FROM unnest(%s::text[]) AS t (name)
JOIN pg_index AS i ON i.indrelid = to_regclass(t.name)
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_am AS am ON am.oid = c.relam
WHERE am.amname = 'btree'
ORDER BY 2"""
# {amcheck} is the extension's schema, composed with psycopg.sql.Identifier.
CHECK_INDEX = "SELECT {amcheck}.bt_index_check(%s::bigint::oid::regclass, true)"
VERIFY_HEAP = """
SELECT blkno, offnum, msg
FROM {amcheck}.verify_heapam(to_regclass(%s), check_toast => true)"""
