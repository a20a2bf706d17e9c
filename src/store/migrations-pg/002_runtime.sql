-- 002_runtime.sql — what the server needs to supervise sessions and survive restarts (D15, D17).

-- The recorder process of a running session: re-attach finds it alive (pid + start time guards
-- against pid reuse) or fails the session. The token authenticates its socket hello.
ALTER TABLE sessions ADD COLUMN recorder_pid bigint;
ALTER TABLE sessions ADD COLUMN recorder_start bigint;   -- /proc/<pid>/stat field 22
ALTER TABLE sessions ADD COLUMN recorder_token text;     -- SHA-256 hex of the token
-- Highest recorder-side sequence stored: events the recorder resends after a reconnect are
-- recognised and skipped, so no event is stored twice.
ALTER TABLE sessions ADD COLUMN recorder_rseq bigint NOT NULL DEFAULT 0;
-- Change statistics of a finished session: {"files_changed","lines_added","lines_removed"}.
ALTER TABLE sessions ADD COLUMN changes json;
