//! PII is encrypted at rest, readable through the API, and rotatable.

use firemode_server::crypto::{random_b64, PiiCipher};
use firemode_tests::{backend_tests, test_config, Backend, TestDb, TestServer};
use serde_json::json;
use sqlx::Row;

backend_tests!(pii_is_not_stored_in_plaintext, rotation_reseals_every_row);

const NAME: &str = "Zebedee Quartermaine";
const PHONE: &str = "+61 411 222 333";

/// Every stored form of the users table, as text and bytes, for searching.
async fn raw_user_rows(db: &TestDb) -> (Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>, Vec<u8>) {
    match db.backend() {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.raw_url()).await.unwrap();
            let rows = sqlx::query("SELECT full_name_enc, phone_enc FROM users")
                .fetch_all(&pool)
                .await
                .unwrap();
            let cols = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            pool.close().await;
            // The database file and its WAL, byte for byte.
            let mut bytes = Vec::new();
            for suffix in ["", "-wal"] {
                let p = format!("{}{suffix}", db.dir.path().join("firemode.db").display());
                bytes.extend(std::fs::read(p).unwrap_or_default());
            }
            (cols, bytes)
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.raw_url()).await.unwrap();
            let rows = sqlx::query("SELECT full_name_enc, phone_enc FROM users")
                .fetch_all(&pool)
                .await
                .unwrap();
            let cols = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let text: Vec<String> = sqlx::query_scalar("SELECT u::text FROM users u")
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            (cols, text.join("\n").into_bytes())
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn pii_is_not_stored_in_plaintext(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let r = srv
        .client
        .post(
            "/v1/users",
            Some(&org.admin.token),
            &json!({ "email": "zq@acme.test", "password": "long-enough-password", "role": "office", "full_name": NAME, "phone": PHONE }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["full_name"], NAME);
    let (cols, raw) = raw_user_rows(&srv.db).await;
    let (name_ct, phone_ct) = cols
        .into_iter()
        .find(|(n, _)| n.is_some())
        .expect("an encrypted row");
    let (name_ct, phone_ct) = (name_ct.unwrap(), phone_ct.unwrap());
    assert!(!contains(&name_ct, "Zebedee") && !contains(&phone_ct, "411"));
    assert_eq!(
        PiiCipher::key_id(&name_ct).unwrap(),
        srv.state.pii.active_key()
    );
    assert!(
        contains(&raw, "zq@acme.test"),
        "the search itself works (email is stored in clear)"
    );
    assert!(
        !contains(&raw, "Zebedee") && !contains(&raw, "Quartermaine"),
        "name in plaintext at rest"
    );
    assert!(!contains(&raw, "411 222"), "phone in plaintext at rest");
    // And the API still shows it to an admin.
    let list = srv.client.get("/v1/users", Some(&org.admin.token)).await;
    assert!(list.body.contains(NAME));
}

async fn rotation_reseals_every_row(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let k1 = format!("1:{}", random_b64(32));
    let mut cfg = test_config(&db);
    cfg.pii_keys = Some(firemode_server::config::Secret::new(k1.clone()));
    let srv = TestServer::start_with(db, cfg.clone()).await;
    let org = srv.org("Acme").await;
    for i in 0..3 {
        let r = srv
            .client
            .post(
                "/v1/users",
                Some(&org.admin.token),
                &json!({ "email": format!("u{i}@acme.test"), "password": "long-enough-password", "role": "office", "full_name": format!("{NAME} {i}"), "phone": PHONE }),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let db = srv.stop().await;
    // Deploy a key ring with a new active key 2; old ciphertexts stay readable meanwhile.
    let ring = format!("{k1},2:{}", random_b64(32));
    cfg.pii_keys = Some(firemode_server::config::Secret::new(ring.clone()));
    let srv = TestServer::start_with(db, cfg).await;
    let admin = srv.login(&org.admin.email, &org.admin.password).await;
    let before = srv.client.get("/v1/users", Some(&admin.token)).await;
    assert_eq!(
        before.body.matches(NAME).count(),
        3,
        "old key still readable: {}",
        before.body
    );
    let (cols, _) = raw_user_rows(&srv.db).await;
    assert!(cols
        .iter()
        .flat_map(|(a, b)| [a, b])
        .flatten()
        .all(|c| PiiCipher::key_id(c).unwrap() == 1));

    let cipher = PiiCipher::from_spec(&ring, None).unwrap();
    let n = firemode_server::cli::rotate_pii(srv.store().as_ref(), &cipher)
        .await
        .unwrap();
    assert_eq!(n, 6, "3 names + 3 phones re-sealed");
    let (cols, _) = raw_user_rows(&srv.db).await;
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
    let after = srv.client.get("/v1/users", Some(&admin.token)).await;
    assert_eq!(after.body.matches(NAME).count(), 3, "{}", after.body);
    assert_eq!(after.body.matches(PHONE).count(), 3);
}
