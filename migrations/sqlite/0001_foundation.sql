-- Foundation: organisations, users, refresh tokens, revocations, audit log.
CREATE TABLE organisations (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organisations(id),
    email           TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'office', 'inspector', 'auditor')),
    full_name_enc   BLOB,
    phone_enc       BLOB,
    active          INTEGER NOT NULL DEFAULT 1,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);
CREATE INDEX users_org_idx ON users (org_id, id);

CREATE TABLE refresh_tokens (
    id           BLOB PRIMARY KEY,
    token_hash   BLOB NOT NULL UNIQUE,
    family_id    BLOB NOT NULL,
    user_id      BLOB NOT NULL REFERENCES users(id),
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT,
    revoked_at   TEXT
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Revocation list. kind 'jti': subject is a token id, revoked until expires_at.
-- kind 'user': subject is a user id; tokens issued before not_before are revoked.
CREATE TABLE revocations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('jti', 'user')),
    subject     TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX revocations_expires_idx ON revocations (expires_at);

CREATE TABLE audits (
    id           BLOB PRIMARY KEY,
    org_id       BLOB,
    actor_id     BLOB,
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    details      TEXT NOT NULL,
    request_id   TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX audits_actor_idx ON audits (actor_id, id);
CREATE INDEX audits_org_idx ON audits (org_id, id);
