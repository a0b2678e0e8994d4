//! Cross-cutting HTTP behaviour: errors, headers, health, metrics, OpenAPI.

use firemode_tests::{assert_problem, backend_tests, Backend, TestServer};
use serde_json::json;

backend_tests!(
    health_ready_and_request_ids,
    unknown_routes_and_methods_are_problems,
    oversize_bodies_are_413,
    metrics_use_route_templates,
    openapi_and_docs,
);

async fn health_ready_and_request_ids(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let h = srv.client.get("/health", None).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json["status"], "ok");
    let r = srv.client.get("/ready", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json["database"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    assert!(h.header("x-request-id").is_some_and(|v| !v.is_empty()));
    assert_eq!(
        h.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(h.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(h.header("content-security-policy").is_some());
    // A caller's request id is kept and appears in error bodies.
    let mine = firemode_tests::Client::send(
        srv.client
            .request(reqwest::Method::GET, "/v1/nothing-here", None)
            .header("x-request-id", "trace-me-123"),
    )
    .await;
    assert_eq!(mine.header("x-request-id").as_deref(), Some("trace-me-123"));
    assert_eq!(mine.json["request_id"], "trace-me-123");
}

async fn unknown_routes_and_methods_are_problems(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    assert_problem(&srv.client.get("/nope", None).await, 404, "not_found");
    assert_problem(
        &srv.client.delete("/v1/auth/login", None).await,
        405,
        "method_not_allowed",
    );
    assert_problem(
        &srv.client.get("/v1/auth/login", None).await,
        405,
        "method_not_allowed",
    );
}

async fn oversize_bodies_are_413(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let big = format!(
        "{{\"email\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    if let Some(r) = srv
        .client
        .post_oversize("/v1/auth/login", None, "application/json", big.into_bytes())
        .await
    {
        assert_problem(&r, 413, "payload_too_large");
    }
    // Refused either way: the server still answers on a new connection.
    let r = srv.client.get("/health", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn metrics_use_route_templates(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let id = uuid::Uuid::new_v4();
    srv.client
        .patch(
            &format!("/v1/users/{id}"),
            Some(&org.admin.token),
            &json!({}),
        )
        .await;
    srv.client.get("/definitely/not/a/route/12345", None).await;
    let m = srv.client.get("/metrics", None).await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    assert!(
        m.body.contains(
            r#"firemode_http_requests_total{method="PATCH",route="/v1/users/{id}",status="404"} 1"#
        ),
        "{}",
        m.body
    );
    assert!(
        m.body.contains(r#"route="/v1/auth/login",status="200""#),
        "{}",
        m.body
    );
    assert!(
        m.body.contains(r#"route="unmatched",status="404""#),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("firemode_http_request_duration_seconds_bucket"));
    assert!(
        !m.body.contains(&id.to_string()),
        "raw ids never become labels"
    );
    assert!(!m.body.contains("12345"), "raw paths never become labels");
}

async fn openapi_and_docs(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let o = srv.client.get("/openapi.json", None).await;
    assert_eq!(o.status, 200);
    assert!(
        o.json["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        &o.body[..100]
    );
    for path in [
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/users/me",
        "/v1/users/{id}",
        "/health",
        "/ready",
    ] {
        assert!(o.json["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(o.json["components"]["securitySchemes"]["bearer"].is_object());
    let d = srv.client.get("/docs", None).await;
    assert_eq!(d.status, 200);
    assert!(d.header("content-type").unwrap().starts_with("text/html"));
    assert!(d.body.contains("/v1/auth/login"));
    // Every operation is there without scripts, marked with its operation id for the page's
    // module, which is served from this server only (no CDN, no inline script).
    assert!(d.body.contains("data-op=\"loginAuth\""), "{}", d.body);
    assert!(d
        .body
        .contains("<script type=module src=\"/docs/app.js\"></script>"));
    let csp = d.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("connect-src 'self'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    for (asset, kind) in [
        ("/docs/app.js", "text/javascript"),
        ("/docs/docs.css", "text/css"),
    ] {
        let a = srv.client.get(asset, None).await;
        assert_eq!(a.status, 200, "{asset}");
        assert!(
            a.header("content-type").unwrap().starts_with(kind),
            "{asset}"
        );
        assert!(
            !a.body.contains("http://") && !a.body.contains("https://"),
            "{asset} refers to another origin"
        );
    }
    assert!(srv
        .client
        .get("/docs/app.js", None)
        .await
        .body
        .contains("/openapi.json"));
}

/// PostgreSQL only: the database going away turns readiness into 503 (liveness stays 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_when_postgres_is_gone() {
    let Some(srv) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    assert_eq!(srv.client.get("/ready", None).await.status, 200);
    let admin = firemode_tests::postgres_admin_url().unwrap();
    let url = srv.db.raw_url();
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    use sqlx::Connection;
    let mut c = sqlx::postgres::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
    let r = srv.client.get("/ready", None).await;
    assert_problem(&r, 503, "unavailable");
    assert_eq!(r.json["retryable"], true);
    assert_eq!(srv.client.get("/health", None).await.status, 200);
}
