//! The non-conformance for work done outside its tolerance window (AS 1851 cl. 1.11: reported
//! within a week). Raised when the service is recorded — by the projection as soon as a
//! session's item carries an outcome, and again (harmlessly) at sign-off — once per service:
//! the store's `defects_tolerance_key` (asset, session) makes a second raise a conflict, so
//! re-projection, retries and several nodes never duplicate it. Which services are outside
//! tolerance is decided by the schedule domain (`domain::schedule`) through the compliance
//! report (`compliance::due::outside_tolerance`); this module only loads and writes.
//!
//! A service corrected afterwards (its date or outcome edited) so that it is inside its window
//! again withdraws the session's non-conformance for that asset at the next check, while it is
//! still `open`; once someone acted on it, it stays, and a withdrawn one is not raised again
//! for the same session.

use chrono::Utc;
use uuid::Uuid;

use crate::compliance::{self, Inputs};
use crate::domain::defects::{source, status, Severity};
use crate::store::buildings::BuildingRecord;
use crate::store::defects::{DefectFilter, DefectRecord, DefectWrite};
use crate::store::{Page, Store, StoreError};

/// Raise the out-of-tolerance non-conformances of `session` (one per asset whose routine the
/// session serviced outside every tolerance window) that are not raised yet, and withdraw its
/// open ones whose service is no longer outside. Returns how many were raised now. `actor` is the user whose action led here (none for the projection).
pub async fn raise_for_session(
    store: &dyn Store,
    building: &BuildingRecord,
    session: Uuid,
    actor: Option<Uuid>,
) -> anyhow::Result<usize> {
    let today = Utc::now().date_naive();
    let org_id = building.org_id;
    let (inputs, rules) = tokio::try_join!(
        crate::http::compliance::ScheduleInputs::load_from(store, org_id, building, today),
        crate::rules::building_rules(store, building, None),
    )?;
    let report = compliance::build(Inputs {
        building,
        assets: &inputs.assets,
        rules: &rules,
        services: &inputs.services,
        history: &inputs.history,
        calendar: &inputs.calendar,
        defects: &[],
        active_defects: Vec::new(),
        as_of: today,
        generated_at: Utc::now(),
    });
    let findings = compliance::due::outside_tolerance(&report, session);
    let outside: std::collections::HashSet<Uuid> = findings.iter().map(|f| f.asset_id).collect();
    let open = store
        .list_defects(
            org_id,
            &DefectFilter {
                session_id: Some(session),
                status: Some(status::OPEN.into()),
                ..DefectFilter::default()
            },
            Page {
                after: None,
                limit: 10_000,
            },
        )
        .await?;
    let corrected: Vec<DefectWrite> = open
        .iter()
        .filter(|d| d.source == source::OUT_OF_TOLERANCE && d.session_id == Some(session))
        .filter(|d| d.asset_id.is_some_and(|a| !outside.contains(&a)))
        .map(|d| DefectWrite::Withdraw {
            id: d.id,
            at: Utc::now(),
        })
        .collect();
    if !corrected.is_empty() {
        store.write_defects(&corrected).await?;
    }
    let mut raised = 0;
    for f in findings {
        let now = Utc::now();
        let severity = Severity::NonConformance;
        let d = DefectRecord {
            id: Uuid::now_v7(),
            org_id,
            building_id: building.id,
            asset_id: Some(f.asset_id),
            session_id: Some(session),
            rule_version: rules
                .iter()
                .find(|r| r.code == f.rule_code)
                .map(|r| r.version.clone()),
            rule_code: Some(f.rule_code),
            severity: severity.as_str().to_owned(),
            status: status::OPEN.into(),
            source: source::OUT_OF_TOLERANCE.into(),
            title: f.title,
            description: f.description,
            observed_condition: Some(compliance::due::OUTSIDE_TOLERANCE.into()),
            evidence: sqlx::types::Json(Vec::new()),
            discovered_at: now,
            // The week AS 1851 gives to report it, from when it is known.
            notify_by: now + severity.notification_window(),
            acknowledged_at: None,
            created_by: actor,
            created_at: now,
            updated_at: now,
            severity_overridden: false,
            severity_reason: None,
            duplicate_of: None,
            notified_at: None,
            escalated_at: None,
            asset_identifier: None,
            asset_type: None,
            asset_location: None,
        };
        match store.insert_defect(&d).await {
            Ok(()) => raised += 1,
            // Raised before for this service (by another projection, node or the sign-off).
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(raised)
}
