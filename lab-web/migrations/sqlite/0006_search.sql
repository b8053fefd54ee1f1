-- PostgreSQL's 0006 replaces its GIN index with an ordered postings table
-- (see migrations/postgres/0006_search.sql). SQLite's fts5 index already
-- hands matches over newest first, so nothing changes here; the file keeps
-- the two migration lists numbered alike.
SELECT 1;
