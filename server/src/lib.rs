//! FireMode server: the REST API and the automerge-repo sync hub, as a library so tests (and the
//! thin `main.rs`) can start it on any listener.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cli;
pub mod compliance;
pub mod config;
pub mod crypto;
pub mod evidence;
pub mod http;
pub mod hub;
pub mod projection;
pub mod rules;
pub mod state;
pub mod store;
pub mod telemetry;

pub use http::{app, serve};
pub use state::AppState;
