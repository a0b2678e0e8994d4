//! Notices that leave the building: which defect changes need the owner told, the webhook body,
//! the Standard Webhooks signature, retry timing and escalation. No I/O: the store writes the
//! outbox with what these functions decide, the delivery worker sends and schedules with them.
//!
//! AS 1851 asks that a critical defect be confirmed in writing to the responsible person within
//! 24 hours (and again each time it is found), other defects within a week. Here a deadline is
//! met only by a notice actually delivered; a status change does not count.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

use super::defects::{self, Severity};

/// Why a notice is sent (the webhook event type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum NoticeKind {
    /// A defect was recorded (by hand or from a session's results).
    #[serde(rename = "defect.opened")]
    Opened,
    /// A critical defect was found again by another visit: it is confirmed again.
    #[serde(rename = "defect.reconfirmed")]
    Reconfirmed,
    /// The severity became critical: the 24-hour notice.
    #[serde(rename = "defect.severity_raised")]
    SeverityRaised,
    /// A closed, cancelled, duplicate or withdrawn defect is open again: a new notice period.
    #[serde(rename = "defect.reopened")]
    Reopened,
    /// The notification deadline passed without a delivered notice.
    #[serde(rename = "defect.escalated")]
    Escalated,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 5] = [
        Self::Opened,
        Self::Reconfirmed,
        Self::SeverityRaised,
        Self::Reopened,
        Self::Escalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "defect.opened",
            Self::Reconfirmed => "defect.reconfirmed",
            Self::SeverityRaised => "defect.severity_raised",
            Self::Reopened => "defect.reopened",
            Self::Escalated => "defect.escalated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether delivering this notice tells the owner of the defect (meets its deadline). An
    /// escalation tells the organisation that the owner was not told.
    pub fn meets_deadline(self) -> bool {
        self != Self::Escalated
    }

    /// Whether this change starts a new notice period (earlier deliveries no longer count).
    pub fn restarts_period(self) -> bool {
        matches!(self, Self::SeverityRaised | Self::Reopened)
    }
}

/// The notice a defect found again needs: a critical one is confirmed again each time found.
pub fn on_found_again(severity: Severity) -> Option<NoticeKind> {
    (severity == Severity::Critical).then_some(NoticeKind::Reconfirmed)
}

/// The notice a change of severity needs: becoming critical starts the 24-hour notice.
pub fn on_severity_change(old: Severity, new: Severity) -> Option<NoticeKind> {
    (new == Severity::Critical && old != Severity::Critical).then_some(NoticeKind::SeverityRaised)
}

/// The notice a finding's update of a defect needs (`found_again`: by another visit): a raise
/// to critical first, else the reconfirmation of a critical defect found again.
pub fn on_finding_update(old: Severity, new: Severity, found_again: bool) -> Option<NoticeKind> {
    on_severity_change(old, new).or_else(|| found_again.then(|| on_found_again(new)).flatten())
}

/// Whether a defect must be escalated at `now`: active, past its deadline, never told by a
/// delivered notice, not escalated yet.
pub fn needs_escalation(
    status: &str,
    notify_by: DateTime<Utc>,
    notified_at: Option<DateTime<Utc>>,
    escalated_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    defects::is_active(status) && notified_at.is_none() && escalated_at.is_none() && notify_by < now
}

/// A defect is overdue when it is active, past its deadline and no notice was delivered.
pub fn is_overdue(
    status: &str,
    notify_by: DateTime<Utc>,
    notified_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    defects::is_active(status) && notified_at.is_none() && notify_by < now
}

/// What a notice says about its defect, as it was when the change committed.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub defect_id: Uuid,
    pub building_id: Uuid,
    pub building_name: String,
    pub building_address: String,
    pub asset_id: Option<Uuid>,
    pub asset_identifier: Option<String>,
    pub asset_type: Option<String>,
    pub asset_location: Option<String>,
    pub session_id: Option<Uuid>,
    pub severity: String,
    pub status: String,
    pub title: String,
    pub description: String,
    pub observed_condition: Option<String>,
    pub rule_code: Option<String>,
    pub discovered_at: DateTime<Utc>,
    pub notify_by: DateTime<Utc>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `data` object of a notice (stored in the outbox, sent inside the body).
pub fn data(kind: NoticeKind, notice_id: Uuid, f: &Facts) -> Value {
    json!({
        "notice_id": notice_id,
        "defect_id": f.defect_id,
        "building": {
            "id": f.building_id,
            "name": f.building_name,
            "address": f.building_address,
        },
        "asset": f.asset_id.map(|id| json!({
            "id": id,
            "identifier": f.asset_identifier,
            "asset_type": f.asset_type,
            "location": f.asset_location,
        })),
        "session_id": f.session_id,
        "severity": f.severity,
        "status": f.status,
        "title": f.title,
        "description": f.description,
        "observed_condition": f.observed_condition,
        "rule_code": f.rule_code,
        "discovered_at": ts(f.discovered_at),
        "notify_by": ts(f.notify_by),
        "action_required": action_required(kind, &f.severity),
        "links": {
            "defect": format!("/v1/defects/{}", f.defect_id),
            "notice": format!("/v1/notices/{notice_id}"),
            "pdf": format!("/v1/notices/{notice_id}/pdf"),
        },
    })
}

/// The heading of a printed notice.
pub fn heading(kind: NoticeKind, severity: &str) -> &'static str {
    match (kind, Severity::parse(severity)) {
        (NoticeKind::Escalated, _) => "Escalation: owner not told in time",
        (NoticeKind::Reconfirmed, Some(Severity::Critical)) => "Critical defect found again",
        (_, Some(Severity::Critical)) => "Critical defect notice",
        (_, Some(Severity::NonConformance)) => "Non-conformance notice",
        _ => "Defect notice",
    }
}

/// What the owner must do, in words.
pub fn action_required(kind: NoticeKind, severity: &str) -> &'static str {
    match (kind, Severity::parse(severity)) {
        (NoticeKind::Escalated, _) => {
            "The owner was not told of this defect by its notification deadline: contact the \
             building's responsible person now and record how they were told."
        }
        (_, Some(Severity::Critical)) => {
            "A critical defect makes the equipment unlikely to work when needed: arrange repair \
             at once and consider interim measures (fire watch, portable equipment) until it is \
             fixed."
        }
        _ => "Arrange repair of the defect; it is listed in the next routine service report.",
    }
}

/// Who a notice goes to by email: the building's contact for a notice that tells the owner
/// (only when the building has one), the organisation's admins for an escalation (the owner was
/// not told: the organisation must act). Addresses are trimmed, lower-cased for comparison and
/// given once; one that is not a plausible address is left out.
pub fn email_recipients(kind: NoticeKind, contact: Option<&str>, admins: &[String]) -> Vec<String> {
    let candidates: Vec<&str> = if kind == NoticeKind::Escalated {
        admins.iter().map(String::as_str).collect()
    } else {
        contact.into_iter().collect()
    };
    let mut out: Vec<String> = Vec::new();
    for c in candidates {
        let c = c.trim();
        if plausible_email(c) && !out.iter().any(|o| o.eq_ignore_ascii_case(c)) {
            out.push(c.to_owned());
        }
    }
    out
}

/// One `@`, something on each side, no spaces, angle brackets or control characters (what
/// would break an SMTP envelope); the mail server judges the rest.
pub fn plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && s.len() <= 254
        && !s
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';'))
}

/// What an email notice says, taken from the printed notice (the same facts and words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailText {
    pub subject: String,
    pub body: String,
}

/// The printed notice's facts an email needs (all already in words).
#[derive(Debug, Clone, Default)]
pub struct EmailFacts<'a> {
    pub heading: &'a str,
    pub organisation: &'a str,
    pub building_name: &'a str,
    pub building_address: &'a str,
    pub asset: &'a str,
    pub severity: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub condition: &'a str,
    pub found_at: &'a str,
    pub found_by: &'a str,
    pub notify_by: &'a str,
    pub action_required: &'a str,
    pub notice_id: &'a str,
}

/// The subject and plain-text body of an email notice, for a building owner (or, for an
/// escalation, the organisation's admins). Control characters are taken out of the subject
/// (a line break there would start a new header).
pub fn email_text(kind: NoticeKind, f: &EmailFacts<'_>) -> EmailText {
    let subject: String = format!("{}: {} - {}", f.heading, f.building_name, f.title)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let opening = match kind {
        NoticeKind::Escalated => format!(
            "The owner of {} was not told of this defect by its notification deadline. \
             You are receiving this as an administrator of {}.",
            f.building_name, f.organisation
        ),
        NoticeKind::Reconfirmed => format!(
            "{} found this critical defect again at {}. It is still not fixed.",
            f.organisation, f.building_name
        ),
        _ => format!(
            "{} found a defect in the fire safety equipment at {}.",
            f.organisation, f.building_name
        ),
    };
    let body = format!(
        "{heading}\n\n{opening}\n\n\
         What was found: {title}\n\
         {description}\
         Condition: {condition}\n\
         Where: {building}, {address}\n\
         Equipment: {asset}\n\
         Severity: {severity}\n\
         Found: {found_at}, by {found_by}\n\
         You must be told by: {notify_by}\n\n\
         What you must do: {action}\n\n\
         The printable notice is attached (PDF). Notice reference: {id}.\n",
        heading = f.heading,
        title = f.title,
        description = if f.description.trim().is_empty() || f.description == f.title {
            String::new()
        } else {
            format!("{}\n", f.description.trim())
        },
        condition = f.condition,
        building = f.building_name,
        address = f.building_address,
        asset = f.asset,
        severity = f.severity,
        found_at = f.found_at,
        found_by = f.found_by,
        notify_by = f.notify_by,
        action = f.action_required,
        id = f.notice_id,
    );
    EmailText { subject, body }
}

/// The body of a webhook request (Standard Webhooks: `type`, `timestamp`, `data`).
pub fn body(kind: NoticeKind, created_at: DateTime<Utc>, data: &Value) -> String {
    json!({ "type": kind.as_str(), "timestamp": ts(created_at), "data": data }).to_string()
}

/// `whsec_` and the base64 of the key bytes.
pub fn format_secret(key: &[u8]) -> String {
    format!("whsec_{}", B64.encode(key))
}

/// The key bytes of a `whsec_` secret.
pub fn parse_secret(secret: &str) -> Option<Vec<u8>> {
    let key = B64.decode(secret.strip_prefix("whsec_")?).ok()?;
    (key.len() >= 24 && key.len() <= 64).then_some(key)
}

/// One `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` signature.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated (during a rotation's
/// grace period both the new and the previous secret sign).
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    keys.iter()
        .map(|k| sign(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1,` signature of the header is the one `key` makes (constant-time compare).
pub fn verify(header: &str, key: &[u8], id: &str, timestamp: i64, body: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    header.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b| B64.decode(b).ok())
            .is_some_and(|raw| mac.clone().verify_slice(&raw).is_ok())
    })
}

/// How long to wait before attempt `attempt + 1` after `attempt` failures: `base`, doubling
/// each time, at most an hour.
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(Duration::from_secs(3600))
}

/// The stored form of an endpoint's event-type filter: `,a,b,` (empty: every type).
pub fn encode_event_types(kinds: &[NoticeKind]) -> String {
    if kinds.is_empty() {
        return String::new();
    }
    let mut names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    format!(",{},", names.join(","))
}

pub fn decode_event_types(stored: &str) -> Vec<NoticeKind> {
    stored.split(',').filter_map(NoticeKind::parse).collect()
}

/// Whether an endpoint with this stored filter receives `kind`.
pub fn endpoint_wants(stored: &str, kind: NoticeKind) -> bool {
    stored.is_empty() || stored.contains(&format!(",{},", kind.as_str()))
}

/// Why a webhook URL is refused, if it is.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2000 {
        return Err("url must be at most 2000 characters".into());
    }
    if url.chars().any(char::is_control) || url.contains(' ') {
        return Err("url must not contain spaces or control characters".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("url must start with https:// (or http://)")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err("url must name a host (and no user name or password)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn which_changes_need_a_notice() {
        assert_eq!(
            on_found_again(Severity::Critical),
            Some(NoticeKind::Reconfirmed)
        );
        assert_eq!(on_found_again(Severity::NonCritical), None);
        assert_eq!(
            on_severity_change(Severity::NonCritical, Severity::Critical),
            Some(NoticeKind::SeverityRaised)
        );
        assert_eq!(
            on_severity_change(Severity::Critical, Severity::Critical),
            None
        );
        assert_eq!(
            on_severity_change(Severity::Critical, Severity::NonCritical),
            None
        );
        assert_eq!(
            on_finding_update(Severity::NonCritical, Severity::Critical, true),
            Some(NoticeKind::SeverityRaised)
        );
        assert_eq!(
            on_finding_update(Severity::Critical, Severity::Critical, true),
            Some(NoticeKind::Reconfirmed)
        );
        assert_eq!(
            on_finding_update(Severity::Critical, Severity::Critical, false),
            None
        );
        assert_eq!(
            on_finding_update(Severity::NonCritical, Severity::NonCritical, true),
            None
        );
        assert!(!NoticeKind::Escalated.meets_deadline());
        assert!(NoticeKind::Reconfirmed.meets_deadline());
    }

    /// The example of the Standard Webhooks specification's reference tests: a known secret,
    /// id, timestamp and body give a known signature.
    #[test]
    fn signature_matches_the_published_algorithm() {
        let key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &sig,
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body
        ));
        assert!(!verify(&sig, &key, "msg_other", 1614265330, body));
        assert!(!verify(
            &sig,
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            body
        ));
    }

    #[test]
    fn both_secrets_sign_during_a_rotation() {
        let (old, new) = (vec![1u8; 32], vec![2u8; 32]);
        let h = signature_header(&[new.clone(), old.clone()], "id", 5, "{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(verify(&h, &old, "id", 5, "{}"));
        assert!(verify(&h, &new, "id", 5, "{}"));
        assert!(!verify(&h, &[3u8; 32], "id", 5, "{}"));
        let s = format_secret(&new);
        assert_eq!(parse_secret(&s), Some(new));
        assert_eq!(parse_secret("whsec_c2hvcnQ="), None);
        assert_eq!(parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(30);
        assert_eq!(retry_delay(base, 1), Duration::from_secs(30));
        assert_eq!(retry_delay(base, 2), Duration::from_secs(60));
        assert_eq!(retry_delay(base, 4), Duration::from_secs(240));
        assert_eq!(retry_delay(base, 40), Duration::from_secs(3600));
    }

    #[test]
    fn event_type_filter() {
        let stored = encode_event_types(&[NoticeKind::Escalated, NoticeKind::Opened]);
        assert_eq!(stored, ",defect.escalated,defect.opened,");
        assert!(endpoint_wants(&stored, NoticeKind::Opened));
        assert!(!endpoint_wants(&stored, NoticeKind::Reconfirmed));
        assert!(endpoint_wants("", NoticeKind::Reconfirmed));
        assert_eq!(
            decode_event_types(&stored),
            vec![NoticeKind::Escalated, NoticeKind::Opened]
        );
    }

    #[test]
    fn urls() {
        assert!(check_url("https://hooks.example.com/fm").is_ok());
        assert!(check_url("http://127.0.0.1:9000/x").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https://user:pw@x.test/",
            "https://x.test/\0",
            "x.test",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escalation_and_overdue() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let later = t + chrono::Duration::hours(25);
        assert!(needs_escalation("open", t, None, None, later));
        assert!(!needs_escalation("open", t, Some(t), None, later));
        assert!(!needs_escalation("open", t, None, Some(later), later));
        assert!(!needs_escalation("closed", t, None, None, later));
        assert!(!needs_escalation("open", later, None, None, t));
        assert!(is_overdue("repaired", t, None, later));
        assert!(!is_overdue("repaired", t, Some(later), later));
    }

    #[test]
    fn email_goes_to_the_contact_or_for_an_escalation_to_the_admins() {
        let admins = vec![
            "a@org.test".to_owned(),
            "A@org.test".to_owned(),
            "bad".to_owned(),
        ];
        assert_eq!(
            email_recipients(NoticeKind::Opened, Some(" owner@b.test "), &admins),
            vec!["owner@b.test"]
        );
        assert!(email_recipients(NoticeKind::Opened, None, &admins).is_empty());
        assert!(email_recipients(NoticeKind::Opened, Some("no at sign"), &admins).is_empty());
        assert_eq!(
            email_recipients(NoticeKind::Escalated, Some("owner@b.test"), &admins),
            vec!["a@org.test"]
        );
        for bad in [
            "",
            "@x",
            "x@",
            "a@b@c",
            "a b@c",
            "<a@b>",
            "a@b\r\nRCPT TO:<x@y>",
        ] {
            assert!(!plausible_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn email_text_says_what_where_how_bad_by_when_and_what_to_do() {
        let f = EmailFacts {
            heading: heading(NoticeKind::Opened, "critical"),
            organisation: "Acme Fire",
            building_name: "Collins Tower",
            building_address: "1 Collins St",
            asset: "EXT-003 (Portable fire extinguisher, Level 2)",
            severity: "critical",
            title: "EXT-003: discharged\r\nBcc: x@y",
            description: "Found empty.",
            condition: "extinguisher discharged or empty",
            found_at: "6 December 2026, 09:58 UTC",
            found_by: "Jo Smith, licence 123",
            notify_by: "7 December 2026, 09:58 UTC",
            action_required: action_required(NoticeKind::Opened, "critical"),
            notice_id: "n-1",
        };
        let t = email_text(NoticeKind::Opened, &f);
        assert!(!t.subject.chars().any(char::is_control), "{:?}", t.subject);
        assert!(t
            .subject
            .starts_with("Critical defect notice: Collins Tower"));
        for part in [
            "Collins Tower, 1 Collins St",
            "Severity: critical",
            "EXT-003 (Portable",
            "7 December 2026, 09:58 UTC",
            "arrange repair",
            "Jo Smith, licence 123",
            "n-1",
        ] {
            assert!(t.body.contains(part), "{part}: {}", t.body);
        }
        let e = email_text(NoticeKind::Escalated, &f);
        assert!(e.body.contains("was not told"), "{}", e.body);
    }

    proptest! {
        /// Every signature the header carries verifies with its own key, whatever the body.
        #[test]
        fn signatures_verify_with_their_key(body in ".{0,200}", id in "[a-z0-9_]{1,40}", t in 0i64..4_000_000_000,
                                            k1 in proptest::collection::vec(any::<u8>(), 24..64),
                                            k2 in proptest::collection::vec(any::<u8>(), 24..64)) {
            let h = signature_header(&[k1.clone(), k2.clone()], &id, t, &body);
            prop_assert!(verify(&h, &k1, &id, t, &body));
            prop_assert!(verify(&h, &k2, &id, t, &body));
            let tampered = format!("{body}x");
            prop_assert!(!verify(&h, &k1, &id, t, &tampered));
        }

        /// The delay never shrinks as failures grow and never exceeds an hour.
        #[test]
        fn backoff_is_monotonic(base_ms in 1u64..100_000, n in 1u32..64) {
            let base = Duration::from_millis(base_ms);
            prop_assert!(retry_delay(base, n) <= retry_delay(base, n + 1));
            prop_assert!(retry_delay(base, n + 1) <= Duration::from_secs(3600));
        }
    }
}
