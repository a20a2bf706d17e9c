-- 004_timeline.sql — the timeline of a session (API.md §7.8, D31-D34): its workspace snapshots
-- as recorded in the private object store, its manual moments, and the branches made from it.
-- Automatic moments are not stored: they are the session's tool_result events.

CREATE TABLE fs_snapshots (
    tenant_id   TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    id          TEXT    NOT NULL,   -- snap-<ULID>, the snapshot's id in the object store
    kind        TEXT    NOT NULL CHECK (kind IN ('base', 'auto', 'manual')),
    label       TEXT    NOT NULL,
    description TEXT,
    seq         INTEGER NOT NULL,   -- the last event stored before it (D33)
    ts          INTEGER NOT NULL,   -- when it was taken (ms)
    provider    TEXT    NOT NULL,
    size_bytes  INTEGER NOT NULL,   -- bytes it added to the object store
    PRIMARY KEY (tenant_id, session_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX fs_snapshots_by_id ON fs_snapshots (tenant_id, id);

CREATE TABLE moments (
    tenant_id   TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    id          TEXT    NOT NULL,   -- mom-<ULID>
    label       TEXT    NOT NULL,
    description TEXT,
    type        TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, session_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- One row per branch session: where it came from. Its first branch_seq events are copies of the
-- parent's (inherited: true); its own continue the numbering.
CREATE TABLE session_branches (
    tenant_id           TEXT    NOT NULL,
    session_id          TEXT    NOT NULL,
    parent_session_id   TEXT    NOT NULL,
    fs_snapshot_id      TEXT    NOT NULL,
    branch_seq          INTEGER NOT NULL,
    branch_ts           INTEGER NOT NULL,   -- ms since the parent started
    name                TEXT,
    injected_message_id TEXT,
    created_at          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX session_branches_by_parent ON session_branches (tenant_id, parent_session_id);
