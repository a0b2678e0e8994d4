-- Several nodes on one database (wave 2).
--
-- Catching up: each change row records the transaction that inserted it. A reader's watermark
-- is the oldest transaction still in flight when it last read (pg_snapshot_xmin), so a row
-- committed late by another node, with a lower seq than rows already read, is still read
-- next time. Rows stored before this migration are all committed: 0.
ALTER TABLE doc_changes ADD COLUMN xact BIGINT NOT NULL DEFAULT 0;
ALTER TABLE doc_changes ALTER COLUMN xact SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX doc_changes_session_xact_idx ON doc_changes (session_id, xact);
CREATE INDEX doc_changes_xact_idx ON doc_changes (xact);

-- Compaction is a compare-and-swap on the snapshot's generation: a node writes a snapshot only
-- over the one it has merged. `covers_seq` is no longer read.
ALTER TABLE doc_snapshots ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;

-- The catch-up watermark of the document a projection was taken from: a change row at or
-- above it may be missing from the projection (0: check every row once after the upgrade).
ALTER TABLE session_projection_state ADD COLUMN watermark BIGINT NOT NULL DEFAULT 0;

-- The node (server process, a random number per start) that stored each change: a node's sweep
-- for missed notifications skips its own changes. 0: stored outside the sync hub.
ALTER TABLE doc_changes ADD COLUMN node BIGINT NOT NULL DEFAULT 0;
