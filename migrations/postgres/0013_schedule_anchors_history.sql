-- The schedule's inputs beyond recorded sessions (AS 1851 cl. 1.11): where each routine's grid
-- is anchored, which state's public holidays a building's working days skip, when equipment
-- was made (five-yearly pressure tests count from it), and the service history a site brings
-- when it is onboarded (services done before it was on FireMode).

-- The Australian state or territory of a building (its public holidays), and the date its
-- routines are anchored on (commissioning, or the start of a service contract).
ALTER TABLE buildings ADD COLUMN state TEXT
    CHECK (state IS NULL OR state IN ('ACT', 'NSW', 'NT', 'QLD', 'SA', 'TAS', 'VIC', 'WA'));
ALTER TABLE buildings ADD COLUMN schedule_anchor DATE;

-- An asset's own anchor (overrides the building's) and its manufacture date.
ALTER TABLE assets ADD COLUMN schedule_anchor DATE;
ALTER TABLE assets ADD COLUMN manufacture_date DATE;

-- Services recorded outside a session: imported history of a site taken over, or a service
-- entered by the office. One row per (asset, routine, day).
CREATE TABLE asset_service_history (
    id           UUID PRIMARY KEY,
    org_id       UUID NOT NULL REFERENCES organisations(id),
    building_id  UUID NOT NULL REFERENCES buildings(id),
    asset_id     UUID NOT NULL REFERENCES assets(id),
    rule_code    TEXT NOT NULL CHECK (length(rule_code) BETWEEN 1 AND 64),
    serviced_on  DATE NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('pass', 'fail')),
    source       TEXT NOT NULL CHECK (source IN ('import', 'office')),
    note         TEXT CHECK (note IS NULL OR length(note) <= 2000),
    recorded_by  UUID REFERENCES users(id),
    created_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT asset_service_history_day UNIQUE (asset_id, rule_code, serviced_on)
);
CREATE INDEX asset_service_history_building_idx
    ON asset_service_history (building_id, asset_id, rule_code, serviced_on);
CREATE INDEX asset_service_history_org_idx ON asset_service_history (org_id);

-- Public holidays an organisation adds per state (the national ones are built in).
CREATE TABLE public_holidays (
    org_id  UUID NOT NULL REFERENCES organisations(id),
    state   TEXT NOT NULL CHECK (state IN ('ACT', 'NSW', 'NT', 'QLD', 'SA', 'TAS', 'VIC', 'WA')),
    day     DATE NOT NULL,
    name    TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    PRIMARY KEY (org_id, state, day)
);

-- The organisation-wide schedule reads every asset of an organisation at once.
CREATE INDEX assets_org_idx ON assets (org_id, building_id);
CREATE INDEX session_items_org_report_idx ON session_items (org_id, asset_id, rule_code, recorded_at);
