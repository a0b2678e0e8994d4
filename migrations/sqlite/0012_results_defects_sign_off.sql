-- Typed readings and several observed conditions per item, defects identified by asset and
-- condition (sightings, cancel/duplicate/reopen, severity overrides), rule rationale, and the
-- sign-off of completed sessions.

-- The licence or accreditation number a person signs completed sessions with.
ALTER TABLE users ADD COLUMN licence_number TEXT;

-- Who signed a completed session off, under which licence, when (also in the document).
ALTER TABLE test_sessions ADD COLUMN signed_off_by BLOB;
ALTER TABLE test_sessions ADD COLUMN signed_off_licence TEXT;
ALTER TABLE test_sessions ADD COLUMN signed_off_at TEXT;

-- Why each classification of a rule is what it is (JSON object: condition -> text).
ALTER TABLE rules ADD COLUMN rationale TEXT NOT NULL DEFAULT '{}';

-- The item's observed conditions (JSON list) and its assessment (verdicts, suggestion,
-- findings, contradiction: JSON object).
ALTER TABLE session_items ADD COLUMN observed_conditions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE session_items ADD COLUMN assessment TEXT NOT NULL DEFAULT '{}';
UPDATE session_items SET observed_conditions = json_array(observed_condition)
    WHERE observed_condition IS NOT NULL;

-- SQLite cannot change a CHECK constraint: defects (and defect_events, which references it)
-- are rebuilt with the new statuses and columns.
CREATE TABLE defects_new (
    id                  BLOB PRIMARY KEY,
    org_id              BLOB NOT NULL REFERENCES organisations(id),
    building_id         BLOB NOT NULL REFERENCES buildings(id),
    asset_id            BLOB,
    session_id          BLOB REFERENCES test_sessions(id),
    rule_code           TEXT,
    rule_version        TEXT,
    severity            TEXT NOT NULL CHECK (severity IN ('critical', 'non_critical', 'non_conformance')),
    status              TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified', 'closed', 'withdrawn', 'cancelled', 'duplicate')),
    source              TEXT NOT NULL CHECK (source IN ('automatic', 'manual')),
    title               TEXT NOT NULL,
    description         TEXT NOT NULL,
    observed_condition  TEXT,
    evidence            TEXT NOT NULL,
    discovered_at       TEXT NOT NULL,
    notify_by           TEXT NOT NULL,
    acknowledged_at     TEXT,
    created_by          BLOB,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    severity_overridden INTEGER NOT NULL DEFAULT 0,
    severity_reason     TEXT,
    duplicate_of        BLOB
);
INSERT INTO defects_new (id, org_id, building_id, asset_id, session_id, rule_code, rule_version,
        severity, status, source, title, description, observed_condition, evidence, discovered_at,
        notify_by, acknowledged_at, created_by, created_at, updated_at)
    SELECT id, org_id, building_id, asset_id, session_id, rule_code, rule_version, severity,
        status, source, title, description, observed_condition, evidence, discovered_at,
        notify_by, acknowledged_at, created_by, created_at, updated_at FROM defects;
CREATE TABLE defect_events_new (
    id           BLOB PRIMARY KEY,
    defect_id    BLOB NOT NULL REFERENCES defects_new(id),
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    actor_id     BLOB,
    note         TEXT,
    at           TEXT NOT NULL
);
INSERT INTO defect_events_new SELECT id, defect_id, from_status, to_status, actor_id, note, at
    FROM defect_events;
DROP TABLE defect_events;
DROP TABLE defects;
ALTER TABLE defects_new RENAME TO defects;
ALTER TABLE defect_events_new RENAME TO defect_events;
CREATE INDEX defects_org_idx ON defects (org_id, id);
CREATE INDEX defects_building_idx ON defects (building_id, status);
CREATE INDEX defects_asset_idx ON defects (asset_id);
CREATE INDEX defect_events_defect_idx ON defect_events (defect_id, at);

-- Earlier versions opened a new defect per visit: of the active defects with one identity
-- (asset and condition; defects without a condition have none), the most advanced (then the
-- oldest) stays and the others become duplicates of it, each with an event saying so.
CREATE TEMP TABLE defect_keep AS
    SELECT d.id AS id,
        (SELECT d2.id FROM defects d2 WHERE d2.asset_id = d.asset_id
            AND d2.observed_condition = d.observed_condition
            AND d2.status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified')
            ORDER BY CASE d2.status WHEN 'verified' THEN 5 WHEN 'repaired' THEN 4
                     WHEN 'repair_scheduled' THEN 3 WHEN 'acknowledged' THEN 2 ELSE 1 END DESC,
                     d2.created_at, d2.id
            LIMIT 1) AS keep
    FROM defects d
    WHERE d.asset_id IS NOT NULL AND d.observed_condition IS NOT NULL
      AND d.status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified');
DELETE FROM defect_keep WHERE id = keep;
INSERT INTO defect_events (id, defect_id, from_status, to_status, actor_id, note, at)
    SELECT randomblob(16), k.id, d.status, 'duplicate', NULL,
        'duplicate of ' || lower(hex(k.keep)) || ' (one defect per asset and condition, migration 0012)',
        strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')
    FROM defect_keep k JOIN defects d ON d.id = k.id;
UPDATE defects SET status = 'duplicate',
    duplicate_of = (SELECT keep FROM defect_keep WHERE defect_keep.id = defects.id)
    WHERE id IN (SELECT id FROM defect_keep);
-- Identity: one active defect per asset and condition.
CREATE UNIQUE INDEX defects_identity_key ON defects (asset_id, observed_condition)
    WHERE asset_id IS NOT NULL AND observed_condition IS NOT NULL
    AND status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified');

-- The sessions that found a defect (the first, and each visit that found it again).
CREATE TABLE defect_sightings (
    defect_id   BLOB NOT NULL REFERENCES defects(id),
    session_id  BLOB NOT NULL REFERENCES test_sessions(id),
    at          TEXT NOT NULL,
    PRIMARY KEY (defect_id, session_id)
);
CREATE INDEX defect_sightings_session_idx ON defect_sightings (session_id);
INSERT INTO defect_sightings (defect_id, session_id, at)
    SELECT id, session_id, discovered_at FROM defects WHERE session_id IS NOT NULL;
-- The sessions that found a duplicate found the defect it duplicates.
INSERT INTO defect_sightings (defect_id, session_id, at)
    SELECT k.keep, d.session_id, d.discovered_at FROM defect_keep k JOIN defects d ON d.id = k.id
    WHERE d.session_id IS NOT NULL
    ON CONFLICT (defect_id, session_id) DO NOTHING;
DROP TABLE defect_keep;
