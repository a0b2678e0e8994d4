//! Back-office commands: `buildings`, `assets import`, `defects`, `defect advance`, `report`.
//!
//! Buildings are named by name (as shown by `buildings`, letter case ignored) or by UUID;
//! tables show names, not ids. `--json` prints the server's JSON unchanged.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use uuid::Uuid;

use super::authed;
use super::credentials::CredentialStore;
use super::table::{truncate, Table};
use crate::Client;

/// `assets ...`
#[derive(Subcommand, Debug, Clone)]
pub enum AssetsCommand {
    /// Import assets from a CSV file into a building (all rows or none).
    Import {
        /// Building name or UUID.
        building: String,
        /// The CSV file: asset_type,location[,identifier,install_date,rule_codes].
        file: PathBuf,
        /// Check the file here (header, columns, required cells) and send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Options of `defects`.
#[derive(Args, Debug, Clone)]
pub struct DefectsArgs {
    /// Only this building's defects (name or UUID).
    #[arg(long)]
    building: Option<String>,
    /// Only defects with this status (open, acknowledged, repair_scheduled, repaired,
    /// verified, closed).
    #[arg(long)]
    status: Option<String>,
    /// Only defects past their notification deadline and not acknowledged.
    #[arg(long)]
    overdue: bool,
}

/// `defect ...`
#[derive(Subcommand, Debug, Clone)]
pub enum DefectCommand {
    /// Move a defect one step on (open → acknowledged → repair_scheduled → repaired →
    /// verified → closed).
    Advance {
        /// Defect UUID.
        id: Uuid,
        /// A note recorded with the step.
        #[arg(long)]
        note: Option<String>,
    },
}

/// `report --format`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ReportFormat {
    Json,
    Csv,
    Pdf,
}

/// Options of `report`.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Building name or UUID.
    building: String,
    #[arg(long, value_enum, default_value = "pdf")]
    format: ReportFormat,
    /// The report as of this date (YYYY-MM-DD) instead of today.
    #[arg(long)]
    as_of: Option<String>,
    /// Where to write it [default: compliance-<building>.<format> in this folder; `-` for
    /// stdout].
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Every item of a paginated list.
async fn all(c: &Client, path: &str) -> Result<Vec<Value>, crate::Error> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query: Vec<(&str, String)> = vec![("limit", "500".into())];
        if let Some(cur) = &cursor {
            query.push(("cursor", cur.clone()));
        }
        let page: Value = c.get_json_query(path, &query).await?;
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(out),
        }
    }
}

/// Building names by id (for tables that would otherwise show ids).
pub(super) async fn building_names(
    c: &Client,
) -> Result<std::collections::HashMap<Uuid, String>, crate::Error> {
    Ok(all(c, "/v1/buildings")
        .await?
        .iter()
        .filter_map(|b| Some((b["id"].as_str()?.parse().ok()?, text(&b["name"]))))
        .collect())
}

/// Users' names (else emails) by id; admins only may list users, so others get an error.
pub(super) async fn user_names(
    c: &Client,
) -> Result<std::collections::HashMap<Uuid, String>, crate::Error> {
    Ok(all(c, "/v1/users")
        .await?
        .iter()
        .filter_map(|u| {
            let name = u["full_name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or(u["email"].as_str())?;
            Some((u["id"].as_str()?.parse().ok()?, name.to_owned()))
        })
        .collect())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The building `name_or_id` names among `buildings`.
fn find_building<'a>(buildings: &'a [Value], name_or_id: &str) -> anyhow::Result<&'a Value> {
    let wanted = name_or_id.trim();
    if let Some(b) = buildings.iter().find(|b| b["id"].as_str() == Some(wanted)) {
        return Ok(b);
    }
    let matches: Vec<&Value> = buildings
        .iter()
        .filter(|b| {
            b["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no building named '{wanted}' (see `firemode-cli buildings`)"),
        many => bail!(
            "{} buildings are named '{wanted}': give the UUID ({})",
            many.len(),
            many.iter()
                .map(|b| text(&b["id"]))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub async fn buildings(store: &CredentialStore, json: bool) -> anyhow::Result<()> {
    let list = authed(store, |c| async move { all(&c, "/v1/buildings").await }).await?;
    if json {
        println!("{}", Value::Array(list));
        return Ok(());
    }
    let mut t = Table::new(&["NAME", "ADDRESS", "TYPE", "ID"]);
    for b in &list {
        t.row(vec![
            truncate(&text(&b["name"]), 30),
            truncate(&text(&b["address"]), 34),
            truncate(&text(&b["building_type"]), 14),
            text(&b["id"]),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

const COLUMNS: [&str; 8] = [
    "asset_type",
    "location",
    "identifier",
    "install_date",
    "rule_codes",
    "manufacture_date",
    "schedule_anchor",
    "last_services",
];

/// What can be checked without the server: the header names known columns once each and
/// the required ones, every row has as many fields as the header and its required cells.
/// A file with an `identifier` column may update assets already imported (the server matches
/// them by identifier), so then a row with an identifier needs no `asset_type` or `location`.
/// Returns the number of data rows, or every problem found as `row N: ...`.
pub fn check_csv(bytes: &[u8]) -> Result<usize, Vec<String>> {
    let body = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
        .map_err(|_| vec!["the file is not UTF-8 text".to_owned()])?;
    let mut lines = body
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(vec!["the file is empty".into()]);
    };
    let names: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let mut problems = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if !COLUMNS.contains(&n.as_str()) {
            problems.push(format!(
                "row 1: unknown column '{n}' (the columns are {})",
                COLUMNS.join(",")
            ));
        } else if names[..i].contains(n) {
            problems.push(format!("row 1: column '{n}' appears twice"));
        }
    }
    let identifier = names.iter().position(|n| n == "identifier");
    for required in ["asset_type", "location"] {
        if identifier.is_none() && !names.iter().any(|n| n == required) {
            problems.push(format!("row 1: the column '{required}' is required"));
        }
    }
    let mut rows = 0;
    for (i, line) in lines {
        rows += 1;
        // Quoted commas are the server's to judge; this check only counts plain fields.
        if line.contains('"') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != names.len() {
            problems.push(format!(
                "row {}: {} fields, the header has {}",
                i + 1,
                cells.len(),
                names.len()
            ));
            continue;
        }
        if identifier.is_some_and(|k| !cells[k].trim().is_empty()) {
            continue; // may update an asset of the building: the server decides
        }
        for required in ["asset_type", "location"] {
            if let Some(k) = names.iter().position(|n| n == required) {
                if cells[k].trim().is_empty() {
                    problems.push(format!("row {}: {required} is empty", i + 1));
                }
            }
        }
    }
    if rows == 0 {
        problems.push("the file has a header but no rows".into());
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

pub async fn assets(
    store: &CredentialStore,
    cmd: &AssetsCommand,
    json: bool,
) -> anyhow::Result<()> {
    let AssetsCommand::Import {
        building,
        file,
        dry_run,
    } = cmd;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let checked = check_csv(&bytes);
    let list = authed(store, |c| async move { all(&c, "/v1/buildings").await }).await?;
    let b = find_building(&list, building)?;
    let (id, name) = (text(&b["id"]), text(&b["name"]));
    if *dry_run {
        return match checked {
            Ok(rows) => {
                if json {
                    println!(
                        "{}",
                        json!({"dry_run": true, "building_id": id, "rows": rows, "problems": []})
                    );
                } else {
                    println!("{rows} rows for '{name}' look right; nothing was sent (the server checks asset types, rule codes and identifiers on import)");
                }
                Ok(())
            }
            Err(problems) => {
                if json {
                    println!(
                        "{}",
                        json!({"dry_run": true, "building_id": id, "problems": problems})
                    );
                } else {
                    for p in &problems {
                        println!("{p}");
                    }
                }
                bail!("{} problem(s) in {}", problems.len(), file.display())
            }
        };
    }
    let path = format!("/v1/buildings/{id}/assets/import");
    // Sent by hand, not through `execute`: a refused file's answer carries the per-row
    // `errors`, which the client's error type does not keep. The token is fresh: `authed`
    // just used (and if needed refreshed) it.
    let creds = super::load_or_hint(store)?;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}{path}", creds.url))
        .bearer_auth(&creds.tokens.access_token)
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body(progress::body(bytes, format!("sending {}", file.display())).0)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", creds.url))?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status == 201 {
        if json {
            println!("{body}");
        } else {
            println!("imported {} assets into '{name}'", text(&body["imported"]));
        }
        return Ok(());
    }
    if json {
        println!("{body}");
    } else if let Some(errors) = body["errors"].as_array() {
        let mut t = Table::new(&["ROW", "COLUMN", "PROBLEM"]);
        for e in errors {
            t.row(vec![
                text(&e["row"]),
                text(&e["field"]),
                truncate(&text(&e["message"]), 80),
            ]);
        }
        print!("{}", t.render());
    }
    bail!(
        "{status} {}: {}",
        text(&body["code"]),
        text(&body["detail"])
    )
}

pub async fn defects(
    store: &CredentialStore,
    args: &DefectsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let buildings = authed(store, |c| async move { all(&c, "/v1/buildings").await }).await?;
    let mut query = Vec::new();
    if let Some(name) = &args.building {
        query.push(format!(
            "building_id={}",
            text(&find_building(&buildings, name)?["id"])
        ));
    }
    if let Some(s) = &args.status {
        query.push(format!("status={s}"));
    }
    if args.overdue {
        query.push("overdue=true".into());
    }
    let path = if query.is_empty() {
        "/v1/defects".to_owned()
    } else {
        format!("/v1/defects?{}", query.join("&"))
    };
    let list = authed(store, |c| async move { all_query(&c, &path).await }).await?;
    if json {
        println!("{}", Value::Array(list));
        return Ok(());
    }
    let name_of = |id: &Value| {
        buildings
            .iter()
            .find(|b| b["id"] == *id)
            .map(|b| text(&b["name"]))
            .unwrap_or_else(|| text(id))
    };
    let mut t = Table::new(&[
        "BUILDING",
        "SEVERITY",
        "STATUS",
        "NEXT",
        "NOTIFY BY",
        "TITLE",
        "ID",
    ]);
    for d in &list {
        t.row(vec![
            truncate(&name_of(&d["building_id"]), 18),
            text(&d["severity"]),
            text(&d["status"]),
            text(&d["next_status"]),
            text(&d["notify_by"]).chars().take(10).collect(),
            truncate(&text(&d["title"]), 24),
            text(&d["id"]),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `all` for a path that already has a query string.
async fn all_query(c: &Client, path_and_query: &str) -> Result<Vec<Value>, crate::Error> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        q.push(("limit".into(), "500".into()));
        if let Some(cur) = &cursor {
            q.push(("cursor".into(), cur.clone()));
        }
        let page: Value = c.get_json_query(path, &q).await?;
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(out),
        }
    }
}

pub async fn defect(
    store: &CredentialStore,
    cmd: &DefectCommand,
    json: bool,
) -> anyhow::Result<()> {
    let DefectCommand::Advance { id, note } = cmd;
    let path = format!("/v1/defects/{id}");
    let note = note.clone();
    let updated = authed(store, |c| async move {
        let current: Value = c.get_json(&path).await?;
        let Some(next) = current["next_status"].as_str() else {
            return Ok(Err(format!(
                "the defect is {}: it has no next step",
                text(&current["status"])
            )));
        };
        let mut body = json!({ "status": next });
        if let Some(n) = &note {
            body["note"] = json!(n);
        }
        let updated: Value = c.patch_json(&path, &body).await?;
        Ok(Ok(updated))
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    if json {
        println!("{updated}");
    } else {
        println!(
            "defect {id} is now {} (next: {})",
            text(&updated["status"]),
            match text(&updated["next_status"]) {
                s if s.is_empty() => "none".into(),
                s => s,
            }
        );
    }
    Ok(())
}

pub async fn report(store: &CredentialStore, args: &ReportArgs, json: bool) -> anyhow::Result<()> {
    let list = authed(store, |c| async move { all(&c, "/v1/buildings").await }).await?;
    let b = find_building(&list, &args.building)?;
    let (id, name) = (text(&b["id"]), text(&b["name"]));
    let ext = match args.format {
        ReportFormat::Json => "json",
        ReportFormat::Csv => "csv",
        ReportFormat::Pdf => "pdf",
    };
    let mut path = format!("/v1/buildings/{id}/compliance?format={ext}");
    if let Some(d) = &args.as_of {
        path.push_str(&format!("&as_of={d}"));
    }
    let bytes = authed(store, |c| async move {
        let (p, q) = path.split_once('?').unwrap_or((&path, ""));
        let query: Vec<(String, String)> = q
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let res = c
            .execute(crate::Auth::Bearer, p, |http, url| {
                http.get(url).query(&query)
            })
            .await?;
        res.bytes()
            .await
            .map_err(|e| crate::Error::transport(&c.url(p), e))
    })
    .await?;
    let default = PathBuf::from(format!(
        "compliance-{}.{ext}",
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            })
            .collect::<String>()
    ));
    let out = args.output.clone().unwrap_or(default);
    if out == Path::new("-") {
        use std::io::Write;
        std::io::stdout().write_all(&bytes)?;
        return Ok(());
    }
    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    if json {
        println!(
            "{}",
            json!({"building_id": id, "format": ext, "file": out, "bytes": bytes.len()})
        );
    } else {
        println!(
            "wrote the {ext} compliance report of '{name}' to {} ({} bytes)",
            out.display(),
            bytes.len()
        );
    }
    Ok(())
}

/// `evidence ...`
#[derive(Subcommand, Debug, Clone)]
pub enum EvidenceCommand {
    /// Upload a photo, video or document for a session (its SHA-256 is sent with it, and the
    /// server refuses the upload if what arrived differs; retries are idempotent).
    Upload {
        /// Session UUID.
        session: Uuid,
        /// The file (JPEG, PNG, HEIC, PDF or MP4).
        file: PathBuf,
        #[arg(long = "type", value_enum, default_value = "photo")]
        kind: EvidenceKind,
        /// The asset it shows (an asset of the session's building).
        #[arg(long)]
        asset: Option<Uuid>,
        /// A caption, kept in the evidence metadata.
        #[arg(long)]
        caption: Option<String>,
    },
    /// Have the server re-hash the stored bytes and compare them with the recorded SHA-256.
    Verify {
        /// Evidence UUID.
        id: Uuid,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum EvidenceKind {
    Photo,
    Video,
    Document,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn evidence(
    store: &CredentialStore,
    cmd: &EvidenceCommand,
    json: bool,
) -> anyhow::Result<()> {
    match cmd {
        EvidenceCommand::Upload {
            session,
            file,
            kind,
            asset,
            caption,
        } => {
            use sha2::Digest;
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let sha = hex(&sha2::Sha256::digest(&bytes));
            let kind = match kind {
                EvidenceKind::Photo => "photo",
                EvidenceKind::Video => "video",
                EvidenceKind::Document => "document",
            };
            let filename = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "evidence".into());
            let metadata = caption
                .as_ref()
                .map(|c| json!({ "caption": c }).to_string());
            // One key for this upload, reused if the client retries after a refresh.
            let key = Uuid::new_v4().to_string();
            if !json {
                eprintln!(
                    "uploading {} ({} bytes, sha256 {sha})",
                    file.display(),
                    bytes.len()
                );
            }
            let (session, asset) = (*session, *asset);
            let result: Value = authed(store, |c| async move {
                let res = c
                    .execute(crate::Auth::Bearer, "/v1/evidence", |http, url| {
                        let mut form = reqwest::multipart::Form::new()
                            .text("session_id", session.to_string())
                            .text("evidence_type", kind)
                            .text("sha256", sha.clone());
                        if let Some(a) = asset {
                            form = form.text("asset_id", a.to_string());
                        }
                        if let Some(m) = &metadata {
                            form = form.text("metadata", m.clone());
                        }
                        let (body, len) =
                            progress::body(bytes.clone(), format!("uploading {filename}"));
                        form = form.part(
                            "file",
                            reqwest::multipart::Part::stream_with_length(body, len)
                                .file_name(filename.clone()),
                        );
                        http.post(url)
                            .header("idempotency-key", &key)
                            .multipart(form)
                    })
                    .await?;
                let url = c.url("/v1/evidence");
                res.json::<Value>()
                    .await
                    .map_err(|e| crate::Error::transport(&url, e))
            })
            .await?;
            if json {
                println!("{result}");
            } else {
                println!(
                    "evidence {} stored and verified ({}, {} bytes)",
                    text(&result["evidence_id"]),
                    text(&result["content_type"]),
                    text(&result["size"])
                );
            }
            Ok(())
        }
        EvidenceCommand::Verify { id } => {
            let path = format!("/v1/evidence/{id}/verify");
            let v: Value = authed(store, |c| async move { c.get_json(&path).await }).await?;
            if json {
                println!("{v}");
            } else if v["verified"] == json!(true) {
                println!(
                    "evidence {id}: the stored bytes match sha256 {}",
                    text(&v["expected_sha256"])
                );
            }
            if v["verified"] != json!(true) {
                bail!(
                    "evidence {id} does NOT match its recorded sha256 {} (stored bytes: {})",
                    text(&v["expected_sha256"]),
                    match text(&v["sha256"]) {
                        s if s.is_empty() => "missing".to_owned(),
                        s => s,
                    }
                );
            }
            Ok(())
        }
    }
}

/// Upload progress on stderr for large files: a body sent in 64 KiB chunks, each counted.
mod progress {
    use std::io::{IsTerminal, Write};

    use futures_util::stream;

    const CHUNK: usize = 64 * 1024;

    /// The chunks of `bytes`, calling `seen(sent, total)` as each is handed to the connection.
    pub(super) fn counted(
        bytes: Vec<u8>,
        mut seen: impl FnMut(u64, u64) + Send + 'static,
    ) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
        let total = bytes.len() as u64;
        let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect();
        let mut sent = 0u64;
        stream::iter(chunks.into_iter().map(move |c| {
            sent += c.len() as u64;
            seen(sent, total);
            Ok(c)
        }))
    }

    /// A request body that draws `label: 42% (1.2 of 2.9 MiB)` on stderr while it is sent, when
    /// stderr is a terminal and the file is worth it (over 256 KiB); otherwise just the bytes.
    pub(super) fn body(bytes: Vec<u8>, label: String) -> (reqwest::Body, u64) {
        let len = bytes.len() as u64;
        if !std::io::stderr().is_terminal() || len < 256 * 1024 {
            return (reqwest::Body::from(bytes), len);
        }
        let draw = move |sent: u64, total: u64| {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let pct = (sent * 100).checked_div(total).unwrap_or(100);
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r{label}: {pct:>3}% ({:.1} of {:.1} MiB)",
                mib(sent),
                mib(total)
            );
            if sent == total {
                let _ = writeln!(err);
            }
        };
        (reqwest::Body::wrap_stream(counted(bytes, draw)), len)
    }

    #[cfg(test)]
    mod tests {
        use std::sync::{Arc, Mutex};

        use futures_util::StreamExt;

        #[tokio::test]
        async fn every_byte_is_sent_once_and_counted_in_order() {
            let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            let chunks: Vec<Vec<u8>> =
                super::counted(bytes.clone(), move |s, t| log.lock().unwrap().push((s, t)))
                    .map(|c| c.unwrap())
                    .collect()
                    .await;
            assert_eq!(chunks.concat(), bytes);
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 4, "{seen:?}");
            assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
            assert_eq!(*seen.last().unwrap(), (200_000, 200_000));
        }
    }
}
