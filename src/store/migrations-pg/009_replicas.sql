-- 009_replicas.sql — several access points on one database (D46). A replica holds a lease it
-- renews every few seconds; each live session has an owner, the replica that runs it. When an
-- owner's lease runs out, another replica adopts its sessions. Control requests that reach a
-- replica which does not own the session travel to the owner as command rows, announced by
-- NOTIFY on the channel ah_commands (payload: the owner's id).

CREATE TABLE replicas (
    id          text COLLATE "C" PRIMARY KEY,
    lease_until bigint NOT NULL,   -- the database's clock, ms since the epoch
    started_at  bigint NOT NULL
);

ALTER TABLE sessions ADD COLUMN owner text COLLATE "C";
CREATE INDEX sessions_by_owner ON sessions (owner) WHERE status NOT IN
    ('stopped', 'completed', 'failed', 'cancelled');

CREATE TABLE commands (
    id         bigserial PRIMARY KEY,
    owner      text COLLATE "C" NOT NULL,
    tenant_id  text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    body       text   NOT NULL,   -- the command, a JSON object
    created_at bigint NOT NULL
);
CREATE INDEX commands_by_owner ON commands (owner, id);
