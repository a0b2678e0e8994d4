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

-- Earlier versions opened a new defect per visit: of active defects with one identity, the
-- newest stays and the others become duplicates of it.
WITH ranked AS (
    SELECT id, first_value(id) OVER w AS keep, row_number() OVER w AS n
    FROM defects
    WHERE asset_id IS NOT NULL
      AND status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified')
    WINDOW w AS (PARTITION BY asset_id, COALESCE(observed_condition, '')
                 ORDER BY created_at DESC, id DESC)
)
UPDATE defects SET status = 'duplicate', duplicate_of = ranked.keep
    FROM ranked WHERE defects.id = ranked.id AND ranked.n > 1;
-- Identity: one active defect per asset and condition.
CREATE UNIQUE INDEX defects_identity_key ON defects (asset_id, COALESCE(observed_condition, ''))
    WHERE asset_id IS NOT NULL
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
