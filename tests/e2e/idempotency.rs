//! `Idempotency-Key` on JSON POST routes: replay, reuse with another body, in flight, per-user
//! scope, what is stored and what is not, stale claims, expiry. (The evidence upload applies
//! the same store API to its streamed body: see evidence.rs.)

use firemode_server::http::idempotency::Fingerprint;
use firemode_server::store::idempotency::{ClaimOutcome, NewClaim, StoredResponse};
use firemode_tests::{assert_problem, backend_tests, fixtures, Backend, Client, Resp, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    replays_the_first_response,
    other_request_same_key_is_422,
    keys_are_per_user,
    what_is_stored,
    in_flight_is_409_and_stale_claims_are_taken_over,
    keys_expire_and_are_purged,
    exempt_and_invalid_keys,
    session_routes,
);

async fn post_with_key(srv: &TestServer, path: &str, token: &str, key: &str, body: &Value) -> Resp {
    Client::send(
        srv.client
            .request(reqwest::Method::POST, path, Some(token))
            .header("idempotency-key", key)
            .json(body),
    )
    .await
}

fn new_user_body() -> Value {
    json!({ "email": format!("u-{}@example.test", Uuid::new_v4().simple()),
            "password": "long-enough-password", "role": "office" })
}

async fn user_count(srv: &TestServer, token: &str) -> usize {
    let r = srv.client.get("/v1/users?limit=500", Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"].as_array().unwrap().len()
}

async fn replays_the_first_response(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = &org.admin.token;
    let body = new_user_body();
    let first = post_with_key(&srv, "/v1/users", t, "create-1", &body).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let before = user_count(&srv, t).await;
    for _ in 0..2 {
        let again = post_with_key(&srv, "/v1/users", t, "create-1", &body).await;
        assert_eq!(again.status, 201, "{}", again.body);
        assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(
            again.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(again.body, first.body, "the stored body, byte for byte");
    }
    assert_eq!(
        user_count(&srv, t).await,
        before,
        "the retry created nothing"
    );
    // The quoted form of the draft standard names the same key.
    let quoted = post_with_key(&srv, "/v1/users", t, "\"create-1\"", &body).await;
    assert_eq!(
        quoted.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    // Without a key, the same body is a new request (here: a duplicate email).
    let plain = srv.client.post("/v1/users", Some(t), &body).await;
    assert_problem(&plain, 409, "already_exists");
}

async fn other_request_same_key_is_422(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = &org.admin.token;
    let first = post_with_key(&srv, "/v1/users", t, "k", &new_user_body()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let before = user_count(&srv, t).await;
    let r = post_with_key(&srv, "/v1/users", t, "k", &new_user_body()).await;
    assert_problem(&r, 422, "idempotency_key_reused");
    assert_eq!(r.json["retryable"], false);
    // Another route with the same key and body is another request too.
    let id = first.uuid("id");
    let r = post_with_key(
        &srv,
        &format!("/v1/users/{id}/revoke-tokens"),
        t,
        "k",
        &new_user_body(),
    )
    .await;
    assert_problem(&r, 422, "idempotency_key_reused");
    assert_eq!(user_count(&srv, t).await, before);
}

async fn keys_are_per_user(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let second_admin = srv.user(&org, "admin").await;
    let a = post_with_key(
        &srv,
        "/v1/users",
        &org.admin.token,
        "shared",
        &new_user_body(),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    // Same key, another user, another body: independent, not a reuse.
    let b2 = post_with_key(
        &srv,
        "/v1/users",
        &second_admin.token,
        "shared",
        &new_user_body(),
    )
    .await;
    assert_eq!(b2.status, 201, "{}", b2.body);
    assert_eq!(b2.header("idempotent-replayed"), None);
    assert_ne!(a.json["id"], b2.json["id"]);
    // And another organisation's user.
    let other = srv.org("Other").await;
    let c = post_with_key(
        &srv,
        "/v1/users",
        &other.admin.token,
        "shared",
        &new_user_body(),
    )
    .await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.json["org_id"], other.id.to_string());
}

async fn what_is_stored(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = &org.admin.token;
    // A 4xx outcome of the handler is stored and replayed like a success.
    let bad = json!({ "email": "nope", "password": "long-enough-password", "role": "office" });
    let r = post_with_key(&srv, "/v1/users", t, "bad-email", &bad).await;
    assert_problem(&r, 422, "invalid_email");
    let again = post_with_key(&srv, "/v1/users", t, "bad-email", &bad).await;
    assert_problem(&again, 422, "invalid_email");
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(
        again.json["request_id"], r.json["request_id"],
        "the stored body"
    );
    // A 409 is not stored: the conflict may be gone on the retry.
    let body = new_user_body();
    assert_eq!(
        srv.client.post("/v1/users", Some(t), &body).await.status,
        201
    );
    let conflict = post_with_key(&srv, "/v1/users", t, "dup", &body).await;
    assert_problem(&conflict, 409, "already_exists");
    let retry = post_with_key(&srv, "/v1/users", t, "dup", &body).await;
    assert_problem(&retry, 409, "already_exists");
    assert_eq!(retry.header("idempotent-replayed"), None, "409s run again");
    // The key is free again: a different body under it is accepted.
    let fresh = post_with_key(&srv, "/v1/users", t, "dup", &new_user_body()).await;
    assert_eq!(fresh.status, 201, "{}", fresh.body);
    // Malformed JSON is a 400 from the handler: stored as well.
    let raw = |key: &'static str| {
        Client::send(
            srv.client
                .request(reqwest::Method::POST, "/v1/users", Some(t))
                .header("idempotency-key", key)
                .header("content-type", "application/json")
                .body("{not json"),
        )
    };
    assert_problem(&raw("broken").await, 400, "malformed_json");
    let r = raw("broken").await;
    assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
    // A body over the JSON limit is refused before anything is claimed.
    let huge = json!({ "email": "x".repeat(1024 * 1024 + 100) });
    let r = post_with_key(&srv, "/v1/users", t, "huge", &huge).await;
    assert_problem(&r, 413, "payload_too_large");
    let ok = post_with_key(&srv, "/v1/users", t, "huge", &new_user_body()).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
}

fn claim<'a>(user: Uuid, key: &'a str, hash: &'a [u8], age: chrono::Duration) -> NewClaim<'a> {
    let now = chrono::Utc::now();
    NewClaim {
        user_id: user,
        key,
        request_hash: hash,
        now: now - age,
        expires_at: now - age + chrono::Duration::hours(24),
        stale_before: now - age - chrono::Duration::minutes(5),
    }
}

/// The hash the middleware computes for a JSON POST.
fn hash_of(path: &str, body: &Value) -> [u8; 32] {
    let mut f = Fingerprint::new(&reqwest::Method::POST, path);
    f.part(&serde_json::to_vec(body).unwrap());
    f.finish()
}

async fn in_flight_is_409_and_stale_claims_are_taken_over(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = &org.admin.token;
    let me = org.admin.id;
    let store = srv.store();
    let body = new_user_body();
    let hash = hash_of("/v1/users", &body);

    // A request with this key is running (claimed a moment ago).
    let held = store
        .claim_idempotency_key(&claim(me, "busy", &hash, chrono::Duration::zero()))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(claim_id) = held else {
        panic!("expected a claim, got {held:?}")
    };
    let r = post_with_key(&srv, "/v1/users", t, "busy", &body).await;
    assert_problem(&r, 409, "in_flight");
    assert_eq!(r.json["retryable"], true);
    // Whatever the body: its outcome is not known yet.
    assert_problem(
        &post_with_key(&srv, "/v1/users", t, "busy", &new_user_body()).await,
        409,
        "in_flight",
    );
    // When it completes, the same request replays its outcome.
    let stored = StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        body: br#"{"from":"the first request"}"#.to_vec(),
    };
    assert!(store
        .complete_idempotency_key(me, "busy", claim_id, &stored)
        .await
        .unwrap());
    let r = post_with_key(&srv, "/v1/users", t, "busy", &body).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json["from"], "the first request");

    // A claim left in flight by a crash is taken over once stale, by the same request only.
    let body = new_user_body();
    let hash = hash_of("/v1/users", &body);
    let old = store
        .claim_idempotency_key(&claim(me, "crashed", &hash, chrono::Duration::minutes(10)))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(old_id) = old else {
        panic!("{old:?}")
    };
    assert_problem(
        &post_with_key(&srv, "/v1/users", t, "crashed", &new_user_body()).await,
        422,
        "idempotency_key_reused",
    );
    let r = post_with_key(&srv, "/v1/users", t, "crashed", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The crashed request, should it come back, can no longer record its outcome.
    assert!(!store
        .complete_idempotency_key(me, "crashed", old_id, &stored)
        .await
        .unwrap());
    let r2 = post_with_key(&srv, "/v1/users", t, "crashed", &body).await;
    assert_eq!(r2.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(r2.body, r.body);

    // Two identical requests at once: one runs, the other is replayed or told to wait.
    let body = new_user_body();
    let (x, y) = tokio::join!(
        post_with_key(&srv, "/v1/users", t, "race", &body),
        post_with_key(&srv, "/v1/users", t, "race", &body)
    );
    let mut statuses = [x.status, y.status];
    statuses.sort();
    assert!(
        statuses == [201, 201] || statuses == [201, 409],
        "{statuses:?}"
    );
    let replays = [&x, &y]
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_some())
        .count();
    assert!(statuses == [201, 409] || replays == 1, "exactly one ran");
}

async fn keys_expire_and_are_purged(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = &org.admin.token;
    let store = srv.store();
    let body = new_user_body();
    let first = post_with_key(&srv, "/v1/users", t, "old", &body).await;
    assert_eq!(first.status, 201);
    // Kept 24 h: a day and a minute later, it is gone.
    let later = chrono::Utc::now() + chrono::Duration::hours(24) + chrono::Duration::minutes(1);
    let soon = chrono::Utc::now() + chrono::Duration::hours(23);
    assert_eq!(store.purge_idempotency_keys(soon).await.unwrap(), 0);
    assert_eq!(store.purge_idempotency_keys(later).await.unwrap(), 1);
    // The key is new again: the same body now runs (and conflicts on the email).
    let again = post_with_key(&srv, "/v1/users", t, "old", &body).await;
    assert_problem(&again, 409, "already_exists");

    // An expired row that the purge has not reached yet counts as absent.
    let hash = [1u8; 32];
    let mut c = claim(org.admin.id, "expired", &hash, chrono::Duration::hours(25));
    c.expires_at = c.now + chrono::Duration::hours(24);
    let ClaimOutcome::Claimed(id) = store.claim_idempotency_key(&c).await.unwrap() else {
        panic!()
    };
    let stored = StoredResponse {
        status: 201,
        content_type: None,
        body: b"{}".to_vec(),
    };
    assert!(store
        .complete_idempotency_key(org.admin.id, "expired", id, &stored)
        .await
        .unwrap());
    let r = post_with_key(&srv, "/v1/users", t, "expired", &new_user_body()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("idempotent-replayed"), None);
}

async fn exempt_and_invalid_keys(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = &org.admin.token;
    // Login is unauthenticated: keys are ignored, each login is a new session.
    let creds = json!({ "email": org.admin.email, "password": org.admin.password });
    let a = post_with_key(&srv, "/v1/auth/login", "", "login-1", &creds).await;
    let b2 = post_with_key(&srv, "/v1/auth/login", "", "login-1", &creds).await;
    assert_eq!((a.status, b2.status), (200, 200), "{}", b2.body);
    assert_ne!(a.json["access_token"], b2.json["access_token"]);
    assert_eq!(b2.header("idempotent-replayed"), None);
    // No valid token: 401, and nothing is claimed under the key.
    let r = post_with_key(&srv, "/v1/users", "bogus", "k1", &new_user_body()).await;
    assert_problem(&r, 401, "unauthorized");
    let ok = post_with_key(&srv, "/v1/users", t, "k1", &new_user_body()).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    // Keys must be visible ASCII, at most 255 characters.
    for bad in ["x".repeat(256), "has space".into(), "\"\"".into()] {
        let r = post_with_key(&srv, "/v1/users", t, &bad, &new_user_body()).await;
        assert_problem(&r, 400, "invalid_idempotency_key");
    }
    // GET ignores the header.
    let r = Client::send(
        srv.client
            .request(reqwest::Method::GET, "/v1/users/me", Some(t))
            .header("idempotency-key", "k1"),
    )
    .await;
    assert_eq!(r.status, 200);
}

/// The session routes: creating is idempotent with a key; recording results needs one.
async fn session_routes(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = fixtures::building(&srv, &org, 2).await;
    let create = json!({ "building_id": bld.id, "name": "March service", "frequency": "six_monthly",
                         "assigned_to": [inspector.id] });
    let first = post_with_key(&srv, "/v1/tests/sessions", &org.admin.token, "s-1", &create).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = post_with_key(&srv, "/v1/tests/sessions", &org.admin.token, "s-1", &create).await;
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.json["id"], first.json["id"]);
    let list = srv
        .client
        .get("/v1/tests/sessions", Some(&org.admin.token))
        .await;
    assert_eq!(
        list.json["items"].as_array().unwrap().len(),
        1,
        "one session"
    );

    let id = first.uuid("id");
    let path = format!("/v1/tests/sessions/{id}/results");
    let results = json!({ "results": [{ "asset_id": bld.assets[0], "outcome": "pass" }] });
    let r = srv
        .client
        .post(&path, Some(&inspector.token), &results)
        .await;
    assert_problem(&r, 400, "idempotency_key_required");
    let changes = srv.store().change_attributions(id).await.unwrap().len();
    let r = post_with_key(&srv, &path, &inspector.token, "r-1", &results).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = srv.store().change_attributions(id).await.unwrap().len();
    assert!(after > changes, "the results became a change");
    let replay = post_with_key(&srv, &path, &inspector.token, "r-1", &results).await;
    assert_eq!(replay.status, 200);
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.body, r.body);
    assert_eq!(
        srv.store().change_attributions(id).await.unwrap().len(),
        after,
        "no new change"
    );
    let other = json!({ "results": [{ "asset_id": bld.assets[1], "outcome": "fail" }] });
    assert_problem(
        &post_with_key(&srv, &path, &inspector.token, "r-1", &other).await,
        422,
        "idempotency_key_reused",
    );
}
