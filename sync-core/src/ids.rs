//! Document ids and automerge URLs, in the forms automerge-repo uses.
//!
//! A FireMode session's UUID and its automerge document id are the same 16 bytes. automerge-repo
//! writes a document id as the base58check encoding of those bytes and a document URL as
//! `automerge:<id>`, optionally followed by `#<head>|<head>` where each head is the base58check
//! encoding of a 32-byte change hash (see `AutomergeUrl.ts` in automerge-repo).

use std::fmt;
use std::str::FromStr;

use automerge::ChangeHash;
use uuid::Uuid;

/// The prefix of every automerge document URL.
pub const URL_PREFIX: &str = "automerge:";

/// Longest base58check string we are willing to decode. A 32-byte hash plus its 4-byte checksum
/// is at most 49 characters; the limit keeps the quadratic base58 decoder cheap on hostile input.
const MAX_BS58_LEN: usize = 64;

/// The 16-byte id shared by a session and its automerge document.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DocumentId([u8; 16]);

/// Why a document id, URL or list of heads could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The input was empty.
    #[error("the document id is empty")]
    Empty,
    /// The input is neither base58check, an automerge URL nor a UUID.
    #[error("not a document id (expected base58check, an automerge: URL or a UUID)")]
    Unrecognised,
    /// The base58check text decoded to the wrong number of bytes.
    #[error("a document id is 16 bytes, this one is {0}")]
    WrongLength(usize),
    /// The string does not start with `automerge:`.
    #[error("an automerge URL starts with \"automerge:\"")]
    NotAUrl,
    /// The URL has more than one `#` section.
    #[error("an automerge URL has at most one '#' heads section")]
    MultipleHeadsSections,
    /// The URL addresses a path inside the document, which FireMode does not serve.
    #[error("sub-document paths in automerge URLs are not supported")]
    UnsupportedPath,
    /// One of the heads is not the base58check form of a 32-byte change hash.
    #[error("invalid head {0:?}: expected the base58check form of a 32-byte change hash")]
    InvalidHead(String),
}

impl DocumentId {
    /// The document id holding the bytes of `uuid`.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(*uuid.as_bytes())
    }

    /// The document id made of these 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The same 16 bytes as a UUID (the session id).
    pub fn as_uuid(&self) -> Uuid {
        Uuid::from_bytes(self.0)
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The document URL, `automerge:<bs58check>`.
    pub fn url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    /// The document URL pinned to `heads`: `automerge:<bs58check>#<head>|<head>`.
    pub fn url_with_heads(&self, heads: &[ChangeHash]) -> String {
        format!("{URL_PREFIX}{self}#{}", encode_heads(heads))
    }

    /// Parses the base58check form only (no URL, no UUID).
    pub fn from_bs58check(s: &str) -> Result<Self, IdError> {
        let bytes = decode_bs58check(s).ok_or(IdError::Unrecognised)?;
        let array: [u8; 16] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdError::WrongLength(bytes.len()))?;
        Ok(Self(array))
    }
}

impl From<Uuid> for DocumentId {
    fn from(uuid: Uuid) -> Self {
        Self::from_uuid(uuid)
    }
}

impl From<DocumentId> for Uuid {
    fn from(id: DocumentId) -> Self {
        id.as_uuid()
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(&self.0).with_check().into_string())
    }
}

impl FromStr for DocumentId {
    type Err = IdError;

    /// Accepts what automerge-repo's `interpretAsDocumentId` accepts as text: an automerge URL
    /// (its heads are ignored here; use [`parse_url`] to keep them), a base58check id, or a
    /// legacy UUID (hyphenated or plain hex).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.starts_with(URL_PREFIX) {
            return parse_url(s).map(|(id, _heads)| id);
        }
        match Self::from_bs58check(s) {
            Ok(id) => Ok(id),
            // A base58check string that decodes with a valid checksum but the wrong length is
            // a real id of another system: say so rather than "unrecognised".
            Err(IdError::WrongLength(n)) => Err(IdError::WrongLength(n)),
            Err(_) => Uuid::try_parse(s)
                .map(Self::from_uuid)
                .map_err(|_| IdError::Unrecognised),
        }
    }
}

/// Parses an automerge URL into its document id and, when a `#` section is present, its heads.
///
/// `automerge:<id>` gives `None`; `automerge:<id>#` gives `Some(vec![])` (the empty set of heads,
/// as automerge-repo reads it); `automerge:<id>#<h1>|<h2>` gives both hashes.
pub fn parse_url(url: &str) -> Result<(DocumentId, Option<Vec<ChangeHash>>), IdError> {
    let rest = url.strip_prefix(URL_PREFIX).ok_or(IdError::NotAUrl)?;
    let (id_part, heads_part) = match rest.split_once('#') {
        Some((id, heads)) => (id, Some(heads)),
        None => (rest, None),
    };
    if heads_part.is_some_and(|h| h.contains('#')) {
        return Err(IdError::MultipleHeadsSections);
    }
    if id_part.contains('/') {
        return Err(IdError::UnsupportedPath);
    }
    if id_part.is_empty() {
        return Err(IdError::Empty);
    }
    let id = DocumentId::from_bs58check(id_part)?;
    let heads = heads_part.map(decode_heads).transpose()?;
    Ok((id, heads))
}

/// Encodes heads for a URL: each hash in base58check, joined with `|`.
pub fn encode_heads(heads: &[ChangeHash]) -> String {
    heads
        .iter()
        .map(|h| bs58::encode(&h.0).with_check().into_string())
        .collect::<Vec<_>>()
        .join("|")
}

/// Decodes the `|`-separated base58check heads of a URL. The empty string is the empty list.
pub fn decode_heads(s: &str) -> Result<Vec<ChangeHash>, IdError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split('|')
        .map(|head| {
            decode_bs58check(head)
                .and_then(|bytes| ChangeHash::try_from(bytes.as_slice()).ok())
                .ok_or_else(|| IdError::InvalidHead(truncate_for_error(head)))
        })
        .collect()
}

/// Base58check-decodes `s`, refusing overlong input before doing any work.
pub(crate) fn decode_bs58check(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() > MAX_BS58_LEN {
        return None;
    }
    bs58::decode(s).with_check(None).into_vec().ok()
}

/// Base58check-encodes arbitrary bytes (used for binary document ids on the wire).
pub(crate) fn encode_bs58check(bytes: &[u8]) -> String {
    bs58::encode(bytes).with_check().into_string()
}

/// Error messages echo input back; keep that bounded.
fn truncate_for_error(s: &str) -> String {
    s.chars().take(MAX_BS58_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid() -> Uuid {
        Uuid::parse_str("5d3a1c1e-8a47-4b7e-9a3c-2f1e0d9c8b7a").unwrap()
    }

    #[test]
    fn display_is_bs58check_of_the_uuid_bytes() {
        let id = DocumentId::from_uuid(uuid());
        let text = id.to_string();
        let decoded = bs58::decode(&text).with_check(None).into_vec().unwrap();
        assert_eq!(decoded, uuid().as_bytes().to_vec());
        assert_eq!(id.url(), format!("automerge:{text}"));
        assert_eq!(id.as_uuid(), uuid());
    }

    #[test]
    fn parses_every_accepted_form() {
        let id = DocumentId::from_uuid(uuid());
        let forms = [
            id.to_string(),
            id.url(),
            format!("{}#", id.url()),
            "5d3a1c1e-8a47-4b7e-9a3c-2f1e0d9c8b7a".to_string(),
            "5D3A1C1E-8A47-4B7E-9A3C-2F1E0D9C8B7A".to_string(),
            "5d3a1c1e8a474b7e9a3c2f1e0d9c8b7a".to_string(),
        ];
        for form in forms {
            assert_eq!(form.parse::<DocumentId>(), Ok(id), "{form}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!("".parse::<DocumentId>(), Err(IdError::Empty));
        assert_eq!("hello".parse::<DocumentId>(), Err(IdError::Unrecognised));
        assert_eq!("automerge:".parse::<DocumentId>(), Err(IdError::Empty));
        let short = encode_bs58check(&[1, 2, 3]);
        assert_eq!(short.parse::<DocumentId>(), Err(IdError::WrongLength(3)));
        let id = DocumentId::from_uuid(uuid());
        assert_eq!(
            format!("{}/todos/0", id.url()).parse::<DocumentId>(),
            Err(IdError::UnsupportedPath)
        );
        assert_eq!(
            format!("{}#a#b", id.url()).parse::<DocumentId>(),
            Err(IdError::MultipleHeadsSections)
        );
        // A single changed character breaks the checksum.
        let mut text = id.to_string().into_bytes();
        text[3] = if text[3] == b'2' { b'3' } else { b'2' };
        let text = String::from_utf8(text).unwrap();
        assert!(text.parse::<DocumentId>().is_err());
        assert!("x".repeat(10_000).parse::<DocumentId>().is_err());
    }

    #[test]
    fn url_heads_roundtrip() {
        let id = DocumentId::from_uuid(uuid());
        let heads = vec![ChangeHash([7; 32]), ChangeHash([200; 32])];
        let url = id.url_with_heads(&heads);
        assert_eq!(parse_url(&url), Ok((id, Some(heads.clone()))));
        assert_eq!(parse_url(&id.url()), Ok((id, None)));
        assert_eq!(parse_url(&format!("{}#", id.url())), Ok((id, Some(vec![]))));
        assert_eq!(url.parse::<DocumentId>(), Ok(id));
        assert_eq!(decode_heads(&encode_heads(&heads)), Ok(heads));
    }

    #[test]
    fn rejects_bad_heads() {
        let id = DocumentId::from_uuid(uuid());
        // A valid base58check string of the wrong length is not a change hash.
        let url = format!("{}#{}", id.url(), encode_bs58check(&[1; 16]));
        assert!(matches!(parse_url(&url), Err(IdError::InvalidHead(_))));
        assert!(matches!(decode_heads("|"), Err(IdError::InvalidHead(_))));
        assert_eq!(parse_url(&id.to_string()), Err(IdError::NotAUrl));
    }
}
