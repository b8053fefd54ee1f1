-- lab-web schema v1 (SQLite). Keep in step with ../postgres/0001_init.sql.
-- Integers are 64-bit everywhere; times: *_ms on the session timeline, *_at Unix ms.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    login TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE auth_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE journeys (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    version TEXT NOT NULL,
    definition TEXT NOT NULL
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    study TEXT NOT NULL DEFAULT '',
    life_situation TEXT NOT NULL DEFAULT '',
    journey_id TEXT,
    participant TEXT NOT NULL,
    segment TEXT NOT NULL DEFAULT '',
    station TEXT NOT NULL,
    consent TEXT NOT NULL,
    moderator TEXT,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    bundle_path TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    imported_at INTEGER NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0,
    withdrawn_at INTEGER,
    transcript_status TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    media TEXT NOT NULL DEFAULT '{}',
    qa TEXT,
    tracks TEXT NOT NULL DEFAULT '[]',
    -- The transcript API's answer, pre-rendered at import (NULL: none).
    transcript_json TEXT,
    -- The timeline's speech lane, pre-rendered: [{start_ms, end_ms, speaker}].
    speech_json TEXT
);
CREATE INDEX sessions_journey ON sessions(journey_id, started_at);
CREATE TABLE events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    t_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX events_time ON events(session_id, t_ms);
CREATE INDEX events_kind ON events(session_id, kind, t_ms);
-- The timeline's event lane, pre-rendered per minute of session time as a
-- JSON array of {seq, t_ms, source, kind, summary}: a window of the
-- timeline is a few rows concatenated, not thousands of rows re-encoded.
CREATE TABLE event_chunks (
    session_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    n INTEGER NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (session_id, minute)
);
CREATE TABLE transcript_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    stems TEXT NOT NULL,
    words TEXT NOT NULL
);
CREATE INDEX transcript_session ON transcript_segments(session_id, start_ms);
CREATE VIRTUAL TABLE segment_fts USING fts5(stems, content='transcript_segments', content_rowid='id');
CREATE TRIGGER segment_fts_ai AFTER INSERT ON transcript_segments BEGIN
    INSERT INTO segment_fts(rowid, stems) VALUES (new.id, new.stems);
END;
CREATE TRIGGER segment_fts_ad AFTER DELETE ON transcript_segments BEGIN
    INSERT INTO segment_fts(segment_fts, rowid, stems) VALUES ('delete', old.id, old.stems);
END;
CREATE TABLE speech_spans (
    session_id TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    speaker TEXT NOT NULL
);
CREATE INDEX speech_session ON speech_spans(session_id, start_ms);
CREATE TABLE step_intervals (
    session_id TEXT NOT NULL,
    step TEXT NOT NULL,
    visit INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL
);
CREATE INDEX step_intervals_session ON step_intervals(session_id, start_ms);
CREATE TABLE step_summaries (
    session_id TEXT NOT NULL,
    step TEXT NOT NULL,
    title TEXT NOT NULL,
    time_spent_ms INTEGER NOT NULL,
    visits INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    expected_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, step)
);
CREATE TABLE candidates (
    session_id TEXT NOT NULL,
    id TEXT NOT NULL,
    detector TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    step TEXT,
    confidence REAL NOT NULL,
    note TEXT NOT NULL,
    evidence TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    reason TEXT,
    decided_by INTEGER,
    decided_at INTEGER,
    tag_id INTEGER,
    stale INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, id)
);
CREATE TABLE tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    step TEXT,
    category TEXT NOT NULL,
    severity INTEGER NOT NULL,
    emotion TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    quote TEXT NOT NULL DEFAULT '',
    url TEXT,
    selector TEXT,
    candidate_id TEXT,
    created_by INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tags_session ON tags(session_id, start_ms);
CREATE TABLE tag_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX tag_history_tag ON tag_history(tag_id, at);
CREATE TABLE clips (
    tag_id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    file TEXT,
    job_id INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    session_id TEXT,
    tag_id INTEGER,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL DEFAULT '{}',
    created_by INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX jobs_status ON jobs(status, id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    user_id INTEGER,
    login TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit(at);
