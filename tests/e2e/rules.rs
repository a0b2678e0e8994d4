//! The AS 1851 rule library: seeding, coverage, immutable versions, organisation-private rules,
//! deactivation, classification.

use firemode_server::rules::{self, Library};
use firemode_tests::{assert_problem, backend_tests, Backend, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    library_covers_the_domain_and_seeds_once,
    upgraded_library_adds_versions_only,
    rules_list_get_and_versions,
    admins_publish_private_versions,
    deactivation_and_isolation,
    rule_input_is_validated,
    classify_uses_the_latest_version_and_audits,
);

/// Every rule the caller sees (all pages).
async fn all_rules(srv: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("/v1/rules?limit=20{query}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = srv.client.get(&url, Some(token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.extend(r.json["items"].as_array().unwrap().iter().cloned());
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

async fn new_building(srv: &TestServer, token: &str) -> Uuid {
    let r = srv
        .client
        .post(
            "/v1/buildings",
            Some(token),
            &json!({ "name": "B", "address": "A", "building_type": "T" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.uuid("id")
}

/// A private rule body based on a shipped one.
fn rule_body(code: &str, version: &str) -> Value {
    json!({
        "code": code,
        "version": version,
        "name": "Portable extinguisher six-monthly inspection (site variant)",
        "description": "Our own words: check the extinguisher is present, charged and tagged.",
        "standard": "AS 1851-2012",
        "section": "10",
        "clause": "Section 10, six-monthly schedule",
        "equipment": "portable_extinguisher",
        "frequency": "six_monthly",
        "readings": [{ "name": "pressure_gauge", "unit": "", "expected": "in_green" }],
        "classification_mappings": {
            "serviceable": "compliant",
            "extinguisher_missing": "critical_defect",
            "gauge_in_red": "non_critical_defect",
            "tag_illegible": "non_conformance"
        }
    })
}

async fn library_covers_the_domain_and_seeds_once(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let all = all_rules(&srv, t, "").await;
    let shipped = rules::library().rules.len();
    assert_eq!(all.len(), shipped, "one latest version per shipped code");
    let codes: Vec<&str> = all.iter().map(|r| r["code"].as_str().unwrap()).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted, "ordered by code across pages");

    // The systems AS 1851 routine service covers, each at the frequencies it is serviced at.
    let domain: &[(&str, &[&str])] = &[
        (
            "sprinkler_system",
            &[
                "monthly",
                "six_monthly",
                "yearly",
                "five_yearly",
                "ten_yearly",
                "twenty_five_yearly",
                "thirty_yearly",
            ],
        ),
        (
            "fire_detection_alarm",
            &["monthly", "six_monthly", "yearly", "five_yearly"],
        ),
        (
            "fire_hydrant_system",
            &["six_monthly", "yearly", "five_yearly"],
        ),
        ("fire_hose_reel", &["six_monthly", "yearly"]),
        (
            "portable_extinguisher",
            &["six_monthly", "yearly", "five_yearly"],
        ),
        ("fire_blanket", &["six_monthly"]),
        ("fire_door", &["six_monthly", "yearly"]),
        ("smoke_door", &["six_monthly", "yearly"]),
        ("sliding_fire_door", &["three_monthly"]),
        ("emergency_lighting", &["six_monthly", "yearly"]),
        ("fire_pumpset", &["monthly", "six_monthly", "yearly"]),
    ];
    for (equipment, frequencies) in domain {
        for frequency in *frequencies {
            let hits = all_rules(
                &srv,
                t,
                &format!("&equipment={equipment}&frequency={frequency}"),
            )
            .await;
            assert!(!hits.is_empty(), "no rule for {equipment} at {frequency}");
            for r in &hits {
                assert_eq!(r["equipment"], *equipment);
                assert_eq!(r["frequency"], *frequency);
                assert_eq!(r["shipped"], true);
                assert!(!r["clause"].as_str().unwrap().is_empty());
                assert!(!r["readings"].as_array().unwrap().is_empty());
                let classes: Vec<&str> = r["classification_mappings"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert!(classes.contains(&"compliant"), "{}", r["code"]);
                assert!(
                    classes.iter().any(|c| *c != "compliant"),
                    "{} has realistic defects",
                    r["code"]
                );
            }
        }
    }
    // The store API agrees: the latest version of each code, one per edition that has the
    // kind at that frequency (a building's pins then choose among them).
    let latest = srv
        .store()
        .latest_rules(org.id, Some("portable_extinguisher"), Some("six_monthly"))
        .await
        .unwrap();
    let mut codes: Vec<&str> = latest.iter().map(|r| r.code.as_str()).collect();
    codes.sort();
    assert_eq!(codes, ["AS1851-10-6M-EXT", "AS1851-2005-10-6M-EXT"]);
    assert!(latest.iter().all(|r| r.org_id.is_none()));
    assert_eq!(rules::frequency_months("five_yearly"), Some(60));

    // Seeding again (as every start does) adds nothing.
    assert_eq!(rules::seed_library(srv.store().as_ref()).await.unwrap(), 0);
    assert_eq!(
        srv.store().shipped_rule_keys().await.unwrap().len(),
        shipped
    );
}

async fn upgraded_library_adds_versions_only(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = Some(org.admin.token.as_str());
    let code = "AS1851-10-6M-EXT";
    let before = srv.client.get(&format!("/v1/rules/{code}"), t).await;
    assert_eq!(before.json["version"], "2012.2.0");

    // A new library file: one rule gains a version, and one existing version is "edited"
    // (which must not reach the database: versions are immutable).
    let mut upgraded: Library = rules::library().clone();
    let mut next = upgraded
        .rules
        .iter()
        .find(|r| r.code == code)
        .unwrap()
        .clone();
    next.version = "2012.3.0".into();
    next.description = "Amended check.".into();
    upgraded.rules.push(next);
    upgraded.rules[0].description = "Silently edited.".into();
    let edited_code = upgraded.rules[0].code.clone();
    // Another organisation had already published 2012.3.0 of this code privately.
    let early = srv.org("Early").await;
    let mut own = rule_body(code, "2012.3.0");
    own["description"] = json!("Our own 2012.3.0.");
    let r = srv
        .client
        .post("/v1/rules", Some(&early.admin.token), &own)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    assert_eq!(
        rules::seed(srv.store().as_ref(), &upgraded).await.unwrap(),
        1
    );
    assert_eq!(
        rules::seed(srv.store().as_ref(), &upgraded).await.unwrap(),
        0
    );

    let after = srv.client.get(&format!("/v1/rules/{code}"), t).await;
    assert_eq!(after.json["version"], "2012.3.0");
    assert_eq!(after.json["description"], "Amended check.");
    assert_eq!(after.json["shipped"], true);
    let versions = srv
        .client
        .get(&format!("/v1/rules/{code}/versions"), t)
        .await;
    let items = versions.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["version"], "2012.3.0", "newest first");
    assert_eq!(items[1]["description"], before.json["description"]);
    // Where an organisation's own version equals a shipped one, its own wins for it.
    let theirs = srv
        .client
        .get(&format!("/v1/rules/{code}"), Some(&early.admin.token))
        .await;
    assert_eq!(theirs.json["version"], "2012.3.0");
    assert_eq!(theirs.json["description"], "Our own 2012.3.0.");
    assert_eq!(theirs.json["shipped"], false);
    let their_versions = srv
        .client
        .get(
            &format!("/v1/rules/{code}/versions"),
            Some(&early.admin.token),
        )
        .await;
    assert_eq!(their_versions.json["items"].as_array().unwrap().len(), 3);
    assert_eq!(their_versions.json["items"][0]["shipped"], false);
    let unchanged = srv.client.get(&format!("/v1/rules/{edited_code}"), t).await;
    assert_ne!(unchanged.json["description"], "Silently edited.");
}

async fn rules_list_get_and_versions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let t = Some(inspector.token.as_str());
    let c = &srv.client;
    let page = c.get("/v1/rules?limit=5", t).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json["items"].as_array().unwrap().len(), 5);
    let cursor = page.str("next_cursor").to_owned();
    assert_eq!(page.json["items"][4]["code"], cursor.as_str());
    let next = c
        .get(&format!("/v1/rules?limit=5&cursor={cursor}"), t)
        .await;
    assert!(next.json["items"][0]["code"].as_str().unwrap() > cursor.as_str());

    let blankets = c.get("/v1/rules?equipment=fire_blanket", t).await;
    let items = blankets.json["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|r| r["equipment"] == "fire_blanket"));
    assert!(blankets.json["next_cursor"].is_null());

    let one = c.get("/v1/rules/AS1851-10-6M-EXT", t).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json["version"], "2012.2.0");
    assert_eq!(one.json["shipped"], true);
    assert!(one.json["org_id"].is_null());
    // Context decides (the only extinguisher covering a space): raised by an override.
    assert_eq!(
        one.json["classification_mappings"]["extinguisher_missing"],
        "non_critical_defect"
    );
    assert!(one.json["readings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["kind"].is_string() && r["expect"]["type"].is_string()));
    let versions = c.get("/v1/rules/AS1851-10-6M-EXT/versions", t).await;
    assert_eq!(versions.json["items"].as_array().unwrap().len(), 1);

    assert_problem(&c.get("/v1/rules/NOPE-1", t).await, 404, "not_found");
    assert_problem(
        &c.get("/v1/rules/NOPE-1/versions", t).await,
        404,
        "not_found",
    );
    for bad in [
        "/v1/rules?equipment=toaster",
        "/v1/rules?frequency=fortnightly",
        "/v1/rules?limit=0",
        "/v1/rules?limit=501",
        "/v1/rules?cursor=has%20space",
        "/v1/rules?colour=red",
    ] {
        assert_problem(&c.get(bad, t).await, 400, "invalid_query");
    }
    assert_problem(&c.get("/v1/rules", None).await, 401, "unauthorized");
}

async fn admins_publish_private_versions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.org("Alpha").await;
    let other = srv.org("Beta").await;
    let ta = Some(a.admin.token.as_str());
    let tb = Some(other.admin.token.as_str());
    let c = &srv.client;

    // A brand-new private code.
    let r = c
        .post("/v1/rules", ta, &rule_body("ACME-EXT-6M", "1.0.0"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["shipped"], false);
    assert_eq!(r.json["org_id"], a.id.to_string());
    assert_eq!(r.json["active"], true);
    assert_eq!(
        c.get("/v1/rules/ACME-EXT-6M", ta).await.json["version"],
        "1.0.0"
    );
    assert_problem(&c.get("/v1/rules/ACME-EXT-6M", tb).await, 404, "not_found");
    assert_problem(
        &c.get("/v1/rules/ACME-EXT-6M/versions", tb).await,
        404,
        "not_found",
    );
    assert!(!all_rules(&srv, &other.admin.token, "")
        .await
        .iter()
        .any(|r| r["code"] == "ACME-EXT-6M"));
    assert!(
        all_rules(&srv, &a.admin.token, "&equipment=portable_extinguisher")
            .await
            .iter()
            .any(|r| r["code"] == "ACME-EXT-6M")
    );
    // Another organisation may use the same code for its own rule.
    let same = c
        .post("/v1/rules", tb, &rule_body("ACME-EXT-6M", "1.0.0"))
        .await;
    assert_eq!(same.status, 201, "{}", same.body);

    // A new version of a shipped code: this organisation's latest, nobody else's.
    let shipped = "AS1851-10-6M-EXT";
    let v = c
        .post("/v1/rules", ta, &rule_body(shipped, "2012.2.1"))
        .await;
    assert_eq!(v.status, 201, "{}", v.body);
    assert_eq!(
        c.get(&format!("/v1/rules/{shipped}"), ta).await.json["version"],
        "2012.2.1"
    );
    assert_eq!(
        c.get(&format!("/v1/rules/{shipped}"), tb).await.json["version"],
        "2012.2.0"
    );
    let versions = c.get(&format!("/v1/rules/{shipped}/versions"), ta).await;
    let items = versions.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["version"], "2012.2.1");
    assert_eq!(items[1]["shipped"], true);
    // Semantic, not textual, order: 2012.2.10 > 2012.2.9 > 2012.2.1.
    for ver in ["2012.2.10", "2012.2.9"] {
        let r = c.post("/v1/rules", ta, &rule_body(shipped, ver)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(
        c.get(&format!("/v1/rules/{shipped}"), ta).await.json["version"],
        "2012.2.10"
    );
    let latest = srv.store().latest_rule(a.id, shipped).await.unwrap();
    assert_eq!(latest.version, "2012.2.10");
    assert_eq!(latest.org_id, Some(a.id));

    // Immutable: an existing code+version is a conflict, shipped ones included.
    for (code, ver) in [
        ("ACME-EXT-6M", "1.0.0"),
        (shipped, "2012.2.1"),
        (shipped, "2012.2.0"),
    ] {
        let dup = c.post("/v1/rules", ta, &rule_body(code, ver)).await;
        assert_problem(&dup, 409, "rule_version_exists");
    }
    // Private rules can be used on the organisation's assets, not on others'.
    let ba = new_building(&srv, &a.admin.token).await;
    let asset = json!({ "asset_type": "portable_extinguisher", "location": "x", "rule_codes": ["ACME-EXT-6M"] });
    let ok = c
        .post(&format!("/v1/buildings/{ba}/assets"), ta, &asset)
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let gamma = srv.org("Gamma").await;
    let bg = new_building(&srv, &gamma.admin.token).await;
    let denied = c
        .post(
            &format!("/v1/buildings/{bg}/assets"),
            Some(&gamma.admin.token),
            &asset,
        )
        .await;
    assert_problem(&denied, 422, "unknown_rule");

    let audits = c.get("/v1/users/me/audits?limit=500", ta).await;
    let creates: Vec<&Value> = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "rule.create")
        .collect();
    assert_eq!(creates.len(), 4);
    assert_eq!(creates[1]["target_id"], format!("{shipped}@2012.2.1"));
    assert_eq!(creates[1]["details"]["latest_before"], "2012.2.0");
}

async fn deactivation_and_isolation(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.org("Alpha").await;
    let other = srv.org("Beta").await;
    let ta = Some(a.admin.token.as_str());
    let c = &srv.client;
    let shipped = "AS1851-9-6M-HR";
    let mut body = rule_body(shipped, "2012.2.1");
    body["equipment"] = json!("fire_hose_reel");
    let r = c.post("/v1/rules", ta, &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let url = format!("/v1/rules/{shipped}/versions/2012.2.1/deactivate");

    // Another organisation's private version: 404, exactly like a missing one.
    let foreign = c.post(&url, Some(&other.admin.token), &json!({})).await;
    assert_problem(&foreign, 404, "not_found");
    let missing = c
        .post(
            &format!("/v1/rules/{shipped}/versions/9.9.9/deactivate"),
            Some(&other.admin.token),
            &json!({}),
        )
        .await;
    assert_problem(&missing, 404, "not_found");
    assert_eq!(foreign.json["detail"], missing.json["detail"]);
    // Only admins deactivate.
    for role in ["office", "inspector", "auditor"] {
        let u = srv.user(&a, role).await;
        assert_problem(
            &c.post(&url, Some(&u.token), &json!({})).await,
            403,
            "forbidden",
        );
        assert_problem(
            &c.post("/v1/rules", Some(&u.token), &rule_body("X-1", "1.0.0"))
                .await,
            403,
            "forbidden",
        );
    }
    assert_eq!(
        c.get(&format!("/v1/rules/{shipped}"), ta).await.json["version"],
        "2012.2.1"
    );

    let d = c.post(&url, ta, &json!({})).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json["active"], false);
    assert!(d.json["deactivated_at"].is_string());
    let again = c.post(&url, ta, &json!({})).await;
    assert_eq!(again.status, 200, "idempotent: {}", again.body);
    assert_eq!(again.json["deactivated_at"], d.json["deactivated_at"]);
    // The latest active version is the shipped one again; the history keeps both.
    assert_eq!(
        c.get(&format!("/v1/rules/{shipped}"), ta).await.json["version"],
        "2012.2.0"
    );
    let versions = c.get(&format!("/v1/rules/{shipped}/versions"), ta).await;
    let items = versions.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["active"], false);
    // Shipped versions are read-only.
    let ro = c
        .post(
            &format!("/v1/rules/{shipped}/versions/2012.2.0/deactivate"),
            ta,
            &json!({}),
        )
        .await;
    assert_problem(&ro, 403, "forbidden");
    assert_problem(
        &c.post(
            &format!("/v1/rules/{shipped}/versions/latest/deactivate"),
            ta,
            &json!({}),
        )
        .await,
        400,
        "invalid_path",
    );
    // A private code whose only version is deactivated disappears from "latest".
    let own = c.post("/v1/rules", ta, &rule_body("ACME-1", "1.0.0")).await;
    assert_eq!(own.status, 201);
    c.post("/v1/rules/ACME-1/versions/1.0.0/deactivate", ta, &json!({}))
        .await;
    assert_problem(&c.get("/v1/rules/ACME-1", ta).await, 404, "not_found");
    assert_eq!(
        c.get("/v1/rules/ACME-1/versions", ta).await.json["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let audits = c.get("/v1/users/me/audits?limit=500", ta).await;
    let deact = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "rule.deactivate")
        .cloned()
        .unwrap();
    assert_eq!(deact["details"]["old"]["active"], true);
    assert_eq!(deact["details"]["new"]["active"], false);
}

async fn rule_input_is_validated(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = Some(org.admin.token.as_str());
    let c = &srv.client;
    let with = |k: &str, v: Value| {
        let mut body = rule_body("ACME-2", "1.0.0");
        body[k] = v;
        body
    };
    let without = |k: &str| {
        let mut body = rule_body("ACME-2", "1.0.0");
        body.as_object_mut().unwrap().remove(k);
        body
    };
    let cases = [
        (with("version", json!("1.0")), "invalid_version"),
        (with("version", json!("v1.0.0")), "invalid_version"),
        (with("version", json!("1.0.0-beta")), "invalid_version"),
        (with("version", json!("01.0.0")), "invalid_version"),
        (with("version", json!(1)), "invalid_body"),
        (with("code", json!("has space")), "invalid_rule_code"),
        (with("equipment", json!("toaster")), "invalid_equipment"),
        (with("frequency", json!("fortnightly")), "invalid_frequency"),
        (
            with("classification_mappings", json!({})),
            "invalid_mappings",
        ),
        (
            with(
                "classification_mappings",
                json!({ "broken": "critical_defect" }),
            ),
            "invalid_mappings",
        ),
        (
            with("classification_mappings", json!({ "ok": "fine" })),
            "invalid_body",
        ),
        (with("name", json!(" ")), "invalid_field"),
        (with("readings", json!([{ "name": "x" }])), "invalid_body"),
        (
            with("readings", json!([{ "name": "x", "kind": "dial" }])),
            "invalid_body",
        ),
        (
            with(
                "readings",
                json!([{ "name": "x", "kind": "yes_no", "expect": { "type": "compare", "op": "<", "value": 1 } }]),
            ),
            "invalid_reading",
        ),
        (
            with(
                "readings",
                json!([{ "name": "x", "kind": "choice", "choices": ["a", "b"], "expect": { "type": "one_of", "values": ["c"] } }]),
            ),
            "invalid_reading",
        ),
        (
            with(
                "readings",
                json!([{ "name": "x", "kind": "number", "fails_as": "not_a_condition" }]),
            ),
            "invalid_reading",
        ),
        (
            with("rationale", json!({ "not_a_condition": "because" })),
            "invalid_mappings",
        ),
        (with("extra", json!(1)), "invalid_body"),
        (without("clause"), "invalid_body"),
        (json!("AS1851"), "invalid_body"),
    ];
    for (body, code) in cases {
        let r = c.post("/v1/rules", t, &body).await;
        assert_problem(&r, 422, code);
    }
    // A new version may not turn a rule into a check of other equipment or frequency.
    let mut moved = rule_body("AS1851-10-6M-EXT", "2012.3.0");
    moved["frequency"] = json!("yearly");
    assert_problem(
        &c.post("/v1/rules", t, &moved).await,
        422,
        "rule_identity_changed",
    );
    assert_problem(
        &c.post_raw("/v1/rules", t, "application/json", b"{\"code\":".to_vec())
            .await,
        400,
        "malformed_json",
    );
    // None of that created anything.
    assert_problem(&c.get("/v1/rules/ACME-2", t).await, 404, "not_found");
    assert_eq!(
        c.get("/v1/rules/AS1851-10-6M-EXT/versions", t).await.json["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn classify_uses_the_latest_version_and_audits(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let c = &srv.client;
    let body =
        json!({ "rule_code": "AS1851-10-6M-EXT", "observed_condition": "extinguisher_missing" });
    for role in ["admin", "office", "inspector", "auditor"] {
        let token = if role == "admin" {
            org.admin.clone()
        } else {
            srv.user(&org, role).await
        };
        let r = c.post("/v1/classify", Some(&token.token), &body).await;
        assert_eq!(r.status, 200, "{role}: {}", r.body);
        assert_eq!(r.json["classification"], "non_critical_defect");
        assert_eq!(r.json["rule_code"], "AS1851-10-6M-EXT");
        assert_eq!(r.json["rule_version"], "2012.2.0");
        let audit_id = r.uuid("audit_id");
        let audits = c
            .get("/v1/users/me/audits?limit=500", Some(&token.token))
            .await;
        let row = audits.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == audit_id.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("audit row {audit_id} in {}", audits.body));
        assert_eq!(row["action"], "rule.classify");
        assert_eq!(row["details"]["classification"], "non_critical_defect");
        assert_eq!(row["details"]["rule_version"], "2012.2.0");
        assert_eq!(row["org_id"], org.id.to_string());
    }
    let t = Some(org.admin.token.as_str());
    for (condition, class) in [
        ("serviceable", "compliant"),
        ("pressure_gauge_below_green", "non_critical_defect"),
        ("signage_missing", "non_conformance"),
        (" Signage_Missing ", "non_conformance"),
    ] {
        let r = c
            .post(
                "/v1/classify",
                t,
                &json!({ "rule_code": "AS1851-10-6M-EXT", "observed_condition": condition }),
            )
            .await;
        assert_eq!(r.json["classification"], class, "{condition}: {}", r.body);
    }

    let unknown_rule = c
        .post(
            "/v1/classify",
            t,
            &json!({ "rule_code": "NOPE-1", "observed_condition": "serviceable" }),
        )
        .await;
    assert_problem(&unknown_rule, 404, "rule_not_found");
    let unknown_condition = c
        .post(
            "/v1/classify",
            t,
            &json!({ "rule_code": "AS1851-10-6M-EXT", "observed_condition": "on_fire" }),
        )
        .await;
    assert_problem(&unknown_condition, 422, "unknown_condition");
    let detail = unknown_condition.str("detail");
    for known in ["serviceable", "extinguisher_missing", "signage_missing"] {
        assert!(detail.contains(known), "{detail}");
    }
    assert_problem(
        &c.post(
            "/v1/classify",
            t,
            &json!({ "rule_code": "AS1851-10-6M-EXT" }),
        )
        .await,
        422,
        "invalid_body",
    );
    assert_problem(
        &c.post_raw("/v1/classify", t, "application/json", b"nope".to_vec())
            .await,
        400,
        "malformed_json",
    );
    assert_problem(
        &c.post("/v1/classify", None, &json!({})).await,
        401,
        "unauthorized",
    );

    // The organisation's own newer version decides from now on; other organisations keep the
    // shipped one; a private rule is unknown to them.
    // (An organisation whose sites have one extinguisher per space treats a missing one as
    // critical everywhere.)
    let mut newer = rule_body("AS1851-10-6M-EXT", "2012.2.1");
    newer["classification_mappings"]["extinguisher_missing"] = json!("critical_defect");
    assert_eq!(c.post("/v1/rules", t, &newer).await.status, 201);
    let r = c.post("/v1/classify", t, &body).await;
    assert_eq!(r.json["rule_version"], "2012.2.1");
    assert_eq!(r.json["classification"], "critical_defect");
    let other = srv.org("Beta").await;
    let theirs = c
        .post("/v1/classify", Some(&other.admin.token), &body)
        .await;
    assert_eq!(theirs.json["rule_version"], "2012.2.0");
    assert_eq!(theirs.json["classification"], "non_critical_defect");
    assert_eq!(
        c.post("/v1/rules", t, &rule_body("ACME-9", "1.0.0"))
            .await
            .status,
        201
    );
    let private = c
        .post(
            "/v1/classify",
            Some(&other.admin.token),
            &json!({ "rule_code": "ACME-9", "observed_condition": "serviceable" }),
        )
        .await;
    assert_problem(&private, 404, "rule_not_found");
}
