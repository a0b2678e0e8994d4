//! FireMode end-to-end suite. Every test starts the real server (in-process on a real socket,
//! or the real binary as a subprocess) on its own SQLite file or PostgreSQL database.

mod auth;
mod buildings;
mod cli;
mod cli_tool;
mod compliance;
mod conflicts;
mod convergence;
mod defects;
mod durability;
mod evidence;
mod hardening;
mod http_basics;
mod hub_lifecycle;
mod idempotency;
mod js_conformance;
mod pii;
mod rules;
mod samod_client;
mod sessions;
mod store_conformance;
mod sync;
mod sync_ack;
mod users;
