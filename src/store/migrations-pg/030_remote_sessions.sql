-- 030_remote_sessions.sql — a session launched on an enrolled executor (issue 16 item 5) names
-- it (its SPIFFE id), so a restarted access point re-attaches it through that executor's link
-- instead of looking for a local recorder process. NULL: it runs (or ran) on the access point.
ALTER TABLE sessions ADD COLUMN executor_id TEXT;
