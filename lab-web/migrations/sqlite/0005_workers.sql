-- Analysis workers (docs/worker-protocol.md): jobs are held by leases that
-- expire without heartbeats, so a dead worker's job goes to another one.
-- The current lease id; kept after the job ends, so a result re-sent under
-- it is answered the same.
ALTER TABLE jobs ADD COLUMN lease TEXT;
-- When the lease lapses without a heartbeat (ms since the epoch).
ALTER TABLE jobs ADD COLUMN lease_expires_at INTEGER;
-- The worker holding (or that last held) the job: a worker token's name,
-- or lab-web's own "lab-web/<host>/<pid>/<n>".
ALTER TABLE jobs ADD COLUMN worker TEXT;
-- Leases given so far (attempts); MAX_ATTEMPTS lapsed or failed ones make
-- the job "dead" (the dead-letter state).
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- Not leased before this time (a retry's backoff).
ALTER TABLE jobs ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;
-- A capability the worker must list ("" none).
ALTER TABLE jobs ADD COLUMN requires TEXT NOT NULL DEFAULT '';
-- Someone cancelled the job while a worker held it; its next heartbeat
-- hears it. 1 or 0.
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
-- When the current lease was given (the lease-to-start overhead).
ALTER TABLE jobs ADD COLUMN leased_at INTEGER;
CREATE INDEX jobs_lease ON jobs(status, lease_expires_at);

-- Workers seen: what they can do and when they last called.
CREATE TABLE workers (
    name TEXT PRIMARY KEY,
    -- The capability names of its last lease request, comma-separated.
    capabilities TEXT NOT NULL DEFAULT '',
    last_seen_at INTEGER NOT NULL
);

-- SHA-256 of bundle files as lab-web last hashed them, keyed by the file's
-- size and modification time, so a lease does not hash a whole bundle again.
CREATE TABLE bundle_sums (
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (session_id, path)
);
