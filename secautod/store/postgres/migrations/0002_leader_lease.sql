-- Leader election (SPEC §11): several secautod instances share one database;
-- the one holding the `maintenance` lease runs cleanup, backups and
-- lease-expiry recovery. Times come from the server's clock (now()), the one
-- clock every instance shares. Every maintenance write first checks, under a
-- FOR SHARE lock on this row, that its term is still current (the fence), so
-- a new term can only begin once the old leader's last write has committed.
CREATE TABLE leader_lease (
    name TEXT PRIMARY KEY,
    term BIGINT NOT NULL,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- One row per term, ever: who held it and when its fenced writes ran.
CREATE TABLE leader_terms (
    term BIGINT PRIMARY KEY,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ,
    writes BIGINT NOT NULL DEFAULT 0,
    first_write_at TIMESTAMPTZ,
    last_write_at TIMESTAMPTZ
);
