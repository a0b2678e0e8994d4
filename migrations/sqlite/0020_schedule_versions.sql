-- A version number per organisation, raised in the same transaction as every change a
-- schedule is computed from (assets, buildings and their archives, session services, imported
-- and office history, holidays, rules). A node caches an organisation's due lines under the
-- version it read before loading them; one cheap read per request tells it whether another
-- node (or itself) changed anything since. Rules shipped with the server (org_id NULL) raise
-- the nil organisation's row, which every organisation's version includes.
CREATE TABLE schedule_versions (
    org_id   BLOB PRIMARY KEY,
    version  INTEGER NOT NULL
);

CREATE TRIGGER assets_schedule_ins AFTER INSERT ON assets BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER assets_schedule_upd AFTER UPDATE ON assets BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER assets_schedule_del AFTER DELETE ON assets BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(OLD.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER buildings_schedule_ins AFTER INSERT ON buildings BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER buildings_schedule_upd AFTER UPDATE ON buildings BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER buildings_schedule_del AFTER DELETE ON buildings BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(OLD.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER asset_service_history_schedule_ins AFTER INSERT ON asset_service_history BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER asset_service_history_schedule_upd AFTER UPDATE ON asset_service_history BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER asset_service_history_schedule_del AFTER DELETE ON asset_service_history BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(OLD.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER public_holidays_schedule_ins AFTER INSERT ON public_holidays BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER public_holidays_schedule_upd AFTER UPDATE ON public_holidays BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER public_holidays_schedule_del AFTER DELETE ON public_holidays BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(OLD.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER rules_schedule_ins AFTER INSERT ON rules BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER rules_schedule_upd AFTER UPDATE ON rules BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER rules_schedule_del AFTER DELETE ON rules BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(OLD.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER building_archives_schedule_ins AFTER INSERT ON building_archives BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(NEW.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER building_archives_schedule_del AFTER DELETE ON building_archives BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (COALESCE(OLD.org_id, X'00000000000000000000000000000000'), 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
END;


-- Each routine's first and last service from sessions, one row per (organisation, asset,
-- routine): what the organisation's schedule reads instead of an aggregate over every result.
-- Kept by the triggers on session_items below, in the transaction that writes the items.
CREATE TABLE routine_service_spans (
    org_id             BLOB NOT NULL,
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
-- routine, outcome, time or owner changed (a note typed in the field leaves schedules alone).
-- A new service is merged into its routine's span; a removed or changed one has the spans of
-- its routines computed again from the items.
CREATE TRIGGER session_items_schedule_ins AFTER INSERT ON session_items
    WHEN NEW.rule_code IS NOT NULL AND NEW.recorded_at IS NOT NULL AND NEW.outcome IN ('pass', 'fail') BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (NEW.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
    INSERT INTO routine_service_spans
            (org_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        VALUES (NEW.org_id, NEW.asset_id, NEW.rule_code, NEW.recorded_at, NEW.recorded_at)
        ON CONFLICT (org_id, asset_id, rule_code) DO UPDATE SET
            first_recorded_at = MIN(first_recorded_at, excluded.first_recorded_at),
            last_recorded_at = MAX(last_recorded_at, excluded.last_recorded_at);
END;

CREATE TRIGGER session_items_schedule_del AFTER DELETE ON session_items
    WHEN OLD.rule_code IS NOT NULL AND OLD.recorded_at IS NOT NULL AND OLD.outcome IN ('pass', 'fail') BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (OLD.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
    DELETE FROM routine_service_spans
        WHERE org_id = OLD.org_id AND asset_id = OLD.asset_id AND rule_code = OLD.rule_code;
    INSERT INTO routine_service_spans
            (org_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT org_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at) FROM session_items
        WHERE org_id = OLD.org_id AND asset_id = OLD.asset_id AND rule_code = OLD.rule_code
          AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        GROUP BY org_id, asset_id, rule_code;
END;

CREATE TRIGGER session_items_schedule_upd AFTER UPDATE ON session_items
    WHEN OLD.rule_code IS NOT NEW.rule_code OR OLD.outcome IS NOT NEW.outcome OR OLD.recorded_at IS NOT NEW.recorded_at OR OLD.org_id IS NOT NEW.org_id OR OLD.building_id IS NOT NEW.building_id BEGIN
    INSERT INTO schedule_versions (org_id, version) VALUES (NEW.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
    INSERT INTO schedule_versions (org_id, version) VALUES (OLD.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET version = version + 1;
    DELETE FROM routine_service_spans
        WHERE org_id = OLD.org_id AND asset_id = OLD.asset_id AND rule_code = OLD.rule_code;
    INSERT INTO routine_service_spans
            (org_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT org_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at) FROM session_items
        WHERE org_id = OLD.org_id AND asset_id = OLD.asset_id AND rule_code = OLD.rule_code
          AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        GROUP BY org_id, asset_id, rule_code;
    DELETE FROM routine_service_spans
        WHERE org_id = NEW.org_id AND asset_id = NEW.asset_id AND rule_code = NEW.rule_code;
    INSERT INTO routine_service_spans
            (org_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT org_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at) FROM session_items
        WHERE org_id = NEW.org_id AND asset_id = NEW.asset_id AND rule_code = NEW.rule_code
          AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        GROUP BY org_id, asset_id, rule_code;
END;
