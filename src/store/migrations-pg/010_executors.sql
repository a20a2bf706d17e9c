-- 010_executors.sql — the fleet of enrolled executors (issue 16); the twin of the SQLite
-- migration. id is the SPIFFE id, facts the last Hello as JSON text, drained an admin's choice.

CREATE TABLE executors (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    facts       TEXT    NOT NULL,
    drained     INTEGER NOT NULL DEFAULT 0,
    first_seen  bigint  NOT NULL,
    last_seen   bigint  NOT NULL
);
