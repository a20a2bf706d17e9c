-- 001_init.sql — the first schema of the PostgreSQL store; the same tables, keys and meaning as
-- the SQLite store's migrations of the same number, so the two schema versions stay comparable.
-- Every row carries tenant_id and every key starts with it: the store scopes each query by tenant.
-- Times are integer milliseconds since the Unix epoch (UTC). Keys use the "C" collation: ids are
-- ULIDs, whose byte order is their creation order, whatever the database's default locale.

CREATE TABLE tasks (
    tenant_id   text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,
    project_id  text COLLATE "C",
    request     json   NOT NULL,  -- canonical create-task body, kept as written
    created_at  bigint NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE sessions (
    tenant_id          text COLLATE "C" NOT NULL,
    id                 text COLLATE "C" NOT NULL,
    task_id            text COLLATE "C" NOT NULL,
    agent_index        integer NOT NULL,
    instance           integer NOT NULL,
    project_id         text COLLATE "C",
    agent_type         text    NOT NULL,
    agent_version      text    NOT NULL,
    status             text    NOT NULL,
    error              text,
    exit_code          integer,
    workspace_provider text,
    workspace_path     text,
    last_seq           bigint  NOT NULL DEFAULT 0,   -- highest event seq stored (D9)
    created_at         bigint  NOT NULL,
    updated_at         bigint  NOT NULL,
    started_at         bigint,
    ended_at           bigint,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, task_id) REFERENCES tasks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_by_status ON sessions (tenant_id, status, id);
CREATE INDEX sessions_by_agent ON sessions (tenant_id, agent_type, id);
CREATE INDEX sessions_by_task ON sessions (tenant_id, task_id, agent_index, instance);
CREATE INDEX sessions_live ON sessions (status) WHERE status NOT IN
    ('stopped', 'completed', 'failed', 'cancelled');

-- (tenant_id, session_id, seq) is unique: with several writers, a second event numbered like one
-- already stored is refused rather than stored twice (D45). Unlike SQLite's, this table has no
-- foreign key to sessions: events are inserted only by the batching writer, for a session row it
-- has found and locked in the same transaction, and a session's purge deletes its events with it;
-- the per-row key check would cost a third of every batch's insert.
CREATE TABLE events (
    tenant_id  text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    seq        bigint NOT NULL CHECK (seq > 0),
    type       text   NOT NULL,
    level      text,
    ts         bigint NOT NULL,
    payload    text   NOT NULL,   -- the event exactly as served (JSON object)
    PRIMARY KEY (tenant_id, session_id, seq)
);
CREATE INDEX events_by_type ON events (tenant_id, session_id, type, seq);

CREATE TABLE idempotency_keys (
    tenant_id    text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,
    request_hash text   NOT NULL,   -- SHA-256 of method, path and body (D7)
    state        text   NOT NULL CHECK (state IN ('pending', 'done')),
    status       integer,
    content_type text,
    body         bytea,
    created_at   bigint NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);

CREATE TABLE drafts (
    tenant_id  text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    body       json   NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
