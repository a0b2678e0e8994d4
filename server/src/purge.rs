//! `firemode admin purge-archived`: remove archived buildings whose retention has ended, with
//! everything that belongs to them — assets, sessions with their documents, items and evidence
//! (rows and stored objects, local or S3), defects with their events, sightings and notices,
//! reference values, service history, condition reports. The decision is
//! `domain::retention`; the deletes are one transaction per building (`store::purge`), audited
//! and recorded in `building_purges`. Evidence objects are deleted after the commit, and only
//! those no evidence row refers to any more: should that fail, the object stays (harmless, and
//! reported), never a row without its object.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::retention::{self, Decision};
use crate::evidence::EvidenceObjects;
use crate::store::{NewAudit, Store, StoreError};

/// One archived building and what the run did with it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub building_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub archived_at: DateTime<Utc>,
    pub retain_until: DateTime<Utc>,
    /// `purged`, `would_purge` (dry run), `kept` or `refused`.
    pub action: &'static str,
    /// Why it was kept or refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<crate::store::purge::PurgeCounts>,
    /// Evidence objects deleted from the object store, and those that could not be.
    pub objects_deleted: u64,
    pub objects_failed: u64,
}

/// Purge (or, with `dry_run`, list) the archived buildings archived more than `years` ago
/// whose retention has ended. Refuses `years` under seven.
pub async fn run(
    store: &dyn Store,
    objects: &EvidenceObjects,
    years: u32,
    dry_run: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Outcome>> {
    let cutoff = retention::cutoff(years, now).map_err(|e| anyhow::anyhow!(e.0))?;
    let mut out = Vec::new();
    for b in store.archived_buildings().await? {
        let mut o = Outcome {
            building_id: b.building_id,
            org_id: b.org_id,
            name: b.name.clone(),
            archived_at: b.archived_at,
            retain_until: b.retain_until,
            action: "kept",
            reason: None,
            removed: None,
            objects_deleted: 0,
            objects_failed: 0,
        };
        match retention::decide(b.archived_at, b.retain_until, cutoff, now) {
            Decision::Keep(why) => o.reason = Some(why.to_owned()),
            Decision::Purge if dry_run => o.action = "would_purge",
            Decision::Purge => {
                match store
                    .purge_building(b.building_id, cutoff, now, "cli")
                    .await
                {
                    Ok(Some(purged)) => {
                        o.action = "purged";
                        for h in &purged.orphaned_objects {
                            let still_used = store.evidence_refs(h).await? > 0;
                            if still_used {
                                continue;
                            }
                            match objects.delete(h).await {
                                Ok(()) => o.objects_deleted += 1,
                                Err(e) => {
                                    tracing::warn!(error = %e, "could not delete a purged evidence object");
                                    o.objects_failed += 1;
                                }
                            }
                        }
                        store
                            .insert_audit(NewAudit {
                                org_id: Some(b.org_id),
                                actor_id: None,
                                action: "building.purge".into(),
                                target_type: Some("building".into()),
                                target_id: Some(b.building_id.to_string()),
                                details: serde_json::json!({
                                    "via": "cli",
                                    "name": b.name,
                                    "archived_at": b.archived_at,
                                    "retain_until": b.retain_until,
                                    "removed": purged.counts,
                                    "objects_deleted": o.objects_deleted,
                                    "objects_failed": o.objects_failed,
                                }),
                                request_id: None,
                            })
                            .await?;
                        o.removed = Some(purged.counts);
                    }
                    // Purged by another run meanwhile, or no longer eligible.
                    Ok(None) => {
                        o.reason = Some("purged or changed by another run".into());
                    }
                    // The database's retention guard refused a record younger than seven
                    // years (e.g. an event written after the building was archived): the
                    // transaction rolled back, nothing was removed.
                    Err(StoreError::Database(e))
                        if e.to_string().contains("kept for seven years")
                            || e.to_string().contains("retention ends") =>
                    {
                        o.action = "refused";
                        o.reason = Some(
                            "the database refused: it holds records younger than seven years"
                                .into(),
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        out.push(o);
    }
    Ok(out)
}
