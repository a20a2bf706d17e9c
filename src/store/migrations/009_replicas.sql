-- 009_replicas.sql — the PostgreSQL store's migration 009 adds replicas, session owners and
-- commands between replicas (D46). One process owns an SQLite file, so there is nothing to
-- record here; the number is kept so both schemas count their versions alike.
SELECT 1;
