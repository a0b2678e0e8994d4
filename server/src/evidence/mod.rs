//! Evidence bytes: receiving uploads (spooled to disk, hashed while streaming), recognising
//! their type by magic bytes, and keeping them in the object store under their SHA-256.
//! The HTTP side is `http::evidence`; records are `store::evidence`.

pub mod objects;
pub mod sniff;
pub mod spool;

pub use objects::{EvidenceObjects, Stored};
