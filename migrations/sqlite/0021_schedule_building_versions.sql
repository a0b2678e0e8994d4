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
    org_id       BLOB NOT NULL,
    building_id  BLOB NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (org_id, building_id)
);
INSERT INTO schedule_building_versions (org_id, building_id, version)
    SELECT org_id, id, 1 FROM buildings WHERE true;

DROP TRIGGER assets_schedule_ins;
CREATE TRIGGER assets_schedule_ins AFTER INSERT ON assets BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER assets_schedule_upd;
CREATE TRIGGER assets_schedule_upd AFTER UPDATE ON assets BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
    INSERT INTO schedule_building_versions (org_id, building_id, version)
        SELECT OLD.org_id, OLD.building_id, 1
        WHERE OLD.org_id IS NOT NEW.org_id OR OLD.building_id IS NOT NEW.building_id
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER assets_schedule_del;
CREATE TRIGGER assets_schedule_del AFTER DELETE ON assets BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (OLD.org_id, OLD.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER asset_service_history_schedule_ins;
CREATE TRIGGER asset_service_history_schedule_ins AFTER INSERT ON asset_service_history BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER asset_service_history_schedule_upd;
CREATE TRIGGER asset_service_history_schedule_upd AFTER UPDATE ON asset_service_history BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
    INSERT INTO schedule_building_versions (org_id, building_id, version)
        SELECT OLD.org_id, OLD.building_id, 1
        WHERE OLD.org_id IS NOT NEW.org_id OR OLD.building_id IS NOT NEW.building_id
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER asset_service_history_schedule_del;
CREATE TRIGGER asset_service_history_schedule_del AFTER DELETE ON asset_service_history BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (OLD.org_id, OLD.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER building_archives_schedule_ins;
CREATE TRIGGER building_archives_schedule_ins AFTER INSERT ON building_archives BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER building_archives_schedule_del;
CREATE TRIGGER building_archives_schedule_del AFTER DELETE ON building_archives BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (OLD.org_id, OLD.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER buildings_schedule_ins;
CREATE TRIGGER buildings_schedule_ins AFTER INSERT ON buildings BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER buildings_schedule_upd;
CREATE TRIGGER buildings_schedule_upd AFTER UPDATE ON buildings BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

DROP TRIGGER buildings_schedule_del;
CREATE TRIGGER buildings_schedule_del AFTER DELETE ON buildings BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (OLD.org_id, OLD.id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
END;

-- Each routine's first and last service per building: the spans of migration 0020 keyed by
-- the building of the session the services were recorded in, as the building's own schedule
-- reads them (`ReportStore::latest_services` selects a building's items by that building).
DROP TRIGGER session_items_schedule_ins;
DROP TRIGGER session_items_schedule_del;
DROP TRIGGER session_items_schedule_upd;
DROP TABLE routine_service_spans;
CREATE TABLE routine_service_spans (
    org_id             BLOB NOT NULL,
    building_id        BLOB NOT NULL,
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

-- Only rows that are or were services (pass or fail, with a time and a routine) count, and an
-- update only when its routine, outcome, time or owner changed. A new service is merged into
-- its routine's span; a removed or changed one has the spans of its routines computed again.
CREATE TRIGGER session_items_schedule_ins AFTER INSERT ON session_items
    WHEN NEW.rule_code IS NOT NULL AND NEW.recorded_at IS NOT NULL AND NEW.outcome IN ('pass', 'fail') BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
    INSERT INTO routine_service_spans
            (org_id, building_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        VALUES (NEW.org_id, NEW.building_id, NEW.asset_id, NEW.rule_code, NEW.recorded_at,
                NEW.recorded_at)
        ON CONFLICT (org_id, building_id, asset_id, rule_code) DO UPDATE SET
            first_recorded_at = MIN(first_recorded_at, excluded.first_recorded_at),
            last_recorded_at = MAX(last_recorded_at, excluded.last_recorded_at);
END;

CREATE TRIGGER session_items_schedule_del AFTER DELETE ON session_items
    WHEN OLD.rule_code IS NOT NULL AND OLD.recorded_at IS NOT NULL AND OLD.outcome IN ('pass', 'fail') BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (OLD.org_id, OLD.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
    DELETE FROM routine_service_spans
        WHERE org_id = OLD.org_id AND building_id = OLD.building_id AND asset_id = OLD.asset_id
          AND rule_code = OLD.rule_code;
    INSERT INTO routine_service_spans
            (org_id, building_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT org_id, building_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at)
        FROM session_items
        WHERE org_id = OLD.org_id AND building_id = OLD.building_id AND asset_id = OLD.asset_id
          AND rule_code = OLD.rule_code AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        GROUP BY org_id, building_id, asset_id, rule_code;
END;

CREATE TRIGGER session_items_schedule_upd AFTER UPDATE ON session_items
    WHEN OLD.rule_code IS NOT NEW.rule_code OR OLD.outcome IS NOT NEW.outcome OR OLD.recorded_at IS NOT NEW.recorded_at OR OLD.org_id IS NOT NEW.org_id OR OLD.building_id IS NOT NEW.building_id BEGIN
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (NEW.org_id, NEW.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
    INSERT INTO schedule_building_versions (org_id, building_id, version) VALUES (OLD.org_id, OLD.building_id, 1)
        ON CONFLICT (org_id, building_id) DO UPDATE SET version = version + 1;
    DELETE FROM routine_service_spans
        WHERE org_id = OLD.org_id AND building_id = OLD.building_id AND asset_id = OLD.asset_id
          AND rule_code = OLD.rule_code;
    INSERT INTO routine_service_spans
            (org_id, building_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT org_id, building_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at)
        FROM session_items
        WHERE org_id = OLD.org_id AND building_id = OLD.building_id AND asset_id = OLD.asset_id
          AND rule_code = OLD.rule_code AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        GROUP BY org_id, building_id, asset_id, rule_code;
    DELETE FROM routine_service_spans
        WHERE org_id = NEW.org_id AND building_id = NEW.building_id AND asset_id = NEW.asset_id
          AND rule_code = NEW.rule_code;
    INSERT INTO routine_service_spans
            (org_id, building_id, asset_id, rule_code, first_recorded_at, last_recorded_at)
        SELECT org_id, building_id, asset_id, rule_code, MIN(recorded_at), MAX(recorded_at)
        FROM session_items
        WHERE org_id = NEW.org_id AND building_id = NEW.building_id AND asset_id = NEW.asset_id
          AND rule_code = NEW.rule_code AND recorded_at IS NOT NULL AND outcome IN ('pass', 'fail')
        GROUP BY org_id, building_id, asset_id, rule_code;
END;
