//! Benchmark of `GET /v1/buildings/{id}/compliance` (see docs/benchmarks.md).
//!
//! `seed` writes a large building straight into a database (through the server's store, plus
//! SQL for defects): an organisation and admin, 2,000 assets of four equipment kinds, ten
//! six-monthly visits over five years (every second one a yearly service) with one projected
//! item per asset each, and open and closed defects. `time` logs in to a running server and
//! times sequential report requests, printing p50/p95.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{Months, Utc};
use clap::{Parser, Subcommand};
use firemode_server::config::DatabaseUrl;
use firemode_server::store::buildings::{AssetRecord, BuildingRecord};
use firemode_server::store::sessions::{ItemRow, ItemsWrite, SessionRow};
use firemode_server::store::{NewUser, Role};
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Seed a large building and time its compliance report")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the building in the database (migrations and rule library included).
    Seed {
        /// sqlite://<path> or postgres://user@host/db
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 2000)]
        assets: usize,
        /// Six-monthly visits, oldest five years back from today.
        #[arg(long, default_value_t = 10)]
        sessions: u32,
        #[arg(long, default_value = "bench-admin@example.test")]
        email: String,
        #[arg(long, default_value = "bench-password-123")]
        password: String,
    },
    /// Create an organisation of many buildings (the organisation-wide schedule benchmark):
    /// `buildings` × `assets_per_building` assets, `visits` six-monthly services each (as
    /// projected session items, every second visit a yearly one), and for a third of the
    /// assets an imported service of the five-yearly routine.
    SeedOrg {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 250)]
        buildings: usize,
        #[arg(long, default_value_t = 200)]
        assets_per_building: usize,
        #[arg(long, default_value_t = 4)]
        visits: u32,
        #[arg(long, default_value = "bench-admin@example.test")]
        email: String,
        #[arg(long, default_value = "bench-password-123")]
        password: String,
    },
    /// Time the report on a running server.
    Time {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value = "bench-admin@example.test")]
        email: String,
        #[arg(long, default_value = "bench-password-123")]
        password: String,
        /// The building whose report is timed (unless `--path`).
        #[arg(long)]
        building: Option<Uuid>,
        #[arg(long, default_value_t = 50)]
        requests: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// json, csv or pdf
        #[arg(long, default_value = "json")]
        format: String,
        /// Time this path (with its query) instead of the building's report.
        #[arg(long)]
        path: Option<String>,
        /// The server's process id: its CPU time per request is read from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Before each request (untimed), change what schedules are computed from (the
        /// organisation's holidays of 2100), so that no cached schedule can answer it.
        #[arg(long)]
        invalidate: bool,
        /// Before each request (untimed), change one building picked at random: record an
        /// office service of one of its extinguishers (even requests) or edit one of its
        /// assets' location (odd ones) — what most requests of a busy organisation follow.
        #[arg(long, conflicts_with = "invalidate")]
        change_building: bool,
    },
    /// Time the console's building page: its four requests, sent together (the building, its
    /// compliance report, its first 100 assets, its schedule for the next 90 days).
    BuildingPage {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value = "bench-admin@example.test")]
        email: String,
        #[arg(long, default_value = "bench-password-123")]
        password: String,
        #[arg(long)]
        building: Uuid,
        #[arg(long, default_value_t = 30)]
        requests: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long)]
        server_pid: Option<u32>,
        /// As for `time`: every page load after a change.
        #[arg(long)]
        invalidate: bool,
    },
}

/// (equipment kind, share of the assets, six-monthly rule, yearly rule, tag prefix)
const KINDS: [(&str, u32, &str, &str, &str); 4] = [
    (
        "portable_extinguisher",
        70,
        "AS1851-10-6M-EXT",
        "AS1851-10-12M-EXT",
        "EXT",
    ),
    (
        "fire_hose_reel",
        10,
        "AS1851-9-6M-HR",
        "AS1851-9-12M-HR",
        "FHR",
    ),
    (
        "emergency_lighting",
        10,
        "AS2293-6M-EL",
        "AS2293-12M-EL",
        "EL",
    ),
    ("fire_door", 10, "AS1851-12-6M-FD", "AS1851-12-12M-FD", "FD"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Seed {
            database_url,
            assets,
            sessions,
            email,
            password,
        } => seed(&database_url, assets, sessions, &email, &password).await,
        Command::SeedOrg {
            database_url,
            buildings,
            assets_per_building,
            visits,
            email,
            password,
        } => {
            seed_org(
                &database_url,
                buildings,
                assets_per_building,
                visits,
                &email,
                &password,
            )
            .await
        }
        Command::Time {
            url,
            email,
            password,
            building,
            requests,
            warmup,
            format,
            path,
            server_pid,
            invalidate,
            change_building,
        } => {
            let change = if invalidate {
                Change::Holidays
            } else if change_building {
                Change::Building
            } else {
                Change::None
            };
            let target = match (path, building) {
                (Some(p), _) => format!("{url}{p}"),
                (None, Some(b)) => format!("{url}/v1/buildings/{b}/compliance?format={format}"),
                (None, None) => bail!("give --building or --path"),
            };
            time(
                &url, &email, &password, &target, requests, warmup, server_pid, change,
            )
            .await
        }
        Command::BuildingPage {
            url,
            email,
            password,
            building,
            requests,
            warmup,
            server_pid,
            invalidate,
        } => {
            building_page(
                &url, &email, &password, building, requests, warmup, server_pid, invalidate,
            )
            .await
        }
    }
}

async fn login(
    http: &reqwest::Client,
    url: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let login: serde_json::Value = http
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(login["access_token"]
        .as_str()
        .context("no access_token in the login answer")?
        .to_owned())
}

/// Replace the organisation's NSW holidays of 2100: a change every schedule's version counts
/// (and no schedule looks at).
async fn invalidate_schedules(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    n: usize,
) -> anyhow::Result<()> {
    let day = format!("2100-01-{:02}", 10 + n % 10);
    http.put(format!("{url}/v1/holidays/NSW/2100"))
        .bearer_auth(token)
        .json(&json!({ "holidays": [{ "date": day, "name": "Bench" }] }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// What `time` changes before each request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    /// The organisation's holidays (every building's schedule).
    Holidays,
    /// One building picked at random.
    Building,
}

/// The buildings of the organisation and, per building, an extinguisher and another asset.
struct Targets {
    buildings: Vec<(String, String, String)>,
}

impl Targets {
    async fn load(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Self> {
        let list: serde_json::Value = http
            .get(format!("{url}/v1/buildings?limit=500"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut buildings = Vec::new();
        for b in list["items"].as_array().context("buildings")? {
            let id = b["id"].as_str().context("id")?.to_owned();
            let assets: serde_json::Value = http
                .get(format!("{url}/v1/buildings/{id}/assets?limit=20"))
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let items = assets["items"].as_array().context("assets")?;
            let ext = items
                .iter()
                .find(|a| a["asset_type"] == "portable_extinguisher")
                .and_then(|a| a["id"].as_str())
                .context("an extinguisher")?
                .to_owned();
            let other = items
                .iter()
                .find(|a| a["asset_type"] != "portable_extinguisher")
                .or(items.first())
                .and_then(|a| a["id"].as_str())
                .context("an asset")?
                .to_owned();
            buildings.push((id, ext, other));
        }
        anyhow::ensure!(!buildings.is_empty(), "no buildings");
        Ok(Self { buildings })
    }

    /// Change building `rng`-picked: request `n` even records an office service of its
    /// extinguisher `n + 1` days ago (a day no other request uses), odd edits an asset.
    async fn change(
        &self,
        http: &reqwest::Client,
        url: &str,
        token: &str,
        n: usize,
        rng: &mut rand::rngs::StdRng,
    ) -> anyhow::Result<()> {
        let (b, ext, other) = &self.buildings[rng.gen_range(0..self.buildings.len())];
        let res = if n.is_multiple_of(2) {
            let day = Utc::now().date_naive() - chrono::Duration::days(1 + n as i64);
            http.post(format!(
                "{url}/v1/buildings/{b}/assets/{ext}/service-history"
            ))
            .bearer_auth(token)
            .json(
                &json!({ "rule_code": KINDS[0].2, "serviced_on": day.to_string(),
                               "outcome": "pass" }),
            )
            .send()
            .await?
        } else {
            http.patch(format!("{url}/v1/buildings/{b}/assets/{other}"))
                .bearer_auth(token)
                .json(&json!({ "location": format!("Bench move {n}") }))
                .send()
                .await?
        };
        let status = res.status();
        if !status.is_success() {
            bail!(
                "change {n}: {status}: {}",
                res.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// One GET: (time, body length).
async fn get_timed(
    http: &reqwest::Client,
    target: &str,
    token: &str,
) -> anyhow::Result<(Duration, usize)> {
    let t0 = Instant::now();
    let res = http.get(target).bearer_auth(token).send().await?;
    let status = res.status();
    let body = res.bytes().await?;
    let took = t0.elapsed();
    if !status.is_success() {
        bail!("{target}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok((took, body.len()))
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i].as_secs_f64() * 1000.0
}

#[allow(clippy::too_many_arguments)]
async fn building_page(
    url: &str,
    email: &str,
    password: &str,
    building: Uuid,
    requests: usize,
    warmup: usize,
    server_pid: Option<u32>,
    invalidate: bool,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token = login(&http, url, email, password).await?;
    let today = Utc::now().date_naive();
    let to = today + chrono::Duration::days(90);
    let targets = [
        ("building", format!("{url}/v1/buildings/{building}")),
        (
            "compliance",
            format!("{url}/v1/buildings/{building}/compliance"),
        ),
        (
            "assets",
            format!("{url}/v1/buildings/{building}/assets?limit=100"),
        ),
        (
            "schedule",
            format!("{url}/v1/schedule?building_id={building}&from={today}&to={to}"),
        ),
    ];
    let mut each: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut page = Vec::new();
    let mut cpu_ticks_total = 0;
    for n in 0..warmup + requests {
        if invalidate {
            invalidate_schedules(&http, url, &token, n).await?;
        }
        let cpu_before = server_pid.map(cpu_ticks).transpose()?;
        let t0 = Instant::now();
        let (a, b, c, d) = tokio::try_join!(
            get_timed(&http, &targets[0].1, &token),
            get_timed(&http, &targets[1].1, &token),
            get_timed(&http, &targets[2].1, &token),
            get_timed(&http, &targets[3].1, &token),
        )?;
        let took = t0.elapsed();
        if n >= warmup {
            for (i, (t, _)) in [a, b, c, d].into_iter().enumerate() {
                each[i].push(t);
            }
            page.push(took);
            if let (Some(pid), Some(before)) = (server_pid, cpu_before) {
                cpu_ticks_total += cpu_ticks(pid)? - before;
            }
        }
    }
    for (i, (name, _)) in targets.iter().enumerate() {
        println!(
            "building-page {name} requests={requests} p50={:.1}ms p95={:.1}ms",
            percentile(&mut each[i], 0.5),
            percentile(&mut each[i], 0.95)
        );
    }
    let cpu = match server_pid {
        Some(_) => format!(
            " server_cpu_per_page={:.1}ms",
            cpu_ticks_total as f64 * 10.0 / requests as f64
        ),
        None => String::new(),
    };
    println!(
        "building-page page(slowest of four) requests={requests} p50={:.1}ms p95={:.1}ms{cpu}{}",
        percentile(&mut page, 0.5),
        percentile(&mut page, 0.95),
        if invalidate {
            " (each after a change)"
        } else {
            ""
        }
    );
    Ok(())
}

/// The resident memory of a process (VmRSS), in KiB.
fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

async fn seed_org(
    url: &str,
    n_buildings: usize,
    per_building: usize,
    visits: u32,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    use firemode_server::store::schedule::HistoryRecord;
    let started = Instant::now();
    let db = DatabaseUrl::parse(url)?;
    let store = firemode_server::store::connect(&db).await?;
    firemode_server::rules::seed_library(store.as_ref()).await?;
    let org = store.create_org("Bench Fire Services").await?;
    let admin = store
        .create_user(NewUser {
            org_id: org.id,
            email: email.to_owned(),
            password_hash: firemode_server::auth::password::hash(password.to_owned()).await?,
            role: Role::Admin,
            full_name_enc: None,
            phone_enc: None,
        })
        .await
        .context("create the admin (is this database already seeded? use a fresh one)")?;
    let now = Utc::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(50_000);
    let states = ["NSW", "VIC", "QLD", "WA", "SA", "TAS", "ACT", "NT"];
    let mut items_total = 0;
    let mut history_total = 0;
    for b in 0..n_buildings {
        let building = BuildingRecord {
            id: Uuid::now_v7(),
            org_id: org.id,
            name: format!("Bench Building {b:04}"),
            address: format!("{b} Benchmark St"),
            building_type: "office".into(),
            contact_name_enc: None,
            contact_phone_enc: None,
            contact_email: None,
            rule_set_code: "AS1851".into(),
            rule_set_version: "2012.1.0".into(),
            editions: Default::default(),
            created_at: now,
            updated_at: now,
            state: Some(states[b % states.len()].into()),
            schedule_anchor: None,
        };
        store.create_building(&building).await?;
        let assets: Vec<AssetRecord> = (0..per_building)
            .map(|i| {
                let (asset_type, _, _, _, prefix) = KINDS[kind_of(i)];
                AssetRecord {
                    id: Uuid::now_v7(),
                    org_id: org.id,
                    building_id: building.id,
                    asset_type: asset_type.into(),
                    location: format!("Level {}", i % 20),
                    identifier: Some(format!("{prefix}-{i:05}")),
                    install_date: None,
                    rule_codes: sqlx::types::Json(vec![]),
                    rule_alternatives: Default::default(),
                    created_at: now,
                    updated_at: now,
                    schedule_anchor: None,
                    manufacture_date: None,
                }
            })
            .collect();
        store.create_assets(&assets).await?;
        let first = now
            .checked_sub_months(Months::new(6 * visits))
            .context("date")?;
        for s in 0..visits {
            let visit = first
                .checked_add_months(Months::new(6 * s))
                .context("date")?
                + chrono::Duration::days(rng.gen_range(0..30));
            let yearly = s % 2 == 1;
            let session = SessionRow {
                id: Uuid::new_v4(),
                org_id: org.id,
                building_id: building.id,
                name: format!("Service {}", visit.date_naive()),
                frequency: if yearly { "yearly" } else { "six_monthly" }.into(),
                status: "completed".into(),
                rule_set_code: "AS1851".into(),
                rule_set_version: "2012.1.0".into(),
                created_by: admin.id,
                created_at: visit,
                updated_at: visit,
                signed_off_by: None,
                signed_off_licence: None,
                signed_off_at: None,
            };
            store.create_session(&session, &[], &[]).await?;
            let items: Vec<ItemRow> = assets
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let (_, _, six, twelve, _) = KINDS[kind_of(i)];
                    let at = visit + chrono::Duration::minutes(rng.gen_range(0..3 * 24 * 60));
                    ItemRow {
                        session_id: session.id,
                        asset_id: a.id.to_string(),
                        org_id: org.id,
                        building_id: building.id,
                        rule_code: Some(if yearly { twelve } else { six }.into()),
                        outcome: Some("pass".into()),
                        raw_outcome: None,
                        observed_condition: None,
                        readings: sqlx::types::Json(json!({})),
                        notes: String::new(),
                        evidence: sqlx::types::Json(json!([])),
                        recorded_by: Some(admin.id.to_string()),
                        recorded_at: Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                        classification: Some("compliant".into()),
                        rule_version: Some("2012.1.0".into()),
                        problems: sqlx::types::Json(json!([])),
                        observed_conditions: sqlx::types::Json(Vec::new()),
                        assessment: sqlx::types::Json(json!({})),
                    }
                })
                .collect();
            items_total += items.len();
            store
                .write_projection(session.id, ItemsWrite::All(&items), 0, "", &json!([]))
                .await?;
        }
        let history: Vec<HistoryRecord> = assets
            .iter()
            .filter(|a| a.asset_type == "portable_extinguisher")
            .step_by(3)
            .map(|a| HistoryRecord {
                id: Uuid::now_v7(),
                org_id: org.id,
                building_id: building.id,
                asset_id: a.id,
                rule_code: "AS1851-10-5Y-EXT".into(),
                serviced_on: now.date_naive() - chrono::Duration::days(rng.gen_range(30..1800)),
                outcome: "pass".into(),
                source: "import".into(),
                note: None,
                recorded_by: None,
                created_at: now,
            })
            .collect();
        history_total += store.add_service_history(&history).await?;
    }
    println!(
        "{}",
        json!({
            "org_id": org.id, "email": email, "buildings": n_buildings,
            "assets": n_buildings * per_building, "items": items_total, "history": history_total,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

async fn seed(
    url: &str,
    n_assets: usize,
    n_sessions: u32,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = DatabaseUrl::parse(url)?;
    let store = firemode_server::store::connect(&db).await?;
    firemode_server::rules::seed_library(store.as_ref()).await?;
    let org = store.create_org("Bench Fire Services").await?;
    let admin = store
        .create_user(NewUser {
            org_id: org.id,
            email: email.to_owned(),
            password_hash: firemode_server::auth::password::hash(password.to_owned()).await?,
            role: Role::Admin,
            full_name_enc: None,
            phone_enc: None,
        })
        .await
        .context("create the admin (is this database already seeded? use a fresh one)")?;
    let now = Utc::now();
    let building = BuildingRecord {
        id: Uuid::now_v7(),
        org_id: org.id,
        name: "Bench Plaza".into(),
        address: "200 Benchmark St, Sydney NSW 2000".into(),
        building_type: "office".into(),
        contact_name_enc: None,
        contact_phone_enc: None,
        contact_email: None,
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        editions: Default::default(),
        created_at: now,
        updated_at: now,
        state: None,
        schedule_anchor: None,
    };
    store.create_building(&building).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1851);
    let mut assets = Vec::with_capacity(n_assets);
    for i in 0..n_assets {
        let kind = kind_of(i);
        let (asset_type, _, _, _, prefix) = KINDS[kind];
        assets.push(AssetRecord {
            id: Uuid::now_v7(),
            org_id: org.id,
            building_id: building.id,
            asset_type: asset_type.into(),
            location: format!(
                "Level {} {}",
                i % 40,
                ["north", "south", "east", "west", "core"][i % 5]
            ),
            identifier: Some(format!("{prefix}-{i:05}")),
            install_date: None,
            rule_codes: sqlx::types::Json(vec![]),
            rule_alternatives: Default::default(),
            created_at: now,
            updated_at: now,
            schedule_anchor: None,
            manufacture_date: None,
        });
    }
    store.create_assets(&assets).await?;

    // Visits every six months, the first five years ago; odd visits are yearly services.
    let first = now
        .checked_sub_months(Months::new(6 * n_sessions))
        .context("date")?;
    let mut items_total = 0;
    for s in 0..n_sessions {
        let visit = first
            .checked_add_months(Months::new(6 * s))
            .context("date")?;
        let yearly = s % 2 == 1;
        let session = SessionRow {
            id: Uuid::new_v4(),
            org_id: org.id,
            building_id: building.id,
            name: format!(
                "{} service {}",
                if yearly { "Yearly" } else { "Six-monthly" },
                visit.date_naive()
            ),
            frequency: if yearly { "yearly" } else { "six_monthly" }.into(),
            status: "completed".into(),
            rule_set_code: "AS1851".into(),
            rule_set_version: "2012.1.0".into(),
            created_by: admin.id,
            created_at: visit,
            updated_at: visit,
            signed_off_by: None,
            signed_off_licence: None,
            signed_off_at: None,
        };
        store.create_session(&session, &[], &[]).await?;
        let items: Vec<ItemRow> = assets
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (_, _, six, twelve, _) = KINDS[kind_of(i)];
                // A visit takes a few days; now and then one is late.
                let late = if rng.gen_ratio(1, 50) { 30 } else { 0 };
                let at = visit
                    + chrono::Duration::minutes(rng.gen_range(0..4 * 24 * 60) + late * 24 * 60);
                let roll: u32 = rng.gen_range(0..100);
                let (outcome, classification) = match roll {
                    0 => ("not_accessible", None),
                    1..=2 => (
                        "fail",
                        Some(
                            ["critical_defect", "non_critical_defect", "non_conformance"]
                                [rng.gen_range(0..3)],
                        ),
                    ),
                    _ => ("pass", Some("compliant")),
                };
                ItemRow {
                    session_id: session.id,
                    asset_id: a.id.to_string(),
                    org_id: org.id,
                    building_id: building.id,
                    rule_code: Some(if yearly { twelve } else { six }.into()),
                    outcome: Some(outcome.into()),
                    raw_outcome: None,
                    observed_condition: None,
                    readings: sqlx::types::Json(json!({})),
                    notes: String::new(),
                    evidence: sqlx::types::Json(json!([])),
                    recorded_by: Some(admin.id.to_string()),
                    recorded_at: (outcome != "not_tested")
                        .then(|| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                    classification: classification.map(str::to_owned),
                    rule_version: Some("2012.1.0".into()),
                    problems: sqlx::types::Json(json!([])),
                    observed_conditions: sqlx::types::Json(Vec::new()),
                    assessment: sqlx::types::Json(json!({})),
                }
            })
            .collect();
        items_total += items.len();
        store
            .write_projection(session.id, ItemsWrite::All(&items), 0, "", &json!([]))
            .await?;
    }
    let defects = seed_defects(&db, &org.id, &building.id, &assets, &mut rng).await?;
    println!(
        "{}",
        json!({
            "org_id": org.id, "building_id": building.id, "email": email, "password": password,
            "assets": assets.len(), "sessions": n_sessions, "items": items_total, "defects": defects,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

fn kind_of(i: usize) -> usize {
    let slot = (i % 100) as u32;
    let mut acc = 0;
    for (k, (_, share, ..)) in KINDS.iter().enumerate() {
        acc += share;
        if slot < acc {
            return k;
        }
    }
    0
}

/// 300 defects on random assets, a third of them still open.
async fn seed_defects(
    db: &DatabaseUrl,
    org: &Uuid,
    building: &Uuid,
    assets: &[AssetRecord],
    rng: &mut rand::rngs::StdRng,
) -> anyhow::Result<usize> {
    let sql =
        "INSERT INTO defects (id, org_id, building_id, asset_id, severity, status, source, title, \
               description, evidence, discovered_at, notify_by, created_at, updated_at) \
               VALUES ($1, $2, $3, $4, $5, $6, 'manual', $7, '', $8, $9, $9, $9, $9)";
    let rows: Vec<(Uuid, &str, &str)> = (0..300)
        .map(|n| {
            let asset = assets[rng.gen_range(0..assets.len())].id;
            let severity = [
                "critical",
                "non_critical",
                "non_conformance",
                "non_conformance",
            ][rng.gen_range(0..4)];
            (asset, severity, if n % 3 == 0 { "open" } else { "closed" })
        })
        .collect();
    let at = Utc::now();
    macro_rules! insert {
        ($pool:expr) => {{
            let pool = $pool;
            for (asset, severity, status) in &rows {
                sqlx::query(sql)
                    .bind(Uuid::now_v7())
                    .bind(org)
                    .bind(building)
                    .bind(asset)
                    .bind(severity)
                    .bind(status)
                    .bind(format!("{severity} defect"))
                    .bind(sqlx::types::Json(json!([])))
                    .bind(at)
                    .execute(&pool)
                    .await?;
            }
            pool.close().await;
        }};
    }
    match db {
        DatabaseUrl::Sqlite(path) => {
            insert!(sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?)
        }
        DatabaseUrl::Postgres(url) => insert!(sqlx::PgPool::connect(url.expose()).await?),
    }
    Ok(rows.len())
}

#[allow(clippy::too_many_arguments)]
async fn time(
    url: &str,
    email: &str,
    password: &str,
    target: &str,
    requests: usize,
    warmup: usize,
    server_pid: Option<u32>,
    change: Change,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token = login(&http, url, email, password).await?;
    let token = token.as_str();
    let targets = match change {
        Change::Building => Some(Targets::load(&http, url, token).await?),
        _ => None,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut samples = Vec::with_capacity(requests);
    let mut bytes = 0;
    let mut cpu_ticks_total = 0;
    for n in 0..warmup + requests {
        match (change, &targets) {
            (Change::Holidays, _) => invalidate_schedules(&http, url, token, n).await?,
            (Change::Building, Some(t)) => t.change(&http, url, token, n, &mut rng).await?,
            _ => {}
        }
        let cpu_before = server_pid.map(cpu_ticks).transpose()?;
        let t0 = Instant::now();
        let res = http.get(target).bearer_auth(token).send().await?;
        let status = res.status();
        let body = res.bytes().await?;
        let took = t0.elapsed();
        if !status.is_success() {
            bail!("{status}: {}", String::from_utf8_lossy(&body));
        }
        if n >= warmup {
            samples.push(took);
            bytes = body.len();
            if let (Some(pid), Some(before)) = (server_pid, cpu_before) {
                cpu_ticks_total += cpu_ticks(pid)? - before;
            }
        }
    }
    samples.sort();
    let pct =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let cpu = match server_pid {
        Some(_) => format!(
            " server_cpu_per_request={:.1}ms{}",
            cpu_ticks_total as f64 * 10.0 / samples.len() as f64,
            match change {
                Change::Holidays => " (each after an organisation-wide change)",
                Change::Building => " (each after a change in one building)",
                Change::None => "",
            }
        ),
        None => String::new(),
    };
    let what = target.split_once("/v1/").map_or(target, |(_, p)| p);
    let rss = match server_pid {
        Some(pid) => format!(" server_rss={:.0}MB", rss_kb(pid)? as f64 / 1024.0),
        None => String::new(),
    };
    println!(
        "{what} requests={} bytes={bytes} p50={:.1}ms p95={:.1}ms max={:.1}ms{cpu}{rss}",
        samples.len(),
        ms(pct(0.50)),
        ms(pct(0.95)),
        ms(*samples.last().context("no samples")?),
    );
    Ok(())
}
