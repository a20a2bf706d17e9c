-- 001_init.sql — the first schema of the embedded store.
-- Every row carries tenant_id and every key starts with it: the store scopes each query by tenant.
-- Times are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE tasks (
    tenant_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    project_id  TEXT,
    request     TEXT    NOT NULL CHECK (json_valid(request)),  -- canonical create-task body
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE TABLE sessions (
    tenant_id          TEXT    NOT NULL,
    id                 TEXT    NOT NULL,
    task_id            TEXT    NOT NULL,
    agent_index        INTEGER NOT NULL,
    instance           INTEGER NOT NULL,
    project_id         TEXT,
    agent_type         TEXT    NOT NULL,
    agent_version      TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    error              TEXT,
    exit_code          INTEGER,
    workspace_provider TEXT,
    workspace_path     TEXT,
    last_seq           INTEGER NOT NULL DEFAULT 0,   -- highest event seq stored (D9)
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    started_at         INTEGER,
    ended_at           INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, task_id) REFERENCES tasks (tenant_id, id) ON DELETE CASCADE
) STRICT;
-- ids are ULIDs, so id order is creation order: newest-first lists walk this index backwards.
CREATE INDEX sessions_by_status ON sessions (tenant_id, status, id);
CREATE INDEX sessions_by_agent ON sessions (tenant_id, agent_type, id);
CREATE INDEX sessions_by_task ON sessions (tenant_id, task_id, agent_index, instance);
CREATE INDEX sessions_live ON sessions (status) WHERE status NOT IN
    ('stopped', 'completed', 'failed', 'cancelled');

CREATE TABLE events (
    tenant_id  TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq > 0),
    type       TEXT    NOT NULL,
    level      TEXT,
    ts         INTEGER NOT NULL,
    payload    TEXT    NOT NULL,   -- the event exactly as served (JSON object)
    PRIMARY KEY (tenant_id, session_id, seq),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX events_by_type ON events (tenant_id, session_id, type, seq);

CREATE TABLE idempotency_keys (
    tenant_id    TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,   -- SHA-256 of method, path and body (D7)
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'done')),
    status       INTEGER,
    content_type TEXT,
    body         BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
) STRICT;
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);

CREATE TABLE drafts (
    tenant_id  TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    body       TEXT    NOT NULL CHECK (json_valid(body)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
