-- lab-web schema v1 (PostgreSQL). Keep in step with ../sqlite/0001_init.sql.
-- Integers are 64-bit everywhere; times: *_ms on the session timeline, *_at Unix ms.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE auth_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by BIGINT NOT NULL,
    created_at BIGINT NOT NULL
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
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    bundle_path TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    withdrawn BIGINT NOT NULL DEFAULT 0,
    withdrawn_at BIGINT,
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
    seq BIGINT NOT NULL,
    t_ms BIGINT NOT NULL,
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
    minute BIGINT NOT NULL,
    n BIGINT NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (session_id, minute)
);
CREATE TABLE transcript_segments (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    stems TEXT NOT NULL,
    words TEXT NOT NULL
);
CREATE INDEX transcript_session ON transcript_segments(session_id, start_ms);
-- Stored, so matching rows are rechecked without re-parsing their text.
ALTER TABLE transcript_segments ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', stems)) STORED;
CREATE INDEX transcript_stems ON transcript_segments USING GIN (tsv);
CREATE TABLE speech_spans (
    session_id TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    speaker TEXT NOT NULL
);
CREATE INDEX speech_session ON speech_spans(session_id, start_ms);
CREATE TABLE step_intervals (
    session_id TEXT NOT NULL,
    step TEXT NOT NULL,
    visit BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL
);
CREATE INDEX step_intervals_session ON step_intervals(session_id, start_ms);
CREATE TABLE step_summaries (
    session_id TEXT NOT NULL,
    step TEXT NOT NULL,
    title TEXT NOT NULL,
    time_spent_ms BIGINT NOT NULL,
    visits BIGINT NOT NULL,
    completed BIGINT NOT NULL,
    expected_ms BIGINT NOT NULL,
    PRIMARY KEY (session_id, step)
);
CREATE TABLE candidates (
    session_id TEXT NOT NULL,
    id TEXT NOT NULL,
    detector TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    step TEXT,
    confidence DOUBLE PRECISION NOT NULL,
    note TEXT NOT NULL,
    evidence TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    reason TEXT,
    decided_by BIGINT,
    decided_at BIGINT,
    tag_id BIGINT,
    stale BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, id)
);
CREATE TABLE tags (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    step TEXT,
    category TEXT NOT NULL,
    severity BIGINT NOT NULL,
    emotion TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    quote TEXT NOT NULL DEFAULT '',
    url TEXT,
    selector TEXT,
    candidate_id TEXT,
    created_by BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tags_session ON tags(session_id, start_ms);
CREATE TABLE tag_history (
    id BIGSERIAL PRIMARY KEY,
    tag_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX tag_history_tag ON tag_history(tag_id, at);
CREATE TABLE clips (
    tag_id BIGINT PRIMARY KEY,
    status TEXT NOT NULL,
    file TEXT,
    job_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    session_id TEXT,
    tag_id BIGINT,
    status TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL DEFAULT '{}',
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX jobs_status ON jobs(status, id);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    user_id BIGINT,
    login TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit(at);
