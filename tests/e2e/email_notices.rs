//! Email notices over SMTP, against a real SMTP server started here (`firemode_tests::smtp`,
//! a socket on 127.0.0.1): the building's contact gets the notice in words with the printable
//! PDF attached; a mail server answering 451 is retried with backoff until it takes the mail,
//! every attempt logged with the server's reply; the delivered email meets the deadline and a
//! redelivery sends it again with the same Message-ID; a building without a contact gets no
//! email, and its escalation goes to the organisation's admins; the SMTP password reaches neither the logs nor an answer; without SMTP configured
//! email is not a channel. Over STARTTLS and smtps the relay's certificate is verified: trusted
//! through `smtp_ca_file`, refused (nothing sent) without it.

use std::time::{Duration, Instant};

use chrono::Utc;
use firemode_server::config::Secret;
use firemode_tests::fixtures::{building, Building};
use firemode_tests::smtp::{parse, Mail, SinkTls, SmtpSink, TestCa};
use firemode_tests::{backend_tests, logs, test_config, Backend, Org, TestDb, TestServer};
use serde_json::{json, Value};

backend_tests!(
    email_goes_to_the_contact_with_the_pdf_retried_after_451,
    without_smtp_email_is_not_a_channel,
    email_over_tls_trusts_the_relay_only_through_its_authority,
);

const PASSWORD: &str = "Sm7p-pass-word-never-shown";

async fn get(srv: &TestServer, token: &str, path: &str) -> Value {
    let r = srv.client.get(path, Some(token)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(!r.body.contains(PASSWORD), "{path} shows the SMTP password");
    r.json
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn set_contact(srv: &TestServer, org: &Org, bld: &Building, email: &str) {
    let r = srv
        .client
        .patch(
            &format!("/v1/buildings/{}", bld.id),
            Some(&org.admin.token),
            &json!({ "contact": { "name": "Pat Owner", "phone": null, "email": email } }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn defect(srv: &TestServer, org: &Org, bld: &Building, days_ago: i64) -> String {
    let r = srv
        .client
        .post(
            "/v1/defects",
            Some(&org.admin.token),
            &json!({ "building_id": bld.id, "asset_id": bld.assets[0], "severity": "critical",
                     "title": "Extinguisher discharged", "description": "found empty on its bracket",
                     "discovered_at": (Utc::now() - chrono::Duration::days(days_ago)).to_rfc3339() }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.str("id").to_owned()
}

/// The deliveries of a defect's notices, by channel.
async fn deliveries(srv: &TestServer, org: &Org, defect: &str, channel: &str) -> Vec<Value> {
    let d = get(srv, &org.admin.token, &format!("/v1/defects/{defect}")).await;
    d["notices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["deliveries"].as_array().unwrap().clone())
        .filter(|d| d["channel"] == channel)
        .collect()
}

fn to(m: &Mail, who: &str) -> bool {
    m.to.iter().any(|t| t == who)
}

async fn email_goes_to_the_contact_with_the_pdf_retried_after_451(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // The first two messages are refused with 451.
    let sink = SmtpSink::start(2).await;
    let mut cfg = test_config(&db);
    cfg.notice_poll = Duration::from_millis(50);
    cfg.notice_retry_base = Duration::from_millis(300);
    cfg.notice_max_attempts = 5;
    cfg.smtp_url = Some(Secret::new(format!(
        "smtp://notices:{PASSWORD}@127.0.0.1:{}",
        sink.port
    )));
    cfg.smtp_from = Some("FireMode Notices <notices@firemode.test>".into());
    cfg.smtp_timeout = Duration::from_secs(5);
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let t = org.admin.token.clone();
    let owned = building(&srv, &org, 1).await;
    let bare = building(&srv, &org, 1).await;
    set_contact(&srv, &org, &owned, "owner@tower.test").await;

    let started = Instant::now();
    let told = defect(&srv, &org, &owned, 0).await;
    wait_for("the owner's email", || {
        sink.received().iter().any(|m| to(m, "owner@tower.test"))
    })
    .await;
    let took = started.elapsed();
    assert_eq!(sink.refused().len(), 2, "two 451s before it was taken");
    assert!(sink.refused().iter().all(|m| to(m, "owner@tower.test")));
    // Backoff: 300 ms after the first failure, 600 ms after the second.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    let mails = sink.received();
    let mail = mails
        .iter()
        .find(|m| to(m, "owner@tower.test"))
        .unwrap()
        .clone();
    assert_eq!(mail.from, "notices@firemode.test");
    assert_eq!(mail.to, ["owner@tower.test"]);
    // The configured user and password were used to log in.
    assert_eq!(
        mail.auth.as_deref(),
        Some(format!("notices\0{PASSWORD}").as_str())
    );

    let msg = parse(&mail.data);
    let subject = msg.header("subject").unwrap();
    assert!(
        subject.starts_with("Critical defect notice: Test Tower"),
        "{subject}"
    );
    assert!(subject.contains("Extinguisher discharged"), "{subject}");
    assert!(msg
        .header("from")
        .unwrap()
        .contains("notices@firemode.test"));
    let leaves = msg.leaves();
    let text = leaves
        .iter()
        .find(|p| {
            p.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain"))
        })
        .expect("a plain-text part")
        .text();
    let d = get(&srv, &t, &format!("/v1/defects/{told}")).await;
    let notice_id = d["notices"][0]["id"].as_str().unwrap().to_owned();
    for part in [
        "Acme found a defect in the fire safety equipment at Test Tower",
        "What was found: Extinguisher discharged",
        "found empty on its bracket",
        "Where: Test Tower, 1 Test St, Melbourne VIC",
        "EXT-0000",
        "Severity: critical",
        "You must be told by:",
        "What you must do: A critical defect makes the equipment unlikely to work",
        "The printable notice is attached",
        notice_id.as_str(),
    ] {
        assert!(text.contains(part), "{part:?} not in the email:\n{text}");
    }
    let pdf = leaves
        .iter()
        .find(|p| p.header("content-type") == Some("application/pdf"))
        .expect("a PDF attachment");
    assert!(pdf.body.starts_with(b"%PDF"), "the attachment is a PDF");
    assert!(pdf
        .header("content-disposition")
        .unwrap()
        .contains(&format!("notice-{notice_id}.pdf")));
    let doc = lopdf::Document::load_mem(&pdf.body).expect("lopdf reads the attachment");
    let pdf_text = doc.extract_text(&[1]).unwrap();
    assert!(pdf_text.contains("Critical defect notice"), "{pdf_text}");

    // The log: two failed attempts with the 451 reply, then the delivery with the server's
    // reply; the delivered email met the deadline.
    let email = deliveries(&srv, &org, &told, "email").await;
    assert_eq!(email.len(), 1, "{email:?}");
    assert_eq!(email[0]["recipient"], "owner@tower.test");
    assert_eq!(email[0]["status"], "delivered");
    assert_eq!(email[0]["attempts"], 3);
    let n = get(&srv, &t, &format!("/v1/notices/{notice_id}")).await;
    let attempts: Vec<&Value> = n["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["channel"] == "email")
        .collect();
    assert_eq!(attempts.len(), 3, "{n}");
    for a in &attempts[..2] {
        assert_eq!(a["outcome"], "failed");
        assert_eq!(a["recipient"], "owner@tower.test");
        let e = a["error"].as_str().unwrap();
        assert!(e.contains("451") || e.contains("try again"), "{e}");
    }
    assert_eq!(attempts[2]["outcome"], "delivered");
    let reply = attempts[2]["reply"].as_str().unwrap();
    assert!(
        reply.starts_with("250") && reply.contains("queued as"),
        "{reply}"
    );
    let d = get(&srv, &t, &format!("/v1/defects/{told}")).await;
    assert!(d["notified_at"].is_string(), "{d}");
    assert_eq!(d["overdue"], false);

    // Found two days ago and critical: the deadline has passed, and nobody can be told (no
    // contact email, no endpoint), so it is escalated to the organisation's admins.
    // (After the owner's mail, so the sink's two 451s went to that one.)
    let untold = defect(&srv, &org, &bare, 2).await;
    // (The worker may have escalated it already: only the admins' email may be there.)
    let early = deliveries(&srv, &org, &untold, "email").await;
    assert!(
        early
            .iter()
            .all(|d| d["recipient"] == org.admin.email.as_str()),
        "no contact email: no email delivery of the opened notice: {early:?}"
    );

    // Redelivery sends the email again, with the same Message-ID.
    let red = srv
        .client
        .post(
            &format!("/v1/notices/{notice_id}/redeliver"),
            Some(&t),
            &json!({}),
        )
        .await;
    assert_eq!(red.status, 202, "{}", red.body);
    assert_eq!(red.json["queued"], 1, "{}", red.body);
    let owner_mails = || -> Vec<Mail> {
        sink.received()
            .into_iter()
            .filter(|m| to(m, "owner@tower.test"))
            .collect()
    };
    wait_for("the redelivered email", || owner_mails().len() == 2).await;
    let ids: Vec<String> = owner_mails()
        .iter()
        .map(|m| parse(&m.data).header("message-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids[0], ids[1]);

    // The untold defect's escalation went to the organisation's admin, not to anyone else.
    wait_for("the escalation email", || {
        sink.received().iter().any(|m| to(m, &org.admin.email))
    })
    .await;
    let esc = sink
        .received()
        .into_iter()
        .find(|m| to(m, &org.admin.email))
        .unwrap();
    let esc = parse(&esc.data);
    assert!(
        esc.header("subject")
            .unwrap()
            .starts_with("Escalation: owner not told in time"),
        "{:?}",
        esc.header("subject")
    );
    let untold_email = deliveries(&srv, &org, &untold, "email").await;
    assert_eq!(untold_email.len(), 1, "{untold_email:?}");
    assert_eq!(untold_email[0]["recipient"], org.admin.email.as_str());
    let u = get(&srv, &t, &format!("/v1/defects/{untold}")).await;
    assert!(
        u["notified_at"].is_null(),
        "an escalation does not tell the owner"
    );
    assert_eq!(u["overdue"], true);
    assert!(
        sink.received()
            .iter()
            .all(|m| to(m, "owner@tower.test") || to(m, &org.admin.email)),
        "nobody else was mailed"
    );

    // The password was used but never logged or shown.
    assert!(
        !logs::captured().contains(PASSWORD),
        "the SMTP password is in the logs"
    );
    assert!(!format!("{:?}", srv.state.config).contains(PASSWORD));
    srv.stop().await;
}

async fn without_smtp_email_is_not_a_channel(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let cfg = test_config(&db);
    assert!(cfg.smtp_url.is_none());
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let bld = building(&srv, &org, 1).await;
    set_contact(&srv, &org, &bld, "owner@tower.test").await;
    let id = defect(&srv, &org, &bld, 0).await;
    let d = get(&srv, &org.admin.token, &format!("/v1/defects/{id}")).await;
    assert_eq!(d["notices"].as_array().unwrap().len(), 1, "{d}");
    assert!(deliveries(&srv, &org, &id, "email").await.is_empty(), "{d}");
    srv.stop().await;
}

/// A server whose notices go through `url` (with `ca` trusted, if given), one attempt each.
async fn tls_server(b: Backend, url: String, ca: Option<&TestCa>) -> Option<TestServer> {
    let db = TestDb::new(b).await?;
    let mut cfg = test_config(&db);
    cfg.notice_poll = Duration::from_millis(50);
    cfg.notice_max_attempts = 1;
    cfg.smtp_url = Some(Secret::new(url));
    cfg.smtp_from = Some("FireMode Notices <notices@firemode.test>".into());
    cfg.smtp_timeout = Duration::from_secs(5);
    cfg.smtp_ca_file = ca.map(|ca| ca.ca_pem.clone());
    Some(TestServer::start_with(db, cfg).await)
}

/// A critical defect in a building whose contact is `email`: the organisation, and the email
/// delivery once settled.
async fn settled_email(srv: &TestServer, email: &str) -> (Org, Value) {
    let org = srv.org("Acme").await;
    let bld = building(srv, &org, 1).await;
    set_contact(srv, &org, &bld, email).await;
    let id = defect(srv, &org, &bld, 0).await;
    let start = Instant::now();
    loop {
        let email = deliveries(srv, &org, &id, "email").await;
        if email.len() == 1 && email[0]["status"] != "pending" {
            return (org, email[0].clone());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the email delivery did not settle: {email:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Relays with a private certificate authority, over STARTTLS (`?tls=required`) and over TLS
/// from the first byte (`smtps://`): with `smtp_ca_file` naming the authority the notice goes
/// out encrypted and logs in only inside TLS; without it the certificate is refused, nothing is
/// sent, and the failure is in the delivery log without the password.
async fn email_over_tls_trusts_the_relay_only_through_its_authority(b: Backend) {
    let ca = TestCa::new();
    let starttls = SmtpSink::start_with(0, SinkTls::StartTls(ca.acceptor())).await;
    let implicit = SmtpSink::start_with(0, SinkTls::Implicit(ca.acceptor())).await;
    let required = format!(
        "smtp://notices:{PASSWORD}@127.0.0.1:{}?tls=required",
        starttls.port
    );
    let wrapped = format!("smtps://notices:{PASSWORD}@127.0.0.1:{}", implicit.port);

    for (url, sink, who) in [
        (&required, &starttls, "starttls@tower.test"),
        (&wrapped, &implicit, "smtps@tower.test"),
    ] {
        let Some(srv) = tls_server(b, url.clone(), Some(&ca)).await else {
            return;
        };
        let (_, delivery) = settled_email(&srv, who).await;
        assert_eq!(delivery["status"], "delivered", "{url}: {delivery}");
        let mails = sink.received();
        let mail = mails.iter().find(|m| to(m, who)).expect("the sink got it");
        assert!(mail.tls, "{who}: the message came over TLS");
        assert_eq!(
            mail.auth.as_deref(),
            Some(format!("notices\0{PASSWORD}").as_str()),
            "logged in (inside TLS: the sink refuses AUTH before it)"
        );
        assert!(parse(&mail.data)
            .header("subject")
            .unwrap()
            .starts_with("Critical defect notice"));
        srv.stop().await;
    }

    // The same relays without the authority: the system's roots do not know it.
    for (url, sink, who) in [
        (&required, &starttls, "untrusted-starttls@tower.test"),
        (&wrapped, &implicit, "untrusted-smtps@tower.test"),
    ] {
        let Some(srv) = tls_server(b, url.clone(), None).await else {
            return;
        };
        let (org, delivery) = settled_email(&srv, who).await;
        assert_eq!(delivery["status"], "failed", "{url}: {delivery}");
        assert!(
            !sink.received().iter().any(|m| to(m, who)),
            "nothing was sent to an unverified relay"
        );
        let notices = get(&srv, &org.admin.token, "/v1/notices").await;
        let notice = notices["items"][0]["id"]
            .as_str()
            .expect("a notice")
            .to_owned();
        let n = get(&srv, &org.admin.token, &format!("/v1/notices/{notice}")).await;
        let attempt = n["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["channel"] == "email")
            .expect("an email attempt")
            .clone();
        assert_eq!(attempt["outcome"], "failed", "{attempt}");
        let error = attempt["error"].as_str().unwrap().to_ascii_lowercase();
        assert!(error.contains("certificate"), "{error}");
        srv.stop().await;
    }
    assert!(
        starttls
            .received()
            .iter()
            .chain(implicit.received().iter())
            .all(|m| m.tls),
        "no message went out in plain text"
    );
}
