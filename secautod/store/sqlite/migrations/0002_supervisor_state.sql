-- Ordering and filtering by time must work for every timestamp form other
-- writers use ('...T...Z', Go's '-07:00' offsets), so listings sort and filter
-- on julianday(created_at), which these expression indexes serve.
CREATE INDEX IF NOT EXISTS idx_jobs_created_julian ON jobs(julianday(created_at));
CREATE INDEX IF NOT EXISTS idx_jobs_status_created_julian ON jobs(status, julianday(created_at));

-- One row per daemon start: the boot id recovered jobs are stamped with.
CREATE TABLE boots (
    boot_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    recovered_jobs INTEGER NOT NULL DEFAULT 0
);

-- The last run of each maintenance task, so a restart never postpones one.
CREATE TABLE maintenance_runs (
    task TEXT PRIMARY KEY,
    last_success_at TEXT,
    last_attempt_at TEXT,
    last_error TEXT,
    last_result TEXT
);

-- Verified backups this store has written.
CREATE TABLE backup_log (
    path TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    integrity TEXT NOT NULL
);

-- Webhook notifications, stored before delivery and deleted once accepted.
CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    event TEXT NOT NULL,
    job_id TEXT,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT
);
CREATE INDEX idx_webhook_outbox_due ON webhook_outbox(endpoint, next_attempt_at);
