-- 011_web_sessions.sql — people signed in through OpenID Connect (the web UI, D36).
-- One table holds both halves of a sign-in: a 'login' row while the browser is at the identity
-- provider (keyed by the hash of the state it carries; nonce and PKCE verifier kept until the
-- callback takes the row), then the session: 'pending' while the code is exchanged, 'active'
-- once the ID token was verified, 'failed' when it was not. The browser's cookie is never
-- stored, only SHA-256 of it (token_hash); `id` is the public name used in audit records.

CREATE TABLE web_sessions (
    id            TEXT    PRIMARY KEY,
    token_hash    TEXT    NOT NULL UNIQUE,
    status        TEXT    NOT NULL CHECK (status IN ('login', 'pending', 'active', 'failed')),
    nonce         TEXT,
    verifier      TEXT,
    return_to     TEXT,
    subject       TEXT,
    user_name     TEXT,
    tenant_id     TEXT,
    role          TEXT    CHECK (role IS NULL OR role IN ('viewer', 'operator', 'admin')),
    id_token      TEXT,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
