//! Buildings and assets: CRUD, CSV import, roles, organisation isolation, validation, PII at
//! rest, audits.

use firemode_server::crypto::{random_b64, PiiCipher};
use firemode_server::store::sessions::SessionRow;
use firemode_tests::{
    assert_problem, backend_tests, test_config, Backend, Org, TestDb, TestServer,
};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

backend_tests!(
    buildings_crud_and_audits,
    only_admin_and_office_write,
    other_organisations_see_404_everywhere,
    building_input_is_validated,
    contact_pii_is_encrypted_at_rest,
    rotation_reseals_building_contacts,
    delete_archives_a_building_with_sessions,
    assets_crud_and_validation,
    csv_import_all_or_nothing,
    csv_import_rejects_bad_requests,
);

const CONTACT_NAME: &str = "Wilhelmina Featherstonehaugh";
const CONTACT_PHONE: &str = "+61 398 765 432";

async fn building(srv: &TestServer, token: &str, name: &str) -> Uuid {
    let r = srv
        .client
        .post(
            "/v1/buildings",
            Some(token),
            &json!({ "name": name, "address": "1 Collins St, Melbourne VIC 3000", "building_type": "Class 5 office" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.uuid("id")
}

async fn asset(srv: &TestServer, token: &str, building: Uuid, identifier: &str) -> Uuid {
    let r = srv
        .client
        .post(
            &format!("/v1/buildings/{building}/assets"),
            Some(token),
            &json!({ "asset_type": "portable_extinguisher", "location": "Level 2 lift lobby",
                     "identifier": identifier, "install_date": "2019-03-14",
                     "rule_codes": ["AS1851-10-6M-EXT"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.uuid("id")
}

async fn audits(srv: &TestServer, token: &str) -> Vec<Value> {
    let r = srv
        .client
        .get("/v1/users/me/audits?limit=500", Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"].as_array().unwrap().clone()
}

async fn buildings_crud_and_audits(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = Some(org.admin.token.as_str());
    let c = &srv.client;

    let r = c
        .post(
            "/v1/buildings",
            t,
            &json!({ "name": "  Rialto Tower ", "address": "525 Collins St, Melbourne VIC 3000",
                     "building_type": "Class 5 office",
                     "contact": { "name": CONTACT_NAME, "phone": CONTACT_PHONE, "email": "FM@Rialto.test" } }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.uuid("id");
    assert_eq!(r.json["name"], "Rialto Tower", "trimmed");
    assert_eq!(r.json["org_id"], org.id.to_string());
    assert_eq!(
        r.json["rule_set"],
        json!({ "code": "AS1851", "version": "2012.1.0" }),
        "the shipped rule set is the default"
    );
    assert_eq!(
        r.json["contact"],
        json!({ "name": CONTACT_NAME, "phone": CONTACT_PHONE, "email": "fm@rialto.test" })
    );

    let g = c.get(&format!("/v1/buildings/{id}"), t).await;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json["contact"]["name"], CONTACT_NAME);

    // Pagination and filters.
    let second = building(&srv, &org.admin.token, "Eureka Tower").await;
    let page1 = c.get("/v1/buildings?limit=1", t).await;
    assert_eq!(page1.status, 200, "{}", page1.body);
    assert_eq!(page1.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(page1.json["items"][0]["id"], id.to_string());
    let cursor = page1.str("next_cursor").to_owned();
    let page2 = c
        .get(&format!("/v1/buildings?limit=1&cursor={cursor}"), t)
        .await;
    assert_eq!(page2.json["items"][0]["id"], second.to_string());
    assert!(page2.json["next_cursor"].is_null());
    let found = c.get("/v1/buildings?q=rialto", t).await;
    assert_eq!(found.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(found.json["items"][0]["id"], id.to_string());
    let by_address = c.get("/v1/buildings?q=525%20COLLINS", t).await;
    assert_eq!(by_address.json["items"].as_array().unwrap().len(), 1);
    let wildcard = c.get("/v1/buildings?q=%25", t).await;
    assert_eq!(
        wildcard.json["items"].as_array().unwrap().len(),
        0,
        "LIKE wildcards in the search are literal: {}",
        wildcard.body
    );
    let typed = c
        .get("/v1/buildings?building_type=Class%205%20office", t)
        .await;
    assert_eq!(typed.json["items"].as_array().unwrap().len(), 2);

    // PATCH: absent fields stay, null clears the contact.
    let p = c
        .patch(
            &format!("/v1/buildings/{id}"),
            t,
            &json!({ "name": "Rialto", "rule_set": { "code": "AS1851", "version": "2012.1.0" } }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json["name"], "Rialto");
    assert_eq!(p.json["address"], "525 Collins St, Melbourne VIC 3000");
    assert_eq!(p.json["contact"]["phone"], CONTACT_PHONE);
    let p = c
        .patch(
            &format!("/v1/buildings/{id}"),
            t,
            &json!({ "contact": { "email": "new@rialto.test" } }),
        )
        .await;
    assert_eq!(
        p.json["contact"],
        json!({ "name": null, "phone": null, "email": "new@rialto.test" }),
        "a contact replaces the whole contact"
    );
    let p = c
        .patch(
            &format!("/v1/buildings/{id}"),
            t,
            &json!({ "contact": null }),
        )
        .await;
    assert!(p.json["contact"].is_null(), "{}", p.body);

    // DELETE takes the assets with it.
    let a = asset(&srv, &org.admin.token, id, "EXT-001").await;
    let d = c.delete(&format!("/v1/buildings/{id}"), t).await;
    assert_eq!(d.status, 204, "{}", d.body);
    assert_problem(
        &c.get(&format!("/v1/buildings/{id}"), t).await,
        404,
        "not_found",
    );
    assert!(srv.store().get_asset(org.id, id, a).await.is_err());
    assert_problem(
        &c.delete(&format!("/v1/buildings/{id}"), t).await,
        404,
        "not_found",
    );

    // Audit rows: who, what, old/new, and never the contact's PII.
    let rows = audits(&srv, &org.admin.token).await;
    let actions: Vec<&str> = rows.iter().filter_map(|a| a["action"].as_str()).collect();
    for action in [
        "building.create",
        "building.update",
        "asset.create",
        "building.delete",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let update = rows
        .iter()
        .find(|a| a["action"] == "building.update")
        .unwrap();
    assert_eq!(update["target_type"], "building");
    assert_eq!(update["target_id"], id.to_string());
    assert_eq!(update["details"]["old"]["name"], "Rialto Tower");
    assert_eq!(update["details"]["new"]["name"], "Rialto");
    let delete = rows
        .iter()
        .find(|a| a["action"] == "building.delete")
        .unwrap();
    assert_eq!(delete["details"]["assets_deleted"], 1);
    let all = serde_json::to_string(&rows).unwrap();
    assert!(!all.contains("Featherstonehaugh") && !all.contains("398 765"));
}

async fn only_admin_and_office_write(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let office = srv.user(&org, "office").await;
    let id = building(&srv, &office.token, "Office-made").await;
    let a = asset(&srv, &office.token, id, "EXT-1").await;
    let p = srv
        .client
        .patch(
            &format!("/v1/buildings/{id}/assets/{a}"),
            Some(&office.token),
            &json!({ "location": "Level 3" }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let csv = "asset_type,location\nfire_blanket,Kitchen\n";
    let imp = srv
        .client
        .post_raw(
            &format!("/v1/buildings/{id}/assets/import"),
            Some(&office.token),
            "text/csv",
            csv.into(),
        )
        .await;
    assert_eq!(imp.status, 201, "{}", imp.body);

    for role in ["inspector", "auditor"] {
        let u = srv.user(&org, role).await;
        let t = Some(u.token.as_str());
        let c = &srv.client;
        // Reads work.
        assert_eq!(c.get("/v1/buildings", t).await.status, 200);
        assert_eq!(c.get(&format!("/v1/buildings/{id}"), t).await.status, 200);
        let list = c.get(&format!("/v1/buildings/{id}/assets"), t).await;
        assert_eq!(list.json["items"].as_array().unwrap().len(), 2);
        assert_eq!(
            c.get(&format!("/v1/buildings/{id}/assets/{a}"), t)
                .await
                .status,
            200
        );
        // Writes do not.
        let create = c
            .post(
                "/v1/buildings",
                t,
                &json!({ "name": "x", "address": "y", "building_type": "z" }),
            )
            .await;
        assert_problem(&create, 403, "forbidden");
        assert_problem(
            &c.patch(&format!("/v1/buildings/{id}"), t, &json!({ "name": "x" }))
                .await,
            403,
            "forbidden",
        );
        assert_problem(
            &c.delete(&format!("/v1/buildings/{id}"), t).await,
            403,
            "forbidden",
        );
        assert_problem(
            &c.post(
                &format!("/v1/buildings/{id}/assets"),
                t,
                &json!({ "asset_type": "fire_blanket", "location": "x" }),
            )
            .await,
            403,
            "forbidden",
        );
        assert_problem(
            &c.patch(
                &format!("/v1/buildings/{id}/assets/{a}"),
                t,
                &json!({ "location": "x" }),
            )
            .await,
            403,
            "forbidden",
        );
        assert_problem(
            &c.post_raw(
                &format!("/v1/buildings/{id}/assets/import"),
                t,
                "text/csv",
                csv.into(),
            )
            .await,
            403,
            "forbidden",
        );
    }
    let list = srv
        .client
        .get(&format!("/v1/buildings/{id}/assets"), Some(&office.token))
        .await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 2);
    let d = srv
        .client
        .delete(&format!("/v1/buildings/{id}"), Some(&office.token))
        .await;
    assert_eq!(d.status, 204, "{}", d.body);
}

async fn other_organisations_see_404_everywhere(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.org("Alpha").await;
    let other = srv.org("Beta").await;
    let id = building(&srv, &a.admin.token, "Alpha HQ").await;
    let asset_id = asset(&srv, &a.admin.token, id, "EXT-9").await;
    let c = &srv.client;
    for (bid, aid) in [(id, asset_id), (Uuid::now_v7(), Uuid::now_v7())] {
        let t = Some(other.admin.token.as_str());
        let details = [
            not_found(
                "get building",
                c.get(&format!("/v1/buildings/{bid}"), t).await,
            ),
            not_found(
                "patch building",
                c.patch(
                    &format!("/v1/buildings/{bid}"),
                    t,
                    &json!({ "name": "pwned" }),
                )
                .await,
            ),
            not_found(
                "delete building",
                c.delete(&format!("/v1/buildings/{bid}"), t).await,
            ),
            not_found(
                "list assets",
                c.get(&format!("/v1/buildings/{bid}/assets"), t).await,
            ),
            not_found(
                "create asset",
                c.post(
                    &format!("/v1/buildings/{bid}/assets"),
                    t,
                    &json!({ "asset_type": "fire_blanket", "location": "x" }),
                )
                .await,
            ),
            not_found(
                "import",
                c.post_raw(
                    &format!("/v1/buildings/{bid}/assets/import"),
                    t,
                    "text/csv",
                    b"asset_type,location\nfire_blanket,x\n".to_vec(),
                )
                .await,
            ),
            not_found(
                "get asset",
                c.get(&format!("/v1/buildings/{bid}/assets/{aid}"), t).await,
            ),
            not_found(
                "patch asset",
                c.patch(
                    &format!("/v1/buildings/{bid}/assets/{aid}"),
                    t,
                    &json!({ "location": "x" }),
                )
                .await,
            ),
        ];
        // Exactly the answer a missing id gets.
        assert!(details.iter().all(|d| *d == details[0]));
    }
    // The asset exists but not under another building of the same organisation either.
    let elsewhere = building(&srv, &a.admin.token, "Alpha Annex").await;
    assert_problem(
        &c.get(
            &format!("/v1/buildings/{elsewhere}/assets/{asset_id}"),
            Some(&a.admin.token),
        )
        .await,
        404,
        "not_found",
    );
    // Nothing changed, nothing leaked into lists.
    let list = c.get("/v1/buildings", Some(&other.admin.token)).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 0);
    let mine = c
        .get(&format!("/v1/buildings/{id}/assets"), Some(&a.admin.token))
        .await;
    assert_eq!(mine.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.get(&format!("/v1/buildings/{id}"), Some(&a.admin.token))
            .await
            .json["name"],
        "Alpha HQ"
    );
}

async fn building_input_is_validated(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = Some(org.admin.token.as_str());
    let c = &srv.client;
    let ok = json!({ "name": "A", "address": "B", "building_type": "C" });
    let with = |k: &str, v: Value| {
        let mut body = ok.clone();
        body[k] = v;
        body
    };
    let cases = [
        (
            json!({ "address": "B", "building_type": "C" }),
            422,
            "invalid_body",
        ),
        (with("name", json!(5)), 422, "invalid_body"),
        (with("extra", json!(true)), 422, "invalid_body"),
        (with("name", json!("   ")), 422, "invalid_field"),
        (
            with("address", json!("x".repeat(501))),
            422,
            "invalid_field",
        ),
        (with("contact", json!({})), 422, "invalid_field"),
        (
            with("contact", json!({ "email": "nope" })),
            422,
            "invalid_email",
        ),
        (
            with("contact", json!({ "phone": "call me" })),
            422,
            "invalid_field",
        ),
        (
            with("contact", json!({ "name": "X", "fax": "1" })),
            422,
            "invalid_body",
        ),
        (
            with(
                "rule_set",
                json!({ "code": "AS1851", "version": "1999.0.0" }),
            ),
            422,
            "unknown_rule_set",
        ),
        (
            with("rule_set", json!({ "code": "AS1851" })),
            422,
            "invalid_body",
        ),
        (json!([1]), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let r = c.post("/v1/buildings", t, &body).await;
        assert_problem(&r, status, code);
    }
    let unknown_set = c
        .post(
            "/v1/buildings",
            t,
            &with("rule_set", json!({ "code": "NOPE", "version": "1.0.0" })),
        )
        .await;
    assert!(
        unknown_set.str("detail").contains("AS1851 2012.1.0"),
        "the known rule sets are listed: {}",
        unknown_set.body
    );
    let malformed = c
        .post_raw(
            "/v1/buildings",
            t,
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_problem(&malformed, 400, "malformed_json");
    assert_problem(
        &c.get("/v1/buildings/not-a-uuid", t).await,
        400,
        "invalid_path",
    );
    assert_problem(
        &c.patch("/v1/buildings/123", t, &json!({})).await,
        400,
        "invalid_path",
    );
    assert_problem(
        &c.get("/v1/buildings/not-a-uuid/assets", t).await,
        400,
        "invalid_path",
    );
    assert_problem(
        &c.get(&format!("/v1/buildings/{}/assets/xyz", Uuid::now_v7()), t)
            .await,
        400,
        "invalid_path",
    );
    assert_problem(
        &c.get("/v1/buildings?limit=0", t).await,
        400,
        "invalid_query",
    );
    assert_problem(
        &c.get("/v1/buildings?cursor=abc", t).await,
        400,
        "invalid_query",
    );
    assert_problem(
        &c.get("/v1/buildings?colour=red", t).await,
        400,
        "invalid_query",
    );
    let id = building(&srv, &org.admin.token, "Valid").await;
    for (body, code) in [
        (json!({ "name": "" }), "invalid_field"),
        (json!({ "owner": "x" }), "invalid_body"),
        (
            json!({ "rule_set": { "code": "AS1851", "version": "9.9.9" } }),
            "unknown_rule_set",
        ),
    ] {
        let r = c.patch(&format!("/v1/buildings/{id}"), t, &body).await;
        assert_problem(&r, 422, code);
    }
    // None of that created or changed anything.
    let list = c.get("/v1/buildings", t).await;
    assert_eq!(
        list.json["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );
    assert_eq!(list.json["items"][0]["name"], "Valid");
}

/// Every stored form of the buildings table, as bytes, for searching.
async fn raw_buildings(db: &TestDb) -> (Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>, Vec<u8>) {
    match db.backend() {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.raw_url()).await.unwrap();
            let rows = sqlx::query("SELECT contact_name_enc, contact_phone_enc FROM buildings")
                .fetch_all(&pool)
                .await
                .unwrap();
            let cols = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            pool.close().await;
            let mut bytes = Vec::new();
            for suffix in ["", "-wal"] {
                let p = format!("{}{suffix}", db.dir.path().join("firemode.db").display());
                bytes.extend(std::fs::read(p).unwrap_or_default());
            }
            (cols, bytes)
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.raw_url()).await.unwrap();
            let rows = sqlx::query("SELECT contact_name_enc, contact_phone_enc FROM buildings")
                .fetch_all(&pool)
                .await
                .unwrap();
            let cols = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let mut text: Vec<String> = sqlx::query_scalar("SELECT b::text FROM buildings b")
                .fetch_all(&pool)
                .await
                .unwrap();
            let audits: Vec<String> = sqlx::query_scalar("SELECT a::text FROM audits a")
                .fetch_all(&pool)
                .await
                .unwrap();
            text.extend(audits);
            pool.close().await;
            (cols, text.join("\n").into_bytes())
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn contact_pii_is_encrypted_at_rest(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let r = srv
        .client
        .post(
            "/v1/buildings",
            Some(&org.admin.token),
            &json!({ "name": "Plaintext Check House", "address": "9 Secret Lane", "building_type": "Class 2",
                     "contact": { "name": CONTACT_NAME, "phone": CONTACT_PHONE, "email": "wf@example.test" } }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.uuid("id");
    let (cols, raw) = raw_buildings(&srv.db).await;
    let (name_ct, phone_ct) = cols[0].clone();
    let (name_ct, phone_ct) = (name_ct.unwrap(), phone_ct.unwrap());
    assert_eq!(
        PiiCipher::key_id(&name_ct).unwrap(),
        srv.state.pii.active_key()
    );
    assert!(!contains(&name_ct, "Wilhelmina") && !contains(&phone_ct, "398"));
    assert!(
        contains(&raw, "Plaintext Check House") && contains(&raw, "wf@example.test"),
        "the search itself works (name of the building and email are stored in clear)"
    );
    assert!(
        !contains(&raw, "Wilhelmina") && !contains(&raw, "Featherstonehaugh"),
        "contact name in plaintext at rest"
    );
    assert!(
        !contains(&raw, "398 765"),
        "contact phone in plaintext at rest"
    );
    // And the API shows it decrypted, to every role that reads buildings.
    let auditor = srv.user(&org, "auditor").await;
    let g = srv
        .client
        .get(&format!("/v1/buildings/{id}"), Some(&auditor.token))
        .await;
    assert_eq!(g.json["contact"]["name"], CONTACT_NAME);
    assert_eq!(g.json["contact"]["phone"], CONTACT_PHONE);
    let list = srv
        .client
        .get("/v1/buildings", Some(&org.admin.token))
        .await;
    assert!(list.body.contains(CONTACT_NAME));
}

async fn rotation_reseals_building_contacts(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // The server holds keys 1 and 2 with 1 active (a new key deployed, not yet used), so it can
    // read what the rotation writes without a restart.
    let ring = format!("1:{},2:{}", random_b64(32), random_b64(32));
    let mut cfg = test_config(&db);
    cfg.pii_keys = Some(firemode_server::config::Secret::new(ring.clone()));
    cfg.pii_active_key = Some(1);
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    for (i, contact) in [
        json!({ "name": CONTACT_NAME, "phone": CONTACT_PHONE }),
        json!({ "name": CONTACT_NAME }),
        json!({ "email": "only@email.test" }),
    ]
    .into_iter()
    .enumerate()
    {
        let r = srv
            .client
            .post(
                "/v1/buildings",
                Some(&org.admin.token),
                &json!({ "name": format!("B{i}"), "address": "x", "building_type": "y", "contact": contact }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let (cols, _) = raw_buildings(&srv.db).await;
    assert!(cols
        .iter()
        .flat_map(|(a, b)| [a, b])
        .flatten()
        .all(|c| PiiCipher::key_id(c).unwrap() == 1));

    let cipher = PiiCipher::from_spec(&ring, Some(2)).unwrap();
    let n = firemode_server::cli::rotate_pii(srv.store().as_ref(), &cipher)
        .await
        .unwrap();
    assert_eq!(n, 3, "2 names + 1 phone re-sealed");
    let (cols, _) = raw_buildings(&srv.db).await;
    assert!(cols
        .iter()
        .flat_map(|(a, b)| [a, b])
        .flatten()
        .all(|c| PiiCipher::key_id(c).unwrap() == 2));
    assert_eq!(
        firemode_server::cli::rotate_pii(srv.store().as_ref(), &cipher)
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    let list = srv
        .client
        .get("/v1/buildings", Some(&org.admin.token))
        .await;
    assert_eq!(list.body.matches(CONTACT_NAME).count(), 2, "{}", list.body);
    assert_eq!(list.body.matches(CONTACT_PHONE).count(), 1);
    assert_eq!(list.body.matches("only@email.test").count(), 1);
}

async fn delete_archives_a_building_with_sessions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let id = building(&srv, &org.admin.token, "Inspected").await;
    let a = asset(&srv, &org.admin.token, id, "EXT-1").await;
    let now = chrono::Utc::now();
    srv.store()
        .create_session(
            &SessionRow {
                id: Uuid::now_v7(),
                org_id: org.id,
                building_id: id,
                name: "March round".into(),
                frequency: "six_monthly".into(),
                status: "in_progress".into(),
                rule_set_code: "AS1851".into(),
                rule_set_version: "2012.1.0".into(),
                created_by: org.admin.id,
                created_at: now,
                updated_at: now,
                signed_off_by: None,
                signed_off_licence: None,
                signed_off_at: None,
            },
            &[],
            &[],
        )
        .await
        .unwrap();
    let d = srv
        .client
        .delete(&format!("/v1/buildings/{id}"), Some(&org.admin.token))
        .await;
    // Its records are kept: the building is archived (not deleted), then a second delete is
    // refused (tests/e2e/records.rs covers the rest of archiving).
    assert_eq!(d.status, 204, "{}", d.body);
    let again = srv
        .client
        .delete(&format!("/v1/buildings/{id}"), Some(&org.admin.token))
        .await;
    assert_problem(&again, 409, "records_retained");
    // Building and assets are untouched.
    let g = srv
        .client
        .get(
            &format!("/v1/buildings/{id}/assets/{a}"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.body);
    // Another organisation still gets 404, not 409.
    let other = srv.org("Beta").await;
    assert_problem(
        &srv.client
            .delete(&format!("/v1/buildings/{id}"), Some(&other.admin.token))
            .await,
        404,
        "not_found",
    );
}

async fn assets_crud_and_validation(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = Some(org.admin.token.as_str());
    let c = &srv.client;
    let id = building(&srv, &org.admin.token, "Assets House").await;
    let url = format!("/v1/buildings/{id}/assets");
    let r = c
        .post(
            &url,
            t,
            &json!({ "asset_type": "portable_extinguisher", "location": " Level 2 lift lobby ",
                     "identifier": "EXT-0001", "install_date": "2019-03-14",
                     "rule_codes": ["AS1851-10-6M-EXT", "AS1851-10-12M-EXT", "AS1851-10-6M-EXT"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let a = r.uuid("id");
    assert_eq!(r.json["building_id"], id.to_string());
    assert_eq!(r.json["location"], "Level 2 lift lobby");
    assert_eq!(r.json["install_date"], "2019-03-14");
    assert_eq!(
        r.json["rule_codes"],
        json!(["AS1851-10-6M-EXT", "AS1851-10-12M-EXT"]),
        "duplicates are dropped"
    );
    let minimal = c
        .post(
            &url,
            t,
            &json!({ "asset_type": "fire_blanket", "location": "Kitchen" }),
        )
        .await;
    assert_eq!(minimal.status, 201, "{}", minimal.body);
    assert!(minimal.json["identifier"].is_null() && minimal.json["install_date"].is_null());
    assert_eq!(minimal.json["rule_codes"], json!([]));

    let g = c.get(&format!("{url}/{a}"), t).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.json["identifier"], "EXT-0001");
    let scan = c.get(&format!("{url}?identifier=EXT-0001"), t).await;
    assert_eq!(scan.json["items"].as_array().unwrap().len(), 1);
    let blankets = c.get(&format!("{url}?asset_type=fire_blanket"), t).await;
    assert_eq!(blankets.json["items"].as_array().unwrap().len(), 1);
    let page = c.get(&format!("{url}?limit=1"), t).await;
    assert_eq!(page.json["items"][0]["id"], a.to_string());
    let next = c
        .get(
            &format!("{url}?limit=1&cursor={}", page.str("next_cursor")),
            t,
        )
        .await;
    assert_eq!(next.json["items"][0]["id"], minimal.json["id"]);
    assert!(next.json["next_cursor"].is_null());

    // The store API the sessions code uses.
    let all = srv.store().building_assets(org.id, id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, a);
    assert_eq!(
        all[0].install_date,
        chrono::NaiveDate::from_ymd_opt(2019, 3, 14)
    );
    assert_eq!(all[0].rule_codes.0.len(), 2);

    // Identifier unique per building: 409; another building may reuse it.
    let dup = c
        .post(
            &url,
            t,
            &json!({ "asset_type": "fire_blanket", "location": "x", "identifier": "EXT-0001" }),
        )
        .await;
    assert_problem(&dup, 409, "already_exists");
    let other_building = building(&srv, &org.admin.token, "Other").await;
    asset(&srv, &org.admin.token, other_building, "EXT-0001").await;

    let bad = [
        (
            json!({ "asset_type": "toaster", "location": "x" }),
            "invalid_asset_type",
        ),
        (json!({ "asset_type": "fire_blanket" }), "invalid_body"),
        (
            json!({ "asset_type": "fire_blanket", "location": 3 }),
            "invalid_body",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "x", "colour": "red" }),
            "invalid_body",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "" }),
            "invalid_field",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "x", "identifier": "" }),
            "invalid_field",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "x", "install_date": "14/03/2019" }),
            "invalid_field",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "x", "install_date": "2019-02-30" }),
            "invalid_field",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "x", "install_date": "2999-01-01" }),
            "invalid_field",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "x", "rule_codes": ["NOPE-1"] }),
            "unknown_rule",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "x", "rule_codes": ["AS1851-10-6M-EXT"] }),
            "rule_equipment_mismatch",
        ),
        (
            json!({ "asset_type": "fire_blanket", "location": "x", "rule_codes": "AS1851-11-6M-FB" }),
            "invalid_body",
        ),
    ];
    for (body, code) in bad {
        let r = c.post(&url, t, &body).await;
        assert_problem(&r, 422, code);
    }
    let unknown = c
        .post(
            &url,
            t,
            &json!({ "asset_type": "toaster", "location": "x" }),
        )
        .await;
    for kind in [
        "portable_extinguisher",
        "fire_blanket",
        "emergency_lighting",
        "sprinkler_system",
    ] {
        assert!(
            unknown.str("detail").contains(kind),
            "allowed kinds listed: {}",
            unknown.body
        );
    }
    assert_problem(
        &c.post_raw(&url, t, "application/json", b"{oops".to_vec())
            .await,
        400,
        "malformed_json",
    );

    // PATCH: absent stays, null clears, the whole result is validated.
    let p = c
        .patch(
            &format!("{url}/{a}"),
            t,
            &json!({ "location": "Level 3", "install_date": null }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json["location"], "Level 3");
    assert!(p.json["install_date"].is_null());
    assert_eq!(p.json["identifier"], "EXT-0001");
    let mismatch = c
        .patch(
            &format!("{url}/{a}"),
            t,
            &json!({ "asset_type": "fire_blanket" }),
        )
        .await;
    assert_problem(&mismatch, 422, "rule_equipment_mismatch");
    let retype = c
        .patch(
            &format!("{url}/{a}"),
            t,
            &json!({ "asset_type": "fire_blanket", "rule_codes": [] }),
        )
        .await;
    assert_eq!(retype.status, 200, "{}", retype.body);
    let taken = c
        .patch(
            &format!("{url}/{}", minimal.str("id")),
            t,
            &json!({ "identifier": "EXT-0001" }),
        )
        .await;
    assert_problem(&taken, 409, "already_exists");
    assert_problem(
        &c.patch(&format!("{url}/{a}"), t, &json!({ "id": "x" }))
            .await,
        422,
        "invalid_body",
    );

    let rows = audits(&srv, &org.admin.token).await;
    let update = rows
        .iter()
        .find(|a| a["action"] == "asset.update")
        .expect("asset.update audit");
    assert_eq!(update["details"]["old"]["location"], "Level 2 lift lobby");
    assert_eq!(update["details"]["new"]["location"], "Level 3");
}

/// Assert a 404 `not_found` and return its detail.
fn not_found(label: &str, r: firemode_tests::Resp) -> Value {
    assert_eq!(r.status, 404, "{label}: {}", r.body);
    assert_problem(&r, 404, "not_found");
    r.json["detail"].clone()
}

fn import_url(id: Uuid) -> String {
    format!("/v1/buildings/{id}/assets/import")
}

async fn asset_count(srv: &TestServer, org: &Org, id: Uuid) -> usize {
    srv.store().building_assets(org.id, id).await.unwrap().len()
}

async fn csv_import_all_or_nothing(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = Some(org.admin.token.as_str());
    let c = &srv.client;
    let id = building(&srv, &org.admin.token, "Import House").await;
    asset(&srv, &org.admin.token, id, "EXT-EXISTING").await;

    // A spreadsheet export: BOM, columns in another order, quoted commas, empty optionals.
    let good = "\u{feff}Location,asset_type,identifier,install_date,rule_codes\r\n\
        \"Level 1, near stair A\",portable_extinguisher,EXT-100,2020-01-31,AS1851-10-6M-EXT;AS1851-10-12M-EXT\r\n\
        Kitchen,fire_blanket,,,\r\n\
        Stair B,emergency_lighting,EL-7,2018-06-01,\r\n";
    let r = c
        .post_raw(&import_url(id), t, "text/csv; charset=utf-8", good.into())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["imported"], 3);
    let ids: Vec<Uuid> = r.json["asset_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let first = c
        .get(&format!("/v1/buildings/{id}/assets/{}", ids[0]), t)
        .await;
    assert_eq!(first.json["location"], "Level 1, near stair A");
    assert_eq!(
        first.json["rule_codes"],
        json!(["AS1851-10-6M-EXT", "AS1851-10-12M-EXT"])
    );
    let blanket = c
        .get(&format!("/v1/buildings/{id}/assets/{}", ids[1]), t)
        .await;
    assert!(blanket.json["identifier"].is_null());
    assert_eq!(asset_count(&srv, &org, id).await, 4);

    // Every bad row is reported; nothing is imported.
    let bad = "asset_type,location,identifier,install_date,rule_codes\n\
        fire_blanket,Good row,FB-1,,\n\
        toaster,Kitchen,T-1,,\n\
        fire_blanket,,FB-2,2020-13-01,\n\
        fire_hose_reel,Car park,EXT-EXISTING,,\n\
        fire_hose_reel,Car park,FB-1,,\n\
        fire_hose_reel,Car park,HR-1,,NOPE-1;AS1851-10-6M-EXT\n\
        fire_blanket,too,many,fields,,,\n\
        fire_blanket,Last good row,FB-9,,\n";
    let r = c.post_raw(&import_url(id), t, "text/csv", bad.into()).await;
    assert_problem(&r, 422, "invalid_csv");
    let errors = r.json["errors"].as_array().unwrap();
    let at = |row: u64, field: &str| {
        errors.iter().any(|e| {
            e["row"] == row
                && (e["field"] == field || (field.is_empty() && e["field"].is_null()))
                && e["message"].as_str().is_some_and(|m| !m.is_empty())
        })
    };
    assert!(at(3, "asset_type"), "{}", r.body);
    assert!(at(4, "location") && at(4, "install_date"), "{}", r.body);
    assert!(
        at(5, "rule_codes"),
        "an update of the existing asset, whose rules are for extinguishers: {}",
        r.body
    );
    assert!(at(6, "identifier"), "duplicate within the file: {}", r.body);
    assert!(at(7, "rule_codes"), "{}", r.body);
    assert!(at(8, ""), "wrong field count: {}", r.body);
    assert!(
        !errors.iter().any(|e| e["row"] == 2 || e["row"] == 9),
        "{}",
        r.body
    );
    assert_eq!(asset_count(&srv, &org, id).await, 4, "nothing imported");
    assert!(c
        .get(&format!("/v1/buildings/{id}/assets?identifier=FB-9"), t)
        .await
        .json["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // The audit row of the import lists what it created.
    let rows = audits(&srv, &org.admin.token).await;
    let imports: Vec<&Value> = rows
        .iter()
        .filter(|a| a["action"] == "asset.import")
        .collect();
    assert_eq!(imports.len(), 1, "failed imports write nothing");
    assert_eq!(imports[0]["details"]["imported"], 3);
    assert_eq!(imports[0]["target_id"], id.to_string());
}

async fn csv_import_rejects_bad_requests(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = Some(org.admin.token.as_str());
    let c = &srv.client;
    let id = building(&srv, &org.admin.token, "Strict House").await;
    let url = import_url(id);

    let json_body = c.post(&url, t, &json!({ "asset_type": "x" })).await;
    assert_problem(&json_body, 415, "unsupported_media_type");
    for (csv, field) in [
        ("", ""),
        ("asset_type,location\n", ""),
        ("asset_type,identifier\nfire_blanket,x\n", "location"),
        ("asset_type,location,colour\nfire_blanket,x,red\n", "colour"),
        (
            "asset_type,location,location\nfire_blanket,x,y\n",
            "location",
        ),
    ] {
        let r = c.post_raw(&url, t, "text/csv", csv.into()).await;
        assert_problem(&r, 422, "invalid_csv");
        let e = &r.json["errors"][0];
        if field.is_empty() {
            assert!(e["field"].is_null(), "{}", r.body);
        } else {
            assert_eq!(e["field"], field, "{}", r.body);
        }
    }
    let mut latin1 = b"asset_type,location\nfire_blanket,Caf".to_vec();
    latin1.extend([0xE9, b'\n']);
    let r = c.post_raw(&url, t, "text/csv", latin1).await;
    assert_problem(&r, 422, "invalid_csv");
    assert_eq!(r.json["errors"][0]["row"], 2);
    assert_eq!(r.json["errors"][0]["field"], "location");

    let mut many = String::from("asset_type,location\n");
    for _ in 0..10_001 {
        many.push_str("fire_blanket,x\n");
    }
    let r = c.post_raw(&url, t, "text/csv", many.into()).await;
    assert_problem(&r, 422, "invalid_csv");
    assert!(r.str("detail").contains("10000"), "{}", r.body);

    let mut big = String::from("asset_type,location\n");
    while big.len() <= 5 * 1024 * 1024 {
        big.push_str(&format!("fire_blanket,{}\n", "x".repeat(400)));
    }
    if let Some(r) = c.post_oversize(&url, t, "text/csv", big.into()).await {
        assert_problem(&r, 413, "payload_too_large");
    }
    assert_eq!(asset_count(&srv, &org, id).await, 0);

    // Larger than the JSON body limit (1 MiB) but within the CSV limit: accepted.
    let mut large = String::from("asset_type,location,identifier\n");
    for i in 0..9_000 {
        large.push_str(&format!("fire_blanket,{},FB-{i}\n", "Room ".repeat(30)));
    }
    assert!(large.len() > 1024 * 1024);
    let r = c.post_raw(&url, t, "text/csv", large.into()).await;
    assert_eq!(r.status, 201, "{}", &r.body[..r.body.len().min(500)]);
    assert_eq!(r.json["imported"], 9_000);
    assert_eq!(asset_count(&srv, &org, id).await, 9_000);
}
