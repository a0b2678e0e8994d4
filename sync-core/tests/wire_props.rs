//! Property tests of the wire codec and document ids.

use ciborium::Value;
use firemode_sync_core::automerge::ChangeHash;
use firemode_sync_core::ids::{decode_heads, encode_heads, parse_url, DocumentId};
use firemode_sync_core::wire::{decode, encode, Message, PeerMetadata, RemoteHeads};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use uuid::Uuid;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9:_-]{0,24}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..64)
}

fn metadata() -> impl Strategy<Value = Option<PeerMetadata>> {
    option::of(
        (option::of(text()), any::<bool>()).prop_map(|(storage_id, is_ephemeral)| PeerMetadata {
            storage_id,
            is_ephemeral,
        }),
    )
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..4)
}

fn message() -> impl Strategy<Value = Message> {
    let heads = btree_map(
        text(),
        (texts(), any::<u64>()).prop_map(|(heads, timestamp)| RemoteHeads { heads, timestamp }),
        0..3,
    );
    prop_oneof![
        (text(), metadata(), option::of(texts())).prop_map(|(s, m, v)| Message::Join {
            sender_id: s,
            peer_metadata: m,
            supported_protocol_versions: v,
        }),
        (text(), metadata(), text(), text()).prop_map(|(s, m, v, t)| Message::Peer {
            sender_id: s,
            peer_metadata: m,
            selected_protocol_version: v,
            target_id: t,
        }),
        (text(), text(), option::of(text())).prop_map(|(s, m, t)| Message::Error {
            sender_id: s,
            message: m,
            target_id: t,
        }),
        text().prop_map(|s| Message::Leave { sender_id: s }),
        (text(), text(), text(), data()).prop_map(|(d, s, t, data)| Message::Request {
            document_id: d,
            sender_id: s,
            target_id: t,
            data,
        }),
        (text(), text(), text(), data()).prop_map(|(d, s, t, data)| Message::Sync {
            document_id: d,
            sender_id: s,
            target_id: t,
            data,
        }),
        (text(), text(), text()).prop_map(|(d, s, t)| Message::DocUnavailable {
            document_id: d,
            sender_id: s,
            target_id: t,
        }),
        (text(), text(), text(), any::<u64>(), text(), data()).prop_map(
            |(d, s, t, count, session_id, data)| Message::Ephemeral {
                document_id: d,
                sender_id: s,
                target_id: t,
                count,
                session_id,
                data,
            }
        ),
        (text(), text(), option::of(texts()), option::of(texts())).prop_map(
            |(s, t, add, remove)| Message::RemoteSubscriptionChange {
                sender_id: s,
                target_id: t,
                add,
                remove,
            }
        ),
        (text(), text(), text(), heads).prop_map(|(s, t, d, new_heads)| {
            Message::RemoteHeadsChanged {
                sender_id: s,
                target_id: t,
                document_id: d,
                new_heads,
            }
        }),
    ]
}

/// CBOR values shaped like frames: maps whose keys are mostly protocol keys, holding values
/// of every type, nested a little.
fn frame_like() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "type",
        "senderId",
        "targetId",
        "documentId",
        "data",
        "peerMetadata",
        "metadata",
        "storageId",
        "isEphemeral",
        "supportedProtocolVersions",
        "selectedProtocolVersion",
        "count",
        "sessionId",
        "message",
        "add",
        "remove",
        "newHeads",
        "heads",
        "timestamp",
    ];
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
    let key = prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(|k| Value::Text(k.to_string())),
        1 => any::<i64>().prop_map(|i| Value::Integer(i.into())),
    ];
    let leaf = prop_oneof![
        proptest::sample::select(TYPES).prop_map(|t| Value::Text(t.to_string())),
        text().prop_map(Value::Text),
        vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        any::<i64>().prop_map(|i| Value::Integer(i.into())),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    let value = leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((inner.clone(), inner.clone()), 0..6).prop_map(Value::Map),
            (0u64..100, inner).prop_map(|(tag, v)| Value::Tag(tag, Box::new(v))),
        ]
    });
    vec((key, value), 0..10).prop_map(Value::Map)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(msg in message()) {
        prop_assert_eq!(decode(&encode(&msg)), Ok(msg));
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_frame_like_values(value in frame_like()) {
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        if let Ok(msg) = decode(&bytes) {
            // Whatever decodes re-encodes to the same message.
            prop_assert_eq!(decode(&encode(&msg)), Ok(msg));
        }
    }

    #[test]
    fn decode_never_panics_on_damaged_frames(
        msg in message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&msg);
        for (index, byte) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= byte;
        }
        let _ = decode(&bytes);
        let _ = decode(&bytes[..cut.index(bytes.len())]);
    }

    #[test]
    fn document_id_display_parse_roundtrip(bytes in any::<[u8; 16]>()) {
        let id = DocumentId::from_bytes(bytes);
        prop_assert_eq!(id.to_string().parse::<DocumentId>(), Ok(id));
        prop_assert_eq!(id.url().parse::<DocumentId>(), Ok(id));
        let uuid = Uuid::from_bytes(bytes);
        prop_assert_eq!(uuid.to_string().parse::<DocumentId>(), Ok(id));
        prop_assert_eq!(uuid.simple().to_string().parse::<DocumentId>(), Ok(id));
        prop_assert_eq!(DocumentId::from_uuid(uuid).as_uuid(), uuid);
    }

    #[test]
    fn url_heads_roundtrip(
        bytes in any::<[u8; 16]>(),
        heads in vec(any::<[u8; 32]>().prop_map(ChangeHash), 0..4),
    ) {
        let id = DocumentId::from_bytes(bytes);
        prop_assert_eq!(parse_url(&id.url_with_heads(&heads)), Ok((id, Some(heads.clone()))));
        prop_assert_eq!(decode_heads(&encode_heads(&heads)), Ok(heads));
    }

    #[test]
    fn id_parsing_never_panics(s in any::<String>()) {
        let _ = s.parse::<DocumentId>();
        let _ = parse_url(&s);
        let _ = parse_url(&format!("automerge:{s}"));
        let _ = decode_heads(&s);
    }
}
