-- Notices that leave the building (issue 11, part 5): a transactional outbox written in the
-- same transaction as the defect change that needs the owner told, webhook endpoints per
-- organisation (Standard Webhooks), one delivery per notice and recipient with its retry
-- state and lease, and every attempt logged.

-- A defect's notification deadline is met by the first delivered notice (not by a status
-- change); escalated_at records the one escalation when the deadline passes undelivered.
ALTER TABLE defects ADD COLUMN notified_at TEXT;
ALTER TABLE defects ADD COLUMN escalated_at TEXT;
CREATE INDEX defects_unnotified_idx ON defects (notify_by)
    WHERE notified_at IS NULL AND escalated_at IS NULL;

CREATE TABLE webhook_endpoints (
    id                     BLOB PRIMARY KEY,
    org_id                 BLOB NOT NULL REFERENCES organisations(id),
    url                    TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    -- ',defect.opened,defect.escalated,' or '' for every event type.
    event_types            TEXT NOT NULL DEFAULT '',
    enabled                INTEGER NOT NULL DEFAULT 1,
    -- whsec_ secrets, sealed with the PII keys (crypto.rs); the previous one keeps signing
    -- until previous_secret_until after a rotation.
    secret_enc             BLOB NOT NULL,
    previous_secret_enc    BLOB,
    previous_secret_until  TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    -- Deleted endpoints stay for their delivery log and get nothing more.
    deleted_at             TEXT
);
CREATE INDEX webhook_endpoints_org_idx ON webhook_endpoints (org_id, id);

-- The outbox: one row per defect change the owner must hear of.
CREATE TABLE notices (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organisations(id),
    defect_id   BLOB NOT NULL REFERENCES defects(id),
    kind        TEXT NOT NULL CHECK (kind IN ('defect.opened', 'defect.reconfirmed',
                    'defect.severity_raised', 'defect.reopened', 'defect.escalated')),
    -- The webhook body's `data`, as it was when the change committed.
    payload     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX notices_defect_idx ON notices (defect_id, created_at);
CREATE INDEX notices_org_idx ON notices (org_id, id);

-- One per notice and recipient: the retry state, and the lease a worker holds while it sends.
CREATE TABLE notice_deliveries (
    id               BLOB PRIMARY KEY,
    notice_id        BLOB NOT NULL REFERENCES notices(id),
    org_id           BLOB NOT NULL REFERENCES organisations(id),
    channel          TEXT NOT NULL CHECK (channel IN ('webhook')),
    endpoint_id      BLOB REFERENCES webhook_endpoints(id),
    recipient        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    lease_until      TEXT,
    leased_by        BLOB,
    delivered_at     TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    UNIQUE (notice_id, endpoint_id)
);
CREATE INDEX notice_deliveries_due_idx ON notice_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notice_deliveries_endpoint_idx ON notice_deliveries (endpoint_id);

-- Every attempt, successful or not.
CREATE TABLE notice_attempts (
    id            BLOB PRIMARY KEY,
    delivery_id   BLOB NOT NULL REFERENCES notice_deliveries(id),
    notice_id     BLOB NOT NULL REFERENCES notices(id),
    org_id        BLOB NOT NULL REFERENCES organisations(id),
    endpoint_id   BLOB,
    channel       TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    at            TEXT NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    http_status   INTEGER,
    error         TEXT,
    duration_ms   INTEGER NOT NULL
);
CREATE INDEX notice_attempts_delivery_idx ON notice_attempts (delivery_id, at);
CREATE INDEX notice_attempts_endpoint_idx ON notice_attempts (endpoint_id, at);
