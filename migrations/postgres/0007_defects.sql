-- Defects (AS 1851 cl. 1.5.6): opened automatically from failed items by the projection, or
-- by hand; moved through the lifecycle one step at a time, each step recorded.
CREATE TABLE defects (
    id                  UUID PRIMARY KEY,
    org_id              UUID NOT NULL REFERENCES organisations(id),
    building_id         UUID NOT NULL REFERENCES buildings(id),
    asset_id            UUID,
    session_id          UUID REFERENCES test_sessions(id),
    rule_code           TEXT,
    rule_version        TEXT,
    severity            TEXT NOT NULL CHECK (severity IN ('critical', 'non_critical', 'non_conformance')),
    status              TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified', 'closed', 'withdrawn')),
    source              TEXT NOT NULL CHECK (source IN ('automatic', 'manual')),
    title               TEXT NOT NULL,
    description         TEXT NOT NULL,
    observed_condition  TEXT,
    evidence            JSONB NOT NULL,
    discovered_at       TIMESTAMPTZ NOT NULL,
    notify_by           TIMESTAMPTZ NOT NULL,
    acknowledged_at     TIMESTAMPTZ,
    created_by          UUID,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX defects_org_idx ON defects (org_id, id);
CREATE INDEX defects_building_idx ON defects (building_id, status);
-- One automatic defect per failed item: re-projection updates it instead of adding another.
CREATE UNIQUE INDEX defects_automatic_key ON defects (session_id, asset_id) WHERE source = 'automatic';

CREATE TABLE defect_events (
    id           UUID PRIMARY KEY,
    defect_id    UUID NOT NULL REFERENCES defects(id),
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    actor_id     UUID,
    note         TEXT,
    at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX defect_events_defect_idx ON defect_events (defect_id, at);
