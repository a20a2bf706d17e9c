-- 005_auth.sql — API keys and the audit log (authentication, D22, D37); the twin of the SQLite
-- migration. Only the key id, a random salt and SHA-256(salt || secret) are kept. The audit
-- log is append-only: no API deletes its rows.

CREATE TABLE api_keys (
    id            text    PRIMARY KEY,
    tenant_id     text    NOT NULL,
    project_id    text,
    role          text    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    name          text,
    salt          text    NOT NULL,
    hash          text    NOT NULL,
    impersonate   boolean NOT NULL DEFAULT false,
    created_at    bigint  NOT NULL,
    expires_at    bigint,
    last_used_at  bigint,
    revoked_at    bigint
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    ts            bigint  NOT NULL,
    tenant_id     text,
    actor         text,
    credential_id text,
    action        text    NOT NULL,
    target        text,
    request_id    text,
    source        text,
    outcome       text    NOT NULL,
    status        integer
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
