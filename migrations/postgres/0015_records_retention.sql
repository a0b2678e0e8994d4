-- Records owners must keep: signed yearly condition reports (immutable once signed; a new
-- version supersedes an older one for the same building and period), archived buildings, and
-- a guard that keeps inspection records for seven years.

-- A signed yearly condition report: the report as computed when signed (JSON), the statement
-- of the competent person, and who signed it (name and licence as they were at signing).
CREATE TABLE condition_reports (
    id              UUID PRIMARY KEY,
    org_id          UUID NOT NULL REFERENCES organisations(id),
    building_id     UUID NOT NULL REFERENCES buildings(id),
    period_start    DATE NOT NULL,
    period_end      DATE NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    supersedes      UUID REFERENCES condition_reports(id),
    statement       TEXT NOT NULL,
    report          JSONB NOT NULL,
    signed_by       UUID NOT NULL REFERENCES users(id),
    signed_by_name  TEXT NOT NULL,
    signed_licence  TEXT NOT NULL,
    signed_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT condition_reports_version_key UNIQUE (building_id, period_start, period_end, version)
);
CREATE INDEX condition_reports_building_idx ON condition_reports (building_id, period_end, version);

CREATE FUNCTION condition_reports_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a signed condition report cannot be changed or deleted; sign a new version';
END;
$$;
CREATE TRIGGER condition_reports_immutable BEFORE UPDATE OR DELETE ON condition_reports
    FOR EACH ROW EXECUTE FUNCTION condition_reports_immutable();

-- A deleted building that holds records: hidden from lists, closed to new sessions and
-- assets, its records kept and readable until retain_until.
CREATE TABLE building_archives (
    building_id   UUID PRIMARY KEY REFERENCES buildings(id),
    org_id        UUID NOT NULL REFERENCES organisations(id),
    archived_by   UUID NOT NULL REFERENCES users(id),
    archived_at   TIMESTAMPTZ NOT NULL,
    retain_until  TIMESTAMPTZ NOT NULL
);

-- Records younger than seven years cannot be deleted, whatever the code path. The trigger's
-- argument names the row's time column.
CREATE FUNCTION records_retained() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(OLD) ->> TG_ARGV[0])::timestamptz > now() - interval '7 years' THEN
        RAISE EXCEPTION 'records are kept for seven years';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER test_sessions_retained BEFORE DELETE ON test_sessions
    FOR EACH ROW EXECUTE FUNCTION records_retained('created_at');
CREATE TRIGGER defects_retained BEFORE DELETE ON defects
    FOR EACH ROW EXECUTE FUNCTION records_retained('created_at');
CREATE TRIGGER defect_events_retained BEFORE DELETE ON defect_events
    FOR EACH ROW EXECUTE FUNCTION records_retained('at');
CREATE TRIGGER evidence_retained BEFORE DELETE ON evidence
    FOR EACH ROW EXECUTE FUNCTION records_retained('created_at');
