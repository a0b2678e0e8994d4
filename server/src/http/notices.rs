//! `/v1/webhook-endpoints` and `/v1/notices`: where notices of defects go (webhook endpoints
//! per organisation, Standard Webhooks signatures, secret rotation with a grace period), what
//! was sent to whom and how it went, and sending a notice again. The outbox is written by the
//! defect store; the worker is `crate::notices`; the rules are `crate::domain::notices`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{PageQuery, Paginated};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::crypto::PiiCipher;
use crate::domain::notices::{self as rules, NoticeKind};
use crate::state::AppState;
use crate::store::notices::{
    AttemptRecord, DeliveryRecord, EndpointPatch, EndpointRecord, NoticeRecord,
};
use crate::store::{Role, Store, StoreError, StoreResult};

/// How long the previous secret keeps signing after a rotation, unless the request says.
const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
const MAX_GRACE_SECS: u64 = 7 * 24 * 3600;
/// Endpoints per organisation.
const MAX_ENDPOINTS: usize = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(endpoint_deliveries))
        .routes(routes!(list_notices))
        .routes(routes!(get_notice))
        .routes(routes!(notice_pdf))
        .routes(routes!(redeliver))
}

/// A webhook endpoint (its secret is shown once, when created or rotated).
#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    /// The event types it receives; empty: every type.
    pub event_types: Vec<NoticeKind>,
    pub enabled: bool,
    /// After a rotation, the previous secret also signs until then.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<EndpointRecord> for EndpointView {
    fn from(e: EndpointRecord) -> Self {
        Self {
            previous_secret_valid_until: e.previous_secret_until.filter(|t| *t > Utc::now()),
            id: e.id,
            url: e.url,
            description: e.description,
            event_types: rules::decode_event_types(&e.event_types),
            enabled: e.enabled,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct EndpointWithSecret {
    pub endpoint: EndpointView,
    /// `whsec_` and the base64 of the key: verify `webhook-signature` with it. It is not shown
    /// again.
    pub secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where notices are POSTed (https; http is accepted for private networks).
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// The event types it receives; empty or absent: every type.
    #[serde(default)]
    pub event_types: Vec<NoticeKind>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    pub url: Option<String>,
    pub description: Option<String>,
    /// Replaces the filter; empty: every type.
    pub event_types: Option<Vec<NoticeKind>>,
    /// A disabled endpoint gets nothing (its pending deliveries fail when their turn comes).
    pub enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing alongside the new one (default 86400, at
    /// most 604800; 0 ends it at once).
    pub grace_secs: Option<u64>,
}

fn check_url(url: &str) -> ApiResult<()> {
    rules::check_url(url).map_err(|e| ApiError::unprocessable("invalid_field", format!("url: {e}")))
}

fn check_description(d: &str) -> ApiResult<()> {
    if d.chars().count() > 500 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "description must be at most 500 characters",
        ));
    }
    Ok(())
}

fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    rules::format_secret(&key)
}

/// Add a webhook endpoint (admin). The answer carries its secret, shown this once.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "notices", security(("bearer" = [])),
    request_body = CreateEndpoint,
    responses((status = 201, body = EndpointWithSecret), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointWithSecret>)> {
    user.require_admin()?;
    let url = req.url.trim();
    check_url(url)?;
    check_description(&req.description)?;
    if state.store.list_endpoints(user.org_id).await?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::unprocessable(
            "too_many_endpoints",
            format!("an organisation has at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let secret = new_secret();
    let now = Utc::now();
    let e = EndpointRecord {
        id: Uuid::now_v7(),
        org_id: user.org_id,
        url: url.to_owned(),
        description: req.description.trim().to_owned(),
        event_types: rules::encode_event_types(&req.event_types),
        enabled: true,
        secret_enc: state.pii.encrypt(&secret),
        previous_secret_enc: None,
        previous_secret_until: None,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    state.store.insert_endpoint(&e).await?;
    state
        .audit(
            &user,
            "webhook_endpoint.create",
            Some(Target::new("webhook_endpoint", e.id)),
            json!({ "url": e.url, "event_types": e.event_types }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret {
            endpoint: e.into(),
            secret,
        }),
    ))
}

/// The organisation's webhook endpoints (admin, office, auditor), without secrets.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "notices", security(("bearer" = [])),
    responses((status = 200, body = Vec<EndpointView>), (status = 403, body = Problem)))]
async fn list_endpoints(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<EndpointView>>> {
    user.require(&[Role::Admin, Role::Office, Role::Auditor])?;
    let rows = state.store.list_endpoints(user.org_id).await?;
    Ok(Json(rows.into_iter().map(EndpointView::from).collect()))
}

/// One webhook endpoint (admin, office, auditor), without its secret.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "notices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EndpointView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<EndpointView>> {
    user.require(&[Role::Admin, Role::Office, Role::Auditor])?;
    Ok(Json(
        state.store.get_endpoint(user.org_id, id).await?.into(),
    ))
}

/// Change an endpoint's URL, description, event types, or enable/disable it (admin).
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "notices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateEndpoint,
    responses((status = 200, body = EndpointView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateEndpoint>,
) -> ApiResult<Json<EndpointView>> {
    user.require_admin()?;
    state.store.get_endpoint(user.org_id, id).await?;
    let url = req.url.as_deref().map(str::trim);
    if let Some(u) = url {
        check_url(u)?;
    }
    if let Some(d) = &req.description {
        check_description(d)?;
    }
    if req.url.is_none()
        && req.description.is_none()
        && req.event_types.is_none()
        && req.enabled.is_none()
    {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "give url, description, event_types or enabled",
        ));
    }
    let patch = EndpointPatch {
        url: url.map(str::to_owned),
        description: req.description.as_deref().map(|d| d.trim().to_owned()),
        event_types: req.event_types.as_deref().map(rules::encode_event_types),
        enabled: req.enabled,
    };
    let e = state
        .store
        .update_endpoint(user.org_id, id, &patch, Utc::now())
        .await?;
    state
        .audit(
            &user,
            "webhook_endpoint.update",
            Some(Target::new("webhook_endpoint", id)),
            json!({ "url": patch.url, "event_types": patch.event_types, "enabled": patch.enabled }),
        )
        .await?;
    Ok(Json(e.into()))
}

/// Delete an endpoint (admin): it gets nothing more; its delivery log is kept.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "notices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    state
        .store
        .delete_endpoint(user.org_id, id, Utc::now())
        .await?;
    state
        .audit(
            &user,
            "webhook_endpoint.delete",
            Some(Target::new("webhook_endpoint", id)),
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret (admin), shown this once; the previous one keeps signing alongside it
/// (two `v1,` signatures) for the grace period.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "notices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RotateSecret,
    responses((status = 200, body = EndpointWithSecret), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn rotate_secret(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<RotateSecret>,
) -> ApiResult<Json<EndpointWithSecret>> {
    user.require_admin()?;
    let grace = req.grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
    if grace > MAX_GRACE_SECS {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("grace_secs must be at most {MAX_GRACE_SECS}"),
        ));
    }
    state.store.get_endpoint(user.org_id, id).await?;
    let secret = new_secret();
    let now = Utc::now();
    let until = now + chrono::Duration::seconds(i64::try_from(grace).unwrap_or(0));
    let e = state
        .store
        .rotate_endpoint_secret(user.org_id, id, &state.pii.encrypt(&secret), until, now)
        .await?;
    state
        .audit(
            &user,
            "webhook_endpoint.rotate_secret",
            Some(Target::new("webhook_endpoint", id)),
            json!({ "previous_secret_valid_until": until }),
        )
        .await?;
    Ok(Json(EndpointWithSecret {
        endpoint: e.into(),
        secret,
    }))
}

/// One attempt to deliver a notice.
#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    pub id: Uuid,
    pub notice_id: Uuid,
    pub endpoint_id: Option<Uuid>,
    /// webhook or email.
    pub channel: String,
    /// The endpoint's URL at the time, or the email address.
    pub recipient: String,
    pub at: DateTime<Utc>,
    /// delivered or failed.
    pub outcome: String,
    /// The receiver's HTTP status, if it answered (webhooks).
    pub http_status: Option<i32>,
    /// Why it failed (the answer's first 200 characters, the mail server's reply, a timeout, a
    /// refused connection).
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The mail server's reply to a delivered email (e.g. `250 2.0.0 queued as …`).
    pub reply: Option<String>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        Self {
            id: a.id,
            notice_id: a.notice_id,
            endpoint_id: a.endpoint_id,
            channel: a.channel,
            recipient: a.recipient,
            at: a.at,
            outcome: a.outcome,
            http_status: a.http_status,
            error: a.error,
            duration_ms: a.duration_ms,
            reply: a.reply,
        }
    }
}

/// The delivery log of an endpoint, newest first (admin, office, auditor).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "notices", security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Paginated<AttemptView>), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn endpoint_deliveries(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Paginated<AttemptView>>> {
    user.require(&[Role::Admin, Role::Office, Role::Auditor])?;
    let page = q.page()?;
    state.store.get_endpoint(user.org_id, id).await?;
    let rows = state.store.endpoint_attempts(user.org_id, id, page).await?;
    Ok(Json(Paginated::from_rows(
        rows,
        page,
        |a| a.id,
        AttemptView::from,
    )))
}

/// A notice's delivery to one recipient.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// webhook.
    pub channel: String,
    pub endpoint_id: Option<Uuid>,
    /// The endpoint's URL.
    pub recipient: String,
    /// pending (will be tried at `next_attempt_at`), delivered, or failed (gave up).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        Self {
            next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
            id: d.id,
            channel: d.channel,
            endpoint_id: d.endpoint_id,
            recipient: d.recipient,
            status: d.status,
            attempts: d.attempts,
            delivered_at: d.delivered_at,
            last_error: d.last_error,
        }
    }
}

/// A notice about a defect: what was said, to whom, how it went.
#[derive(Serialize, ToSchema)]
pub struct NoticeView {
    /// Also the `webhook-id` of every request that carries it.
    pub id: Uuid,
    pub defect_id: Uuid,
    /// The event type.
    pub kind: NoticeKind,
    pub created_at: DateTime<Utc>,
    /// The webhook body's `data`, as it was when the change committed.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub deliveries: Vec<DeliveryView>,
    /// Every attempt (only on `GET /v1/notices/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
}

fn visible_to(user: &AuthUser) -> Option<Uuid> {
    crate::domain::access::defect_visibility(&user.caller())
}

async fn views(state: &AppState, rows: Vec<NoticeRecord>) -> ApiResult<Vec<NoticeView>> {
    let ids: Vec<Uuid> = rows.iter().map(|n| n.id).collect();
    let mut deliveries = state.store.notice_deliveries(&ids).await?;
    Ok(rows
        .into_iter()
        .map(|n| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                deliveries.drain(..).partition(|d| d.notice_id == n.id);
            deliveries = rest;
            NoticeView {
                id: n.id,
                defect_id: n.defect_id,
                kind: NoticeKind::parse(&n.kind).unwrap_or(NoticeKind::Opened),
                created_at: n.created_at,
                data: n.payload.0,
                deliveries: mine.into_iter().map(DeliveryView::from).collect(),
                attempts: None,
            }
        })
        .collect())
}

/// The notices of a defect the caller may see (for `GET /v1/defects/{id}`).
pub(crate) async fn notices_of_defect(
    state: &AppState,
    user: &AuthUser,
    defect: Uuid,
) -> ApiResult<Vec<NoticeView>> {
    let rows = state
        .store
        .list_notices(
            user.org_id,
            Some(defect),
            visible_to(user),
            crate::store::Page {
                after: None,
                limit: 1000,
            },
        )
        .await?;
    views(state, rows).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NoticeQuery {
    /// Only the notices of this defect.
    pub defect_id: Option<Uuid>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Notices of the organisation, oldest first, with their deliveries (inspectors: of the defects
/// they can see).
#[utoipa::path(get, path = "/v1/notices", tag = "notices", security(("bearer" = [])), params(NoticeQuery),
    responses((status = 200, body = Paginated<NoticeView>), (status = 400, body = Problem)))]
async fn list_notices(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<NoticeQuery>,
) -> ApiResult<Json<Paginated<NoticeView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let rows = state
        .store
        .list_notices(user.org_id, q.defect_id, visible_to(&user), page)
        .await?;
    let limit = usize::try_from(page.limit - 1).unwrap_or(0);
    let next_cursor = (rows.len() > limit)
        .then(|| limit.checked_sub(1).and_then(|i| rows.get(i)))
        .flatten()
        .map(|n| n.id.to_string());
    let mut items = views(&state, rows).await?;
    items.truncate(limit);
    Ok(Json(Paginated { items, next_cursor }))
}

/// One notice with its deliveries and every attempt.
#[utoipa::path(get, path = "/v1/notices/{id}", tag = "notices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = NoticeView), (status = 404, body = Problem)))]
async fn get_notice(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<NoticeView>> {
    let n = state
        .store
        .get_notice(user.org_id, id, visible_to(&user))
        .await?;
    let mut view = views(&state, vec![n]).await?.remove(0);
    view.attempts = Some(
        state
            .store
            .notice_attempts(id)
            .await?
            .into_iter()
            .map(AttemptView::from)
            .collect(),
    );
    Ok(Json(view))
}

/// What a redelivery queued.
#[derive(Serialize, ToSchema)]
pub struct Redelivered {
    /// Deliveries queued (one per enabled endpoint that wants the notice).
    pub queued: u64,
    pub notice: NoticeView,
}

/// Send a notice again (admin, office): every enabled endpoint that wants it gets it anew, with
/// the same `webhook-id`.
#[utoipa::path(post, path = "/v1/notices/{id}/redeliver", tag = "notices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = Redelivered), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn redeliver(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, Json<Redelivered>)> {
    user.require(&[Role::Admin, Role::Office])?;
    let n = state.store.get_notice(user.org_id, id, None).await?;
    let queued = match state
        .store
        .redeliver_notice(user.org_id, id, Utc::now())
        .await
    {
        Err(StoreError::NotFound) => return Err(ApiError::NotFound),
        other => other?,
    };
    state
        .audit(
            &user,
            "notice.redeliver",
            Some(Target::new("notice", id)),
            json!({ "defect_id": n.defect_id, "queued": queued }),
        )
        .await?;
    let notice = views(&state, vec![n]).await?.remove(0);
    Ok((StatusCode::ACCEPTED, Json(Redelivered { queued, notice })))
}

/// A user as a printed notice names them: full name (else email) and licence number.
async fn person(store: &dyn Store, pii: &PiiCipher, org: Uuid, id: Uuid) -> Option<String> {
    let u = store.get_user(id).await.ok().filter(|u| u.org_id == org)?;
    let name = pii
        .decrypt_opt(u.full_name_enc.as_deref())
        .unwrap_or(u.email);
    Some(match u.licence_number {
        Some(l) => format!("{name}, licence {l}"),
        None => format!("{name} (no licence number recorded)"),
    })
}

/// Who found or recorded the defect: the person who recorded it by hand, else the session that
/// found it with who signed it off or who is assigned to it.
async fn found_by(
    store: &dyn Store,
    pii: &PiiCipher,
    org: Uuid,
    defect: Uuid,
) -> StoreResult<String> {
    let d = store.get_defect(org, defect, None).await?;
    if let Some(u) = d.created_by {
        if let Some(p) = person(store, pii, org, u).await {
            return Ok(p);
        }
    }
    let Some(sid) = d.session_id else {
        return Ok("not recorded".into());
    };
    let s = store.get_session(org, sid).await?;
    let mut people = Vec::new();
    if let Some(by) = s.row.signed_off_by {
        people.extend(person(store, pii, org, by).await);
    } else {
        for u in s.assigned_to.iter().take(3) {
            people.extend(person(store, pii, org, *u).await);
        }
    }
    let who = if people.is_empty() {
        String::new()
    } else {
        format!(" by {}", people.join("; "))
    };
    Ok(format!("session \"{}\"{who}", s.row.name))
}

fn when(v: &serde_json::Value) -> String {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%-d %B %Y, %H:%M UTC")
                .to_string()
        })
        .unwrap_or_default()
}

/// What the printed notice (and the email notice) says: the notice's facts as they were when
/// it was written, in words, with the organisation and who found the defect.
pub(crate) async fn notice_sheet(
    store: &dyn Store,
    pii: &PiiCipher,
    org: Uuid,
    n: &NoticeRecord,
) -> StoreResult<crate::compliance::pdf::NoticeSheet> {
    let kind = NoticeKind::parse(&n.kind).unwrap_or(NoticeKind::Opened);
    let d = &n.payload.0;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let severity = s(&d["severity"]);
    let asset = &d["asset"];
    let asset = if asset.is_null() {
        "the building (no single asset)".to_owned()
    } else {
        let label = crate::domain::defects::AssetLabel {
            identifier: asset["identifier"].as_str().map(str::to_owned),
            kind: asset["asset_type"]
                .as_str()
                .and_then(|t| crate::rules::library().equipment_kind(t))
                .map(|k| k.name.clone())
                .unwrap_or_else(|| s(&asset["asset_type"])),
            location: s(&asset["location"]),
        };
        label.describe()
    };
    Ok(crate::compliance::pdf::NoticeSheet {
        heading: rules::heading(kind, &severity).to_owned(),
        notice_id: n.id.to_string(),
        organisation: store.get_org(org).await?.name,
        building_name: s(&d["building"]["name"]),
        building_address: s(&d["building"]["address"]),
        asset,
        severity: severity.replace('_', "-"),
        title: s(&d["title"]),
        description: s(&d["description"]),
        condition: crate::domain::defects::condition_words(d["observed_condition"].as_str()),
        found_at: when(&d["discovered_at"]),
        found_by: found_by(store, pii, org, n.defect_id).await?,
        notify_by: when(&d["notify_by"]),
        action_required: rules::action_required(kind, &severity).to_owned(),
        issued_at: n.created_at,
    })
}

/// The notice as a printable one-page PDF (the same access as `GET /v1/notices/{id}`): the
/// building, asset, defect, severity, when and by whom it was found, the deadline and what the
/// owner must do.
#[utoipa::path(get, path = "/v1/notices/{id}/pdf", tag = "notices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "the notice, `application/pdf`", content((Vec<u8> = "application/pdf"))),
              (status = 404, body = Problem)))]
async fn notice_pdf(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let n = state
        .store
        .get_notice(user.org_id, id, visible_to(&user))
        .await?;
    let sheet = notice_sheet(state.store.as_ref(), &state.pii, user.org_id, &n).await?;
    let body = crate::compliance::pdf::render_notice(&sheet);
    let disposition = HeaderValue::from_str(&format!("inline; filename=\"notice-{id}.pdf\""))
        .unwrap_or_else(|_| HeaderValue::from_static("inline"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
