-- Study set-ups (lab_model::study::Study, docs/study-format.md): what a
-- station needs to run one study's sessions. Researchers edit them in
-- lab-web; stations pull them with their token (GET /api/v1/setups).
CREATE TABLE study_setups (
    id TEXT PRIMARY KEY,
    -- The Study as JSON, validated (and checked against its journey) on write.
    definition TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- The user who saved it last (users.id).
    updated_by BIGINT NOT NULL
);
