//! FireMode server: the REST API and the automerge-repo sync hub, as a library so tests (and the
//! thin `main.rs`) can start it on any listener.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod compliance;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod evidence;
pub mod http;
pub mod hub;
pub mod live;
pub mod notices;
pub mod projection;
pub mod purge;
pub mod records;
pub mod rules;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tolerance;

pub use http::{app, serve, serve_metrics};

/// With the `mimalloc` feature, mimalloc replaces glibc's allocator in every binary linking
/// this library (see docs/benchmarks.md, "Login storm", for what each does with memory freed
/// after a burst).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub use state::AppState;
