//! `bench results`: `POST /v1/tests/sessions/{id}/results` with a few items per request (5 by
//! default), as the office or a tablet without sync records them: each request passes the
//! next items of the next session (round robin over `--sessions` sessions of one building),
//! with notes that differ every time so every request is a real change, and a fresh
//! `Idempotency-Key`. Per request the server checks each result against its rule, commits one
//! automerge change through the session's document actor, projects the session's changed rows
//! (the request waits for that, so a read right after sees them), writes an audit row and
//! answers.

use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;
use firemode_client::{Auth, Client, Error};
use serde_json::json;
use uuid::Uuid;

use super::Workload;

#[derive(Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub common: crate::BenchArgs,
    /// Results per request.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub items: u16,
    /// Sessions the requests go round (created for the run, on one building).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub sessions: u16,
    /// Assets of the building created for the run (eight kinds with six-monthly routines).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub assets: u16,
}

pub struct RecordResults {
    sessions: Vec<Uuid>,
    /// The sessions' items (the same for each: one building, one frequency).
    assets: Vec<String>,
    items: usize,
    next: AtomicU64,
}

impl RecordResults {
    /// Log in, create a building with `assets` assets and `sessions` six-monthly sessions.
    pub async fn setup(
        client: &Client,
        email: &str,
        password: &str,
        args: &ResultsArgs,
    ) -> Result<Self, Error> {
        use super::fixtures;
        client.login(email, password).await?;
        let building = fixtures::create_building(
            client,
            &super::workloads::SIX_MONTHLY_KINDS,
            usize::from(args.assets),
        )
        .await?;
        let mut sessions = Vec::new();
        for n in 0..args.sessions {
            let s = fixtures::create_session(
                client,
                building,
                &format!("results bench {n}"),
                "six_monthly",
            )
            .await?;
            sessions.push(s.id);
        }
        let list: serde_json::Value = client
            .get_json(&format!("/v1/tests/sessions/{}/results", sessions[0]))
            .await?;
        let assets: Vec<String> = list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["asset_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let me = RecordResults {
            sessions,
            assets,
            items: usize::from(args.items),
            next: AtomicU64::new(0),
        };
        // Fail here, not in every request of the loop, if recording cannot work.
        me.run_one(client).await?;
        Ok(me)
    }
}

impl Workload for RecordResults {
    fn name(&self) -> &'static str {
        "results"
    }

    async fn run_one(&self, client: &Client) -> Result<(), Error> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let session = self.sessions[n % self.sessions.len()];
        // The next window of items of this session (each session takes every len-th request).
        let round = n / self.sessions.len();
        let count = self.items.min(self.assets.len());
        let results: Vec<serde_json::Value> = (0..count)
            .map(|i| {
                let asset = &self.assets[(round * count + i) % self.assets.len()];
                json!({ "asset_id": asset, "outcome": "pass", "notes": format!("bench {n}") })
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "results": results })).expect("JSON");
        let key = Uuid::new_v4().to_string();
        client
            .execute(
                Auth::Bearer,
                &format!("/v1/tests/sessions/{session}/results"),
                |http, url| {
                    http.post(url)
                        .header("idempotency-key", &key)
                        .header("content-type", "application/json")
                        .body(body.clone())
                },
            )
            .await
            .map(drop)
    }
}

/// `firemode-cli bench results`.
pub async fn run(args: &ResultsArgs, json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let common = &args.common;
    let client = crate::bench_client(common)?;
    let workload = RecordResults::setup(&client, &common.email, &common.password, args)
        .await
        .context("setup failed")?;
    crate::bench_run(workload, client, common, json).await
}
