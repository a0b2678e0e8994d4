-- Idempotency keys, scoped per user. A row is claimed `in_flight` by an INSERT that fails on
-- conflict (the race guard), then `complete` with the response to replay. `claim_id` names
-- one claim, so a request whose stale claim was taken over cannot overwrite the new one.
-- Rows expire after 24 h (configurable); a background task deletes expired rows.
CREATE TABLE idempotency_keys (
    user_id        BLOB NOT NULL REFERENCES users(id),
    idem_key       TEXT NOT NULL,
    request_hash   BLOB NOT NULL,
    claim_id       BLOB NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('in_flight', 'complete')),
    status         INTEGER,
    content_type   TEXT,
    response_body  BLOB,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
