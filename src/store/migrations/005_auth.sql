-- 005_auth.sql — API keys and the audit log (authentication, D22, D37).
-- An API key is "ahk_<id>_<secret>"; only the id, a random salt and SHA-256(salt || secret) are
-- kept, so the database never holds a usable key. The audit log is append-only: no API deletes
-- its rows (retention is a configured sweep of old rows).

CREATE TABLE api_keys (
    id            TEXT    PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    project_id    TEXT,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    name          TEXT,
    salt          TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    impersonate   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ts            INTEGER NOT NULL,
    tenant_id     TEXT,
    actor         TEXT,
    credential_id TEXT,
    action        TEXT    NOT NULL,
    target        TEXT,
    request_id    TEXT,
    source        TEXT,
    outcome       TEXT    NOT NULL,
    status        INTEGER
) STRICT;
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
