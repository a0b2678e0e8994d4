use std::collections::BTreeMap;

use ciborium::Value;

use super::*;
use crate::ids::DocumentId;

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Builds a frame from (key, value) pairs, as another encoder would.
fn frame(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let map = Value::Map(entries.into_iter().map(|(k, v)| (t(k), v)).collect());
    let mut out = Vec::new();
    ciborium::into_writer(&map, &mut out).unwrap();
    out
}

fn sample_messages() -> Vec<Message> {
    let metadata = Some(PeerMetadata {
        storage_id: Some("3c2a5e9e-1f4b-4f63-9d2a-1b7f0c5e8a91".into()),
        is_ephemeral: false,
    });
    let mut new_heads = BTreeMap::new();
    new_heads.insert(
        "storage-a".to_string(),
        RemoteHeads {
            heads: vec!["2Jd4d8".into()],
            timestamp: 1_700_000_000_000,
        },
    );
    vec![
        Message::Join {
            sender_id: "u:d".into(),
            peer_metadata: metadata.clone(),
            supported_protocol_versions: Some(vec!["1".into()]),
        },
        Message::Peer {
            sender_id: "server".into(),
            peer_metadata: metadata,
            selected_protocol_version: "1".into(),
            target_id: "u:d".into(),
        },
        Message::Error {
            sender_id: "server".into(),
            message: "unsupported protocol version".into(),
            target_id: Some("u:d".into()),
        },
        Message::Leave {
            sender_id: "u:d".into(),
        },
        Message::Request {
            document_id: "4NMNnkMhL8jXrdJ9jamS58PAVdXu".into(),
            sender_id: "u:d".into(),
            target_id: "server".into(),
            data: vec![0x42, 1, 2],
        },
        Message::Sync {
            document_id: "4NMNnkMhL8jXrdJ9jamS58PAVdXu".into(),
            sender_id: "server".into(),
            target_id: "u:d".into(),
            data: vec![0x42],
        },
        Message::DocUnavailable {
            document_id: "4NMNnkMhL8jXrdJ9jamS58PAVdXu".into(),
            sender_id: "server".into(),
            target_id: "u:d".into(),
        },
        Message::Ephemeral {
            document_id: "4NMNnkMhL8jXrdJ9jamS58PAVdXu".into(),
            sender_id: "u:d".into(),
            target_id: "server".into(),
            count: 7,
            session_id: "abc".into(),
            data: vec![1],
        },
        Message::RemoteSubscriptionChange {
            sender_id: "u:d".into(),
            target_id: "server".into(),
            add: Some(vec!["s1".into()]),
            remove: None,
        },
        Message::RemoteHeadsChanged {
            sender_id: "u:d".into(),
            target_id: "server".into(),
            document_id: "4NMNnkMhL8jXrdJ9jamS58PAVdXu".into(),
            new_heads,
        },
    ]
}

#[test]
fn every_message_type_roundtrips() {
    for msg in sample_messages() {
        assert_eq!(
            decode(&encode(&msg)),
            Ok(msg.clone()),
            "{}",
            msg.type_name()
        );
    }
}

#[test]
fn encoding_is_a_plain_definite_length_map() {
    // {"type": "leave", "senderId": "a"}, byte for byte what cbor-x writes for that object.
    let bytes = encode(&Message::Leave {
        sender_id: "a".into(),
    });
    let expected = [
        0xa2, 0x64, b't', b'y', b'p', b'e', 0x65, b'l', b'e', b'a', b'v', b'e', 0x68, b's', b'e',
        b'n', b'd', b'e', b'r', b'I', b'd', 0x61, b'a',
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn large_numbers_are_written_as_cbor_x_writes_them() {
    let ephemeral = |count| Message::Ephemeral {
        document_id: "d".into(),
        sender_id: "a".into(),
        target_id: "b".into(),
        count,
        session_id: "s".into(),
        data: vec![1],
    };
    // Above 2^32 cbor-x writes a float64 (an 8-byte integer would decode as a JS BigInt).
    let bytes = encode(&ephemeral(4_294_967_301));
    assert!(bytes
        .windows(9)
        .any(|w| w == [0xfb, 0x41, 0xf0, 0, 0, 0, 0x50, 0, 0]));
    for count in [
        0,
        23,
        24,
        u64::from(u32::MAX),
        1 << 32,
        (1 << 53) - 1,
        1 << 53,
        u64::MAX,
    ] {
        assert_eq!(decode(&encode(&ephemeral(count))), Ok(ephemeral(count)));
    }
}

#[test]
fn reads_what_js_peers_send() {
    // cbor-x: integer-valued doubles for counts, `undefined` (0xf7) for absent properties.
    let mut bytes = frame(vec![
        ("type", t("join")),
        ("senderId", t("u:d")),
        (
            "peerMetadata",
            Value::Map(vec![
                (t("storageId"), Value::Null),
                (t("isEphemeral"), Value::Bool(true)),
            ]),
        ),
        ("somethingNew", Value::Integer(3.into())),
    ]);
    // Swap the null (0xf6) for undefined (0xf7) as cbor-x writes it.
    let pos = bytes.iter().position(|b| *b == 0xf6).unwrap();
    bytes[pos] = 0xf7;
    assert_eq!(
        decode(&bytes),
        Ok(Message::Join {
            sender_id: "u:d".into(),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true
            }),
            supported_protocol_versions: None,
        })
    );

    let id = DocumentId::from_bytes([9; 16]);
    let bytes = frame(vec![
        ("type", t("ephemeral")),
        ("senderId", t("u:d")),
        ("targetId", t("server")),
        ("documentId", Value::Bytes(id.as_bytes().to_vec())),
        ("count", Value::Float(12.0)),
        ("sessionId", t("s")),
        ("data", Value::Tag(64, Box::new(Value::Bytes(vec![1, 2])))),
    ]);
    assert_eq!(
        decode(&bytes),
        Ok(Message::Ephemeral {
            document_id: id.to_string(),
            sender_id: "u:d".into(),
            target_id: "server".into(),
            count: 12,
            session_id: "s".into(),
            data: vec![1, 2],
        })
    );

    // The written spec's `metadata` is the same field as `peerMetadata`.
    let bytes = frame(vec![
        ("type", t("peer")),
        ("senderId", t("server")),
        ("selectedProtocolVersion", t("1")),
        ("targetId", t("u:d")),
        (
            "metadata",
            Value::Map(vec![(t("isEphemeral"), Value::Bool(false))]),
        ),
    ]);
    assert!(matches!(
        decode(&bytes),
        Ok(Message::Peer {
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: false
            }),
            ..
        })
    ));

    // samod's error frames have only a message.
    let bytes = frame(vec![("type", t("error")), ("message", t("boom"))]);
    assert_eq!(
        decode(&bytes),
        Ok(Message::Error {
            sender_id: String::new(),
            message: "boom".into(),
            target_id: None
        })
    );
}

#[test]
fn rejects_what_must_be_rejected() {
    let sync = |data: Value| {
        frame(vec![
            ("type", t("sync")),
            ("documentId", t("x")),
            ("senderId", t("a")),
            ("targetId", t("b")),
            ("data", data),
        ])
    };
    assert_eq!(
        decode(&sync(Value::Bytes(vec![]))),
        Err(DecodeError::EmptyData)
    );
    assert!(matches!(
        decode(&sync(t("not bytes"))),
        Err(DecodeError::InvalidField { field: "data", .. })
    ));
    let mut trailing = sync(Value::Bytes(vec![1]));
    trailing.push(0);
    assert_eq!(decode(&trailing), Err(DecodeError::TrailingBytes(1)));

    assert_eq!(
        decode(&frame(vec![("type", t("gossip"))])),
        Err(DecodeError::UnknownType("gossip".into()))
    );
    assert_eq!(
        decode(&frame(vec![("senderId", t("a"))])),
        Err(DecodeError::MissingType)
    );
    assert_eq!(
        decode(&frame(vec![("type", t("request")), ("senderId", t("a"))])),
        Err(DecodeError::MissingField {
            message_type: "request",
            field: "documentId"
        })
    );
    assert_eq!(
        decode(&frame(vec![
            ("type", t("leave")),
            ("senderId", t("a")),
            ("senderId", t("b")),
        ])),
        Err(DecodeError::DuplicateField("senderId"))
    );
    assert!(matches!(
        decode(&frame(vec![
            ("type", t("ephemeral")),
            ("documentId", t("x")),
            ("senderId", t("a")),
            ("targetId", t("b")),
            ("count", Value::Float(1.5)),
            ("sessionId", t("s")),
            ("data", Value::Bytes(vec![1])),
        ])),
        Err(DecodeError::InvalidField { field: "count", .. })
    ));

    let mut not_a_map = Vec::new();
    ciborium::into_writer(&Value::Array(vec![t("join")]), &mut not_a_map).unwrap();
    assert_eq!(decode(&not_a_map), Err(DecodeError::NotAMap));
    assert!(matches!(decode(&[]), Err(DecodeError::Cbor(_))));
    assert!(matches!(decode(&[0xa1, 0x64]), Err(DecodeError::Cbor(_))));
    // 10 000 nested arrays must be refused, not recursed into.
    let deep = [vec![0x81; 10_000], vec![0x00]].concat();
    assert!(matches!(decode(&deep), Err(DecodeError::Cbor(_))));
}
