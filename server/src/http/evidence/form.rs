//! Receiving the multipart form of an upload: text fields with a size cap, the file spooled to
//! disk while it is hashed, counted and sniffed, and the RFC 9530 digest headers.

use axum::extract::Multipart;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::authorize_session;
use crate::auth::AuthUser;
use crate::evidence::sniff::{self, Kind, SNIFF_LEN};
use crate::evidence::spool::{Spool, SpoolError, SpooledFile};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{nul_in, nul_in_json, nul_refused};
use crate::state::AppState;
use crate::store::sessions::SessionRecord;

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
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceType::Photo => "photo",
            EvidenceType::Video => "video",
            EvidenceType::Document => "document",
        }
    }

    /// Photos are images, videos MP4; a document may be any accepted kind (a scan, a PDF).
    pub fn accepts(self, kind: Kind) -> bool {
        match self {
            EvidenceType::Photo => kind.is_image(),
            EvidenceType::Video => kind == Kind::Mp4,
            EvidenceType::Document => true,
        }
    }
}

/// The form, received and checked field by field.
pub struct Form {
    pub session: SessionRecord,
    pub evidence_type: EvidenceType,
    pub asset_id: Option<Uuid>,
    pub metadata: serde_json::Value,
    pub sha256_field: Option<[u8; 32]>,
    pub filename: Option<String>,
    pub file: SpooledFile,
    pub kind: Kind,
}

pub async fn receive(
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
        let duplicate = || {
            ApiError::bad_request(
                "malformed_multipart",
                format!("field '{name}' appears twice"),
            )
        };
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
                // `\u0000` escapes decode to NUL, which PostgreSQL's jsonb cannot hold.
                if let Some(path) = nul_in_json(&v, "metadata") {
                    return Err(nul_refused(&path));
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
            return Err(invalid(format!(
                "field '{name}' is longer than {MAX_FIELD} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    let text =
        String::from_utf8(buf).map_err(|_| invalid(format!("field '{name}' is not UTF-8 text")))?;
    if nul_in(&text) {
        return Err(nul_refused(name));
    }
    Ok(text)
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

pub fn malformed(detail: &str) -> ApiError {
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
pub fn digests_from_headers(headers: &HeaderMap) -> ApiResult<Vec<[u8; 32]>> {
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

/// Read what is left of the form and discard it; true when the body ended cleanly (the
/// connection can then serve another request).
pub async fn drain(multipart: &mut Multipart) -> bool {
    loop {
        match multipart.next_field().await {
            Ok(Some(mut field)) => loop {
                match field.chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return false,
                }
            },
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}
