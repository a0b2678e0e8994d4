-- Login throttling shared by every node (and cleared by `firemode admin unlock`), and
-- revocation of a whole login session (refresh-token family) at once.

-- One row per (email, client address) pair that failed recently; address = the client IP as
-- text. Rows with email = '' count failures of the address as a whole. Times are Unix
-- milliseconds (the same integer on both backends). locked_until: no attempt for this pair
-- before then (growing delays after repeated failures).
CREATE TABLE login_throttle (
    email         TEXT NOT NULL,
    address       TEXT NOT NULL,
    failures      INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL,
    PRIMARY KEY (email, address)
);
CREATE INDEX login_throttle_last_idx ON login_throttle (last_at);

-- kind 'family': subject is a token family (the `sid` claim); every access token of it is
-- revoked until expires_at. SQLite cannot change a CHECK constraint: the table is rebuilt.
CREATE TABLE revocations_new (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('jti', 'user', 'family')),
    subject     TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
INSERT INTO revocations_new (seq, kind, subject, not_before, expires_at)
    SELECT seq, kind, subject, not_before, expires_at FROM revocations;
-- Keep the sequence where it was: nodes poll with `seq > last seen`, so a number must never be
-- handed out twice (a purged tail would otherwise be reused).
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'revocations_new', seq FROM sqlite_sequence WHERE name = 'revocations'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'revocations_new');
UPDATE sqlite_sequence
    SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'revocations')
    WHERE name = 'revocations_new'
    AND seq < (SELECT seq FROM sqlite_sequence WHERE name = 'revocations');
DROP TABLE revocations;
ALTER TABLE revocations_new RENAME TO revocations;
CREATE INDEX revocations_expires_idx ON revocations (expires_at);
