//! FireMode sync core (sans-IO).
//!
//! Bytes and documents in, bytes and documents out: the automerge-repo wire codec
//! ([`wire`]), document ids and URLs ([`ids`]), the session document schema with its writes and
//! projection ([`session`]), and history and conflict views ([`history`]). No I/O, no clock,
//! no randomness: time and actor ids are arguments, so everything here is deterministic and
//! tested without a runtime.
//!
//! Every function that reads input from the network or from a client-edited document is
//! total: it returns an error or flags a problem, and never panics.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod history;
pub mod ids;
mod read;
pub mod replica;
pub mod session;
pub mod wire;

pub use automerge;
pub use history::{change_summaries, conflicts, ChangeSummary, Conflict, ConflictValue};
pub use ids::{decode_heads, encode_heads, parse_url, DocumentId, IdError};
pub use session::{
    apply_results, create_session_document, heads_known, project, project_items, set_name,
    set_sign_off, set_status, to_json, ItemInit, Outcome, ProjectedItem, Projection,
    ProjectionCache, ReadingValue, ResultInput, SchemaProblem, SessionError, SessionInit, SignOff,
};
pub use wire::{DecodeError, Message, PeerMetadata};
