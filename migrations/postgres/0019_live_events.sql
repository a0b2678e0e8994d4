-- What changed since a time, for the live events (GET /v1/events): recent rows found by index,
-- not by scanning an organisation's sessions and defects every poll.
CREATE INDEX test_sessions_org_updated_idx ON test_sessions (org_id, updated_at);
CREATE INDEX session_projection_state_updated_idx ON session_projection_state (updated_at);
CREATE INDEX defects_org_updated_idx ON defects (org_id, updated_at);
