-- Buildings and their assets. Contact name and phone are PII: ciphertext only.
CREATE TABLE buildings (
    id                 BLOB PRIMARY KEY,
    org_id             BLOB NOT NULL REFERENCES organisations(id),
    name               TEXT NOT NULL,
    address            TEXT NOT NULL,
    building_type      TEXT NOT NULL,
    contact_name_enc   BLOB,
    contact_phone_enc  BLOB,
    contact_email      TEXT,
    rule_set_code      TEXT NOT NULL,
    rule_set_version   TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX buildings_org_idx ON buildings (org_id, id);

CREATE TABLE assets (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organisations(id),
    building_id   BLOB NOT NULL REFERENCES buildings(id),
    asset_type    TEXT NOT NULL,
    location      TEXT NOT NULL,
    identifier    TEXT,
    install_date  TEXT,
    rule_codes    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CONSTRAINT assets_identifier_key UNIQUE (building_id, identifier)
);
CREATE INDEX assets_building_idx ON assets (building_id, id);
