-- 011_web_sessions.sql — people signed in through OpenID Connect (D36); the twin of the SQLite
-- migration (see it for the life of a row).

CREATE TABLE web_sessions (
    id            text    PRIMARY KEY,
    token_hash    text    NOT NULL UNIQUE,
    status        text    NOT NULL CHECK (status IN ('login', 'pending', 'active', 'failed')),
    nonce         text,
    verifier      text,
    return_to     text,
    subject       text,
    user_name     text,
    tenant_id     text,
    role          text    CHECK (role IS NULL OR role IN ('viewer', 'operator', 'admin')),
    id_token      text,
    error         text,
    created_at    bigint  NOT NULL,
    last_seen_at  bigint  NOT NULL,
    expires_at    bigint  NOT NULL,
    revoked_at    bigint
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
