//! User administration: roles, organisation isolation, validation, audits.

use firemode_tests::{assert_problem, backend_tests, Backend, TestServer};
use serde_json::json;
use uuid::Uuid;

backend_tests!(
    admin_manages_users,
    only_admins_manage_users,
    other_organisations_see_404,
    user_input_is_validated,
    role_change_revokes_tokens,
    audits_record_own_actions,
    admin_unlocks_a_throttled_user,
);

async fn admin_manages_users(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let r = srv
        .client
        .post(
            "/v1/users",
            Some(&org.admin.token),
            &json!({ "email": "Insp@Acme.test", "password": "long-enough-password", "role": "inspector",
                     "full_name": "Ivy Inspector", "phone": "+61 400 000 000" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["email"], "insp@acme.test", "emails are normalised");
    assert_eq!(r.json["full_name"], "Ivy Inspector");
    assert_eq!(r.json["org_id"], org.id.to_string());
    let id = r.uuid("id");
    let dup = srv
        .client
        .post(
            "/v1/users",
            Some(&org.admin.token),
            &json!({ "email": "insp@acme.test", "password": "long-enough-password", "role": "office" }),
        )
        .await;
    assert_problem(&dup, 409, "already_exists");

    let list = srv
        .client
        .get("/v1/users?limit=1", Some(&org.admin.token))
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);
    let cursor = list.str("next_cursor").to_owned();
    let next = srv
        .client
        .get(
            &format!("/v1/users?limit=1&cursor={cursor}"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(next.json["items"][0]["id"], id.to_string());
    assert!(next.json["next_cursor"].is_null());

    let p = srv
        .client
        .patch(
            &format!("/v1/users/{id}"),
            Some(&org.admin.token),
            &json!({ "phone": null, "full_name": "Ivy I." }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.json["phone"].is_null());
    assert_eq!(p.json["full_name"], "Ivy I.");
    let me = srv.login("insp@acme.test", "long-enough-password").await;
    let mine = srv.client.get("/v1/users/me", Some(&me.token)).await;
    assert_eq!(mine.json["role"], "inspector");
    assert_eq!(mine.json["full_name"], "Ivy I.");
}

async fn only_admins_manage_users(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    for role in ["office", "inspector", "auditor"] {
        let u = srv.user(&org, role).await;
        let c = srv
            .client
            .post("/v1/users", Some(&u.token), &json!({ "email": format!("x-{role}@a.test"), "password": "long-enough-password", "role": "admin" }))
            .await;
        assert_problem(&c, 403, "forbidden");
        assert_problem(
            &srv.client.get("/v1/users", Some(&u.token)).await,
            403,
            "forbidden",
        );
        let p = srv
            .client
            .patch(
                &format!("/v1/users/{}", u.id),
                Some(&u.token),
                &json!({ "role": "admin" }),
            )
            .await;
        assert_problem(&p, 403, "forbidden");
        let rv = srv
            .client
            .post(
                &format!("/v1/users/{}/revoke-tokens", org.admin.id),
                Some(&u.token),
                &json!({}),
            )
            .await;
        assert_problem(&rv, 403, "forbidden");
        assert_eq!(
            srv.client.get("/v1/users/me", Some(&u.token)).await.json["role"],
            role
        );
    }
}

async fn other_organisations_see_404(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.org("Alpha").await;
    let other = srv.org("Beta").await;
    let victim = srv.user(&a, "office").await;
    let p = srv
        .client
        .patch(
            &format!("/v1/users/{}", victim.id),
            Some(&other.admin.token),
            &json!({ "role": "auditor" }),
        )
        .await;
    assert_problem(&p, 404, "not_found");
    let r = srv
        .client
        .post(
            &format!("/v1/users/{}/revoke-tokens", victim.id),
            Some(&other.admin.token),
            &json!({}),
        )
        .await;
    assert_problem(&r, 404, "not_found");
    // Same answer as for an id that does not exist at all.
    let missing = srv
        .client
        .patch(
            &format!("/v1/users/{}", Uuid::new_v4()),
            Some(&other.admin.token),
            &json!({ "role": "auditor" }),
        )
        .await;
    assert_problem(&missing, 404, "not_found");
    assert_eq!(p.json["detail"], missing.json["detail"]);
    let list = srv.client.get("/v1/users", Some(&other.admin.token)).await;
    assert!(!list.body.contains(&victim.id.to_string()));
    assert_eq!(
        srv.client
            .get("/v1/users/me", Some(&victim.token))
            .await
            .json["role"],
        "office"
    );
}

async fn user_input_is_validated(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = Some(org.admin.token.as_str());
    let c = &srv.client;
    let cases = [
        (
            json!({ "email": "not-an-email", "password": "long-enough-password", "role": "office" }),
            422,
            "invalid_email",
        ),
        (
            json!({ "email": "a@b.test", "password": "short", "role": "office" }),
            422,
            "weak_password",
        ),
        (
            json!({ "email": "a@b.test", "password": "long-enough-password", "role": "overlord" }),
            422,
            "invalid_body",
        ),
        (
            json!({ "email": "a@b.test", "password": "long-enough-password" }),
            422,
            "invalid_body",
        ),
        (
            json!({ "email": "a@b.test", "password": "long-enough-password", "role": "office", "full_name": "" }),
            422,
            "invalid_field",
        ),
        (
            json!({ "email": "a@b.test", "password": "long-enough-password", "role": "office", "extra": 1 }),
            422,
            "invalid_body",
        ),
        (json!(["a"]), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        assert_problem(&c.post("/v1/users", t, &body).await, status, code);
    }
    assert_problem(
        &c.patch("/v1/users/not-a-uuid", t, &json!({})).await,
        400,
        "invalid_path",
    );
    assert_problem(&c.get("/v1/users?limit=0", t).await, 400, "invalid_query");
    assert_problem(
        &c.get("/v1/users?cursor=zzz", t).await,
        400,
        "invalid_query",
    );
    assert_problem(&c.get("/v1/users?limit=abc", t).await, 400, "invalid_query");
    let self_demote = c
        .patch(
            &format!("/v1/users/{}", org.admin.id),
            t,
            &json!({ "role": "office" }),
        )
        .await;
    assert_problem(&self_demote, 409, "last_admin_guard");
    // None of that created anyone.
    let list = c.get("/v1/users", t).await;
    assert_eq!(
        list.json["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );
}

async fn role_change_revokes_tokens(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let u = srv.user(&org, "office").await;
    let p = srv
        .client
        .patch(
            &format!("/v1/users/{}", u.id),
            Some(&org.admin.token),
            &json!({ "role": "auditor" }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_problem(
        &srv.client.get("/v1/users/me", Some(&u.token)).await,
        401,
        "unauthorized",
    );
    let again = srv.login(&u.email, &u.password).await;
    assert_eq!(
        srv.client
            .get("/v1/users/me", Some(&again.token))
            .await
            .json["role"],
        "auditor"
    );
}

async fn audits_record_own_actions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let u = srv.user(&org, "office").await;
    let audits = srv
        .client
        .get("/v1/users/me/audits", Some(&org.admin.token))
        .await;
    assert_eq!(audits.status, 200, "{}", audits.body);
    let actions: Vec<&str> = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"auth.login"), "{actions:?}");
    assert!(actions.contains(&"user.create"), "{actions:?}");
    let create = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "user.create")
        .unwrap();
    assert_eq!(create["target_id"], u.id.to_string());
    assert!(
        !audits.body.contains(&u.password),
        "no secrets in audit details"
    );
    // The office user's own trail holds only their own actions.
    let theirs = srv.client.get("/v1/users/me/audits", Some(&u.token)).await;
    assert!(theirs.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["actor_id"] == u.id.to_string()));
}

/// `POST /v1/users/{id}/unlock` clears the login throttling of the user's email (what `firemode
/// admin unlock` does): the right password works again at once. Admin only, same organisation,
/// audited.
async fn admin_unlocks_a_throttled_user(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let victim = srv.user(&org, "inspector").await;
    let office = srv.user(&org, "office").await;
    let other = srv.org("Beta").await;
    let attempt = |pw: &str| {
        let body = json!({ "email": victim.email, "password": pw });
        let client = srv.client.clone();
        async move { client.post("/v1/auth/login", None, &body).await }
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong-password!").await.status, 401);
    }
    assert_problem(
        &attempt(&victim.password.clone()).await,
        429,
        "rate_limited",
    );

    let path = format!("/v1/users/{}/unlock", victim.id);
    // Not an admin, another organisation's admin, an unknown id: refused, nothing cleared.
    assert_problem(
        &srv.client
            .post(&path, Some(&office.token), &json!({}))
            .await,
        403,
        "forbidden",
    );
    assert_problem(
        &srv.client
            .post(&path, Some(&other.admin.token), &json!({}))
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &srv.client
            .post(
                &format!("/v1/users/{}/unlock", Uuid::new_v4()),
                Some(&org.admin.token),
                &json!({}),
            )
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &attempt(&victim.password.clone()).await,
        429,
        "rate_limited",
    );

    let r = srv
        .client
        .post(&path, Some(&org.admin.token), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["user_id"], victim.id.to_string());
    assert!(
        r.json["cleared_addresses"].as_u64().unwrap() >= 1,
        "{}",
        r.body
    );
    assert_eq!(attempt(&victim.password.clone()).await.status, 200);

    let audits = srv
        .client
        .get("/v1/users/me/audits?limit=100", Some(&org.admin.token))
        .await;
    let unlock = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "user.unlock")
        .unwrap_or_else(|| panic!("no user.unlock audit: {}", audits.body));
    assert_eq!(unlock["target_id"], victim.id.to_string());
}
