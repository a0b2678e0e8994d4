-- Schedules invalidated per building: a version per (organisation, building), raised in the
-- same transaction as every change to one building's schedule inputs (its row, its archive,
-- its assets, their imported and office history, the services recorded in its sessions).
-- Organisation-wide inputs (holidays, the organisation's rules, shipped rules) keep raising
-- `schedule_versions` (migration 0020). A node caches each building's loaded inputs and due
-- lines under the pair (organisation version, building version) it read before loading them,
-- and after a change in one building loads and computes that building alone.
--
-- A building's row is made with the building and never removed (a deleted or archived
-- building is a version too: its schedule is empty), so the rows of an organisation are the
-- set of buildings its schedule is made of.
CREATE TABLE schedule_building_versions (
    org_id       UUID NOT NULL,
    building_id  UUID NOT NULL,
    version      BIGINT NOT NULL,
    PRIMARY KEY (org_id, building_id)
);
INSERT INTO schedule_building_versions (org_id, building_id, version)
    SELECT org_id, id, 1 FROM buildings;

-- Statement-level, rows locked in key order (a 10,000-row import raises its building once).
CREATE FUNCTION schedule_bump_building() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO schedule_building_versions (org_id, building_id, version)
            SELECT DISTINCT org_id, building_id, 1 FROM new_rows ORDER BY org_id, building_id
            ON CONFLICT (org_id, building_id) DO UPDATE
                SET version = schedule_building_versions.version + 1;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO schedule_building_versions (org_id, building_id, version)
            SELECT DISTINCT org_id, building_id, 1 FROM old_rows ORDER BY org_id, building_id
            ON CONFLICT (org_id, building_id) DO UPDATE
                SET version = schedule_building_versions.version + 1;
    ELSE
        INSERT INTO schedule_building_versions (org_id, building_id, version)
            SELECT org_id, building_id, 1 FROM (
                SELECT org_id, building_id FROM new_rows
                UNION SELECT org_id, building_id FROM old_rows
            ) k ORDER BY org_id, building_id
            ON CONFLICT (org_id, building_id) DO UPDATE
                SET version = schedule_building_versions.version + 1;
    END IF;
    RETURN NULL;
END;
$$;

-- The same for the buildings table itself (its key is `id`).
CREATE FUNCTION schedule_bump_building_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO schedule_building_versions (org_id, building_id, version)
            SELECT DISTINCT org_id, id, 1 FROM old_rows ORDER BY org_id, id
            ON CONFLICT (org_id, building_id) DO UPDATE
                SET version = schedule_building_versions.version + 1;
    ELSE
        INSERT INTO schedule_building_versions (org_id, building_id, version)
            SELECT DISTINCT org_id, id, 1 FROM new_rows ORDER BY org_id, id
            ON CONFLICT (org_id, building_id) DO UPDATE
                SET version = schedule_building_versions.version + 1;
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER assets_schedule_ins ON assets;
DROP TRIGGER assets_schedule_upd ON assets;
DROP TRIGGER assets_schedule_del ON assets;
CREATE TRIGGER assets_schedule_ins AFTER INSERT ON assets
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building();
CREATE TRIGGER assets_schedule_upd AFTER UPDATE ON assets
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building();
CREATE TRIGGER assets_schedule_del AFTER DELETE ON assets
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building();

DROP TRIGGER buildings_schedule_ins ON buildings;
DROP TRIGGER buildings_schedule_upd ON buildings;
DROP TRIGGER buildings_schedule_del ON buildings;
CREATE TRIGGER buildings_schedule_ins AFTER INSERT ON buildings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building_row();
CREATE TRIGGER buildings_schedule_upd AFTER UPDATE ON buildings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building_row();
CREATE TRIGGER buildings_schedule_del AFTER DELETE ON buildings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building_row();

DROP TRIGGER building_archives_schedule_ins ON building_archives;
DROP TRIGGER building_archives_schedule_del ON building_archives;
CREATE TRIGGER building_archives_schedule_ins AFTER INSERT ON building_archives
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building();
CREATE TRIGGER building_archives_schedule_del AFTER DELETE ON building_archives
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building();

DROP TRIGGER asset_service_history_schedule_ins ON asset_service_history;
DROP TRIGGER asset_service_history_schedule_upd ON asset_service_history;
DROP TRIGGER asset_service_history_schedule_del ON asset_service_history;
CREATE TRIGGER asset_service_history_schedule_ins AFTER INSERT ON asset_service_history
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building();
CREATE TRIGGER asset_service_history_schedule_upd AFTER UPDATE ON asset_service_history
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building();
CREATE TRIGGER asset_service_history_schedule_del AFTER DELETE ON asset_service_history
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_building();

-- Each routine's first and last service per building: the spans of migration 0020 keyed by
-- the building of the session the services were recorded in, as the building's own schedule
-- reads them (`ReportStore::latest_services` selects a building's items by that building).
-- The building version row, locked first by the triggers below, makes the writers of one
-- building's services take turns, so a span never misses a service committed beside it;
-- writers in different buildings of one organisation no longer wait for each other.
DROP TABLE routine_service_spans;
CREATE TABLE routine_service_spans (
    org_id             UUID NOT NULL,
    building_id        UUID NOT NULL,
    asset_id           TEXT NOT NULL,
    rule_code          TEXT NOT NULL,
    first_recorded_at  TEXT NOT NULL,
    last_recorded_at   TEXT NOT NULL,
    PRIMARY KEY (org_id, building_id, asset_id, rule_code)
);
INSERT INTO routine_service_spans
        (org_id, building_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
    SELECT org_id, building_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at)
    FROM session_items
    WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
    GROUP BY org_id, building_id, asset_id, rule_code;

CREATE OR REPLACE FUNCTION schedule_items_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version)
        SELECT DISTINCT org_id, building_id, 1 FROM new_rows
        WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        ORDER BY org_id, building_id
        ON CONFLICT (org_id, building_id) DO UPDATE
            SET version = schedule_building_versions.version + 1;
    INSERT INTO routine_service_spans AS s
            (org_id, building_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT org_id, building_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at)
        FROM new_rows
        WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        GROUP BY org_id, building_id, asset_id, rule_code
        ON CONFLICT (org_id, building_id, asset_id, rule_code) DO UPDATE SET
            first_recorded_at = LEAST(s.first_recorded_at, EXCLUDED.first_recorded_at),
            last_recorded_at = GREATEST(s.last_recorded_at, EXCLUDED.last_recorded_at);
    RETURN NULL;
END;
$$;

-- The spans of `keys` (org_id, building_id, asset_id, rule_code) computed again from the items.
CREATE OR REPLACE FUNCTION schedule_spans_recompute(keys JSONB) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM routine_service_spans s
        USING jsonb_to_recordset(keys)
            AS k(org_id UUID, building_id UUID, asset_id TEXT, rule_code TEXT)
        WHERE s.org_id = k.org_id AND s.building_id = k.building_id
          AND s.asset_id = k.asset_id AND s.rule_code = k.rule_code;
    INSERT INTO routine_service_spans
            (org_id, building_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT i.org_id, i.building_id, i.asset_id, i.rule_code, MIN(i.recorded_at),
               MAX(i.recorded_at)
        FROM session_items i
        JOIN jsonb_to_recordset(keys)
            AS k(org_id UUID, building_id UUID, asset_id TEXT, rule_code TEXT)
          ON i.org_id = k.org_id AND i.building_id = k.building_id
         AND i.asset_id = k.asset_id AND i.rule_code = k.rule_code
        WHERE i.recorded_at IS NOT NULL AND i.outcome IN ('pass', 'fail')
        GROUP BY i.org_id, i.building_id, i.asset_id, i.rule_code;
END;
$$;

CREATE OR REPLACE FUNCTION schedule_items_del() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys JSONB;
BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version)
        SELECT DISTINCT org_id, building_id, 1 FROM old_rows
        WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        ORDER BY org_id, building_id
        ON CONFLICT (org_id, building_id) DO UPDATE
            SET version = schedule_building_versions.version + 1;
    SELECT jsonb_agg(DISTINCT jsonb_build_object('org_id', org_id, 'building_id', building_id,
                                                 'asset_id', asset_id, 'rule_code', rule_code))
        INTO keys FROM old_rows
        WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail');
    IF keys IS NOT NULL THEN
        PERFORM schedule_spans_recompute(keys);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION schedule_items_upd() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys JSONB;
BEGIN
    -- The routines of rows whose routine, outcome, time or owner changed, before and after.
    WITH changed AS (
        SELECT o.org_id AS o_org, o.building_id AS o_building, o.asset_id AS o_asset,
               o.rule_code AS o_rule, n.org_id AS n_org, n.building_id AS n_building,
               n.asset_id AS n_asset, n.rule_code AS n_rule
        FROM old_rows o
        JOIN new_rows n ON o.session_id = n.session_id AND o.asset_id = n.asset_id
        WHERE (o.rule_code, o.outcome, o.recorded_at, o.org_id, o.building_id)
              IS DISTINCT FROM (n.rule_code, n.outcome, n.recorded_at, n.org_id, n.building_id)
    ), k AS (
        SELECT o_org AS org_id, o_building AS building_id, o_asset AS asset_id,
               o_rule AS rule_code FROM changed
        UNION
        SELECT n_org, n_building, n_asset, n_rule FROM changed
    )
    SELECT jsonb_agg(jsonb_build_object('org_id', org_id, 'building_id', building_id,
                                        'asset_id', asset_id, 'rule_code', rule_code))
        INTO keys FROM k;
    IF keys IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO schedule_building_versions (org_id, building_id, version)
        SELECT DISTINCT org_id, building_id, 1
        FROM jsonb_to_recordset(keys)
            AS k(org_id UUID, building_id UUID, asset_id TEXT, rule_code TEXT)
        ORDER BY org_id, building_id
        ON CONFLICT (org_id, building_id) DO UPDATE
            SET version = schedule_building_versions.version + 1;
    PERFORM schedule_spans_recompute(keys);
    RETURN NULL;
END;
$$;
