//! Endpoints, one module per resource, each a few lines on top of the generic helpers in
//! `client.rs`. New resources (buildings, defects, ...) go in new modules here.

mod auth;
pub(crate) mod sessions;
mod users;
