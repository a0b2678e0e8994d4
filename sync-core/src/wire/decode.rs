//! Decoding frames: CBOR -> `ciborium::Value` -> fields picked by hand -> [`Message`].
//!
//! Tolerant where automerge-repo peers differ (numbers as floats, binary document ids,
//! `metadata` for `peerMetadata`, `undefined` for absent, unknown keys), strict where a
//! mistake would be dangerous (unknown type, duplicate fields, missing ids, empty data,
//! trailing bytes).

use std::collections::BTreeMap;

use ciborium::Value;

use super::{DecodeError, Message, PeerMetadata, RemoteHeads};
use crate::ids::encode_bs58check;

/// Deepest nesting a frame may have. Protocol v1 needs 4 (`newHeads` -> storage -> `heads` ->
/// string); the margin is for unknown keys. The limit keeps hostile frames from exhausting
/// the stack.
const MAX_DEPTH: usize = 16;

/// Longest binary document id we turn into text; automerge-repo ids are 16 bytes.
const MAX_BINARY_DOCUMENT_ID: usize = 64;

/// CBOR tag 64 marks a `Uint8Array` (RFC 8746); cbor-x adds it unless told not to.
const TAG_UINT8_ARRAY: u64 = 64;

/// The largest integer a JS number holds exactly (2^53 - 1); floats beyond it are not counts.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Decodes one frame into a [`Message`]. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH)
        .map_err(|e| DecodeError::Cbor(describe_cbor_error(&e)))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    let Value::Map(entries) = value else {
        return Err(DecodeError::NotAMap);
    };
    let fields = Fields::collect(entries)?;
    fields.into_message()
}

fn describe_cbor_error<T: std::fmt::Debug>(e: &ciborium::de::Error<T>) -> String {
    match e {
        ciborium::de::Error::Io(_) => "the frame ends in the middle of an item".to_string(),
        ciborium::de::Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
        ciborium::de::Error::Semantic(_, msg) => msg.clone(),
        ciborium::de::Error::RecursionLimitExceeded => "the frame nests too deeply".to_string(),
    }
}

/// Every key the protocol knows. Anything else in a frame is ignored.
const KNOWN_KEYS: &[&str] = &[
    "type",
    "senderId",
    "targetId",
    "documentId",
    "data",
    "peerMetadata",
    "metadata",
    "supportedProtocolVersions",
    "selectedProtocolVersion",
    "count",
    "sessionId",
    "message",
    "add",
    "remove",
    "newHeads",
];

/// The known fields of one frame, null and `undefined` already dropped (cbor-x writes
/// `undefined` for absent optional JS properties, e.g. `remove: undefined`).
struct Fields {
    map: BTreeMap<&'static str, Value>,
    message_type: &'static str,
}

impl Fields {
    fn collect(entries: Vec<(Value, Value)>) -> Result<Self, DecodeError> {
        let mut map = BTreeMap::new();
        for (key, value) in entries {
            let Value::Text(key) = key else { continue };
            let Some(known) = KNOWN_KEYS.iter().copied().find(|k| *k == key) else {
                continue;
            };
            // The written spec says `metadata`, the JS code sends `peerMetadata`: one field.
            let known = if known == "metadata" {
                "peerMetadata"
            } else {
                known
            };
            if map.contains_key(known) {
                return Err(DecodeError::DuplicateField(known));
            }
            if !matches!(value, Value::Null) {
                map.insert(known, value);
            }
        }
        let message_type = match map.get("type") {
            None => return Err(DecodeError::MissingType),
            Some(Value::Text(t)) => known_type(t)?,
            Some(_) => {
                return Err(DecodeError::InvalidField {
                    field: "type",
                    expected: "a string",
                })
            }
        };
        Ok(Self { map, message_type })
    }

    fn into_message(mut self) -> Result<Message, DecodeError> {
        let message = match self.message_type {
            "join" => Message::Join {
                sender_id: self.text("senderId")?,
                peer_metadata: self.peer_metadata()?,
                supported_protocol_versions: self.opt_text_list("supportedProtocolVersions")?,
            },
            "peer" => Message::Peer {
                sender_id: self.text("senderId")?,
                peer_metadata: self.peer_metadata()?,
                selected_protocol_version: self.text("selectedProtocolVersion")?,
                target_id: self.text("targetId")?,
            },
            "error" => Message::Error {
                // samod's error frames carry only `message`.
                sender_id: self.opt_text("senderId")?.unwrap_or_default(),
                message: self.text("message")?,
                target_id: self.opt_text("targetId")?,
            },
            "leave" => Message::Leave {
                sender_id: self.text("senderId")?,
            },
            "request" => Message::Request {
                document_id: self.document_id()?,
                sender_id: self.text("senderId")?,
                target_id: self.text("targetId")?,
                data: self.data()?,
            },
            "sync" => Message::Sync {
                document_id: self.document_id()?,
                sender_id: self.text("senderId")?,
                target_id: self.text("targetId")?,
                data: self.data()?,
            },
            "doc-unavailable" => Message::DocUnavailable {
                document_id: self.document_id()?,
                sender_id: self.text("senderId")?,
                target_id: self.text("targetId")?,
            },
            "ephemeral" => Message::Ephemeral {
                document_id: self.document_id()?,
                sender_id: self.text("senderId")?,
                target_id: self.text("targetId")?,
                count: self.count()?,
                session_id: self.text("sessionId")?,
                data: self.data()?,
            },
            "remote-subscription-change" => Message::RemoteSubscriptionChange {
                sender_id: self.text("senderId")?,
                target_id: self.text("targetId")?,
                add: self.opt_text_list("add")?,
                remove: self.opt_text_list("remove")?,
            },
            "remote-heads-changed" => Message::RemoteHeadsChanged {
                sender_id: self.text("senderId")?,
                target_id: self.text("targetId")?,
                document_id: self.document_id()?,
                new_heads: self.new_heads()?,
            },
            // `known_type` only lets the names above through.
            other => return Err(DecodeError::UnknownType(other.to_string())),
        };
        Ok(message)
    }

    fn missing(&self, field: &'static str) -> DecodeError {
        DecodeError::MissingField {
            message_type: self.message_type,
            field,
        }
    }

    fn required(&mut self, field: &'static str) -> Result<Value, DecodeError> {
        self.map.remove(field).ok_or_else(|| self.missing(field))
    }

    fn text(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let value = self.required(field)?;
        as_text(value, field)
    }

    fn opt_text(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        self.map
            .remove(field)
            .map(|value| as_text(value, field))
            .transpose()
    }

    fn opt_text_list(&mut self, field: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        self.map
            .remove(field)
            .map(|value| as_text_list(value, field))
            .transpose()
    }

    /// `documentId` is text (base58check) from JS; some peers send the 16 raw bytes.
    fn document_id(&mut self) -> Result<String, DecodeError> {
        const EXPECTED: &str = "a string or at most 64 bytes";
        match untag_bytes(self.required("documentId")?) {
            Value::Text(t) => Ok(t),
            Value::Bytes(b) if !b.is_empty() && b.len() <= MAX_BINARY_DOCUMENT_ID => {
                Ok(encode_bs58check(&b))
            }
            _ => Err(DecodeError::InvalidField {
                field: "documentId",
                expected: EXPECTED,
            }),
        }
    }

    fn data(&mut self) -> Result<Vec<u8>, DecodeError> {
        match untag_bytes(self.required("data")?) {
            Value::Bytes(b) if b.is_empty() => Err(DecodeError::EmptyData),
            Value::Bytes(b) => Ok(b),
            _ => Err(DecodeError::InvalidField {
                field: "data",
                expected: "a byte string",
            }),
        }
    }

    fn count(&mut self) -> Result<u64, DecodeError> {
        let value = self.required("count")?;
        as_count(&value).ok_or(DecodeError::InvalidField {
            field: "count",
            expected: "a non-negative integer",
        })
    }

    fn peer_metadata(&mut self) -> Result<Option<PeerMetadata>, DecodeError> {
        const FIELD: &str = "peerMetadata";
        let Some(value) = self.map.remove(FIELD) else {
            return Ok(None);
        };
        let Value::Map(entries) = value else {
            return Err(DecodeError::InvalidField {
                field: FIELD,
                expected: "a map",
            });
        };
        let mut metadata = PeerMetadata::default();
        for (key, value) in entries {
            match (key.as_text(), value) {
                (Some("storageId"), Value::Null) => {}
                (Some("storageId"), value) => {
                    metadata.storage_id = Some(as_text(value, "peerMetadata.storageId")?)
                }
                (Some("isEphemeral"), Value::Bool(b)) => metadata.is_ephemeral = b,
                (Some("isEphemeral"), Value::Null) => {}
                (Some("isEphemeral"), _) => {
                    return Err(DecodeError::InvalidField {
                        field: "peerMetadata.isEphemeral",
                        expected: "a boolean",
                    })
                }
                _ => {}
            }
        }
        Ok(Some(metadata))
    }

    fn new_heads(&mut self) -> Result<BTreeMap<String, RemoteHeads>, DecodeError> {
        const FIELD: &str = "newHeads";
        const EXPECTED: &str = "a map of storage id to {heads, timestamp}";
        let invalid = DecodeError::InvalidField {
            field: FIELD,
            expected: EXPECTED,
        };
        let Value::Map(entries) = self.required(FIELD)? else {
            return Err(invalid);
        };
        let mut result = BTreeMap::new();
        for (storage_id, info) in entries {
            let (Value::Text(storage_id), Value::Map(info)) = (storage_id, info) else {
                return Err(invalid);
            };
            let mut heads = RemoteHeads::default();
            for (key, value) in info {
                match (key.as_text(), value) {
                    (Some("heads"), value) => heads.heads = as_text_list(value, FIELD)?,
                    (Some("timestamp"), value) => {
                        heads.timestamp = as_count(&value).ok_or(DecodeError::InvalidField {
                            field: "newHeads.timestamp",
                            expected: "a non-negative integer",
                        })?
                    }
                    _ => {}
                }
            }
            result.insert(storage_id, heads);
        }
        Ok(result)
    }
}

fn known_type(t: &str) -> Result<&'static str, DecodeError> {
    const TYPES: &[&str] = &[
        "join",
        "peer",
        "error",
        "leave",
        "request",
        "sync",
        "doc-unavailable",
        "ephemeral",
        "remote-subscription-change",
        "remote-heads-changed",
    ];
    TYPES
        .iter()
        .copied()
        .find(|known| *known == t)
        .ok_or_else(|| DecodeError::UnknownType(t.chars().take(64).collect()))
}

fn as_text(value: Value, field: &'static str) -> Result<String, DecodeError> {
    match value {
        Value::Text(t) => Ok(t),
        _ => Err(DecodeError::InvalidField {
            field,
            expected: "a string",
        }),
    }
}

fn as_text_list(value: Value, field: &'static str) -> Result<Vec<String>, DecodeError> {
    let invalid = DecodeError::InvalidField {
        field,
        expected: "an array of strings",
    };
    let Value::Array(items) = value else {
        return Err(invalid);
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Text(t) => Ok(t),
            _ => Err(invalid.clone()),
        })
        .collect()
}

/// A non-negative integer, which cbor-x may have written as a float (JS numbers are doubles).
fn as_count(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::Float(f) if f.is_finite() && *f >= 0.0 && f.fract() == 0.0 => {
            (*f <= MAX_SAFE_INTEGER).then_some(*f as u64)
        }
        _ => None,
    }
}

/// Other CBOR encoders mark typed arrays with tag 64; the payload is the same bytes.
fn untag_bytes(value: Value) -> Value {
    match value {
        Value::Tag(TAG_UINT8_ARRAY, inner) if matches!(*inner, Value::Bytes(_)) => *inner,
        other => other,
    }
}
