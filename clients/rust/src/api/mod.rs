//! Endpoints, one module per resource, each a few lines on top of the generic helpers in
//! `client.rs`. New resources (buildings, sessions, conflicts, history) go in new modules here.

mod auth;
mod users;
