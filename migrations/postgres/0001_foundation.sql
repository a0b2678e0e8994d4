-- Foundation: organisations, users, refresh tokens, revocations, audit log.
CREATE TABLE organisations (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    org_id          UUID NOT NULL REFERENCES organisations(id),
    email           TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'office', 'inspector', 'auditor')),
    full_name_enc   BYTEA,
    phone_enc       BYTEA,
    active          BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);
CREATE INDEX users_org_idx ON users (org_id, id);

CREATE TABLE refresh_tokens (
    id           UUID PRIMARY KEY,
    token_hash   BYTEA NOT NULL UNIQUE,
    family_id    UUID NOT NULL,
    user_id      UUID NOT NULL REFERENCES users(id),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    used_at      TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Revocation list. kind 'jti': subject is a token id, revoked until expires_at.
-- kind 'user': subject is a user id; tokens issued before not_before are revoked.
CREATE TABLE revocations (
    seq         BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('jti', 'user')),
    subject     TEXT NOT NULL,
    not_before  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX revocations_expires_idx ON revocations (expires_at);

CREATE TABLE audits (
    id           UUID PRIMARY KEY,
    org_id       UUID,
    actor_id     UUID,
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    details      JSONB NOT NULL,
    request_id   TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX audits_actor_idx ON audits (actor_id, id);
CREATE INDEX audits_org_idx ON audits (org_id, id);
