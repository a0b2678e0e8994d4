-- The AS 1851 rule library: rule sets, and rule versions (immutable; deactivation is the only
-- change). Shipped rows have org_id NULL; an organisation's private rows carry its id.
CREATE TABLE rule_sets (
    code        TEXT NOT NULL,
    version     TEXT NOT NULL,
    title       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (code, version)
);

CREATE TABLE rules (
    id                       BLOB PRIMARY KEY,
    code                     TEXT NOT NULL,
    version                  TEXT NOT NULL,
    -- The semantic version's parts, so "latest" is an ORDER BY.
    v_major                  INTEGER NOT NULL,
    v_minor                  INTEGER NOT NULL,
    v_patch                  INTEGER NOT NULL,
    org_id                   BLOB REFERENCES organisations(id),
    name                     TEXT NOT NULL,
    description              TEXT NOT NULL,
    standard                 TEXT NOT NULL,
    section                  TEXT NOT NULL,
    clause                   TEXT NOT NULL,
    equipment                TEXT NOT NULL,
    frequency                TEXT NOT NULL,
    readings                 TEXT NOT NULL,
    classification_mappings  TEXT NOT NULL,
    active                   INTEGER NOT NULL,
    created_by               BLOB,
    created_at               TEXT NOT NULL,
    deactivated_at           TEXT
);
CREATE UNIQUE INDEX rules_shipped_key ON rules (code, version) WHERE org_id IS NULL;
CREATE UNIQUE INDEX rules_org_key ON rules (org_id, code, version) WHERE org_id IS NOT NULL;
CREATE INDEX rules_code_idx ON rules (code);
