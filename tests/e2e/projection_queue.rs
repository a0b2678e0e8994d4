//! The projection queue: sessions touched through the hub in random interleavings, with a
//! restart in the middle, end with every session's stored projection equal to its document;
//! a shutdown with a long queue does not wait for it but leaves it marked pending (stale) in
//! the store, and the next start projects it.
//!
//! "Equal to its document" is checked against the document rebuilt from the stored changes,
//! without the hub (loading a document through the hub would repair a missing projection and
//! hide the bug this looks for).

use std::collections::BTreeMap;
use std::time::Duration;

use firemode_server::config::DatabaseUrl;
use firemode_server::hub::{Hub, Origin};
use firemode_server::store::Store;
use firemode_sync_core::automerge::Automerge;
use firemode_sync_core::{Outcome, ResultInput};
use firemode_tests::fixtures;
use firemode_tests::{backend_tests, Backend, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

backend_tests!(
    random_touches_with_a_restart_leave_every_projection_equal_to_its_document,
    shutdown_leaves_the_queue_to_the_next_start,
);

/// One touch: a result for one item, written by the server's actor through the hub (committed,
/// then projected in the background after the debounce, like a tablet's edit).
async fn touch(hub: &Hub, user: Uuid, session: Uuid, asset: Uuid, outcome: Outcome, notes: String) {
    let input = ResultInput {
        asset_id: asset,
        rule_code: None,
        outcome,
        observed_conditions: None,
        readings: BTreeMap::new(),
        notes: Some(notes),
        evidence: Vec::new(),
        recorded_by: user,
        recorded_at: chrono::Utc::now().to_rfc3339(),
    };
    let origin = Origin {
        user_id: user,
        request_id: None,
        on_completed: false,
    };
    hub.write(session, origin, move |doc, actor| {
        firemode_sync_core::apply_results(doc, &[input], actor, chrono::Utc::now().timestamp())
            .map_err(|e| firemode_server::hub::HubError::Rejected(e.to_string()))
    })
    .await
    .expect("the hub takes the touch");
}

/// The watermark stored with each session's projection (−1: marked pending at a shutdown;
/// None: never projected). Read with SQL: no store method needs it.
async fn watermarks(db: &DatabaseUrl, ids: &[Uuid]) -> Vec<Option<i64>> {
    let sql = "SELECT watermark FROM session_projection_state WHERE session_id = $1";
    let mut out = Vec::new();
    match db {
        DatabaseUrl::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
                .await
                .expect("sqlite");
            for id in ids {
                out.push(
                    sqlx::query_scalar(sql)
                        .bind(id)
                        .fetch_optional(&pool)
                        .await
                        .expect("read"),
                );
            }
            pool.close().await;
        }
        DatabaseUrl::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url.expose()).await.expect("postgres");
            for id in ids {
                out.push(
                    sqlx::query_scalar(sql)
                        .bind(id)
                        .fetch_optional(&pool)
                        .await
                        .expect("read"),
                );
            }
            pool.close().await;
        }
    }
    out
}

/// Wait until the stored projection of every session of `ids` is its document, as the server
/// gets there by itself (debounce, workers, start-up backlog; nothing here asks it to
/// refresh). At most a minute: a hang guard, not a speed target — a lost projection never
/// gets there.
async fn wait_projected(srv: &TestServer, ids: &[Uuid]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut wrong = None;
        for id in ids {
            if let Err(e) = projection_is_document(srv.store().as_ref(), *id).await {
                wrong = Some(e);
                break;
            }
        }
        let Some(wrong) = wrong else {
            return;
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "not projected after 60 s ({} queued): {wrong}",
            srv.state.hub.projections_pending()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the stored projection of `session` is its document: the heads stored with it are
/// the document's (rebuilt from the stored changes), and there is one row per item with the
/// item's outcome, notes, conditions and readings.
async fn projection_is_document(store: &dyn Store, session: Uuid) -> Result<(), String> {
    let stored = store.load_document(session).await.expect("stored document");
    let mut doc = match &stored.snapshot {
        Some((bytes, _)) => Automerge::load(bytes).expect("snapshot loads"),
        None => Automerge::new(),
    };
    for (_, bytes) in &stored.changes {
        doc.load_incremental(bytes).expect("change loads");
    }
    let heads = firemode_sync_core::encode_heads(&doc.get_heads());
    if stored.projected_heads.as_deref() != Some(heads.as_str()) {
        return Err(format!(
            "session {session}: projected at {:?}, the document is at {heads}",
            stored.projected_heads
        ));
    }
    let want = firemode_sync_core::project(&doc);
    let rows = store.list_items(session).await.expect("rows");
    let mut got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.asset_id.clone(),
                r.outcome.clone(),
                r.notes.clone(),
                r.observed_conditions.0.clone(),
                r.readings.0.clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<_> = want
        .items
        .iter()
        .map(|i| {
            (
                i.asset_id.clone(),
                i.outcome.map(|o| o.as_str().to_owned()),
                i.notes.clone(),
                i.observed_conditions.clone(),
                json!(i.readings),
            )
        })
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    if got != expected {
        return Err(format!(
            "session {session}: rows {got:?}, items {expected:?}"
        ));
    }
    Ok(())
}

/// Random touches (seeded; `FIREMODE_PROJECTION_SEED` replays a run) of many sessions, several
/// at once, with documents unloaded now and then (their next projection rewrites every row),
/// a graceful restart in the middle whatever is queued then, and more touches after it.
async fn random_touches_with_a_restart_leave_every_projection_equal_to_its_document(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let seed: u64 = std::env::var("FIREMODE_PROJECTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("projection seed {seed} (FIREMODE_PROJECTION_SEED replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let org = srv.org("Queue").await;
    let building = fixtures::building(&srv, &org, 4).await;
    let mut sessions = Vec::new();
    for _ in 0..12 {
        let s = fixtures::session(&srv, &org.admin, &building, &[]).await;
        sessions.push(s["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    let cfg = (*srv.state.config).clone();
    let user = org.admin.id;
    let outcomes = [
        Outcome::Pass,
        Outcome::Fail,
        Outcome::NotTested,
        Outcome::NotAccessible,
    ];

    let mut srv = srv;
    let mut n = 0;
    for phase in 0..2 {
        for _round in 0..12 {
            // Up to eight touches at once, on random sessions (a session may come twice).
            let k = rng.gen_range(1..=8);
            let batch: Vec<_> = (0..k)
                .map(|_| {
                    n += 1;
                    (
                        sessions[rng.gen_range(0..sessions.len())],
                        building.assets[rng.gen_range(0..building.assets.len())],
                        outcomes[rng.gen_range(0..outcomes.len())],
                        format!("touch {n}"),
                    )
                })
                .collect();
            let hub = srv.state.hub.clone();
            futures_util::future::join_all(
                batch
                    .into_iter()
                    .map(|(s, a, o, note)| touch(&hub, user, s, a, o, note)),
            )
            .await;
            match rng.gen_range(0..10) {
                // Unload everything (as the idle timeout does): releases, then reloads.
                0 => srv.state.hub.unload_all().await,
                // Let the debounce and the workers run.
                1..=3 => tokio::time::sleep(Duration::from_millis(rng.gen_range(0..150))).await,
                _ => {}
            }
        }
        if phase == 0 {
            // Restart with whatever is queued or waiting for its debounce now.
            let db = srv.stop().await;
            srv = TestServer::start_with(db, cfg.clone()).await;
        }
    }
    wait_projected(&srv, &sessions).await;
}

/// A shutdown does not wait for the projection queue: the workers stop, the sessions still
/// queued are marked stale in the store (also those whose queued projection no new change
/// stands behind: a reassessment), the server stops, and the next start projects them.
async fn shutdown_leaves_the_queue_to_the_next_start(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Stop").await;
    let building = fixtures::building(&srv, &org, 3).await;
    let mut sessions = Vec::new();
    for _ in 0..16 {
        let s = fixtures::session(&srv, &org.admin, &building, &[]).await;
        sessions.push(s["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    let (touched, rest) = sessions.split_at(10);
    let (reassessed, untouched) = rest.split_at(4);

    // Shutdown's first step, taken early so the queue stays as long as it gets: from here
    // the workers write nothing.
    srv.state.hub.stop_projections();
    let user = org.admin.id;
    for (i, s) in touched.iter().enumerate() {
        touch(
            &srv.state.hub,
            user,
            *s,
            building.assets[i % building.assets.len()],
            Outcome::Fail,
            format!("queued {i}"),
        )
        .await;
    }
    for s in reassessed {
        // Projected again without a change (as after a baseline changed): only the queue
        // knows this work exists.
        srv.state.hub.reassess(*s).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while srv.state.hub.projections_pending() < touched.len() + reassessed.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} queued",
            srv.state.hub.projections_pending()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = srv.db.url.clone();
    assert!(
        watermarks(&url, &sessions)
            .await
            .iter()
            .all(|w| w.is_some_and(|w| w >= 0)),
        "every session was projected at creation, none is marked pending yet"
    );

    let cfg = (*srv.state.config).clone();
    // A hang guard only; the time it takes is in docs/benchmarks.md.
    let db = tokio::time::timeout(Duration::from_secs(60), srv.stop())
        .await
        .expect("the server stops without draining the queue");

    // What was queued is marked pending in the store (the reassessments too, which no new
    // change row would have revealed); what was not queued is not.
    let marks = watermarks(&db.url, &sessions).await;
    for (s, w) in sessions.iter().zip(&marks) {
        let queued = touched.contains(s) || reassessed.contains(s);
        assert_eq!(
            *w == Some(-1),
            queued,
            "session {s} (queued at shutdown: {queued}): watermark {w:?}"
        );
    }
    assert!(!untouched.is_empty());
    let store = firemode_server::store::connect(&db.url)
        .await
        .expect("store");
    let listed = store.stale_projections(None, 100_000).await.expect("stale");
    for s in touched.iter().chain(reassessed) {
        assert!(
            listed.contains(s),
            "session {s} is listed for the next start"
        );
    }
    drop(store);

    // The next start projects them, and each projection is its document.
    let srv = TestServer::start_with(db, cfg).await;
    wait_projected(&srv, &sessions).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while watermarks(&srv.db.url, &sessions).await.contains(&Some(-1)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a reassessment queued at shutdown was not redone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{}/results", touched[0]),
            Some(&srv.login(&org.admin.email, &org.admin.password).await.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("queued 0"),
        "the touch queued at shutdown is in the results after the restart: {}",
        r.body
    );
}
