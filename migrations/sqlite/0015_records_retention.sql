-- Records owners must keep: signed yearly condition reports (immutable once signed; a new
-- version supersedes an older one for the same building and period), archived buildings, and
-- a guard that keeps inspection records for seven years.

-- A signed yearly condition report: the report as computed when signed (JSON), the statement
-- of the competent person, and who signed it (name and licence as they were at signing).
CREATE TABLE condition_reports (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organisations(id),
    building_id     BLOB NOT NULL REFERENCES buildings(id),
    period_start    TEXT NOT NULL,
    period_end      TEXT NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    supersedes      BLOB REFERENCES condition_reports(id),
    statement       TEXT NOT NULL,
    report          TEXT NOT NULL,
    signed_by       BLOB NOT NULL REFERENCES users(id),
    signed_by_name  TEXT NOT NULL,
    signed_licence  TEXT NOT NULL,
    signed_at       TEXT NOT NULL,
    CONSTRAINT condition_reports_version_key UNIQUE (building_id, period_start, period_end, version)
);
CREATE INDEX condition_reports_building_idx ON condition_reports (building_id, period_end, version);

CREATE TRIGGER condition_reports_no_update BEFORE UPDATE ON condition_reports
BEGIN
    SELECT RAISE(ABORT, 'a signed condition report cannot be changed; sign a new version');
END;
CREATE TRIGGER condition_reports_no_delete BEFORE DELETE ON condition_reports
BEGIN
    SELECT RAISE(ABORT, 'a signed condition report is a record and cannot be deleted');
END;

-- A deleted building that holds records: hidden from lists, closed to new sessions and
-- assets, its records kept and readable until retain_until.
CREATE TABLE building_archives (
    building_id   BLOB PRIMARY KEY REFERENCES buildings(id),
    org_id        BLOB NOT NULL REFERENCES organisations(id),
    archived_by   BLOB NOT NULL REFERENCES users(id),
    archived_at   TEXT NOT NULL,
    retain_until  TEXT NOT NULL
);

-- Records younger than seven years cannot be deleted, whatever the code path.
CREATE TRIGGER test_sessions_retained BEFORE DELETE ON test_sessions
WHEN substr(OLD.created_at, 1, 10) > date('now', '-7 years')
BEGIN
    SELECT RAISE(ABORT, 'records are kept for seven years');
END;
CREATE TRIGGER defects_retained BEFORE DELETE ON defects
WHEN substr(OLD.created_at, 1, 10) > date('now', '-7 years')
BEGIN
    SELECT RAISE(ABORT, 'records are kept for seven years');
END;
CREATE TRIGGER defect_events_retained BEFORE DELETE ON defect_events
WHEN substr(OLD.at, 1, 10) > date('now', '-7 years')
BEGIN
    SELECT RAISE(ABORT, 'records are kept for seven years');
END;
CREATE TRIGGER evidence_retained BEFORE DELETE ON evidence
WHEN substr(OLD.created_at, 1, 10) > date('now', '-7 years')
BEGIN
    SELECT RAISE(ABORT, 'records are kept for seven years');
END;
