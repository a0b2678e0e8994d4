//! `POST /v1/evidence`: the streamed multipart upload.
//!
//! Order of checks, so that a rejected upload records nothing and leaves nothing behind:
//! role and `Idempotency-Key` (before the body is read), `Content-Length` against the limit
//! (413 at once), then the form while it streams: the session is authorized as soon as its
//! id arrives (404/403 before the file is read, when the client sends `session_id` first), the
//! file is spooled to a temporary file while it is hashed and counted (413 when it passes the
//! limit) and its type is checked by magic bytes once its first bytes are in (415). Then
//! integrity (400 without a digest, 422 on a mismatch). Only a request that passed all of that
//! claims its idempotency key (validation failures are not stored, so a corrected retry with
//! the same key is accepted), writes the object (content-addressed, write-once) and records
//! the evidence and its audit row in one transaction. The temporary file is deleted on drop.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use http_body_util::Limited;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::authorize_session;
use crate::auth::AuthUser;
use crate::evidence::sniff::{self, Kind, SNIFF_LEN};
use crate::evidence::spool::{Spool, SpoolError, SpooledFile};
use crate::http::error::{current_request_id, ApiError, ApiResult, Problem};
use crate::http::idempotency::{self, Begin, Fingerprint};
use crate::state::AppState;
use crate::store::evidence::EvidenceRecord;
use crate::store::sessions::SessionRecord;
use crate::store::{NewAudit, Role};

/// Room for the form fields and multipart framing around the file.
const FORM_OVERHEAD: u64 = 1024 * 1024;
/// Largest text field (`metadata` is the big one).
const MAX_FIELD: usize = 64 * 1024;
const MAX_FILENAME: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceType {
    Photo,
    Video,
    Document,
}

impl EvidenceType {
    fn as_str(self) -> &'static str {
        match self {
            EvidenceType::Photo => "photo",
            EvidenceType::Video => "video",
            EvidenceType::Document => "document",
        }
    }

    fn accepts(self, kind: Kind) -> bool {
        match self {
            EvidenceType::Photo => kind.is_image(),
            EvidenceType::Video => kind == Kind::Mp4,
            EvidenceType::Document => true,
        }
    }
}

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
    user: AuthUser,
    req: Request,
) -> ApiResult<Response> {
    user.require(&[Role::Admin, Role::Office, Role::Inspector])
        .map_err(|_| ApiError::forbidden("auditors cannot upload evidence"))?;
    let key = idempotency::key_from_headers(req.headers())?.ok_or_else(idempotency::key_required)?;
    let header_digests = digests_from_headers(req.headers())?;
    let max = state.config.evidence_max_bytes;
    let too_large =
        || ApiError::PayloadTooLarge(format!("evidence files may be at most {max} bytes"));
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > max + FORM_OVERHEAD) {
        return Err(too_large());
    }
    // Also caps a chunked body that lies about nothing but keeps going.
    let req = req.map(|b| Body::new(Limited::new(b, (max + FORM_OVERHEAD) as usize)));
    let mut multipart = Multipart::from_request(req, &state)
        .await
        .map_err(|e| malformed(&e.body_text()))?;
    let form = receive(&state, &user, &mut multipart, max).await?;
    drop(multipart);

    // Integrity: at least one declared digest, and every declared digest must match.
    let declared: Vec<[u8; 32]> = form.sha256_field.into_iter().chain(header_digests).collect();
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
        .part(form.asset_id.map(|a| a.to_string()).unwrap_or_default().as_bytes())
        .part(form.metadata.to_string().as_bytes())
        .part(form.filename.as_deref().unwrap_or("").as_bytes())
        .part(&file.sha256);
    let claim = match idempotency::begin(&state, user.user_id, key, fp.finish()).await? {
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
    let stored = match store(&state, &user, &record, &file).await {
        Ok(stored) => stored,
        Err(e) => {
            claim.release(&state).await;
            return Err(e);
        }
    };
    drop(file);
    let body = serde_json::to_vec(&UploadResult {
        evidence_id: record.id,
        session_id: record.session_id,
        evidence_type: form.evidence_type,
        sha256: hex::encode(&record.sha256),
        size: record.size as u64,
        content_type: record.content_type.clone(),
        status: "verified".into(),
        created_at: record.created_at,
    })
    .map_err(|e| ApiError::Internal(e.into()))?;
    tracing::info!(evidence_id = %record.id, size = record.size, deduplicated = stored == crate::evidence::Stored::AlreadyPresent, "evidence stored");
    claim
        .finish(&state, StatusCode::CREATED, Some("application/json"), &body)
        .await;
    let mut res = (StatusCode::CREATED, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/evidence/{}", record.id)) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// Put the bytes in the object store, then the record and its audit row in the database.
async fn store(
    state: &AppState,
    user: &AuthUser,
    record: &EvidenceRecord,
    file: &SpooledFile,
) -> ApiResult<crate::evidence::Stored> {
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

/// The form, received and checked field by field.
struct Form {
    session: SessionRecord,
    evidence_type: EvidenceType,
    asset_id: Option<Uuid>,
    metadata: serde_json::Value,
    sha256_field: Option<[u8; 32]>,
    filename: Option<String>,
    file: SpooledFile,
    kind: Kind,
}

async fn receive(
    state: &AppState,
    user: &AuthUser,
    multipart: &mut Multipart,
    max: u64,
) -> ApiResult<Form> {
    let mut session = None;
    let mut evidence_type = None;
    let mut asset_id = None;
    let mut metadata = None;
    let mut sha256_field = None;
    let mut file: Option<(SpooledFile, Kind, Option<String>)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_owned();
        let duplicate = || ApiError::bad_request("malformed_multipart", format!("field '{name}' appears twice"));
        match name.as_str() {
            "file" => {
                if file.is_some() {
                    return Err(duplicate());
                }
                let filename = field.file_name().map(clean_filename).filter(|f| !f.is_empty());
                let mut spool = Spool::create(state.evidence.tmp_dir(), max)
                    .await
                    .map_err(|e| ApiError::Internal(e.into()))?;
                let mut kind = None;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    spool.write(&chunk).await.map_err(|e| match e {
                        SpoolError::TooLarge(max) => ApiError::PayloadTooLarge(format!(
                            "evidence files may be at most {max} bytes"
                        )),
                        SpoolError::Io(e) => ApiError::Internal(e.into()),
                    })?;
                    if kind.is_none() && spool.head().len() >= SNIFF_LEN {
                        kind = Some(sniff(spool.head())?);
                    }
                }
                if spool.size() == 0 {
                    return Err(ApiError::unprocessable("empty_file", "the file is empty"));
                }
                let kind = match kind {
                    Some(k) => k,
                    None => sniff(spool.head())?,
                };
                let spooled = spool.finish().await.map_err(|e| ApiError::Internal(e.into()))?;
                file = Some((spooled, kind, filename));
            }
            "session_id" => {
                if session.is_some() {
                    return Err(duplicate());
                }
                let id = parse_uuid(&name, &text(&mut field, &name).await?)?;
                // Authorize now: a forbidden upload stops before its file is read.
                session = Some(authorize_session(state, user, id, true).await?);
            }
            "evidence_type" => {
                if evidence_type.is_some() {
                    return Err(duplicate());
                }
                let v = text(&mut field, &name).await?;
                evidence_type = Some(
                    serde_json::from_value::<EvidenceType>(serde_json::Value::String(v.clone()))
                        .map_err(|_| invalid(format!("evidence_type must be photo, video or document, got '{v}'")))?,
                );
            }
            "asset_id" => {
                if asset_id.is_some() {
                    return Err(duplicate());
                }
                asset_id = Some(parse_uuid(&name, &text(&mut field, &name).await?)?);
            }
            "metadata" => {
                if metadata.is_some() {
                    return Err(duplicate());
                }
                let v: serde_json::Value = serde_json::from_str(&text(&mut field, &name).await?)
                    .map_err(|e| invalid(format!("metadata is not valid JSON: {e}")))?;
                if !v.is_object() {
                    return Err(invalid("metadata must be a JSON object".into()));
                }
                metadata = Some(v);
            }
            "sha256" => {
                if sha256_field.is_some() {
                    return Err(duplicate());
                }
                let v = text(&mut field, &name).await?;
                let bytes = hex::decode(v.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| invalid("sha256 must be 64 hexadecimal characters".into()))?;
                sha256_field = Some(bytes);
            }
            other => {
                return Err(invalid(format!(
                    "unknown field '{other}' (expected session_id, evidence_type, asset_id, metadata, sha256, file)"
                )))
            }
        }
    }
    let missing = |f: &str| invalid(format!("the form has no '{f}' field"));
    let session = session.ok_or_else(|| missing("session_id"))?;
    let evidence_type = evidence_type.ok_or_else(|| missing("evidence_type"))?;
    let (file, kind, filename) = file.ok_or_else(|| missing("file"))?;
    Ok(Form {
        session,
        evidence_type,
        asset_id,
        metadata: metadata.unwrap_or_else(|| json!({})),
        sha256_field,
        filename,
        file,
        kind,
    })
}

fn sniff(head: &[u8]) -> ApiResult<Kind> {
    sniff::sniff(head).ok_or_else(|| {
        ApiError::UnsupportedMediaType(
            "the file is not an accepted type (JPEG, PNG, HEIC, PDF or MP4, judged by content)"
                .into(),
        )
    })
}

/// A small text field, read with a size cap.
async fn text(field: &mut axum::extract::multipart::Field<'_>, name: &str) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > MAX_FIELD {
            return Err(invalid(format!("field '{name}' is longer than {MAX_FIELD} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| invalid(format!("field '{name}' is not UTF-8 text")))
}

fn parse_uuid(name: &str, v: &str) -> ApiResult<Uuid> {
    v.trim()
        .parse()
        .map_err(|_| invalid(format!("{name} must be a UUID, got '{v}'")))
}

/// Display-only file name: the last path component, without control characters.
fn clean_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    base.chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILENAME)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn invalid(detail: String) -> ApiError {
    ApiError::unprocessable("invalid_form", detail)
}

fn malformed(detail: &str) -> ApiError {
    ApiError::bad_request(
        "malformed_multipart",
        format!("expected a multipart/form-data body: {detail}"),
    )
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the upload is larger than this endpoint accepts".into())
    } else {
        // Also a client that went away mid-upload: its problem, not a server fault.
        malformed(&e.body_text())
    }
}

/// SHA-256 digests from `Content-Digest` / `Repr-Digest` (RFC 9530), taken as the digest of
/// the uploaded file. Other algorithms are ignored; a malformed sha-256 member is a 400.
fn digests_from_headers(headers: &HeaderMap) -> ApiResult<Vec<[u8; 32]>> {
    let mut out = Vec::new();
    for name in ["content-digest", "repr-digest"] {
        for value in headers.get_all(name) {
            let value = value.to_str().map_err(|_| bad_digest(name))?;
            for member in value.split(',') {
                let Some((alg, v)) = member.trim().split_once('=') else {
                    return Err(bad_digest(name));
                };
                if !alg.trim().eq_ignore_ascii_case("sha-256") {
                    continue;
                }
                let b64 = v
                    .trim()
                    .strip_prefix(':')
                    .and_then(|v| v.strip_suffix(':'))
                    .ok_or_else(|| bad_digest(name))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| bad_digest(name))?;
                out.push(bytes);
            }
        }
    }
    Ok(out)
}

fn bad_digest(name: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_digest",
        format!("{name} must look like sha-256=:<base64 of 32 bytes>:"),
    )
}
