-- Typed readings and several observed conditions per item, defects identified by asset and
-- condition (sightings, cancel/duplicate/reopen, severity overrides), rule rationale, and the
-- sign-off of completed sessions.

-- The licence or accreditation number a person signs completed sessions with.
ALTER TABLE users ADD COLUMN licence_number TEXT;

-- Who signed a completed session off, under which licence, when (also in the document).
ALTER TABLE test_sessions ADD COLUMN signed_off_by UUID;
ALTER TABLE test_sessions ADD COLUMN signed_off_licence TEXT;
ALTER TABLE test_sessions ADD COLUMN signed_off_at TIMESTAMPTZ;

-- Why each classification of a rule is what it is (JSON object: condition -> text).
ALTER TABLE rules ADD COLUMN rationale JSONB NOT NULL DEFAULT '{}';

-- The item's observed conditions (JSON list) and its assessment (verdicts, suggestion,
-- findings, contradiction: JSON object).
ALTER TABLE session_items ADD COLUMN observed_conditions JSONB NOT NULL DEFAULT '[]';
ALTER TABLE session_items ADD COLUMN assessment JSONB NOT NULL DEFAULT '{}';
UPDATE session_items SET observed_conditions = jsonb_build_array(observed_condition)
    WHERE observed_condition IS NOT NULL;

ALTER TABLE defects DROP CONSTRAINT defects_status_check;
ALTER TABLE defects ADD CONSTRAINT defects_status_check CHECK (status IN ('open', 'acknowledged',
    'repair_scheduled', 'repaired', 'verified', 'closed', 'withdrawn', 'cancelled', 'duplicate'));
ALTER TABLE defects ADD COLUMN severity_overridden BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE defects ADD COLUMN severity_reason TEXT;
ALTER TABLE defects ADD COLUMN duplicate_of UUID REFERENCES defects(id);
DROP INDEX defects_automatic_key;
CREATE INDEX defects_asset_idx ON defects (asset_id);

-- Earlier versions opened a new defect per visit: of the active defects with one identity
-- (asset and condition; defects without a condition have none), the most advanced (then the
-- oldest) stays and the others become duplicates of it, each with an event saying so.
CREATE TEMP TABLE defect_keep AS
    SELECT id, keep FROM (
        SELECT id, first_value(id) OVER w AS keep
        FROM defects
        WHERE asset_id IS NOT NULL AND observed_condition IS NOT NULL
          AND status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified')
        WINDOW w AS (PARTITION BY asset_id, observed_condition
                     ORDER BY CASE status WHEN 'verified' THEN 5 WHEN 'repaired' THEN 4
                              WHEN 'repair_scheduled' THEN 3 WHEN 'acknowledged' THEN 2 ELSE 1 END DESC,
                              created_at, id)
    ) ranked WHERE id <> keep;
INSERT INTO defect_events (id, defect_id, from_status, to_status, actor_id, note, at)
    SELECT gen_random_uuid(), k.id, d.status, 'duplicate', NULL,
        'duplicate of ' || k.keep || ' (one defect per asset and condition, migration 0012)', now()
    FROM defect_keep k JOIN defects d ON d.id = k.id;
UPDATE defects SET status = 'duplicate', duplicate_of = k.keep
    FROM defect_keep k WHERE defects.id = k.id;
-- Identity: one active defect per asset and condition.
CREATE UNIQUE INDEX defects_identity_key ON defects (asset_id, observed_condition)
    WHERE asset_id IS NOT NULL AND observed_condition IS NOT NULL
    AND status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified');

-- The sessions that found a defect (the first, and each visit that found it again).
CREATE TABLE defect_sightings (
    defect_id   UUID NOT NULL REFERENCES defects(id),
    session_id  UUID NOT NULL REFERENCES test_sessions(id),
    at          TIMESTAMPTZ NOT NULL,
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
