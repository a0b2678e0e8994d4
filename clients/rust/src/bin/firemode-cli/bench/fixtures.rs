//! What the load workloads need on the server before they start, made over REST (admin or
//! office login): a building with assets, sessions.

use firemode_client::{Auth, Client, Error};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

#[derive(Deserialize)]
struct Created {
    id: Uuid,
}

/// A building with `assets` assets (one CSV import), their kinds cycling through `kinds`.
pub async fn create_building(
    client: &Client,
    kinds: &[&str],
    assets: usize,
) -> Result<Uuid, Error> {
    let b: Created = client
        .post_json(
            "/v1/buildings",
            &json!({ "name": "Bench Tower", "address": "1 Bench St, Melbourne VIC 3000",
                     "building_type": "Class 5 office" }),
        )
        .await?;
    let mut csv = String::from("asset_type,location,identifier\n");
    for i in 0..assets {
        let kind = kinds[i % kinds.len()];
        csv.push_str(&format!("{kind},Level {},BENCH-{i:05}\n", i / 20));
    }
    client
        .execute(
            Auth::Bearer,
            &format!("/v1/buildings/{}/assets/import", b.id),
            |http, url| {
                http.post(url)
                    .header("content-type", "text/csv")
                    .body(csv.clone())
            },
        )
        .await?;
    Ok(b.id)
}

/// A session just created.
#[derive(Deserialize)]
pub struct Session {
    pub id: Uuid,
    /// bs58check form, as sync messages carry it.
    pub document_id: String,
}

/// A session for `building` at `frequency` (the server builds its document).
pub async fn create_session(
    client: &Client,
    building: Uuid,
    name: &str,
    frequency: &str,
) -> Result<Session, Error> {
    client
        .post_json(
            "/v1/tests/sessions",
            &json!({ "building_id": building, "name": name, "frequency": frequency }),
        )
        .await
}
