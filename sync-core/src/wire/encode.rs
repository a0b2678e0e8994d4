//! Encoding messages as the CBOR maps automerge-repo's cbor-x decoder expects: definite-length
//! maps with text keys, text ids, byte-string payloads, unsigned integers, no tags.

use ciborium::Value;

use super::{Message, PeerMetadata, RemoteHeads};
use std::collections::BTreeMap;

/// Encodes one message as one frame.
///
/// Optional fields that are `None` are left out, as JS leaves out `undefined` properties.
/// The caller must not pass an empty `data` payload: automerge-repo refuses to send one and
/// [`super::decode`] rejects it.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut map = MapBuilder::new(msg.type_name());
    match msg {
        Message::Join {
            sender_id,
            peer_metadata,
            supported_protocol_versions,
        } => {
            map.text("senderId", sender_id);
            map.opt("peerMetadata", peer_metadata.as_ref().map(metadata_value));
            map.opt(
                "supportedProtocolVersions",
                supported_protocol_versions.as_deref().map(text_list),
            );
        }
        Message::Peer {
            sender_id,
            peer_metadata,
            selected_protocol_version,
            target_id,
        } => {
            map.text("senderId", sender_id);
            map.opt("peerMetadata", peer_metadata.as_ref().map(metadata_value));
            map.text("selectedProtocolVersion", selected_protocol_version);
            map.text("targetId", target_id);
        }
        Message::Error {
            sender_id,
            message,
            target_id,
        } => {
            map.text("senderId", sender_id);
            map.text("message", message);
            map.opt("targetId", target_id.as_deref().map(text));
        }
        Message::Leave { sender_id } => {
            map.text("senderId", sender_id);
        }
        Message::Request {
            document_id,
            sender_id,
            target_id,
            data,
        }
        | Message::Sync {
            document_id,
            sender_id,
            target_id,
            data,
        } => {
            map.text("documentId", document_id);
            map.text("senderId", sender_id);
            map.text("targetId", target_id);
            map.push("data", Value::Bytes(data.clone()));
        }
        Message::DocUnavailable {
            document_id,
            sender_id,
            target_id,
        } => {
            map.text("documentId", document_id);
            map.text("senderId", sender_id);
            map.text("targetId", target_id);
        }
        Message::Ephemeral {
            document_id,
            sender_id,
            target_id,
            count,
            session_id,
            data,
        } => {
            map.text("documentId", document_id);
            map.text("senderId", sender_id);
            map.text("targetId", target_id);
            map.push("count", js_number(*count));
            map.text("sessionId", session_id);
            map.push("data", Value::Bytes(data.clone()));
        }
        Message::RemoteSubscriptionChange {
            sender_id,
            target_id,
            add,
            remove,
        } => {
            map.text("senderId", sender_id);
            map.text("targetId", target_id);
            map.opt("add", add.as_deref().map(text_list));
            map.opt("remove", remove.as_deref().map(text_list));
        }
        Message::RemoteHeadsChanged {
            sender_id,
            target_id,
            document_id,
            new_heads,
        } => {
            map.text("senderId", sender_id);
            map.text("targetId", target_id);
            map.text("documentId", document_id);
            map.push("newHeads", new_heads_value(new_heads));
        }
    }
    map.finish()
}

/// Collects the entries of the top-level map in a fixed order, `type` first.
struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    fn new(message_type: &str) -> Self {
        Self(vec![(text("type"), text(message_type))])
    }

    fn push(&mut self, key: &str, value: Value) {
        self.0.push((text(key), value));
    }

    fn text(&mut self, key: &str, value: &str) {
        self.push(key, text(value));
    }

    fn opt(&mut self, key: &str, value: Option<Value>) {
        if let Some(value) = value {
            self.push(key, value);
        }
    }

    fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        // Serialising a `Value` into a `Vec` has no failure mode: the writer cannot fail and
        // every variant we build has a CBOR form.
        ciborium::into_writer(&Value::Map(self.0), &mut out)
            .expect("writing CBOR into a Vec cannot fail");
        out
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn text_list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| text(s)).collect())
}

/// A number as cbor-x writes a JS number: integers that need more than 32 bits become
/// float64 (exact up to 2^53). cbor-x reads an 8-byte CBOR integer back as a `BigInt`, which
/// JS code comparing counts or timestamps with `===` would not expect.
fn js_number(n: u64) -> Value {
    const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
    if n > u64::from(u32::MAX) && n <= MAX_SAFE_INTEGER {
        Value::Float(n as f64)
    } else {
        Value::Integer(n.into())
    }
}

fn metadata_value(metadata: &PeerMetadata) -> Value {
    let mut entries = Vec::new();
    if let Some(storage_id) = &metadata.storage_id {
        entries.push((text("storageId"), text(storage_id)));
    }
    entries.push((text("isEphemeral"), Value::Bool(metadata.is_ephemeral)));
    Value::Map(entries)
}

fn new_heads_value(new_heads: &BTreeMap<String, RemoteHeads>) -> Value {
    Value::Map(
        new_heads
            .iter()
            .map(|(storage_id, info)| {
                let info = Value::Map(vec![
                    (text("heads"), text_list(&info.heads)),
                    (text("timestamp"), js_number(info.timestamp)),
                ]);
                (text(storage_id), info)
            })
            .collect(),
    )
}
