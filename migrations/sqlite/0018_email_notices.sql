-- Email notices (issue 11, part 5, the email half): a notice's delivery may go by email to the
-- building's contact (or, for an escalation, to the organisation's admins), and each attempt
-- keeps the receiving server's reply (the SMTP answer of a delivered email).
--
-- SQLite cannot change a CHECK constraint, so notice_deliveries is rebuilt under the same name
-- (no rename: a rename would carry notice_attempts' foreign key along to the old table). The
-- drop leaves the attempts without their delivery until the copy is back, so the foreign key
-- checks wait for the commit.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE notice_deliveries_copy AS SELECT * FROM notice_deliveries;
DROP TABLE notice_deliveries;
CREATE TABLE notice_deliveries (
    id               BLOB PRIMARY KEY,
    notice_id        BLOB NOT NULL REFERENCES notices(id),
    org_id           BLOB NOT NULL REFERENCES organisations(id),
    channel          TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
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
INSERT INTO notice_deliveries SELECT id, notice_id, org_id, channel, endpoint_id, recipient,
    status, attempts, next_attempt_at, lease_until, leased_by, delivered_at, last_error, created_at
    FROM notice_deliveries_copy;
DROP TABLE notice_deliveries_copy;
CREATE INDEX notice_deliveries_due_idx ON notice_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notice_deliveries_endpoint_idx ON notice_deliveries (endpoint_id);
-- One email delivery per notice and address (webhook deliveries are unique per endpoint).
CREATE UNIQUE INDEX notice_deliveries_email_idx ON notice_deliveries (notice_id, recipient)
    WHERE channel = 'email';
ALTER TABLE notice_attempts ADD COLUMN reply TEXT;
