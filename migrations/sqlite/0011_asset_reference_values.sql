-- Baselines and design values per asset (AS 1851 compares many readings with baseline data
-- recorded at commissioning or a first service, or with design and manufacturer values).
--
-- One row per value ever set. The current value of (asset, kind, key) is the row with
-- superseded_at IS NULL (at most one: the partial unique index); a change supersedes it and
-- inserts a new row, a clear only supersedes it. Superseded rows are the history and are kept.
-- The server validates everything first; the CHECKs are the last line.
CREATE TABLE asset_reference_values (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organisations(id),
    building_id    BLOB NOT NULL REFERENCES buildings(id),
    asset_id       BLOB NOT NULL REFERENCES assets(id),
    kind           TEXT NOT NULL CHECK (kind IN ('baseline', 'design')),
    key            TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 100 AND key NOT GLOB '*[^a-z0-9_]*'),
    -- SQLite stores NaN as NULL (refused by NOT NULL) and infinities as +/-9e999.
    value          REAL NOT NULL CHECK (value > -9e999 AND value < 9e999),
    unit           TEXT NOT NULL CHECK (length(unit) <= 50),
    source         TEXT NOT NULL CHECK (source IN ('commissioning', 'design_document', 'manufacturer', 'first_service', 'other')),
    note           TEXT CHECK (note IS NULL OR length(note) <= 2000),
    set_by         BLOB REFERENCES users(id),
    set_at         TEXT NOT NULL,
    superseded_at  TEXT
);
CREATE UNIQUE INDEX asset_reference_values_current_key
    ON asset_reference_values (asset_id, kind, key) WHERE superseded_at IS NULL;
CREATE INDEX asset_reference_values_building_idx
    ON asset_reference_values (building_id) WHERE superseded_at IS NULL;
CREATE INDEX asset_reference_values_asset_idx ON asset_reference_values (asset_id);
