-- Transcript search as an inverted index in a B-tree: one row per distinct
-- stem of a segment. Search wants the newest 200 segments that hold every
-- query stem. A GIN index cannot hand its matches over in id order, so the
-- old plan fetched every match from the heap (a content word: ~74,000
-- segments, 41,000 heap pages, ~340 ms at 1,000 session-hours) before
-- keeping 200. Here an index-only scan walks one stem's segment ids
-- backwards and stops at the limit; further stems are merge-joined on the
-- same order (lab-web/src/store/search.rs).
DROP INDEX transcript_stems;
ALTER TABLE transcript_segments DROP COLUMN tsv;

-- A number per session, so a posting can name its session in 8 bytes and
-- the journey filter is a test on the index tuple, not a heap visit.
-- Numbered by UPDATE, not a volatile column default, which would rewrite
-- the table with every session's transcript and speech JSON.
CREATE SEQUENCE sessions_search_key_seq;
ALTER TABLE sessions ADD COLUMN search_key BIGINT;
UPDATE sessions SET search_key = nextval('sessions_search_key_seq');
ALTER TABLE sessions ALTER COLUMN search_key SET DEFAULT nextval('sessions_search_key_seq');
ALTER TABLE sessions ALTER COLUMN search_key SET NOT NULL;
ALTER SEQUENCE sessions_search_key_seq OWNED BY sessions.search_key;

CREATE TABLE search_postings (
    stem TEXT NOT NULL,
    segment_id BIGINT NOT NULL,
    session_key BIGINT
);
-- The stems column is the Snowball stems joined by single spaces
-- (crate::search::stems), so splitting on ' ' gives them back exactly.
INSERT INTO search_postings (stem, segment_id, session_key)
    SELECT DISTINCT w, t.id, s.search_key
    FROM transcript_segments t LEFT JOIN sessions s ON s.id = t.session_id
    CROSS JOIN LATERAL unnest(string_to_array(t.stems, ' ')) w;
-- Built after the load: one sort instead of millions of single inserts.
ALTER TABLE search_postings ADD PRIMARY KEY (stem, segment_id) INCLUDE (session_key);
-- A walk of a few hundred index tuples gains nothing from workers, and a
-- parallel merge join re-reads the other stems' lists once per worker.
ALTER TABLE search_postings SET (parallel_workers = 0);
-- Statistics now, so the first searches after the upgrade plan well.
ANALYZE search_postings;

-- Kept in step with transcript_segments by statement triggers, so every
-- writer (import, withdrawal, bench) stays plain SQL on both backends, as
-- SQLite's fts5 triggers do. One statement per batch, not per row.
CREATE FUNCTION search_postings_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        DELETE FROM search_postings p
            USING (SELECT DISTINCT w, o.id FROM old_rows o, unnest(string_to_array(o.stems, ' ')) w) d
            WHERE p.stem = d.w AND p.segment_id = d.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO search_postings (stem, segment_id, session_key)
            SELECT DISTINCT w, n.id, s.search_key
            FROM new_rows n LEFT JOIN sessions s ON s.id = n.session_id
            CROSS JOIN LATERAL unnest(string_to_array(n.stems, ' ')) w;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER search_postings_insert AFTER INSERT ON transcript_segments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_postings_sync();
CREATE TRIGGER search_postings_delete AFTER DELETE ON transcript_segments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION search_postings_sync();
CREATE TRIGGER search_postings_update AFTER UPDATE ON transcript_segments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_postings_sync();
