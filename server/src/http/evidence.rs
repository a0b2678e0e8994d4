//! `/v1/evidence`: upload (multipart, streamed, hashed, content-addressed), metadata, content
//! download, integrity verification, and a session's evidence list. No route deletes evidence.
//!
//! Who may do what: admin and office upload to any session of their organisation, inspectors
//! to the sessions assigned to them, auditors read only. Inspectors read the evidence of their
//! assigned sessions. Another organisation's ids answer 404.

mod form;
mod upload;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{PageQuery, Paginated};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::evidence::sniff::Kind;
use crate::state::AppState;
use crate::store::evidence::EvidenceRecord;
use crate::store::sessions::SessionRecord;
use crate::store::Role;

pub fn router() -> OpenApiRouter<AppState> {
    // The upload enforces its own size limit while streaming (`evidence_max_bytes`); the
    // global JSON body limit must not apply to it.
    let upload = OpenApiRouter::new()
        .routes(routes!(upload::upload))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(upload)
        .routes(routes!(get))
        .routes(routes!(content))
        .routes(routes!(verify))
        .routes(routes!(list_for_session))
}

/// The session `session_id`, if the caller may read it (`write: false`) or upload to it
/// (`write: true`). Access is the session's (`crate::domain::access`): a session the caller
/// cannot see is 404, as everywhere; uploads to a completed session are 409.
pub(crate) async fn authorize_session(
    state: &AppState,
    user: &AuthUser,
    session_id: Uuid,
    write: bool,
) -> ApiResult<SessionRecord> {
    let session = super::sessions::visible_session(state, user, session_id).await?;
    if write {
        if user.role == Role::Auditor {
            return Err(ApiError::forbidden("auditors cannot upload evidence"));
        }
        super::sessions::require_writer(user, &session)?;
    }
    Ok(session)
}

/// An evidence record as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct EvidenceView {
    pub id: Uuid,
    pub session_id: Uuid,
    pub asset_id: Option<Uuid>,
    /// `photo`, `video` or `document`.
    pub evidence_type: String,
    /// Hex SHA-256 of the content, verified when it was uploaded.
    pub sha256: String,
    pub size: i64,
    /// Detected from the content.
    pub content_type: String,
    pub filename: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub uploaded_by: Uuid,
    pub created_at: DateTime<Utc>,
}

impl From<EvidenceRecord> for EvidenceView {
    fn from(r: EvidenceRecord) -> Self {
        Self {
            id: r.id,
            session_id: r.session_id,
            asset_id: r.asset_id,
            evidence_type: r.evidence_type,
            sha256: hex::encode(&r.sha256),
            size: r.size,
            content_type: r.content_type,
            filename: r.filename,
            metadata: r.metadata.0,
            uploaded_by: r.uploaded_by,
            created_at: r.created_at,
        }
    }
}

/// A record the caller may read.
async fn readable(state: &AppState, user: &AuthUser, id: Uuid) -> ApiResult<EvidenceRecord> {
    let record = state.store.get_evidence(user.org_id, id).await?;
    authorize_session(state, user, record.session_id, false).await?;
    Ok(record)
}

/// An evidence record's metadata.
#[utoipa::path(get, path = "/v1/evidence/{id}", tag = "evidence", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EvidenceView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<EvidenceView>> {
    Ok(Json(readable(&state, &user, id).await?.into()))
}

/// The evidence bytes, streamed from the object store, always as an attachment.
#[utoipa::path(get, path = "/v1/evidence/{id}/content", tag = "evidence", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The bytes, with `Content-Disposition: attachment` and `Repr-Digest`",
               content_type = "application/octet-stream"),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn content(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let record = readable(&state, &user, id).await?;
    let (size, stream) = state.evidence.get(&record.sha256).await?;
    let ext = Kind::from_mime(&record.content_type).map_or("bin", Kind::extension);
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    let value = |s: String| HeaderValue::from_str(&s).map_err(|e| ApiError::Internal(e.into()));
    h.insert(header::CONTENT_TYPE, value(record.content_type.clone())?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    // The file name is ours (id + extension), never the client's: nothing to escape.
    h.insert(
        header::CONTENT_DISPOSITION,
        value(format!("attachment; filename=\"{}.{ext}\"", record.id))?,
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::ETAG,
        value(format!("\"{}\"", hex::encode(&record.sha256)))?,
    );
    h.insert(
        "repr-digest",
        value(format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(&record.sha256)
        ))?,
    );
    Ok(res)
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResult {
    pub evidence_id: Uuid,
    /// True when the stored bytes still hash to the recorded SHA-256.
    pub verified: bool,
    /// Hex SHA-256 recomputed from the stored bytes; null when the bytes are missing.
    pub sha256: Option<String>,
    /// Hex SHA-256 recorded at upload.
    pub expected_sha256: String,
    /// Size of the stored bytes; null when they are missing.
    pub size: Option<u64>,
    pub checked_at: DateTime<Utc>,
}

/// Recompute the hash of the stored bytes and compare it with the recorded one. Each check
/// is written to the audit log.
#[utoipa::path(get, path = "/v1/evidence/{id}/verify", tag = "evidence", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = VerifyResult), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn verify(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<VerifyResult>> {
    let record = readable(&state, &user, id).await?;
    let found = state.evidence.rehash(&record.sha256).await?;
    let verified = found
        .as_ref()
        .is_some_and(|(sha, size)| sha[..] == record.sha256[..] && *size == record.size as u64);
    if !verified {
        tracing::error!(evidence_id = %id, found = found.is_some(), "evidence failed verification");
    }
    let result = VerifyResult {
        evidence_id: id,
        verified,
        sha256: found.as_ref().map(|(sha, _)| hex::encode(sha)),
        expected_sha256: hex::encode(&record.sha256),
        size: found.map(|(_, size)| size),
        checked_at: Utc::now(),
    };
    state
        .audit(
            &user,
            "evidence.verify",
            Some(Target::new("evidence", id)),
            json!({ "verified": verified, "sha256": result.sha256 }),
        )
        .await?;
    Ok(Json(result))
}

/// The evidence uploaded for a test session, oldest first.
#[utoipa::path(get, path = "/v1/tests/sessions/{id}/evidence", tag = "evidence", security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Paginated<EvidenceView>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn list_for_session(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Paginated<EvidenceView>>> {
    let page = q.page()?;
    authorize_session(&state, &user, id, false).await?;
    let rows = state
        .store
        .list_session_evidence(user.org_id, id, page)
        .await?;
    Ok(Json(Paginated::from_rows(rows, page, |r| r.id, Into::into)))
}
