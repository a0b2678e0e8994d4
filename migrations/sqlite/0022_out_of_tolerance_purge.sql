-- The non-conformance raised for a routine serviced outside its tolerance window gets a source
-- of its own ('out_of_tolerance'; it was stored as 'manual'), one per service (asset and
-- session, whatever its status later), and stays out of the one-active-per-condition identity
-- so two services out of tolerance are two non-conformances. Archived buildings whose
-- retention has ended can be purged: the purge is recorded, and signed condition reports may
-- then be deleted with the building (never before).

-- SQLite cannot ALTER a CHECK constraint, and rebuilding `defects` would mean rebuilding every
-- table that references it (events, sightings, notices). Widening a CHECK changes no stored
-- row, so the table's definition is edited in place, as SQLite documents for constraint
-- changes (https://www.sqlite.org/lang_altertable.html, "making other kinds of table schema
-- changes"); RESET makes every connection, this one included, read the new definition.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
    SET sql = replace(sql, 'CHECK (source IN (''automatic'', ''manual''))',
                      'CHECK (source IN (''automatic'', ''manual'', ''out_of_tolerance''))')
    WHERE type = 'table' AND name = 'defects';
PRAGMA writable_schema = OFF;

-- Rows the sign-off raised before this migration: the server's, with a session and an asset.
UPDATE defects SET source = 'out_of_tolerance'
    WHERE source = 'manual' AND observed_condition = 'service_outside_tolerance'
      AND session_id IS NOT NULL AND asset_id IS NOT NULL;

DROP INDEX defects_identity_key;
CREATE UNIQUE INDEX defects_identity_key ON defects (asset_id, observed_condition)
    WHERE asset_id IS NOT NULL AND observed_condition IS NOT NULL
    AND source <> 'out_of_tolerance'
    AND status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified');
-- Once per service: re-projection, a retry or the sign-off never raise it twice.
CREATE UNIQUE INDEX defects_tolerance_key ON defects (asset_id, session_id)
    WHERE observed_condition = 'service_outside_tolerance'
    AND asset_id IS NOT NULL AND session_id IS NOT NULL;

-- What a purge removed: kept after the building's rows are gone (no foreign keys), so the
-- organisation can show when and by whom a building's records were destroyed.
CREATE TABLE building_purges (
    building_id     BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL,
    building_name   TEXT NOT NULL,
    archived_at     TEXT NOT NULL,
    retain_until    TEXT NOT NULL,
    purged_at       TEXT NOT NULL,
    purged_by       TEXT NOT NULL,
    counts          TEXT NOT NULL
);

-- A signed condition report stays immutable, and may be deleted only with its building once
-- that building's retention has ended.
DROP TRIGGER condition_reports_no_delete;
CREATE TRIGGER condition_reports_no_delete BEFORE DELETE ON condition_reports
WHEN NOT EXISTS (SELECT 1 FROM building_archives a
                 WHERE a.building_id = OLD.building_id
                   AND substr(a.retain_until, 1, 19) <= strftime('%Y-%m-%dT%H:%M:%S', 'now'))
     OR substr(OLD.signed_at, 1, 10) > date('now', '-7 years')
BEGIN
    SELECT RAISE(ABORT, 'a signed condition report is a record and cannot be deleted before its building''s retention ends');
END;

-- The AS 1851-2005 edition is complete now (every kind it covers); its title said otherwise.
UPDATE rule_sets SET title = 'AS 1851-2005 (incl. Amdts 1-3) maintenance of fire protection systems and equipment'
    WHERE code = 'AS1851' AND version = '2005.1.0';

PRAGMA writable_schema = RESET;
