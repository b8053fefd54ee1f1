-- API tokens get a scope: 'overlay' (the findings overlay only; what every
-- token so far was made for) or 'viewer' (viewer rights: findings and clips).
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'overlay';
-- Log-in attempts per throttling key (see src/limits.rs), shared by every
-- lab-web process on this database.
CREATE TABLE login_attempts (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    window_start INTEGER NOT NULL
);
