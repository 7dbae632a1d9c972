-- Engine sessions (SPEC §9): who runs the jobs, so a job is failed when its
-- engine is gone, not when secautod restarts. secautod's own tables: the
-- shared `jobs` table gains nothing (the Go engine's INSERT OR REPLACE would
-- wipe a column), so claims live beside it. docs/ENGINE-PROTOCOL.md shows
-- the statements an engine in another language runs.
CREATE TABLE engine_sessions (
    session_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    pid_namespace TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_start TEXT NOT NULL,
    lease_seconds REAL NOT NULL,
    opened_at TEXT NOT NULL,
    renewed_at TEXT NOT NULL,
    renewals INTEGER NOT NULL DEFAULT 0,
    closed_at TEXT,
    gone_at TEXT,
    gone_reason TEXT
);

-- The running jobs a session took on; kept after the job ends only while
-- the session lives, so a session declared gone is fenced off its jobs.
CREATE TABLE job_claims (
    job_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES engine_sessions (session_id) ON DELETE CASCADE,
    claimed_at TEXT NOT NULL
);
CREATE INDEX idx_job_claims_session ON job_claims (session_id);
