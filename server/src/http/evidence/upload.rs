//! `POST /v1/evidence`: the streamed multipart upload.
//!
//! Order of checks, so that a rejected upload records nothing and leaves nothing behind:
//! the caller and `Content-Length` against the limit (401, 413 from the headers alone), the
//! role and `Idempotency-Key`, then the form while it streams (`form::receive`): the session
//! is authorized as soon as its id arrives (404/403 before the file is read, when the client
//! sends `session_id` first), the file is spooled to a temporary file while it is hashed and
//! counted (413 once it passes the limit) and its type is checked by magic bytes as soon as
//! its first bytes are in (415). Then integrity (400 without a digest, 422 on a mismatch).
//! Only a request that passed all of that claims its idempotency key (validation failures are
//! not stored, so a corrected retry with the same key is accepted), writes the object
//! (content-addressed, write-once) and records the evidence and its audit row in one
//! transaction. The temporary file is deleted when it is dropped, on every path.
//!
//! HTTP/1.1 has no clean way to refuse a body half-way: the server either reads the rest or
//! closes the connection, and a client still sending then sees a reset instead of the answer.
//! Oversize and unauthenticated uploads are cut short (`Connection: close`); other rejections
//! read the rest of the body and discard it, so the client gets the 4xx.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::Limited;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::form::{self, EvidenceType};
use crate::auth::AuthUser;
use crate::evidence::spool::SpooledFile;
use crate::evidence::Stored;
use crate::http::error::{current_request_id, ApiError, ApiResult, Problem};
use crate::http::idempotency::{self, closing, Begin, Fingerprint};
use crate::state::AppState;
use crate::store::evidence::EvidenceRecord;
use crate::store::sessions::SessionRecord;
use crate::store::{NewAudit, Role, StoreError};

/// Room for the form fields and multipart framing around the file.
const FORM_OVERHEAD: u64 = 1024 * 1024;

/// The multipart form (documentation only: the handler streams it).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    session_id: Uuid,
    evidence_type: EvidenceType,
    /// The asset the evidence is about.
    asset_id: Option<Uuid>,
    /// Any JSON object (e.g. device, GPS, caption); at most 64 KiB.
    #[schema(value_type = Option<Object>)]
    metadata: Option<String>,
    /// Hex SHA-256 of the file. Required unless a `Content-Digest` or `Repr-Digest` header
    /// (RFC 9530, `sha-256=:<base64>:`) carries the file's digest.
    sha256: Option<String>,
    /// JPEG, PNG, HEIC, PDF or MP4 (detected from the content).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Serialize, ToSchema)]
pub struct UploadResult {
    pub evidence_id: Uuid,
    pub session_id: Uuid,
    pub evidence_type: EvidenceType,
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    /// Always "verified": the server hashed the bytes it stored and they matched.
    pub status: String,
    pub created_at: chrono::DateTime<Utc>,
}

/// Upload evidence for a test session (multipart/form-data, streamed).
#[utoipa::path(post, path = "/v1/evidence", tag = "evidence", security(("bearer" = [])),
    request_body(content = inline(UploadForm), content_type = "multipart/form-data"),
    params(
        ("Idempotency-Key" = String, Header, description = "Required; reuse it on retries"),
        ("Content-Digest" = Option<String>, Header, description = "`sha-256=:<base64>:` of the file (or use the `sha256` field)"),
    ),
    responses(
        (status = 201, body = UploadResult),
        (status = 400, body = Problem, description = "Missing Idempotency-Key or digest, malformed form"),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Same key still in flight"),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem, description = "Hash mismatch, invalid field, key reused"),
    ))]
pub(super) async fn upload(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    req: Request,
) -> Response {
    let max = state.config.evidence_max_bytes;
    let cap = max + FORM_OVERHEAD;
    // An unknown caller, or a body declared past the limit, is answered from the headers
    // alone, without reading the body (a client sending `Expect: 100-continue` never sends
    // it); such a connection cannot be reused.
    let user = match user {
        Ok(u) => u,
        Err(e) => return closing(e.into_response()),
    };
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > cap) {
        return closing(too_large(max).into_response());
    }
    let headers = req.headers().clone();
    // The cap also holds for a chunked body, whose length nobody declared.
    let req = req.map(|b| Body::new(Limited::new(b, cap as usize)));
    let mut multipart = match Multipart::from_request(req, &state).await {
        Ok(m) => m,
        Err(e) => return closing(form::malformed(&e.body_text()).into_response()),
    };
    match accept(&state, &user, &headers, &mut multipart).await {
        Ok(res) => res,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => closing(e.into_response()),
        Err(e) => {
            // Any other rejection reads the rest of the upload, discarding it, so the client
            // gets this answer instead of a connection reset in the middle of its send.
            let clean = form::drain(&mut multipart).await;
            let res = e.into_response();
            if clean {
                res
            } else {
                closing(res)
            }
        }
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!("evidence files may be at most {max} bytes"))
}

async fn accept(
    state: &AppState,
    user: &AuthUser,
    headers: &HeaderMap,
    multipart: &mut Multipart,
) -> ApiResult<Response> {
    user.require(&[Role::Admin, Role::Office, Role::Inspector])
        .map_err(|_| ApiError::forbidden("auditors cannot upload evidence"))?;
    let key = idempotency::key_from_headers(headers)?.ok_or_else(idempotency::key_required)?;
    let header_digests = form::digests_from_headers(headers)?;
    let form = form::receive(state, user, multipart, state.config.evidence_max_bytes).await?;
    if let Some(asset_id) = form.asset_id {
        check_asset(state, user, &form.session, asset_id).await?;
    }

    // Integrity: at least one declared digest, and every declared digest must match.
    let declared: Vec<[u8; 32]> = form
        .sha256_field
        .into_iter()
        .chain(header_digests)
        .collect();
    if declared.is_empty() {
        return Err(ApiError::bad_request(
            "integrity_required",
            "send the file's SHA-256 as a `sha256` form field (hex) or a Content-Digest / \
             Repr-Digest header (sha-256=:<base64>:)",
        ));
    }
    let file = form.file;
    if declared.iter().any(|d| *d != file.sha256) {
        return Err(ApiError::unprocessable(
            "hash_mismatch",
            format!(
                "the file received hashes to sha256 {}, which is not the digest declared",
                hex::encode(file.sha256)
            ),
        ));
    }
    if !form.evidence_type.accepts(form.kind) {
        return Err(ApiError::unprocessable(
            "evidence_type_mismatch",
            format!(
                "a {} cannot be a file of type {}",
                form.evidence_type.as_str(),
                form.kind.mime()
            ),
        ));
    }

    // The request is valid: claim the key. The fingerprint covers every field and the
    // content's hash, so the same key with any other upload is refused.
    let mut fp = Fingerprint::new(&Method::POST, "/v1/evidence");
    fp.part(form.session.row.id.as_bytes())
        .part(form.evidence_type.as_str().as_bytes())
        .part(
            form.asset_id
                .map(|a| a.to_string())
                .unwrap_or_default()
                .as_bytes(),
        )
        .part(form.metadata.to_string().as_bytes())
        .part(form.filename.as_deref().unwrap_or("").as_bytes())
        .part(&file.sha256);
    let claim = match idempotency::begin(state, user.user_id, key, fp.finish()).await? {
        Begin::Execute(claim) => claim,
        Begin::Respond(res) => return Ok(res),
    };
    let record = EvidenceRecord {
        id: Uuid::now_v7(),
        org_id: user.org_id,
        session_id: form.session.row.id,
        asset_id: form.asset_id,
        evidence_type: form.evidence_type.as_str().to_owned(),
        sha256: file.sha256.to_vec(),
        size: file.size as i64,
        content_type: form.kind.mime().to_owned(),
        filename: form.filename,
        metadata: sqlx::types::Json(form.metadata),
        uploaded_by: user.user_id,
        created_at: Utc::now(),
    };
    let stored = match store(state, user, &record, &file).await {
        Ok(stored) => stored,
        Err(e) => {
            claim.release(state).await;
            return Err(e);
        }
    };
    drop(file);
    let body = serde_json::to_vec(&UploadResult {
        evidence_id: record.id,
        session_id: record.session_id,
        evidence_type: form.evidence_type,
        sha256: hex::encode(&record.sha256),
        size: file_size(&record),
        content_type: record.content_type.clone(),
        status: "verified".into(),
        created_at: record.created_at,
    })
    .map_err(|e| ApiError::Internal(e.into()))?;
    tracing::info!(
        evidence_id = %record.id,
        size = record.size,
        deduplicated = (stored == Stored::AlreadyPresent),
        "evidence stored"
    );
    claim
        .finish(state, StatusCode::CREATED, Some("application/json"), &body)
        .await;
    let mut res = (StatusCode::CREATED, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/evidence/{}", record.id)) {
        h.insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// The asset an upload names must be one of the session's building (so of the caller's
/// organisation): 422 `unknown_asset` naming `asset_id` otherwise, foreign and missing alike.
async fn check_asset(
    state: &AppState,
    user: &AuthUser,
    session: &SessionRecord,
    asset_id: Uuid,
) -> ApiResult<()> {
    match state
        .store
        .get_asset(user.org_id, session.row.building_id, asset_id)
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound) => Err(ApiError::unprocessable(
            "unknown_asset",
            format!("asset_id {asset_id} is not an asset of this session's building"),
        )),
        Err(e) => Err(e.into()),
    }
}

fn file_size(record: &EvidenceRecord) -> u64 {
    u64::try_from(record.size).unwrap_or(0)
}

/// Put the bytes in the object store, then the record and its audit row in the database.
async fn store(
    state: &AppState,
    user: &AuthUser,
    record: &EvidenceRecord,
    file: &SpooledFile,
) -> ApiResult<Stored> {
    let stored = state
        .evidence
        .put_file(&file.sha256, &file.path, file.size)
        .await?;
    let audit = NewAudit {
        org_id: Some(user.org_id),
        actor_id: Some(user.user_id),
        action: "evidence.upload".into(),
        target_type: Some("evidence".into()),
        target_id: Some(record.id.to_string()),
        details: json!({
            "session_id": record.session_id,
            "asset_id": record.asset_id,
            "evidence_type": record.evidence_type,
            "sha256": hex::encode(&record.sha256),
            "size": record.size,
            "content_type": record.content_type,
        }),
        request_id: current_request_id(),
    };
    state.store.insert_evidence(record, &audit).await?;
    Ok(stored)
}
