-- Login throttling shared by every node (and cleared by `firemode admin unlock`), and
-- revocation of a whole login session (refresh-token family) at once.

-- One row per (email, client address) pair that failed recently; address = the client IP as
-- text. Rows with email = '' count failures of the address as a whole. Times are Unix
-- milliseconds (the same integer on both backends). locked_until: no attempt for this pair
-- before then (growing delays after repeated failures).
CREATE TABLE login_throttle (
    email         TEXT NOT NULL,
    address       TEXT NOT NULL,
    failures      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    PRIMARY KEY (email, address)
);
CREATE INDEX login_throttle_last_idx ON login_throttle (last_at);

-- kind 'family': subject is a token family (the `sid` claim); every access token of it is
-- revoked until expires_at.
ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check
    CHECK (kind IN ('jti', 'user', 'family'));
