-- Evidence: one row per upload. The bytes live in the object store under their SHA-256
-- (content-addressed, written once), so two uploads of the same bytes share one object but
-- keep two records (who uploaded what, for which session and asset, when). No API deletes
-- evidence: records are kept at least 7 years (AS 1851 cl. 1.17).
CREATE TABLE evidence (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organisations(id),
    session_id     BLOB NOT NULL REFERENCES test_sessions(id),
    asset_id       BLOB,
    evidence_type  TEXT NOT NULL CHECK (evidence_type IN ('photo', 'video', 'document')),
    sha256         BLOB NOT NULL CHECK (length(sha256) = 32),
    size           INTEGER NOT NULL CHECK (size >= 0),
    content_type   TEXT NOT NULL,
    filename       TEXT,
    metadata       TEXT NOT NULL,
    uploaded_by    BLOB NOT NULL REFERENCES users(id),
    created_at     TEXT NOT NULL
);
CREATE INDEX evidence_session_idx ON evidence (session_id, id);
CREATE INDEX evidence_org_idx ON evidence (org_id, id);
CREATE INDEX evidence_sha256_idx ON evidence (sha256);
