//! The `Store` contract, run against both backends.

use std::sync::Arc;

use chrono::{Duration, Utc};
use firemode_server::store::{
    self, NewAudit, NewUser, Page, RefreshTokenRecord, RevocationKind, Role, Store, StoreError,
    UserPatch,
};
use firemode_tests::{backend_tests, Backend, TestDb};
use uuid::Uuid;

async fn open(backend: Backend) -> Option<(Arc<dyn Store>, TestDb)> {
    let db = TestDb::new(backend).await?;
    let s = store::connect(&db.url).await.expect("connect + migrate");
    Some((s, db))
}

fn new_user(org: Uuid, email: &str) -> NewUser {
    NewUser {
        org_id: org,
        email: email.into(),
        password_hash: "$argon2id$fake".into(),
        role: Role::Inspector,
        full_name_enc: Some(vec![1, 2, 3]),
        phone_enc: None,
    }
}

backend_tests!(
    orgs_and_users,
    users_are_scoped_to_their_org,
    pagination_is_keyset,
    refresh_tokens_rotate_once,
    revocations_stream_in_order,
    audits_by_actor,
    migrations_are_idempotent,
);

async fn orgs_and_users(b: Backend) {
    let Some((s, _db)) = open(b).await else {
        return;
    };
    assert_eq!(
        s.backend(),
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    s.ping().await.unwrap();
    let org = s.create_org("Acme").await.unwrap();
    assert_eq!(s.get_org(org.id).await.unwrap().name, "Acme");
    assert!(matches!(
        s.get_org(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
    let u = s.create_user(new_user(org.id, "a@x.test")).await.unwrap();
    let back = s.get_user(u.id).await.unwrap();
    assert_eq!(back.email, "a@x.test");
    assert_eq!(back.role(), Role::Inspector);
    assert_eq!(back.full_name_enc, Some(vec![1, 2, 3]));
    assert!(back.active);
    assert_eq!(s.get_user_by_email("a@x.test").await.unwrap().id, u.id);
    assert!(matches!(
        s.create_user(new_user(org.id, "a@x.test")).await,
        Err(StoreError::Conflict("email"))
    ));
    let patched = s
        .update_user(
            org.id,
            u.id,
            UserPatch {
                role: Some(Role::Office),
                active: Some(false),
                full_name_enc: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.role(), Role::Office);
    let back = s.get_user(u.id).await.unwrap();
    assert!(!back.active);
    assert_eq!(back.full_name_enc, None);
    assert_eq!(
        back.password_hash, "$argon2id$fake",
        "untouched columns stay"
    );
}

async fn users_are_scoped_to_their_org(b: Backend) {
    let Some((s, _db)) = open(b).await else {
        return;
    };
    let a = s.create_org("A").await.unwrap();
    let other = s.create_org("B").await.unwrap();
    let u = s.create_user(new_user(a.id, "u@a.test")).await.unwrap();
    s.create_user(new_user(other.id, "u@b.test")).await.unwrap();
    let err = s
        .update_user(
            other.id,
            u.id,
            UserPatch {
                role: Some(Role::Admin),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(err, Err(StoreError::NotFound)),
        "another org cannot update"
    );
    let listed = s
        .list_users(
            a.id,
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, u.id);
}

async fn pagination_is_keyset(b: Backend) {
    let Some((s, _db)) = open(b).await else {
        return;
    };
    let org = s.create_org("P").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            s.create_user(new_user(org.id, &format!("p{i}@x.test")))
                .await
                .unwrap()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list_users(org.id, Page { after, limit: 3 })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|u| u.id);
        seen.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(seen, ids, "every user once, in creation order");
}

async fn refresh_tokens_rotate_once(b: Backend) {
    let Some((s, _db)) = open(b).await else {
        return;
    };
    let org = s.create_org("R").await.unwrap();
    let u = s.create_user(new_user(org.id, "r@x.test")).await.unwrap();
    let now = Utc::now();
    let fam = Uuid::now_v7();
    let tok = |hash: u8| RefreshTokenRecord {
        id: Uuid::now_v7(),
        token_hash: vec![hash; 32],
        family_id: fam,
        user_id: u.id,
        created_at: now,
        expires_at: now + Duration::days(1),
        used_at: None,
        revoked_at: None,
    };
    let t1 = tok(1);
    s.insert_refresh_token(&t1).await.unwrap();
    assert_eq!(s.get_refresh_token(&[1; 32]).await.unwrap().id, t1.id);
    // Two concurrent uses of one token: exactly one wins.
    let (a, b2) = tokio::join!(
        s.use_refresh_token(t1.id, now),
        s.use_refresh_token(t1.id, now)
    );
    assert!(a.unwrap() ^ b2.unwrap(), "exactly one use succeeds");
    assert!(!s.use_refresh_token(t1.id, now).await.unwrap());
    let t2 = tok(2);
    s.insert_refresh_token(&t2).await.unwrap();
    s.revoke_refresh_family(fam, now).await.unwrap();
    assert!(s
        .get_refresh_token(&[2; 32])
        .await
        .unwrap()
        .revoked_at
        .is_some());
    assert!(
        !s.use_refresh_token(t2.id, now).await.unwrap(),
        "revoked tokens cannot be used"
    );
    assert!(matches!(
        s.get_refresh_token(&[9; 32]).await,
        Err(StoreError::NotFound)
    ));
}

async fn revocations_stream_in_order(b: Backend) {
    let Some((s, _db)) = open(b).await else {
        return;
    };
    let now = Utc::now();
    let s1 = s
        .insert_revocation(RevocationKind::Jti, "j1", now, now + Duration::minutes(5))
        .await
        .unwrap();
    let s2 = s
        .insert_revocation(RevocationKind::User, "u1", now, now + Duration::minutes(5))
        .await
        .unwrap();
    let _old = s
        .insert_revocation(RevocationKind::Jti, "old", now, now - Duration::minutes(1))
        .await
        .unwrap();
    assert!(s2 > s1);
    let all = s.revocations_since(0, now).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>(),
        ["j1", "u1"],
        "expired rows are not served"
    );
    assert_eq!(all[1].kind, RevocationKind::User);
    let later = s.revocations_since(s1, now).await.unwrap();
    assert_eq!(later.len(), 1);
    assert!(s.purge_expired(now).await.unwrap() >= 1);
}

async fn audits_by_actor(b: Backend) {
    let Some((s, _db)) = open(b).await else {
        return;
    };
    let org = s.create_org("Au").await.unwrap();
    let actor = Uuid::now_v7();
    for i in 0..3 {
        s.insert_audit(NewAudit {
            org_id: Some(org.id),
            actor_id: Some(actor),
            action: format!("thing.{i}"),
            target_type: Some("thing".into()),
            target_id: Some(i.to_string()),
            details: serde_json::json!({ "n": i }),
            request_id: Some("rid".into()),
        })
        .await
        .unwrap();
    }
    s.insert_audit(NewAudit {
        action: "other".into(),
        details: serde_json::json!({}),
        ..Default::default()
    })
    .await
    .unwrap();
    let rows = s
        .list_audits_by_actor(
            actor,
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].action, "thing.2");
    assert_eq!(rows[2].details.0["n"], 2);
}

async fn migrations_are_idempotent(b: Backend) {
    let Some((s, db)) = open(b).await else { return };
    s.create_org("Keep").await.unwrap();
    drop(s);
    // Opening again runs the migrator again: nothing is re-applied, data stays.
    let s = store::connect(&db.url).await.expect("second open");
    s.ping().await.unwrap();
}
