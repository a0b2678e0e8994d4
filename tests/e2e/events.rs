//! `GET /v1/events`: live Server-Sent Events for the console. A result recorded over REST
//! reaches an admin's stream as a `session` event and the defect it opens as a `defect`
//! event; a defect moved along is an event; another organisation's stream and an unassigned
//! inspector's get nothing of it; revoking the user's tokens ends the stream; a user holds at
//! most eight streams.

use std::time::Duration;

use firemode_tests::{backend_tests, Backend, Client, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(events_follow_results_and_defects_for_those_who_may_see_them);

/// An open event stream, read in the background into a channel of (event, data).
struct Stream {
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    async fn open(srv: &TestServer, token: &str, query: &str) -> reqwest::Response {
        srv.client
            .raw()
            .get(format!("{}/v1/events{query}", srv.client.base()))
            .bearer_auth(token)
            .send()
            .await
            .expect("events")
    }

    async fn new(srv: &TestServer, token: &str, query: &str) -> Stream {
        let mut res = Self::open(srv, token, query).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = String::new();
            while let Ok(Some(chunk)) = res.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut event = String::from("message");
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(e) = line.strip_prefix("event:") {
                            event = e.trim().to_owned();
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.trim());
                        }
                    }
                    if data.is_empty() {
                        continue; // keep-alive comment
                    }
                    let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    if tx.send((event, value)).is_err() {
                        return;
                    }
                }
            }
        });
        Stream { rx, task }
    }

    /// The next event matching `pred` within `within`.
    async fn expect(&mut self, within: Duration, pred: impl Fn(&str, &Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((e, v))) if pred(&e, &v) => return v,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended"),
                Err(_) => panic!("no matching event within {within:?}"),
            }
        }
    }

    /// Everything received so far.
    fn drain(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            out.push(e);
        }
        out
    }

    /// Whether the server ended the stream within `within`.
    async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn events_follow_results_and_defects_for_those_who_may_see_them(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let other = srv.org("Other").await;
    let inspector = srv.user(&org, "inspector").await;
    let admin = org.admin.token.as_str();
    let building = firemode_tests::fixtures::building(&srv, &org, 2).await;
    let s = firemode_tests::fixtures::session(&srv, &org.admin, &building, &[]).await;
    let session: Uuid = s["id"].as_str().unwrap().parse().unwrap();

    let mut mine = Stream::new(&srv, admin, "").await;
    let mut narrowed = Stream::new(&srv, admin, &format!("?session_id={session}")).await;
    let mut elsewhere = Stream::new(&srv, &other.admin.token, "").await;
    let mut unassigned = Stream::new(&srv, &inspector.token, "").await;

    // A failed extinguisher over REST: the session's projection and the defect it opens.
    let r = Client::send(
        srv.client
            .request(
                Method::POST,
                &format!("/v1/tests/sessions/{session}/results"),
                Some(admin),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(
                &json!({ "results": [{ "asset_id": building.assets[0], "outcome": "fail",
                                          "observed_conditions": ["extinguisher_missing"] }] }),
            ),
    )
    .await;
    assert!(
        r.status == 200 || r.status == 201,
        "{} {}",
        r.status,
        r.body
    );
    let wait = Duration::from_secs(10);
    let ev = mine
        .expect(wait, |e, v| {
            e == "session" && v["session_id"] == json!(session)
        })
        .await;
    assert_eq!(ev["building_id"], json!(building.id));
    assert_eq!(ev["status"], "in_progress");
    assert!(!ev["heads"].as_array().unwrap().is_empty(), "{ev}");
    let defect = mine
        .expect(wait, |e, v| {
            e == "defect" && v["session_id"] == json!(session)
        })
        .await;
    assert_eq!(defect["status"], "open");
    narrowed
        .expect(wait, |e, v| {
            e == "session" && v["session_id"] == json!(session)
        })
        .await;

    // Moving the defect along is an event too.
    let id = defect["defect_id"].as_str().unwrap().to_owned();
    let r = srv
        .client
        .patch(
            &format!("/v1/defects/{id}"),
            Some(admin),
            &json!({ "status": "acknowledged" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    mine.expect(wait, |e, v| {
        e == "defect" && v["defect_id"] == json!(id) && v["status"] == "acknowledged"
    })
    .await;

    // Another organisation and an inspector not assigned to the session saw none of it (two
    // more polls' worth of time to be sure nothing was on its way).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let leaked = elsewhere.drain();
    assert!(leaked.is_empty(), "another organisation got {leaked:?}");
    let leaked: Vec<_> = unassigned
        .drain()
        .into_iter()
        .filter(|(_, v)| v["session_id"] == json!(session))
        .collect();
    assert!(leaked.is_empty(), "an unassigned inspector got {leaked:?}");

    // At most eight streams per user.
    let mut open = Vec::new();
    for _ in 0..6 {
        open.push(Stream::new(&srv, admin, "").await);
    }
    let ninth = Stream::open(&srv, admin, "").await;
    assert_eq!(ninth.status(), 429);
    drop(open);

    // Revoking the admin's tokens ends the streams.
    let r = srv
        .client
        .post(
            &format!("/v1/users/{}/revoke-tokens", org.admin.id),
            Some(admin),
            &json!({}),
        )
        .await;
    assert!(
        r.status == 200 || r.status == 204,
        "{} {}",
        r.status,
        r.body
    );
    assert!(
        mine.ends_within(Duration::from_secs(10)).await,
        "the stream outlived the revocation"
    );
}
