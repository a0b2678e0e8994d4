-- Test sessions: registry rows, the automerge document (append-only changes with attribution,
-- plus a compacted snapshot), and the relational projection REST reads.
CREATE TABLE test_sessions (
    id                BLOB PRIMARY KEY,
    org_id            BLOB NOT NULL REFERENCES organisations(id),
    building_id       BLOB NOT NULL REFERENCES buildings(id),
    name              TEXT NOT NULL,
    frequency         TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('in_progress', 'completed')),
    rule_set_code     TEXT NOT NULL,
    rule_set_version  TEXT NOT NULL,
    created_by        BLOB NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX test_sessions_org_idx ON test_sessions (org_id, id);
CREATE INDEX test_sessions_building_idx ON test_sessions (building_id);

CREATE TABLE session_assignees (
    session_id  BLOB NOT NULL REFERENCES test_sessions(id),
    user_id     BLOB NOT NULL REFERENCES users(id),
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX session_assignees_user_idx ON session_assignees (user_id);

-- One row per automerge change ever received. `bytes` is NULL once a snapshot covers it; the
-- row itself stays as the audit trail of who sent which change, from which device, when.
CREATE TABLE doc_changes (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id     BLOB NOT NULL REFERENCES test_sessions(id),
    change_hash    BLOB NOT NULL,
    bytes          BLOB,
    actor_id       TEXT NOT NULL,
    user_id        BLOB,
    device_id      TEXT,
    connection_id  TEXT,
    received_at    TEXT NOT NULL,
    CONSTRAINT doc_changes_hash_key UNIQUE (session_id, change_hash)
);
CREATE INDEX doc_changes_session_idx ON doc_changes (session_id, seq);

CREATE TABLE doc_snapshots (
    session_id   BLOB PRIMARY KEY REFERENCES test_sessions(id),
    bytes        BLOB NOT NULL,
    covers_seq   INTEGER NOT NULL,
    updated_at   TEXT NOT NULL
);

-- Projection of each session document: one row per item, rebuilt after every change.
CREATE TABLE session_items (
    session_id          BLOB NOT NULL REFERENCES test_sessions(id),
    asset_id            TEXT NOT NULL,
    org_id              BLOB NOT NULL,
    building_id         BLOB NOT NULL,
    rule_code           TEXT,
    outcome             TEXT,
    raw_outcome         TEXT,
    observed_condition  TEXT,
    readings            TEXT NOT NULL,
    notes               TEXT NOT NULL,
    evidence            TEXT NOT NULL,
    recorded_by         TEXT,
    recorded_at         TEXT,
    classification      TEXT,
    rule_version        TEXT,
    problems            TEXT NOT NULL,
    PRIMARY KEY (session_id, asset_id)
);
CREATE INDEX session_items_building_idx ON session_items (building_id, asset_id);

CREATE TABLE session_projection_state (
    session_id     BLOB PRIMARY KEY REFERENCES test_sessions(id),
    projected_seq  INTEGER NOT NULL,
    heads          TEXT NOT NULL,
    problems       TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

-- Server-wide facts, e.g. the storage id the sync hub advertises (stable across restarts).
CREATE TABLE server_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
