//! The automerge-repo network protocol, version "1": message types and their CBOR codec.
//!
//! One WebSocket binary frame is one CBOR map with text keys, as the JS side encodes it with
//! cbor-x (`tagUint8Array: false, useRecords: false`, see automerge-repo `helpers/cbor.ts`).
//! Field names follow `network/messages.ts` in `@automerge/automerge-repo` and `messages.ts` in
//! `@automerge/automerge-repo-network-websocket`; the tolerant reading follows samod's
//! `wire_protocol.rs`. See docs/protocol.md.

mod decode;
mod encode;

use std::collections::BTreeMap;

pub use decode::decode;
pub use encode::encode;

/// The only protocol version automerge-repo speaks today.
pub const PROTOCOL_V1: &str = "1";

/// Metadata a peer announces in `join` and `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    /// A UUID the peer keeps in its own storage; absent when it has none.
    pub storage_id: Option<String>,
    /// True when the peer has no storage (it will not come back with the same storage id).
    pub is_ephemeral: bool,
}

/// What one storage id reports in `remote-heads-changed`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteHeads {
    /// The heads, as the sender encoded them (automerge-repo sends base58check strings).
    pub heads: Vec<String>,
    /// The sender's clock when the heads were seen, in milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// One protocol message.
///
/// Peer ids (`sender_id`, `target_id`) and document ids stay strings here: the codec only
/// checks the frame's shape; the caller decides what an id must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First frame from a client.
    Join {
        /// The client's peer id.
        sender_id: String,
        /// The client's storage id and whether it is ephemeral.
        peer_metadata: Option<PeerMetadata>,
        /// Protocol versions the client speaks; `None` means it did not say (accept "1").
        supported_protocol_versions: Option<Vec<String>>,
    },
    /// The server's answer to `join`.
    Peer {
        /// The server's peer id.
        sender_id: String,
        /// The server's storage id and whether it is ephemeral.
        peer_metadata: Option<PeerMetadata>,
        /// The protocol version chosen for this connection ("1").
        selected_protocol_version: String,
        /// The client's peer id.
        target_id: String,
    },
    /// A fatal protocol error; the sender closes the connection after it.
    Error {
        /// The sender's peer id. samod leaves it out; it then decodes as the empty string.
        sender_id: String,
        /// What went wrong, for humans.
        message: String,
        /// The peer the error is meant for, when known.
        target_id: Option<String>,
    },
    /// Advisory: the sender is going away.
    Leave {
        /// The departing peer.
        sender_id: String,
    },
    /// "I do not have this document": the first sync message for a document.
    Request {
        /// The document, in base58check form.
        document_id: String,
        /// The sending peer.
        sender_id: String,
        /// The receiving peer.
        target_id: String,
        /// An automerge sync message (never empty).
        data: Vec<u8>,
    },
    /// A sync message for a document both peers may have.
    Sync {
        /// The document, in base58check form.
        document_id: String,
        /// The sending peer.
        sender_id: String,
        /// The receiving peer.
        target_id: String,
        /// An automerge sync message (never empty).
        data: Vec<u8>,
    },
    /// The answer to a `request` that cannot be served.
    DocUnavailable {
        /// The document, in base58check form.
        document_id: String,
        /// The sending peer.
        sender_id: String,
        /// The receiving peer.
        target_id: String,
    },
    /// Application data (presence etc.) relayed to the other peers of a document.
    Ephemeral {
        /// The document, in base58check form.
        document_id: String,
        /// The sending peer.
        sender_id: String,
        /// The receiving peer.
        target_id: String,
        /// Per-session sequence number; (`session_id`, `count`) identifies duplicates.
        count: u64,
        /// Random id of the sender's session.
        session_id: String,
        /// The application payload (never empty).
        data: Vec<u8>,
    },
    /// Gossip: change the set of storage ids whose heads the sender wants to hear about.
    RemoteSubscriptionChange {
        /// The sending peer.
        sender_id: String,
        /// The receiving peer.
        target_id: String,
        /// Storage ids to add, when present.
        add: Option<Vec<String>>,
        /// Storage ids to remove, when present.
        remove: Option<Vec<String>>,
    },
    /// Gossip: the heads of a document changed on some storage.
    RemoteHeadsChanged {
        /// The sending peer.
        sender_id: String,
        /// The receiving peer.
        target_id: String,
        /// The document, in base58check form.
        document_id: String,
        /// New heads per storage id.
        new_heads: BTreeMap<String, RemoteHeads>,
    },
}

impl Message {
    /// The value of the frame's `type` field for this message.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Error { .. } => "error",
            Message::Leave { .. } => "leave",
            Message::Request { .. } => "request",
            Message::Sync { .. } => "sync",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
        }
    }

    /// The peer that sent the message.
    pub fn sender_id(&self) -> &str {
        match self {
            Message::Join { sender_id, .. }
            | Message::Peer { sender_id, .. }
            | Message::Error { sender_id, .. }
            | Message::Leave { sender_id }
            | Message::Request { sender_id, .. }
            | Message::Sync { sender_id, .. }
            | Message::DocUnavailable { sender_id, .. }
            | Message::Ephemeral { sender_id, .. }
            | Message::RemoteSubscriptionChange { sender_id, .. }
            | Message::RemoteHeadsChanged { sender_id, .. } => sender_id,
        }
    }

    /// The document the message is about, for the document-scoped messages.
    pub fn document_id(&self) -> Option<&str> {
        match self {
            Message::Request { document_id, .. }
            | Message::Sync { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. }
            | Message::RemoteHeadsChanged { document_id, .. } => Some(document_id),
            _ => None,
        }
    }
}

/// Why a frame is not a protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not one well-formed CBOR item (or nest too deeply).
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    /// Bytes follow the CBOR item.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// The CBOR item is not a map.
    #[error("a message is a CBOR map")]
    NotAMap,
    /// The map has no `type` field.
    #[error("the message has no \"type\" field")]
    MissingType,
    /// The `type` is not one of protocol v1's.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A field this message type requires is absent (or null).
    #[error("\"{field}\" is required in a \"{message_type}\" message")]
    MissingField {
        /// The message type.
        message_type: &'static str,
        /// The absent field.
        field: &'static str,
    },
    /// A field has the wrong CBOR type or an impossible value.
    #[error("\"{field}\" must be {expected}")]
    InvalidField {
        /// The offending field.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// A known field appears twice in the map.
    #[error("\"{0}\" appears more than once")]
    DuplicateField(&'static str),
    /// `data` is present but empty; automerge-repo never sends an empty payload.
    #[error("\"data\" must not be empty")]
    EmptyData,
}

#[cfg(test)]
mod tests;
