-- Bundles uploaded by stations (docs/upload-protocol.md): one row per
-- (station, session id), so a station resumes its own upload and two
-- stations with one session id never overwrite each other.
CREATE TABLE uploads (
    id BIGSERIAL PRIMARY KEY,
    -- The station token's name (stable when the token is replaced).
    station TEXT NOT NULL,
    token_id BIGINT NOT NULL,
    -- As declared; checked against the manifest on completion.
    session_id TEXT NOT NULL,
    -- SHA-256 over the sorted file list (path, size, sha256).
    digest TEXT NOT NULL,
    total_bytes BIGINT NOT NULL,
    -- receiving | placing | imported
    status TEXT NOT NULL,
    -- Where the bundle goes and the id lab-web gives it, set before the
    -- rename so a restart knows where it went.
    target_path TEXT UNIQUE,
    assigned_id TEXT UNIQUE,
    withdrawn BIGINT NOT NULL DEFAULT 0,
    -- Chunk bytes accepted, re-sent ones included.
    bytes_written BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    imported_at BIGINT,
    UNIQUE (station, session_id)
);
CREATE TABLE upload_files (
    upload_id BIGINT NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    verified BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (upload_id, path)
);
