-- Buildings and their assets. Contact name and phone are PII: ciphertext only.
CREATE TABLE buildings (
    id                 UUID PRIMARY KEY,
    org_id             UUID NOT NULL REFERENCES organisations(id),
    name               TEXT NOT NULL,
    address            TEXT NOT NULL,
    building_type      TEXT NOT NULL,
    contact_name_enc   BYTEA,
    contact_phone_enc  BYTEA,
    contact_email      TEXT,
    rule_set_code      TEXT NOT NULL,
    rule_set_version   TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX buildings_org_idx ON buildings (org_id, id);

CREATE TABLE assets (
    id            UUID PRIMARY KEY,
    org_id        UUID NOT NULL REFERENCES organisations(id),
    building_id   UUID NOT NULL REFERENCES buildings(id),
    asset_type    TEXT NOT NULL,
    location      TEXT NOT NULL,
    identifier    TEXT,
    install_date  DATE,
    rule_codes    JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT assets_identifier_key UNIQUE (building_id, identifier)
);
CREATE INDEX assets_building_idx ON assets (building_id, id);
