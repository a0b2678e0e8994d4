//! Test data: a building with assets and a session, made through the store and the REST API.

use chrono::Utc;
use firemode_server::store::buildings::{AssetRecord, BuildingRecord};
use serde_json::json;
use uuid::Uuid;

use crate::{Org, TestServer, User};

pub struct Building {
    pub id: Uuid,
    pub assets: Vec<Uuid>,
}

/// A building of `org` with `n` portable extinguishers (serviced six-monthly).
pub async fn building(srv: &TestServer, org: &Org, n: usize) -> Building {
    let now = Utc::now();
    let b = BuildingRecord {
        id: Uuid::now_v7(),
        org_id: org.id,
        name: "Test Tower".into(),
        address: "1 Test St, Melbourne VIC".into(),
        building_type: "office".into(),
        contact_name_enc: None,
        contact_phone_enc: None,
        contact_email: None,
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        editions: Default::default(),
        created_at: now,
        updated_at: now,
        state: None,
        schedule_anchor: None,
    };
    srv.store()
        .create_building(&b)
        .await
        .expect("create building");
    let assets: Vec<AssetRecord> = (0..n)
        .map(|i| AssetRecord {
            id: Uuid::now_v7(),
            org_id: org.id,
            building_id: b.id,
            asset_type: "portable_extinguisher".into(),
            location: format!("Level {i}"),
            identifier: Some(format!("EXT-{i:04}")),
            install_date: None,
            rule_codes: sqlx::types::Json(vec![]),
            rule_alternatives: Default::default(),
            created_at: now,
            updated_at: now,
            schedule_anchor: None,
            manufacture_date: None,
        })
        .collect();
    srv.store()
        .create_assets(&assets)
        .await
        .expect("create assets");
    Building {
        id: b.id,
        assets: assets.iter().map(|a| a.id).collect(),
    }
}

/// A six-monthly session on `building` created by `by` (office/admin) through the API.
pub async fn session(
    srv: &TestServer,
    by: &User,
    building: &Building,
    assigned: &[Uuid],
) -> serde_json::Value {
    let r = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(&by.token),
            &json!({ "building_id": building.id, "name": "Six-monthly service", "frequency": "six_monthly", "assigned_to": assigned }),
        )
        .await;
    assert_eq!(r.status, 201, "create session: {}", r.body);
    r.json
}

/// A tablet's edit: set `field` of `asset`'s item to a string, as one change.
pub fn put_item_field(
    doc: &mut firemode_sync_core::automerge::Automerge,
    asset: Uuid,
    field: &str,
    value: &str,
) {
    put_item_fields(doc, asset, &[(field, value)]);
}

/// A tablet's edit: set several string fields of `asset`'s item, as one change.
pub fn put_item_fields(
    doc: &mut firemode_sync_core::automerge::Automerge,
    asset: Uuid,
    fields: &[(&str, &str)],
) {
    edit_item(doc, asset, fields, &[]);
}

/// A tablet's edit: set string fields of `asset`'s item and delete others, as one change.
pub fn edit_item(
    doc: &mut firemode_sync_core::automerge::Automerge,
    asset: Uuid,
    fields: &[(&str, &str)],
    deleted: &[&str],
) {
    use firemode_sync_core::automerge::transaction::Transactable;
    use firemode_sync_core::automerge::{ReadDoc, ROOT};
    let mut tx = doc.transaction();
    let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
    let (_, item) = tx.get(&items, asset.to_string()).unwrap().unwrap();
    for (field, value) in fields {
        tx.put(&item, *field, *value).unwrap();
    }
    for field in deleted {
        tx.delete(&item, *field).unwrap();
    }
    tx.commit();
}

/// A listed conflict's values as sorted `(value, author user id, author device)`.
pub fn conflict_authors(values: &serde_json::Value) -> Vec<(String, String, String)> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut out: Vec<(String, String, String)> = values
        .as_array()
        .expect("a conflict's values")
        .iter()
        .map(|v| {
            (
                text(&v["value"]),
                text(&v["author"]["user_id"]),
                text(&v["author"]["device_id"]),
            )
        })
        .collect();
    out.sort();
    out
}
