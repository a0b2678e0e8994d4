//! The `samod` crate (crates.io; automerge-repo compatible) as a Rust client: it finds a
//! server-created session by its URL, edits it, a second samod client sees the edit (and the
//! other way round), the server holds and attributes it, and a user who may not read the
//! session finds nothing.
//!
//! samod's built-in websocket dialer (feature `tungstenite`) cannot set request headers and
//! pulls in native-tls; a [`samod::Dialer`] of our own over the workspace's tokio-tungstenite
//! authenticates with `Authorization: Bearer` instead. Client B uses `?token=` in the URL, the
//! browser way, so both ways of authenticating are exercised.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
use firemode_tests::clients::{
    building_with_assets, create_session, server_document, SIX_MONTHLY_KINDS,
};
use firemode_tests::{backend_tests, Backend, TestServer, User};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use samod::{BackoffConfig, DialError, DocHandle, DocumentId, PeerId, Repo, Transport, Url};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

backend_tests!(samod_finds_edits_and_sees_edits);

/// Dials `GET /v1/sync`, authenticating with a bearer header when `header_token` is set.
struct FireModeDialer {
    url: Url,
    header_token: Option<String>,
}

impl samod::Dialer for FireModeDialer {
    type Error = Infallible;

    fn url(&self) -> Url {
        self.url.clone()
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<Infallible>>> {
        let url = self.url.clone();
        let token = self.header_token.clone();
        Box::pin(async move {
            let mut req = url
                .as_str()
                .into_client_request()
                .map_err(DialError::transient)?;
            if let Some(t) = token {
                let value = format!("Bearer {t}").parse().expect("header value");
                req.headers_mut().insert("authorization", value);
            }
            let (ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .map_err(DialError::transient)?;
            let (sink, stream) = ws.split();
            let stream = stream
                .try_filter_map(|m| async move {
                    Ok(match m {
                        Message::Binary(b) => Some(b.to_vec()),
                        _ => None,
                    })
                })
                .boxed();
            let sink = Box::pin(sink.with(|b: Vec<u8>| async move {
                Ok::<_, tungstenite::Error>(Message::Binary(b.into()))
            }));
            Ok(Transport::new(stream, sink))
        })
    }
}

/// A samod repo connected to the server as `<user id>:<device>`.
async fn samod_client(srv: &TestServer, user: &User, device: &str, via_header: bool) -> Repo {
    let repo = Repo::build_tokio()
        .with_peer_id(PeerId::from(format!("{}:{device}", user.id)))
        .load()
        .await;
    let ws = srv.base.replacen("http", "ws", 1);
    let (url, header_token) = if via_header {
        (format!("{ws}/v1/sync"), Some(user.token.clone()))
    } else {
        (format!("{ws}/v1/sync?token={}", user.token), None)
    };
    let dialer = FireModeDialer {
        url: Url::parse(&url).expect("url"),
        header_token,
    };
    let backoff = BackoffConfig {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        max_retries: Some(20),
    };
    let handle = repo.dial(backoff, Arc::new(dialer)).expect("dial");
    tokio::time::timeout(Duration::from_secs(10), handle.established())
        .await
        .expect("handshake in time")
        .unwrap_or_else(|e| panic!("samod could not connect: {e:?}"));
    repo
}

fn item_str(doc: &Automerge, asset: &str, key: &str) -> Option<String> {
    let (_, items) = doc.get(ROOT, "items").ok()??;
    let (_, item) = doc.get(&items, asset).ok()??;
    match doc.get(&item, key).ok()?? {
        (firemode_sync_core::automerge::Value::Scalar(s), _) => s.as_str().map(str::to_owned),
        (firemode_sync_core::automerge::Value::Object(_), id) => doc.text(&id).ok(),
    }
}

fn set_outcome(handle: &DocHandle, asset: &str, outcome: &str, condition: Option<&str>) {
    handle.with_document(|doc| {
        doc.transact::<_, _, firemode_sync_core::automerge::AutomergeError>(|tx| {
            let (_, items) = tx.get(ROOT, "items")?.expect("items");
            let (_, item) = tx.get(&items, asset)?.expect("item");
            tx.put(&item, "outcome", outcome)?;
            if let Some(c) = condition {
                tx.put(&item, "observedCondition", c)?;
            }
            Ok(())
        })
        .expect("edit");
    });
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn samod_finds_edits_and_sees_edits(backend: Backend) {
    let Some(srv) = TestServer::start(backend).await else {
        return;
    };
    let org = srv.org("Samod Fire").await;
    let office = srv.user(&org, "office").await;
    let inspector1 = srv.user(&org, "inspector").await;
    let inspector2 = srv.user(&org, "inspector").await;
    let unassigned = srv.user(&org, "inspector").await;
    let (building, assets) = building_with_assets(&srv, &office, &SIX_MONTHLY_KINDS).await;
    let session = create_session(
        &srv,
        &office,
        building,
        "Samod round",
        &[inspector1.id, inspector2.id],
    )
    .await;
    let session_id = session["id"].as_str().unwrap().to_owned();
    let url: samod::AutomergeUrl = session["document_url"]
        .as_str()
        .unwrap()
        .parse()
        .expect("document_url");
    let doc_id: DocumentId = url.document_id().clone();
    let (a0, a1) = (assets[0].to_string(), assets[1].to_string());

    let a = samod_client(&srv, &inspector1, "samod-a", true).await;
    let b = samod_client(&srv, &inspector2, "samod-b", false).await;

    let ha = tokio::time::timeout(Duration::from_secs(10), a.find(doc_id.clone()))
        .await
        .expect("find in time")
        .expect("repo running")
        .expect("the session is found by its URL");
    ha.with_document(|doc| {
        let json = firemode_sync_core::to_json(doc, None);
        assert_eq!(json["sessionId"], session_id.as_str());
        assert_eq!(
            json["items"].as_object().expect("items").len(),
            assets.len(),
            "{json}"
        );
        assert_eq!(item_str(doc, &a0, "outcome").as_deref(), Some("not_tested"));
    });
    set_outcome(&ha, &a0, "fail", Some("extinguisher_missing"));

    let hb = b
        .find(doc_id.clone())
        .await
        .expect("repo running")
        .expect("B finds it");
    wait_for("B sees A's edit", || {
        hb.with_document(|d| item_str(d, &a0, "outcome")).as_deref() == Some("fail")
    })
    .await;
    assert_eq!(
        hb.with_document(|d| item_str(d, &a0, "observedCondition"))
            .as_deref(),
        Some("extinguisher_missing")
    );
    set_outcome(&hb, &a1, "pass", None);
    wait_for("A sees B's edit", || {
        ha.with_document(|d| item_str(d, &a1, "outcome")).as_deref() == Some("pass")
    })
    .await;

    // The server holds both edits, attributed to the samod devices, and projects them.
    let mut server = serde_json::Value::Null;
    wait_for_async(&srv, &office, &session_id, &a0, &a1, &mut server).await;
    let a_json = ha.with_document(|d| firemode_sync_core::to_json(d, None));
    assert_eq!(server["document"], a_json, "the server's copy is A's");
    let sid = session_id.parse().unwrap();
    let rows = srv.store().change_attributions(sid).await.unwrap();
    for (user, device) in [(inspector1.id, "samod-a"), (inspector2.id, "samod-b")] {
        assert!(
            rows.iter()
                .any(|r| r.user_id == Some(user) && r.device_id.as_deref() == Some(device)),
            "a change of {device} is stored with attribution"
        );
    }
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session_id}/results"),
            Some(&office.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let row = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["asset_id"] == a0.as_str())
        .cloned();
    assert_eq!(
        row.as_ref().map(|r| r["outcome"].clone()),
        Some("fail".into()),
        "{}",
        r.body
    );

    // An inspector the session is not assigned to gets nothing.
    let x = samod_client(&srv, &unassigned, "samod-x", true).await;
    let found = tokio::time::timeout(Duration::from_secs(10), x.find(doc_id))
        .await
        .expect("an answer in time")
        .expect("repo running");
    assert!(
        found.is_none(),
        "an unassigned inspector must not get the document"
    );

    for repo in [a, b, x] {
        repo.stop().await;
    }
    srv.stop().await;
}

/// Poll the server's copy until it has both edits.
async fn wait_for_async(
    srv: &TestServer,
    office: &User,
    session: &str,
    a0: &str,
    a1: &str,
    out: &mut serde_json::Value,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let doc = server_document(&srv.base, &office.token, session).await;
        let items = &doc["document"]["items"];
        if items[a0]["outcome"] == "fail" && items[a1]["outcome"] == "pass" {
            *out = doc;
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never got the edits: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
