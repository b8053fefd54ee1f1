-- Sensor lanes (lab-web/src/sensors.rs): each numeric sensor channel of a
-- session, and its min/max pyramid, one row a level (pairs of f32).
CREATE TABLE sensor_lanes (
    session_id TEXT NOT NULL,
    lane INTEGER NOT NULL,
    stream TEXT NOT NULL,
    stream_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    unit TEXT NOT NULL,
    nominal_srate REAL NOT NULL,
    samples INTEGER NOT NULL,
    first_ms INTEGER,
    last_ms INTEGER,
    vmin REAL,
    vmax REAL,
    origin TEXT NOT NULL,
    PRIMARY KEY (session_id, lane)
);
CREATE TABLE sensor_levels (
    session_id TEXT NOT NULL,
    lane INTEGER NOT NULL,
    level INTEGER NOT NULL,
    bucket_ns INTEGER NOT NULL,
    buckets INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, lane, level)
);
-- Arousal per step (analysis/steps.json's `arousal`): skin-conductance
-- responses per minute and their mean amplitude (µS), heart-rate change
-- against the session's mean (bpm); NULL without such a sensor.
ALTER TABLE step_summaries ADD COLUMN eda_per_min REAL;
ALTER TABLE step_summaries ADD COLUMN eda_amplitude_us REAL;
ALTER TABLE step_summaries ADD COLUMN hr_change_bpm REAL;
