-- Documents as several nodes would share them (wave 2); SQLite has one writer, so its
-- catch-up watermark is the change sequence number itself.
--
-- Compaction is a compare-and-swap on the snapshot's generation. `covers_seq` is no longer read.
ALTER TABLE doc_snapshots ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;

-- The watermark of the document a projection was taken from: a change row with a seq at or
-- above it may be missing from the projection. With one writer, projected_seq was exact.
ALTER TABLE session_projection_state ADD COLUMN watermark INTEGER NOT NULL DEFAULT 0;
UPDATE session_projection_state SET watermark = projected_seq + 1;

-- The node (server process, a random number per start) that stored each change: a node's sweep
-- for missed notifications skips its own changes. 0: stored outside the sync hub.
ALTER TABLE doc_changes ADD COLUMN node INTEGER NOT NULL DEFAULT 0;
