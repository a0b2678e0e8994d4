-- A version number per organisation, raised in the same transaction as every change a
-- schedule is computed from (assets, buildings and their archives, session services, imported
-- and office history, holidays, rules). A node caches an organisation's due lines under the
-- version it read before loading them; one cheap read per request tells it whether another
-- node (or itself) changed anything since. Rules shipped with the server (org_id NULL) raise
-- the nil organisation's row, which every organisation's version includes.
CREATE TABLE schedule_versions (
    org_id   UUID PRIMARY KEY,
    version  BIGINT NOT NULL
);

-- Statement-level: a 10,000-row import raises each organisation's row once.
CREATE FUNCTION schedule_bump_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO schedule_versions (org_id, version)
        SELECT DISTINCT COALESCE(org_id, '00000000-0000-0000-0000-000000000000'::uuid), 1
        FROM new_rows
        ON CONFLICT (org_id) DO UPDATE SET version = schedule_versions.version + 1;
    RETURN NULL;
END;
$$;
CREATE FUNCTION schedule_bump_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO schedule_versions (org_id, version)
        SELECT DISTINCT COALESCE(org_id, '00000000-0000-0000-0000-000000000000'::uuid), 1
        FROM old_rows
        ON CONFLICT (org_id) DO UPDATE SET version = schedule_versions.version + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER assets_schedule_ins AFTER INSERT ON assets
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER assets_schedule_upd AFTER UPDATE ON assets
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER assets_schedule_del AFTER DELETE ON assets
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_old();

CREATE TRIGGER buildings_schedule_ins AFTER INSERT ON buildings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER buildings_schedule_upd AFTER UPDATE ON buildings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER buildings_schedule_del AFTER DELETE ON buildings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_old();

CREATE TRIGGER building_archives_schedule_ins AFTER INSERT ON building_archives
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER building_archives_schedule_del AFTER DELETE ON building_archives
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_old();

CREATE TRIGGER asset_service_history_schedule_ins AFTER INSERT ON asset_service_history
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER asset_service_history_schedule_upd AFTER UPDATE ON asset_service_history
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER asset_service_history_schedule_del AFTER DELETE ON asset_service_history
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_old();

CREATE TRIGGER public_holidays_schedule_ins AFTER INSERT ON public_holidays
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER public_holidays_schedule_upd AFTER UPDATE ON public_holidays
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER public_holidays_schedule_del AFTER DELETE ON public_holidays
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_old();

CREATE TRIGGER rules_schedule_ins AFTER INSERT ON rules
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER rules_schedule_upd AFTER UPDATE ON rules
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_new();
CREATE TRIGGER rules_schedule_del AFTER DELETE ON rules
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_bump_old();

-- Each routine's first and last service from sessions, one row per (organisation, asset,
-- routine): what the organisation's schedule reads instead of an aggregate over every result.
-- Kept by the triggers on session_items below, in the transaction that writes the items.
CREATE TABLE routine_service_spans (
    org_id             UUID NOT NULL,
    asset_id           TEXT NOT NULL,
    rule_code          TEXT NOT NULL,
    first_recorded_at  TEXT NOT NULL,
    last_recorded_at   TEXT NOT NULL,
    PRIMARY KEY (org_id, asset_id, rule_code)
);
INSERT INTO routine_service_spans (org_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
    SELECT org_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at) FROM session_items
    WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
    GROUP BY org_id, asset_id, rule_code;

-- Session items are rewritten on every change of a session document; only rows that are or
-- were services (pass or fail, with a time and a routine) count, and an update only when its
-- routine, outcome or time changed (a note typed in the field leaves schedules alone).
--
-- Each function first raises the versions of the organisations whose services change: that
-- row lock (held to commit) makes concurrent writers of one organisation's services take
-- turns, and every later statement of the function (a new snapshot under READ COMMITTED)
-- sees what the writer before committed. New services are merged into the spans; removed or
-- changed ones have their routines' spans computed again from the items.
CREATE FUNCTION schedule_items_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO schedule_versions (org_id, version)
        SELECT DISTINCT org_id, 1 FROM new_rows
        WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        ORDER BY org_id
        ON CONFLICT (org_id) DO UPDATE SET version = schedule_versions.version + 1;
    INSERT INTO routine_service_spans AS s
            (org_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT org_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at) FROM new_rows
        WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        GROUP BY org_id, asset_id, rule_code
        ON CONFLICT (org_id, asset_id, rule_code) DO UPDATE SET
            first_recorded_at = LEAST(s.first_recorded_at, EXCLUDED.first_recorded_at),
            last_recorded_at = GREATEST(s.last_recorded_at, EXCLUDED.last_recorded_at);
    RETURN NULL;
END;
$$;

-- The spans of `keys` (org_id, asset_id, rule_code) computed again from the items.
CREATE FUNCTION schedule_spans_recompute(keys JSONB) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM routine_service_spans s
        USING jsonb_to_recordset(keys) AS k(org_id UUID, asset_id TEXT, rule_code TEXT)
        WHERE s.org_id = k.org_id AND s.asset_id = k.asset_id AND s.rule_code = k.rule_code;
    INSERT INTO routine_service_spans
            (org_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT i.org_id, i.asset_id, i.rule_code, MIN(i.recorded_at), MAX(i.recorded_at)
        FROM session_items i
        JOIN jsonb_to_recordset(keys) AS k(org_id UUID, asset_id TEXT, rule_code TEXT)
          ON i.org_id = k.org_id AND i.asset_id = k.asset_id AND i.rule_code = k.rule_code
        WHERE i.recorded_at IS NOT NULL AND i.outcome IN ('pass', 'fail')
        GROUP BY i.org_id, i.asset_id, i.rule_code;
END;
$$;

CREATE FUNCTION schedule_items_del() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys JSONB;
BEGIN
    INSERT INTO schedule_versions (org_id, version)
        SELECT DISTINCT org_id, 1 FROM old_rows
        WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        ORDER BY org_id
        ON CONFLICT (org_id) DO UPDATE SET version = schedule_versions.version + 1;
    SELECT jsonb_agg(DISTINCT jsonb_build_object('org_id', org_id, 'asset_id', asset_id,
                                                 'rule_code', rule_code))
        INTO keys FROM old_rows
        WHERE rule_code IS NOT NULL AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail');
    IF keys IS NOT NULL THEN
        PERFORM schedule_spans_recompute(keys);
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION schedule_items_upd() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys JSONB;
BEGIN
    -- The routines of rows whose routine, outcome, time or owner changed, before and after.
    WITH changed AS (
        SELECT o.org_id AS o_org, o.asset_id AS o_asset, o.rule_code AS o_rule,
               n.org_id AS n_org, n.asset_id AS n_asset, n.rule_code AS n_rule
        FROM old_rows o
        JOIN new_rows n ON o.session_id = n.session_id AND o.asset_id = n.asset_id
        WHERE (o.rule_code, o.outcome, o.recorded_at, o.org_id, o.building_id)
              IS DISTINCT FROM (n.rule_code, n.outcome, n.recorded_at, n.org_id, n.building_id)
    ), k AS (
        SELECT o_org AS org_id, o_asset AS asset_id, o_rule AS rule_code FROM changed
        UNION
        SELECT n_org, n_asset, n_rule FROM changed
    )
    SELECT jsonb_agg(jsonb_build_object('org_id', org_id, 'asset_id', asset_id,
                                        'rule_code', rule_code))
        INTO keys FROM k;
    IF keys IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO schedule_versions (org_id, version)
        SELECT DISTINCT org_id, 1
        FROM jsonb_to_recordset(keys) AS k(org_id UUID, asset_id TEXT, rule_code TEXT)
        ORDER BY org_id
        ON CONFLICT (org_id) DO UPDATE SET version = schedule_versions.version + 1;
    PERFORM schedule_spans_recompute(keys);
    RETURN NULL;
END;
$$;
CREATE TRIGGER session_items_schedule_ins AFTER INSERT ON session_items
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_items_ins();
CREATE TRIGGER session_items_schedule_upd AFTER UPDATE ON session_items
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION schedule_items_upd();
CREATE TRIGGER session_items_schedule_del AFTER DELETE ON session_items
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION schedule_items_del();
