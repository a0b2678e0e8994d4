-- The AS 1851 rule library: rule sets, and rule versions (immutable; deactivation is the only
-- change). Shipped rows have org_id NULL; an organisation's private rows carry its id.
CREATE TABLE rule_sets (
    code        TEXT NOT NULL,
    version     TEXT NOT NULL,
    title       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (code, version)
);

CREATE TABLE rules (
    id                       UUID PRIMARY KEY,
    -- "C" collation: byte order, the same order SQLite uses, so code cursors page alike.
    code                     TEXT COLLATE "C" NOT NULL,
    version                  TEXT NOT NULL,
    -- The semantic version's parts, so "latest" is an ORDER BY.
    v_major                  BIGINT NOT NULL,
    v_minor                  BIGINT NOT NULL,
    v_patch                  BIGINT NOT NULL,
    org_id                   UUID REFERENCES organisations(id),
    name                     TEXT NOT NULL,
    description              TEXT NOT NULL,
    standard                 TEXT NOT NULL,
    section                  TEXT NOT NULL,
    clause                   TEXT NOT NULL,
    equipment                TEXT NOT NULL,
    frequency                TEXT NOT NULL,
    readings                 JSONB NOT NULL,
    classification_mappings  JSONB NOT NULL,
    active                   BOOLEAN NOT NULL,
    created_by               UUID,
    created_at               TIMESTAMPTZ NOT NULL,
    deactivated_at           TIMESTAMPTZ
);
CREATE UNIQUE INDEX rules_shipped_key ON rules (code, version) WHERE org_id IS NULL;
CREATE UNIQUE INDEX rules_org_key ON rules (org_id, code, version) WHERE org_id IS NOT NULL;
CREATE INDEX rules_code_idx ON rules (code);
