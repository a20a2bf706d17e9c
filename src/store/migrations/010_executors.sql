-- 010_executors.sql — the fleet of enrolled executors (issue 16, D41–D43), kept so an access
-- point restart still lists them (offline until they reconnect). The id is the executor's
-- SPIFFE id; facts is its last Hello as JSON text; drained is an admin's decision that outlives
-- reconnects. Executors belong to the installation, not to a tenant.

CREATE TABLE executors (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    facts       TEXT    NOT NULL,
    drained     INTEGER NOT NULL DEFAULT 0,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
) STRICT;
