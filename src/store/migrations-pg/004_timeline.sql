-- 004_timeline.sql — the timeline of a session (API.md §7.8, D31-D34): its workspace snapshots
-- as recorded in the private object store, its manual moments, and the branches made from it.
-- Automatic moments are not stored: they are the session's tool_result events.

CREATE TABLE fs_snapshots (
    tenant_id   text COLLATE "C" NOT NULL,
    session_id  text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,   -- snap-<ULID>, the snapshot's id in the object store
    kind        text    NOT NULL CHECK (kind IN ('base', 'auto', 'manual')),
    label       text    NOT NULL,
    description text,
    seq         bigint NOT NULL,   -- the last event stored before it (D33)
    ts          bigint NOT NULL,   -- when it was taken (ms)
    provider    text    NOT NULL,
    size_bytes  bigint NOT NULL,   -- bytes it added to the object store
    PRIMARY KEY (tenant_id, session_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX fs_snapshots_by_id ON fs_snapshots (tenant_id, id);

CREATE TABLE moments (
    tenant_id   text COLLATE "C" NOT NULL,
    session_id  text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,   -- mom-<ULID>
    label       text    NOT NULL,
    description text,
    type        text    NOT NULL,
    seq         bigint NOT NULL,
    ts          bigint NOT NULL,
    PRIMARY KEY (tenant_id, session_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);

-- One row per branch session: where it came from. Its first branch_seq events are copies of the
-- parent's (inherited: true); its own continue the numbering.
CREATE TABLE session_branches (
    tenant_id           text COLLATE "C" NOT NULL,
    session_id          text COLLATE "C" NOT NULL,
    parent_session_id   text COLLATE "C" NOT NULL,
    fs_snapshot_id      text    NOT NULL,
    branch_seq          bigint NOT NULL,
    branch_ts           bigint NOT NULL,   -- ms since the parent started
    name                text,
    injected_message_id text,
    created_at          bigint NOT NULL,
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX session_branches_by_parent ON session_branches (tenant_id, parent_session_id);
