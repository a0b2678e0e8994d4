//! Login, refresh rotation, logout, token validation and login throttling.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use firemode_tests::{assert_problem, backend_tests, Backend, TestServer};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    login_refresh_logout,
    wrong_credentials_are_one_generic_401,
    refresh_reuse_revokes_family,
    forged_and_broken_tokens_are_401,
    repeated_failures_are_throttled,
    admin_revocation_then_fresh_login,
    login_bad_inputs,
);

async fn login_refresh_logout(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let r = srv
        .client
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": org.admin.email.to_uppercase(), "password": org.admin.password }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["expires_in"], 900);
    let access = r.str("access_token").to_owned();
    let refresh = r.str("refresh_token").to_owned();
    // The access token carries every required claim.
    let payload: Value =
        serde_json::from_slice(&B64.decode(access.split('.').nth(1).unwrap()).unwrap()).unwrap();
    for claim in ["sub", "org", "role", "jti", "iat", "exp", "iss", "aud"] {
        assert!(payload.get(claim).is_some(), "claim {claim} in {payload}");
    }
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        900
    );

    let r2 = srv
        .client
        .post(
            "/v1/auth/refresh",
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    assert_ne!(r2.str("refresh_token"), refresh, "refresh tokens rotate");
    let access2 = r2.str("access_token").to_owned();
    let refresh2 = r2.str("refresh_token").to_owned();
    assert_eq!(
        srv.client.get("/v1/users/me", Some(&access2)).await.status,
        200
    );

    let out = srv
        .client
        .post("/v1/auth/logout", Some(&access2), &json!({}))
        .await;
    assert_eq!(out.status, 204, "{}", out.body);
    let after = srv.client.get("/v1/users/me", Some(&access2)).await;
    assert_problem(&after, 401, "unauthorized");
    assert!(after
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    // Logout also ended the refresh family.
    let r3 = srv
        .client
        .post(
            "/v1/auth/refresh",
            None,
            &json!({ "refresh_token": refresh2 }),
        )
        .await;
    assert_problem(&r3, 401, "unauthorized");
    // Another session of the same user is untouched.
    assert_eq!(
        srv.client
            .get("/v1/users/me", Some(&org.admin.token))
            .await
            .status,
        200
    );
    let _ = access;
}

async fn wrong_credentials_are_one_generic_401(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let wrong_pw = srv
        .client
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": org.admin.email, "password": "not-the-password" }),
        )
        .await;
    let no_user = srv
        .client
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": "nobody@nowhere.test", "password": "whatever-password" }),
        )
        .await;
    assert_problem(&wrong_pw, 401, "unauthorized");
    assert_problem(&no_user, 401, "unauthorized");
    assert_eq!(
        wrong_pw.json["detail"], no_user.json["detail"],
        "no hint which part was wrong"
    );
    // A deactivated user cannot log in either, with the same answer.
    let office = srv.user(&org, "office").await;
    let p = srv
        .client
        .patch(
            &format!("/v1/users/{}", office.id),
            Some(&org.admin.token),
            &json!({ "active": false }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let r = srv
        .client
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": office.email, "password": office.password }),
        )
        .await;
    assert_problem(&r, 401, "unauthorized");
    assert_eq!(r.json["detail"], no_user.json["detail"]);
}

async fn refresh_reuse_revokes_family(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let first = org.admin.refresh.clone();
    let r = srv
        .client
        .post("/v1/auth/refresh", None, &json!({ "refresh_token": first }))
        .await;
    assert_eq!(r.status, 200);
    let second = r.str("refresh_token").to_owned();
    // Someone replays the rotated token: refused, and the family dies.
    let replay = srv
        .client
        .post("/v1/auth/refresh", None, &json!({ "refresh_token": first }))
        .await;
    assert_problem(&replay, 401, "unauthorized");
    let legit = srv
        .client
        .post(
            "/v1/auth/refresh",
            None,
            &json!({ "refresh_token": second }),
        )
        .await;
    assert_problem(&legit, 401, "unauthorized");
    let garbage = srv
        .client
        .post(
            "/v1/auth/refresh",
            None,
            &json!({ "refresh_token": "fmr_nope" }),
        )
        .await;
    assert_problem(&garbage, 401, "unauthorized");
    // The access token of that login went with the family (issue 12: reuse cuts off every
    // holder at once).
    assert_problem(
        &srv.client.get("/v1/users/me", Some(&org.admin.token)).await,
        401,
        "unauthorized",
    );
    // The reuse is in the audit log.
    let again = srv.login(&org.admin.email, &org.admin.password).await;
    let audits = srv
        .client
        .get("/v1/users/me/audits?limit=500", Some(&again.token))
        .await;
    assert!(
        audits.body.contains("auth.refresh_reuse_detected"),
        "{}",
        audits.body
    );
}

fn forge(secret: &[u8], alg: Algorithm, claims: &Value) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

async fn forged_and_broken_tokens_are_401(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let secret = srv.jwt_secret();
    let now = chrono::Utc::now().timestamp();
    let good = json!({
        "sub": org.admin.id, "org": org.id, "role": "admin", "jti": Uuid::new_v4().to_string(),
        "iat": now, "exp": now + 600, "iss": "firemode", "aud": "firemode-api", "sid": Uuid::new_v4(),
    });
    // Sanity: a token we forge with the real key and claims is accepted, so the rejections
    // below are about what each case changes.
    let ok = forge(secret.as_bytes(), Algorithm::HS256, &good);
    assert_eq!(srv.client.get("/v1/users/me", Some(&ok)).await.status, 200);

    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        forge(secret.as_bytes(), Algorithm::HS256, &c)
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        forge(secret.as_bytes(), Algorithm::HS256, &c)
    };
    let header_none = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = B64.encode(serde_json::to_vec(&good).unwrap());
    let mut bad_sig = ok.clone();
    bad_sig.pop();
    bad_sig.push(if ok.ends_with('A') { 'B' } else { 'A' });
    let cases: Vec<(&str, String)> = vec![
        ("alg none", format!("{header_none}.{body}.")),
        (
            "HS512 with the same key",
            forge(secret.as_bytes(), Algorithm::HS512, &good),
        ),
        (
            "other key",
            forge(
                b"some-other-secret-some-other-secret!",
                Algorithm::HS256,
                &good,
            ),
        ),
        ("bad signature", bad_sig),
        ("wrong audience", with("aud", json!("someone-else"))),
        ("wrong issuer", with("iss", json!("evil"))),
        ("expired", with("exp", json!(now - 10))),
        ("missing jti", without("jti")),
        ("missing org", without("org")),
        ("missing exp", without("exp")),
        ("missing iat", without("iat")),
        ("unknown role", with("role", json!("superuser"))),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, token) in cases {
        let r = srv.client.get("/v1/users/me", Some(&token)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        // Only a genuine token past its expiry says so (the client then refreshes).
        assert_problem(
            &r,
            401,
            if what == "expired" {
                "token_expired"
            } else {
                "unauthorized"
            },
        );
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{what}"
        );
    }
    let no_header = srv.client.get("/v1/users/me", None).await;
    assert_problem(&no_header, 401, "unauthorized");
    let basic = firemode_tests::Client::send(
        srv.client
            .request(reqwest::Method::GET, "/v1/users/me", None)
            .header("authorization", "Basic YTpi"),
    )
    .await;
    assert_problem(&basic, 401, "unauthorized");
}

async fn repeated_failures_are_throttled(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let attempt = |pw: &str| {
        let body = json!({ "email": org.admin.email, "password": pw });
        let client = srv.client.clone();
        async move { client.post("/v1/auth/login", None, &body).await }
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong-password!").await.status, 401);
    }
    let blocked = attempt("wrong-password!").await;
    assert_problem(&blocked, 429, "rate_limited");
    assert_eq!(blocked.json["retryable"], true);
    let retry: u64 = blocked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    // Even the right password waits: that is what slows guessing.
    assert_eq!(attempt(&org.admin.password.clone()).await.status, 429);
}

async fn admin_revocation_then_fresh_login(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let office = srv.user(&org, "office").await;
    let r = srv
        .client
        .post(
            &format!("/v1/users/{}/revoke-tokens", office.id),
            Some(&org.admin.token),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_problem(
        &srv.client.get("/v1/users/me", Some(&office.token)).await,
        401,
        "unauthorized",
    );
    let rr = srv
        .client
        .post(
            "/v1/auth/refresh",
            None,
            &json!({ "refresh_token": office.refresh }),
        )
        .await;
    assert_problem(&rr, 401, "unauthorized");
    // Logging in again right away (same second) gives a working token.
    let again = srv.login(&office.email, &office.password).await;
    assert_eq!(
        srv.client
            .get("/v1/users/me", Some(&again.token))
            .await
            .status,
        200
    );
}

async fn login_bad_inputs(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let c = &srv.client;
    assert_problem(
        &c.post_raw(
            "/v1/auth/login",
            None,
            "application/json",
            b"{\"email\":".to_vec(),
        )
        .await,
        400,
        "malformed_json",
    );
    assert_problem(
        &c.post(
            "/v1/auth/login",
            None,
            &json!({ "email": 5, "password": "x" }),
        )
        .await,
        422,
        "invalid_body",
    );
    assert_problem(
        &c.post("/v1/auth/login", None, &json!({ "email": "a@b.test" }))
            .await,
        422,
        "invalid_body",
    );
    assert_problem(
        &c.post(
            "/v1/auth/login",
            None,
            &json!({ "email": "a@b.test", "password": "x", "admin": true }),
        )
        .await,
        422,
        "invalid_body",
    );
    assert_problem(
        &c.post_raw("/v1/auth/login", None, "text/plain", b"hi".to_vec())
            .await,
        415,
        "unsupported_media_type",
    );
    assert_problem(
        &c.post("/v1/auth/refresh", None, &json!({ "refresh_token": [] }))
            .await,
        422,
        "invalid_body",
    );
}
