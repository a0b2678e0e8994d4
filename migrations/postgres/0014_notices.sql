-- Notices that leave the building (issue 11, part 5): a transactional outbox written in the
-- same transaction as the defect change that needs the owner told, webhook endpoints per
-- organisation (Standard Webhooks), one delivery per notice and recipient with its retry
-- state and lease, and every attempt logged.

-- A defect's notification deadline is met by the first delivered notice (not by a status
-- change); escalated_at records the one escalation when the deadline passes undelivered.
ALTER TABLE defects ADD COLUMN notified_at TIMESTAMPTZ;
ALTER TABLE defects ADD COLUMN escalated_at TIMESTAMPTZ;
CREATE INDEX defects_unnotified_idx ON defects (notify_by)
    WHERE notified_at IS NULL AND escalated_at IS NULL;

CREATE TABLE webhook_endpoints (
    id                     UUID PRIMARY KEY,
    org_id                 UUID NOT NULL REFERENCES organisations(id),
    url                    TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    -- ',defect.opened,defect.escalated,' or '' for every event type.
    event_types            TEXT NOT NULL DEFAULT '',
    enabled                BOOLEAN NOT NULL DEFAULT TRUE,
    -- whsec_ secrets, sealed with the PII keys (crypto.rs); the previous one keeps signing
    -- until previous_secret_until after a rotation.
    secret_enc             BYTEA NOT NULL,
    previous_secret_enc    BYTEA,
    previous_secret_until  TIMESTAMPTZ,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL,
    -- Deleted endpoints stay for their delivery log and get nothing more.
    deleted_at             TIMESTAMPTZ
);
CREATE INDEX webhook_endpoints_org_idx ON webhook_endpoints (org_id, id);

-- The outbox: one row per defect change the owner must hear of.
CREATE TABLE notices (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES organisations(id),
    defect_id   UUID NOT NULL REFERENCES defects(id),
    kind        TEXT NOT NULL CHECK (kind IN ('defect.opened', 'defect.reconfirmed',
                    'defect.severity_raised', 'defect.reopened', 'defect.escalated')),
    -- The webhook body's `data`, as it was when the change committed.
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX notices_defect_idx ON notices (defect_id, created_at);
CREATE INDEX notices_org_idx ON notices (org_id, id);

-- One per notice and recipient: the retry state, and the lease a worker holds while it sends.
CREATE TABLE notice_deliveries (
    id               UUID PRIMARY KEY,
    notice_id        UUID NOT NULL REFERENCES notices(id),
    org_id           UUID NOT NULL REFERENCES organisations(id),
    channel          TEXT NOT NULL CHECK (channel IN ('webhook')),
    endpoint_id      UUID REFERENCES webhook_endpoints(id),
    recipient        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    lease_until      TIMESTAMPTZ,
    leased_by        UUID,
    delivered_at     TIMESTAMPTZ,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (notice_id, endpoint_id)
);
CREATE INDEX notice_deliveries_due_idx ON notice_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notice_deliveries_endpoint_idx ON notice_deliveries (endpoint_id);

-- Every attempt, successful or not.
CREATE TABLE notice_attempts (
    id            UUID PRIMARY KEY,
    delivery_id   UUID NOT NULL REFERENCES notice_deliveries(id),
    notice_id     UUID NOT NULL REFERENCES notices(id),
    org_id        UUID NOT NULL REFERENCES organisations(id),
    endpoint_id   UUID,
    channel       TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    at            TIMESTAMPTZ NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    http_status   INTEGER,
    error         TEXT,
    duration_ms   BIGINT NOT NULL
);
CREATE INDEX notice_attempts_delivery_idx ON notice_attempts (delivery_id, at);
CREATE INDEX notice_attempts_endpoint_idx ON notice_attempts (endpoint_id, at);
