//! The notice delivery worker: a background task on every node that escalates defects past
//! their deadline without a delivered notice, claims due deliveries from the outbox (a lease;
//! on PostgreSQL rows another node is claiming are skipped), sends them as signed webhooks
//! (Standard Webhooks), and records each attempt. What to send, how to sign and when to retry
//! are `crate::domain::notices`.
//!
//! With SMTP configured (`smtp_url`, `smtp_from`) notices also go by email: to the building's
//! contact, or for an escalation to the organisation's admins, with the printable notice
//! attached; the same deliveries, attempts, backoff and deadline rule as a webhook.
//!
//! The guarantee is at-least-once: a node that dies after the receiver answered but before the
//! attempt was recorded leaves the lease to run out, and another node sends again with the same
//! `webhook-id`, which receivers use to drop duplicates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Secret;
use crate::crypto::PiiCipher;
use crate::domain::notices::{self as rules, NoticeKind};
use crate::store::notices::{AttemptRecord, ClaimedDelivery, Finish};
use crate::store::Store;

/// The most of a receiver's answer that is read (the rest is dropped with the connection).
pub const MAX_RESPONSE_BYTES: usize = 4096;
/// Deliveries claimed per round.
const BATCH: i64 = 32;

/// The worker's settings (from `Config`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How often the worker looks for due deliveries and overdue defects.
    pub poll: Duration,
    /// The first retry's delay; each later one doubles (at most an hour).
    pub retry_base: Duration,
    /// Attempts per delivery before it is marked failed.
    pub max_attempts: u32,
    /// A webhook request's whole time (connect, send, answer).
    pub timeout: Duration,
    /// Email by SMTP, if configured.
    pub smtp: Option<SmtpConfig>,
}

/// Where and as whom email notices are sent.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtp://host:port`, `smtps://user:pass@host`, `smtp://…?tls=required` (the password is
    /// secret: never logged).
    pub url: Secret<String>,
    /// The From address (`FireMode <notices@example.com>`).
    pub from: String,
    /// One SMTP conversation's time limit (each command's answer).
    pub timeout: Duration,
    /// Certificate authorities (PEM) trusted for the mail server beside the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

/// What an email notice is sent with.
#[derive(Clone)]
struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpConfig {
    /// The transport and From mailbox, or why they cannot be made (without the URL: it may
    /// carry a password).
    fn mailer(&self) -> Result<Mailer, String> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| format!("smtp_from is not an email address: {e}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(self.url.expose())
            .map_err(|_| {
                "smtp_url cannot be used: it must be smtp://host[:port] or smtps://[user:pass@]host[:port] \
                 (optionally ?tls=required or ?tls=opportunistic)"
                    .to_owned()
            })?
            .timeout(Some(self.timeout));
        if let Some(path) = &self.ca_file {
            builder = builder.tls(self.tls_with_ca(path)?);
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// The URL's TLS mode with the authorities of `path` trusted beside the system's (errors
    /// never quote the URL: it may carry a password).
    fn tls_with_ca(&self, path: &std::path::Path) -> Result<Tls, String> {
        let url = reqwest::Url::parse(self.url.expose())
            .map_err(|_| "smtp_url cannot be used: it is not a URL".to_owned())?;
        let mode = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let wrap: fn(TlsParameters) -> Tls = match (url.scheme(), mode.as_deref()) {
            ("smtps", _) => Tls::Wrapper,
            ("smtp", Some("required")) => Tls::Required,
            ("smtp", Some("opportunistic")) => Tls::Opportunistic,
            _ => {
                return Err(
                    "smtp_ca_file is set but smtp_url speaks no TLS: use smtps://… or \
                            smtp://…?tls=required"
                        .to_owned(),
                )
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| "smtp_url cannot be used: it has no host".to_owned())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| format!("smtp_ca_file {shown}: {e}"))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(format!("smtp_ca_file {shown} holds no PEM certificate"));
        }
        let cert = Certificate::from_pem(&pem)
            .map_err(|_| format!("smtp_ca_file {shown}: a certificate cannot be read"))?;
        let params = TlsParameters::builder(host)
            .add_root_certificate(cert)
            .build_rustls()
            .map_err(|e| format!("smtp_ca_file {shown}: {e}"))?;
        Ok(wrap(params))
    }

    /// The most one email may take, the whole conversation (each answer has `timeout`).
    fn whole(&self) -> Duration {
        self.timeout.saturating_mul(6)
    }

    /// Check the settings without sending (at start-up).
    pub fn check(&self) -> Result<(), String> {
        self.mailer().map(|_| ())
    }
}

impl WorkerConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            poll: c.notice_poll,
            retry_base: c.notice_retry_base,
            max_attempts: c.notice_max_attempts,
            timeout: c.webhook_timeout,
            smtp: c.smtp_url.clone().map(|url| SmtpConfig {
                url,
                from: c.smtp_from.clone().unwrap_or_default(),
                timeout: c.smtp_timeout,
                ca_file: c.smtp_ca_file.clone(),
            }),
        }
    }
}

/// Start the worker; it stops when `shutdown` is cancelled (a send in flight finishes or
/// times out first, and its attempt is recorded).
pub fn spawn(
    store: Arc<dyn Store>,
    pii: Arc<PiiCipher>,
    cfg: WorkerConfig,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("FireMode-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; notices are not delivered");
            return;
        }
    };
    let mailer = match cfg.smtp.as_ref().map(SmtpConfig::mailer) {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            tracing::error!(error = %e, "email notices are off");
            None
        }
        None => None,
    };
    // Before the first request: notices written from now on get email deliveries.
    store.set_email_channel(mailer.is_some());
    let worker = Worker {
        id: Uuid::new_v4(),
        store,
        pii,
        cfg,
        client,
        mailer,
    };
    tasks.spawn(async move {
        loop {
            worker.round().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(worker.cfg.poll) => {}
            }
        }
    });
}

struct Worker {
    id: Uuid,
    store: Arc<dyn Store>,
    pii: Arc<PiiCipher>,
    cfg: WorkerConfig,
    client: reqwest::Client,
    mailer: Option<Mailer>,
}

impl Worker {
    async fn round(&self) {
        let now = Utc::now();
        match self.store.escalate_overdue(now, 100).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(defects = ?ids, "notification deadline passed without a delivered notice: escalated");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "escalating overdue defects failed; will retry"),
        }
        let smtp_whole = self.cfg.smtp.as_ref().map(SmtpConfig::whole);
        let lease = self.cfg.timeout.max(smtp_whole.unwrap_or_default()) + Duration::from_secs(30);
        let claimed = match self
            .store
            .claim_deliveries(
                self.id,
                now,
                now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5)),
                BATCH,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming notice deliveries failed; will retry");
                return;
            }
        };
        let mut sends = tokio::task::JoinSet::new();
        for d in claimed {
            let finish = self.attempt(d);
            sends.spawn(finish);
        }
        while let Some(done) = sends.join_next().await {
            let Ok(finish) = done else { continue };
            match self.store.finish_delivery(self.id, &finish).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(delivery = %finish.attempt.delivery_id, "delivery changed hands meanwhile; attempt not recorded")
                }
                Err(e) => {
                    tracing::warn!(error = %e, delivery = %finish.attempt.delivery_id, "recording a delivery attempt failed; the lease runs out and it is sent again")
                }
            }
        }
    }

    /// Send one delivery; the future owns what it needs so several run at once.
    fn attempt(&self, d: ClaimedDelivery) -> impl std::future::Future<Output = Finish> + Send {
        let client = self.client.clone();
        let email = d.channel == "email";
        let keys = if email { Ok(Vec::new()) } else { self.keys(&d) };
        let cfg = self.cfg.clone();
        let mailer = self.mailer.clone();
        let (store, pii) = (self.store.clone(), self.pii.clone());
        async move {
            let started = Instant::now();
            let at = Utc::now();
            let sent = if email {
                let whole = cfg.smtp.as_ref().map(SmtpConfig::whole).unwrap_or_default();
                match &mailer {
                    // Bounded as a whole, so the lease (longer) never runs out mid-send.
                    Some(m) => tokio::time::timeout(whole, send_email(m, store.as_ref(), &pii, &d))
                        .await
                        .unwrap_or_else(|_| Err("the mail server took too long: timed out".into()))
                        .map(|reply| (None, Some(reply)))
                        .map_err(|e| (None, e)),
                    None => Err((None, "email is not configured on this node".to_owned())),
                }
            } else {
                match keys {
                    Ok(keys) => send(&client, &d, &keys)
                        .await
                        .map(|status| (Some(status), None)),
                    Err(e) => Err((None, e)),
                }
            };
            let (outcome, http_status, error, reply) = match sent {
                Ok((status, reply)) => ("delivered", status, None, reply),
                Err((status, e)) => ("failed", status, Some(e), None),
            };
            let attempts = u32::try_from(d.attempts).unwrap_or(0) + 1;
            let (status, next) = if outcome == "delivered" {
                ("delivered", at)
            } else if attempts >= cfg.max_attempts {
                ("failed", at)
            } else {
                let delay = rules::retry_delay(cfg.retry_base, attempts);
                (
                    "pending",
                    at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1)),
                )
            };
            if let Some(e) = &error {
                if email {
                    tracing::info!(notice = %d.notice_id, delivery = %d.id, attempts, error = %e, "email attempt failed");
                } else {
                    tracing::info!(notice = %d.notice_id, endpoint = ?d.endpoint_id, attempts, error = %e, "webhook attempt failed");
                }
            }
            Finish {
                status,
                next_attempt_at: next,
                attempt: AttemptRecord {
                    id: Uuid::now_v7(),
                    delivery_id: d.id,
                    notice_id: d.notice_id,
                    endpoint_id: d.endpoint_id,
                    channel: d.channel.clone(),
                    // The URL used for this attempt (an endpoint's URL may have changed).
                    recipient: d.url.clone().unwrap_or_else(|| d.recipient.clone()),
                    at,
                    outcome: outcome.to_owned(),
                    http_status: http_status.map(i32::from),
                    error,
                    duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
                    reply,
                },
            }
        }
    }

    /// The signing keys: the current secret, and the previous one during its grace period.
    fn keys(&self, d: &ClaimedDelivery) -> Result<Vec<Vec<u8>>, String> {
        if d.endpoint_enabled != Some(true) {
            return Err("endpoint disabled or deleted".into());
        }
        let open = |enc: &[u8]| {
            self.pii
                .decrypt(enc)
                .ok()
                .and_then(|s| rules::parse_secret(&s))
                .ok_or_else(|| "the endpoint's secret cannot be read (PII key missing?)".to_owned())
        };
        let mut keys = vec![open(d.secret_enc.as_deref().unwrap_or_default())?];
        if let (Some(prev), Some(until)) = (&d.previous_secret_enc, d.previous_secret_until) {
            if until > Utc::now() {
                keys.push(open(prev)?);
            }
        }
        Ok(keys)
    }
}

/// POST the notice; the HTTP status on a 2xx answer, else the status (if any) and why.
async fn send(
    client: &reqwest::Client,
    d: &ClaimedDelivery,
    keys: &[Vec<u8>],
) -> Result<u16, (Option<u16>, String)> {
    let Some(url) = d.url.as_deref() else {
        return Err((None, "no endpoint".into()));
    };
    let kind = NoticeKind::parse(&d.kind).ok_or((None, format!("unknown kind {}", d.kind)))?;
    let body = rules::body(kind, d.notice_created_at, &d.payload.0);
    // The same id on every attempt and redelivery: receivers drop duplicates by it.
    let id = d.notice_id.to_string();
    let timestamp = Utc::now().timestamp();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            rules::signature_header(keys, &id, timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| (None, describe(&e)))?;
    let status = resp.status();
    let answer = read_bounded(resp).await;
    if status.is_success() {
        Ok(status.as_u16())
    } else if status.is_redirection() {
        Err((
            Some(status.as_u16()),
            "redirects are not followed: point the endpoint at the final URL".into(),
        ))
    } else {
        Err((
            Some(status.as_u16()),
            format!("answered {status}: {}", answer.trim()),
        ))
    }
}

/// Send an email notice: the subject and plain-text body in words, the printable notice
/// attached. The mail server's reply on success, else why it failed.
async fn send_email(
    m: &Mailer,
    store: &dyn Store,
    pii: &PiiCipher,
    d: &ClaimedDelivery,
) -> Result<String, String> {
    let n = store
        .get_notice(d.org_id, d.notice_id, None)
        .await
        .map_err(|e| format!("reading the notice: {e}"))?;
    let sheet = crate::http::notices::notice_sheet(store, pii, d.org_id, &n)
        .await
        .map_err(|e| format!("reading the notice's facts: {e}"))?;
    let kind = NoticeKind::parse(&n.kind).ok_or(format!("unknown kind {}", n.kind))?;
    let text = rules::email_text(
        kind,
        &rules::EmailFacts {
            heading: &sheet.heading,
            organisation: &sheet.organisation,
            building_name: &sheet.building_name,
            building_address: &sheet.building_address,
            asset: &sheet.asset,
            severity: &sheet.severity,
            title: &sheet.title,
            description: &sheet.description,
            condition: &sheet.condition,
            found_at: &sheet.found_at,
            found_by: &sheet.found_by,
            notify_by: &sheet.notify_by,
            action_required: &sheet.action_required,
            notice_id: &sheet.notice_id,
        },
    );
    let pdf = crate::compliance::pdf::render_notice(&sheet);
    let to: Mailbox = d
        .recipient
        .parse()
        .map_err(|e| format!("the address cannot be used: {e}"))?;
    let message = Message::builder()
        .from(m.from.clone())
        .to(to)
        .subject(text.subject)
        // The same id on every attempt: a mailbox that got it twice can tell.
        .message_id(Some(format!("<{}@{}>", d.id, m.from.email.domain())))
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(text.body))
                .singlepart(Attachment::new(format!("notice-{}.pdf", n.id)).body(
                    pdf,
                    ContentType::parse("application/pdf").map_err(|e| e.to_string())?,
                )),
        )
        .map_err(|e| format!("building the email: {e}"))?;
    match m.transport.send(message).await {
        Ok(r) => Ok(one_line(&format!(
            "{} {}",
            r.code(),
            r.message().collect::<Vec<_>>().join(" ")
        ))),
        Err(e) => Err(one_line(&e.to_string())),
    }
}

/// Control characters out, at most 200 characters.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// At most `MAX_RESPONSE_BYTES` of the answer (lossy UTF-8, 200 characters kept).
async fn read_bounded(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_RESPONSE_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c[..c.len().min(MAX_RESPONSE_BYTES - buf.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// A transport error without the URL (it may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}
