//! Replays the wire-frame corpus in `tests/corpus/` through `wire::decode`.
//!
//! Each `*.hex` file holds one frame as hex (whitespace ignored) after `#` comment lines; the
//! line `# expect: ok <type>` or `# expect: err <DecodeError variant>` says what decoding must
//! give. `cborx-*` frames were produced by cbor-x 1.x with automerge-repo's encoder options
//! (`tagUint8Array: false, useRecords: false`); the others are written by `regenerate_corpus`
//! below (run it with `--ignored` after changing it).

use std::fs;
use std::path::{Path, PathBuf};

use ciborium::Value;
use firemode_sync_core::ids::DocumentId;
use firemode_sync_core::wire::{decode, encode, Message, PeerMetadata, RemoteHeads};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

struct Case {
    name: String,
    expect: String,
    bytes: Vec<u8>,
}

fn parse_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let pairs = digits.chunks_exact(2);
    assert!(pairs.remainder().is_empty(), "odd number of hex digits");
    pairs
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn load_corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    for entry in fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("hex") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let mut expect = None;
        let mut hex = String::new();
        for line in text.lines() {
            match line.strip_prefix('#') {
                Some(comment) => {
                    if let Some(e) = comment.trim().strip_prefix("expect:") {
                        expect = Some(e.trim().to_string());
                    }
                }
                None => hex.push_str(line),
            }
        }
        cases.push(Case {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            expect: expect.unwrap_or_else(|| panic!("{} has no '# expect:' line", path.display())),
            bytes: parse_hex(&hex),
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

#[test]
fn corpus_decodes_as_expected() {
    let cases = load_corpus();
    assert!(cases.len() >= 20, "corpus has only {} frames", cases.len());
    for case in cases {
        let result = decode(&case.bytes);
        let (kind, detail) = case.expect.split_once(' ').unwrap_or((&case.expect, ""));
        match (kind, &result) {
            ("ok", Ok(msg)) => {
                assert_eq!(msg.type_name(), detail, "{}", case.name);
                // What we decode we can encode, and it decodes to the same message.
                assert_eq!(decode(&encode(msg)).as_ref(), Ok(msg), "{}", case.name);
            }
            ("err", Err(e)) => {
                let debug = format!("{e:?}");
                assert!(
                    debug.starts_with(detail),
                    "{}: expected {detail}, got {debug}",
                    case.name
                );
            }
            _ => panic!("{}: expected {}, got {result:?}", case.name, case.expect),
        }
    }
}

#[test]
fn cborx_frames_decode_to_the_js_messages() {
    let read = |name: &str| {
        let case = load_corpus().into_iter().find(|c| c.name == name).unwrap();
        decode(&case.bytes).unwrap()
    };
    assert_eq!(
        read("cborx-join.hex"),
        Message::Join {
            sender_id: "u1:tablet".into(),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true
            }),
            supported_protocol_versions: Some(vec!["1".into()]),
        }
    );
    // cbor-x writes 2^32 + 5 as a float64.
    assert!(matches!(
        read("cborx-ephemeral.hex"),
        Message::Ephemeral {
            count: 4_294_967_301,
            ..
        }
    ));
    assert!(matches!(
        read("cborx-remote-subscription-change.hex"),
        Message::RemoteSubscriptionChange { remove: None, .. }
    ));
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    )
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

/// The frames this file writes: (name, expectation, bytes).
fn generated() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let doc = DocumentId::from_bytes([7; 16]).to_string();
    let sync = |data: Value| {
        cbor(&map(vec![
            ("type", t("sync")),
            ("documentId", t(&doc)),
            ("senderId", t("a")),
            ("targetId", t("b")),
            ("data", data),
        ]))
    };
    let leave = encode(&Message::Leave {
        sender_id: "u1:tablet".into(),
    });
    let peer = encode(&Message::Peer {
        sender_id: "server".into(),
        peer_metadata: Some(PeerMetadata {
            storage_id: Some("1b0c2f44-61b8-4a36-a7d3-8f7e0c3f2d10".into()),
            is_ephemeral: false,
        }),
        selected_protocol_version: "1".into(),
        target_id: "u1:tablet".into(),
    });
    let mut nested = cbor(&map(vec![("type", t("leave")), ("senderId", t("a"))]));
    // Replace the map header (2 entries) by 3 and append a key nesting 40 arrays deep.
    nested[0] = 0xa3;
    nested.extend_from_slice(&cbor(&t("x")));
    nested.extend(std::iter::repeat_n(0x81, 40));
    nested.push(0x00);
    let mut indefinite = vec![0xbf];
    for (k, v) in [("type", "leave"), ("senderId", "a")] {
        indefinite.extend(cbor(&t(k)));
        indefinite.extend(cbor(&t(v)));
    }
    indefinite.push(0xff);

    let data = vec![0x42, 0x00, 0x01];
    let rust = |msg: Message| encode(&msg);
    vec![
        ("rust-peer", "ok peer", peer),
        ("rust-leave", "ok leave", leave.clone()),
        (
            "rust-join",
            "ok join",
            rust(Message::Join {
                sender_id: "u1:tablet".into(),
                peer_metadata: Some(PeerMetadata {
                    storage_id: None,
                    is_ephemeral: true,
                }),
                supported_protocol_versions: Some(vec!["1".into()]),
            }),
        ),
        (
            "rust-error",
            "ok error",
            rust(Message::Error {
                sender_id: "server".into(),
                message: "unsupported protocol version".into(),
                target_id: Some("u1:tablet".into()),
            }),
        ),
        (
            "rust-request",
            "ok request",
            rust(Message::Request {
                document_id: doc.clone(),
                sender_id: "u1:tablet".into(),
                target_id: "server".into(),
                data: data.clone(),
            }),
        ),
        (
            "rust-sync",
            "ok sync",
            rust(Message::Sync {
                document_id: doc.clone(),
                sender_id: "server".into(),
                target_id: "u1:tablet".into(),
                data: data.clone(),
            }),
        ),
        (
            "rust-doc-unavailable",
            "ok doc-unavailable",
            rust(Message::DocUnavailable {
                document_id: doc.clone(),
                sender_id: "server".into(),
                target_id: "u1:tablet".into(),
            }),
        ),
        (
            "rust-ephemeral",
            "ok ephemeral",
            rust(Message::Ephemeral {
                document_id: doc.clone(),
                sender_id: "server".into(),
                target_id: "u1:tablet".into(),
                count: 4_294_967_301,
                session_id: "a1b2c3".into(),
                data,
            }),
        ),
        (
            "rust-remote-subscription-change",
            "ok remote-subscription-change",
            rust(Message::RemoteSubscriptionChange {
                sender_id: "u1:tablet".into(),
                target_id: "server".into(),
                add: Some(vec!["s1".into()]),
                remove: Some(vec![]),
            }),
        ),
        (
            "rust-remote-heads-changed",
            "ok remote-heads-changed",
            rust(Message::RemoteHeadsChanged {
                sender_id: "server".into(),
                target_id: "u1:tablet".into(),
                document_id: doc.clone(),
                new_heads: [(
                    "s1".to_string(),
                    RemoteHeads {
                        heads: vec!["abc".into()],
                        timestamp: 1_714_532_645_123,
                    },
                )]
                .into_iter()
                .collect(),
            }),
        ),
        (
            "binary-document-id",
            "ok doc-unavailable",
            cbor(&map(vec![
                ("type", t("doc-unavailable")),
                ("documentId", Value::Bytes(vec![7; 16])),
                ("senderId", t("a")),
                ("targetId", t("b")),
            ])),
        ),
        (
            "spec-metadata-key",
            "ok join",
            cbor(&map(vec![
                ("type", t("join")),
                ("senderId", t("a")),
                ("metadata", map(vec![("isEphemeral", Value::Bool(true))])),
            ])),
        ),
        ("indefinite-length-map", "ok leave", indefinite),
        ("empty", "err Cbor", vec![]),
        ("truncated", "err Cbor", leave[..leave.len() - 3].to_vec()),
        (
            "trailing-garbage",
            "err TrailingBytes",
            [leave, vec![0]].concat(),
        ),
        (
            "not-a-map",
            "err NotAMap",
            cbor(&Value::Array(vec![t("join")])),
        ),
        (
            "unknown-type",
            "err UnknownType",
            cbor(&map(vec![("type", t("gossip")), ("senderId", t("a"))])),
        ),
        (
            "missing-type",
            "err MissingType",
            cbor(&map(vec![("senderId", t("a"))])),
        ),
        (
            "type-not-text",
            "err InvalidField",
            cbor(&map(vec![("type", Value::Integer(1.into()))])),
        ),
        (
            "request-without-document",
            "err MissingField",
            cbor(&map(vec![
                ("type", t("request")),
                ("senderId", t("a")),
                ("targetId", t("b")),
                ("data", Value::Bytes(vec![1])),
            ])),
        ),
        (
            "sync-empty-data",
            "err EmptyData",
            sync(Value::Bytes(vec![])),
        ),
        ("sync-text-data", "err InvalidField", sync(t("AQID"))),
        (
            "duplicate-sender",
            "err DuplicateField",
            cbor(&map(vec![
                ("type", t("leave")),
                ("senderId", t("a")),
                ("senderId", t("b")),
            ])),
        ),
        (
            "negative-count",
            "err InvalidField",
            cbor(&map(vec![
                ("type", t("ephemeral")),
                ("documentId", t(&doc)),
                ("senderId", t("a")),
                ("targetId", t("b")),
                ("count", Value::Integer((-1).into())),
                ("sessionId", t("s")),
                ("data", Value::Bytes(vec![1])),
            ])),
        ),
        ("too-deep", "err Cbor", nested),
        // A byte string claiming 2^64-1 bytes: must fail without allocating them.
        (
            "huge-declared-length",
            "err Cbor",
            vec![
                0xa1, 0x61, b'x', 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        ),
        // Text that is not UTF-8.
        (
            "invalid-utf8",
            "err Cbor",
            vec![0xa1, 0x64, b't', b'y', b'p', b'e', 0x62, 0xc3, 0x28],
        ),
        ("lone-break", "err Cbor", vec![0xff]),
    ]
}

/// Writes the generated frames into `tests/corpus/`. Run with
/// `cargo test -p firemode-sync-core --test corpus -- --ignored`.
#[test]
#[ignore]
fn regenerate_corpus() {
    for (name, expect, bytes) in generated() {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!(
            "# expect: {expect}\n# written by regenerate_corpus in tests/corpus.rs\n{hex}\n"
        );
        fs::write(corpus_dir().join(format!("{name}.hex")), text).unwrap();
    }
}

/// The committed generated frames are the ones this file would write.
#[test]
fn generated_frames_are_committed() {
    let cases = load_corpus();
    for (name, expect, bytes) in generated() {
        let file = format!("{name}.hex");
        let case = cases
            .iter()
            .find(|c| c.name == file)
            .unwrap_or_else(|| panic!("{file} missing: run regenerate_corpus"));
        assert_eq!(case.expect, expect, "{file}");
        assert_eq!(case.bytes, bytes, "{file}");
    }
}
