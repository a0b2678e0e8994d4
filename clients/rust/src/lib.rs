//! A typed async client for the FireMode REST API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), firemode_client::Error> {
//! use firemode_client::Client;
//!
//! let client = Client::new("http://127.0.0.1:8080")?;
//! client.login("admin@acme.test", "change-me-now-please").await?;
//! let me = client.me().await?;
//! println!("{} ({})", me.email, me.role);
//! # Ok(()) }
//! ```
//!
//! The [`Client`] holds the token pair from [`Client::login`]. When a request is answered 401
//! because the access token has expired, it exchanges the refresh token once (one refresh at a
//! time per client, because the server rotates refresh tokens and treats reuse of a rotated one
//! as theft) and retries the request once. Error answers (RFC 9457 problem+json) become
//! [`ApiError`].
//!
//! Endpoints are thin methods in `api/<resource>.rs` on top of the generic
//! [`Client::get_json`], [`Client::post_json`], [`Client::patch_json`] and, for anything else
//! (multipart, streaming, custom headers), [`Client::execute`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
pub mod cli;
mod client;
mod error;
mod types;

pub use api::sessions::{
    parse_session_id, Author, Conflict, ConflictKind, ConflictValue, Conflicts, History,
    HistoryEntry, ItemConflicts, ItemResolution, ItemResolved, ItemSide, Resolved, RuleSetRef,
    Session, SessionDocument, SessionFilter, SessionStatus,
};
pub use client::{Auth, Client};
pub use error::{ApiError, Error};
pub use types::{NewUser, Page, PageRequest, Role, TokenPair, Tokens, User};

/// Re-exported so callers of [`Client::execute`] can name request builders and responses.
pub use reqwest;
