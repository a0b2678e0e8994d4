//! FireMode end-to-end suite. Every test starts the real server (in-process on a real socket,
//! or the real binary as a subprocess) on its own SQLite file or PostgreSQL database; `docs`
//! checks the documentation against the repository and the code.

mod attack;
mod auth;
mod backup;
mod browsers_and_proxies;
mod buildings;
mod cli;
mod cli_backoffice;
mod cli_tool;
mod compliance;
mod conflicts;
mod convergence;
mod defects;
mod docs;
mod document_store;
mod durability;
mod editions;
mod email_notices;
mod evidence;
mod evidence_s3;
mod hardening;
mod http_basics;
mod hub_lifecycle;
mod hub_without_sockets;
mod idempotency;
mod input_rules;
mod js_conformance;
mod multinode;
mod notices;
mod onboarding;
mod openapi_contract;
mod operations;
mod pii;
mod readings;
mod records;
mod reference_values;
mod roles;
mod rules;
mod samod_client;
mod schedule;
mod sessions;
mod store_conformance;
mod sync;
mod sync_ack;
mod users;
