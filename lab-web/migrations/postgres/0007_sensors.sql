-- Sensor lanes (lab-web/src/sensors.rs): each numeric sensor channel of a
-- session, and its min/max pyramid, one row a level (pairs of f32).
CREATE TABLE sensor_lanes (
    session_id TEXT NOT NULL,
    lane BIGINT NOT NULL,
    stream TEXT NOT NULL,
    stream_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    unit TEXT NOT NULL,
    nominal_srate DOUBLE PRECISION NOT NULL,
    samples BIGINT NOT NULL,
    first_ms BIGINT,
    last_ms BIGINT,
    vmin DOUBLE PRECISION,
    vmax DOUBLE PRECISION,
    origin TEXT NOT NULL,
    PRIMARY KEY (session_id, lane)
);
CREATE TABLE sensor_levels (
    session_id TEXT NOT NULL,
    lane BIGINT NOT NULL,
    level BIGINT NOT NULL,
    bucket_ns BIGINT NOT NULL,
    buckets BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (session_id, lane, level)
);
-- Arousal per step (analysis/steps.json's `arousal`): skin-conductance
-- responses per minute and their mean amplitude (µS), heart-rate change
-- against the session's mean (bpm); NULL without such a sensor.
ALTER TABLE step_summaries ADD COLUMN eda_per_min DOUBLE PRECISION;
ALTER TABLE step_summaries ADD COLUMN eda_amplitude_us DOUBLE PRECISION;
ALTER TABLE step_summaries ADD COLUMN hr_change_bpm DOUBLE PRECISION;
