//! `sessions`, `conflicts`, `resolve`, `history`: the conflict inspection tool.
//!
//! Tables for people, `--json` for scripts (the server's JSON, fields unchanged). A session is
//! named by its UUID, its document id or its `automerge:` URL, whichever the user has at hand.

use anyhow::{bail, Context};
use chrono::{DateTime, Local, SecondsFormat, Utc};
use clap::{Args, ValueEnum};
use serde_json::Value;
use uuid::Uuid;

use super::authed;
use super::credentials::CredentialStore;
use super::table::{truncate, Table};
use crate::{
    parse_session_id, Author, Conflict, ConflictKind, Conflicts, History, ItemConflicts,
    ItemResolution, Page, Session, SessionFilter, SessionStatus,
};

/// Options of `sessions`.
#[derive(Args, Debug, Clone)]
pub struct SessionsArgs {
    /// Only the sessions of this building.
    #[arg(long, value_name = "BUILDING_ID")]
    building: Option<Uuid>,
    /// Only sessions with this status.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// Only the sessions assigned to me.
    #[arg(long)]
    mine: bool,
}

/// `--status` values.
#[derive(ValueEnum, Debug, Clone, Copy)]
#[value(rename_all = "snake_case")]
enum StatusArg {
    InProgress,
    Completed,
}

impl From<StatusArg> for SessionStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::InProgress => SessionStatus::InProgress,
            StatusArg::Completed => SessionStatus::Completed,
        }
    }
}

/// Short form of a change hash, as git shows commits.
const SHORT_HASH: usize = 8;

fn short(hash: &str) -> &str {
    hash.get(..SHORT_HASH).unwrap_or(hash)
}

/// A server time in this machine's time zone, to the second.
fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn received(author: &Author) -> String {
    author
        .received_at
        .map_or_else(|| "-".to_owned(), local_time)
}

fn device(author: &Author) -> String {
    author.device_id.clone().unwrap_or_else(|| "-".to_owned())
}

/// A value as JSON text (`"fail"`, `true`, `3`), cut short for a table cell.
fn value_text(v: &Value) -> String {
    truncate(&v.to_string(), 60)
}

fn session_arg(text: &str) -> anyhow::Result<Uuid> {
    parse_session_id(text).with_context(|| format!("'{text}' is not a session"))
}

/// Context for a failed call about session `id`: a 404 gets the likely reason spelled out.
fn about_session(e: anyhow::Error, id: Uuid, what: &str) -> anyhow::Error {
    let not_found = e
        .downcast_ref::<crate::Error>()
        .is_some_and(|e| e.status() == Some(404));
    if not_found {
        e.context(format!(
            "no session {id} (it does not exist, or you may not see it)"
        ))
    } else {
        e.context(format!("cannot {what} of session {id}"))
    }
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

pub(super) async fn list(
    store: &CredentialStore,
    args: &SessionsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let filter = SessionFilter {
        building_id: args.building,
        status: args.status.map(SessionStatus::from),
        assigned_to_me: args.mine,
    };
    let (sessions, names) = authed(store, |c| async move {
        let sessions = c.list_all_sessions(&filter).await?;
        // Names for the table, best effort: only admins may list users, and a table with
        // ids is still a table.
        let names = if json {
            Names::default()
        } else {
            Names {
                buildings: super::backoffice::building_names(&c)
                    .await
                    .unwrap_or_default(),
                users: super::backoffice::user_names(&c).await.unwrap_or_default(),
            }
        };
        Ok((sessions, names))
    })
    .await
    .context("cannot list sessions")?;
    if json {
        // The API's page shape, with every page in it.
        return print_json(&Page {
            items: sessions,
            next_cursor: None,
        });
    }
    print!("{}", render_sessions(&sessions, &names));
    Ok(())
}

/// What the sessions table shows instead of ids, where known.
#[derive(Default)]
struct Names {
    buildings: std::collections::HashMap<Uuid, String>,
    users: std::collections::HashMap<Uuid, String>,
}

/// The assignees by name when every one is known, else how many there are.
fn assignees(ids: &[Uuid], names: &Names) -> String {
    let known: Option<Vec<&str>> = ids
        .iter()
        .map(|id| names.users.get(id).map(String::as_str))
        .collect();
    match known {
        Some(list) if !list.is_empty() => truncate(&list.join(", "), 30),
        _ => ids.len().to_string(),
    }
}

fn render_sessions(sessions: &[Session], names: &Names) -> String {
    if sessions.is_empty() {
        return "no sessions\n".to_owned();
    }
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "STATUS",
        "FREQUENCY",
        "BUILDING",
        "ASSIGNED",
        "UPDATED",
    ]);
    // Oldest first, as people read a list; the API orders by id, which is random for v4 ids.
    let mut sessions: Vec<&Session> = sessions.iter().collect();
    sessions.sort_by_key(|s| (s.created_at, s.id));
    for s in &sessions {
        t.row(vec![
            s.id.to_string(),
            truncate(&s.name, 40),
            s.status.clone(),
            s.frequency.clone(),
            names
                .buildings
                .get(&s.building_id)
                .map(|n| truncate(n, 24))
                .unwrap_or_else(|| s.building_id.to_string()),
            assignees(&s.assigned_to, names),
            local_time(s.updated_at),
        ]);
    }
    let n = sessions.len();
    format!(
        "{}{n} session{}\n",
        t.render(),
        if n == 1 { "" } else { "s" }
    )
}

pub(super) async fn conflicts(
    store: &CredentialStore,
    session: &str,
    json: bool,
) -> anyhow::Result<()> {
    let id = session_arg(session)?;
    let conflicts = authed(store, |c| async move { c.session_conflicts(id).await })
        .await
        .map_err(|e| about_session(e, id, "read the conflicts"))?;
    if json {
        return print_json(&conflicts);
    }
    print!("{}", render_conflicts(&conflicts));
    Ok(())
}

/// The widest line `conflicts` prints.
const WIDTH: usize = 100;

fn render_conflicts(c: &Conflicts) -> String {
    let id = c.session_id;
    // A server without the grouped view: every conflict is "document"-level for us.
    let document: &[Conflict] = if c.items.is_empty() && c.document.is_empty() {
        &c.conflicts
    } else {
        &c.document
    };
    if c.items.is_empty() && document.is_empty() {
        return format!("no conflicts in session {id}\n");
    }
    let n = c.items.len();
    let mut head = format!("session {id}: {n} item{} in conflict", plural(n));
    if !document.is_empty() {
        head.push_str(&format!(
            ", {} other conflict{}",
            document.len(),
            plural(document.len())
        ));
    }
    let mut out = head + "\n";
    for item in &c.items {
        out.push('\n');
        out.push_str(&render_item(item));
    }
    for conflict in document {
        out.push('\n');
        out.push_str(&render_flat(conflict));
    }
    if !c.items.is_empty() {
        out.push_str(&format!(
            "\ntake a side:   firemode-cli resolve-item {id} <ASSET> --side <N>\n\
             or set values: firemode-cli resolve-item {id} <ASSET> --set outcome=pass --set notes=…\n"
        ));
    }
    if !document.is_empty() {
        out.push_str(&format!(
            "\nresolve one with: firemode-cli resolve {id} <PATH> <VALUE>\n"
        ));
    }
    out.lines()
        .map(|l| truncate(l, WIDTH) + "\n")
        .collect::<String>()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One block per item: what the asset is, then each side with who/where/when and its values.
fn render_item(item: &ItemConflicts) -> String {
    let name = [
        item.identifier.as_deref(),
        item.location.as_deref(),
        item.asset_type.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    let mut out = if name.is_empty() {
        format!("asset {}\n", item.asset_id)
    } else {
        format!("{}\n  asset {}\n", truncate(&name, WIDTH), item.asset_id)
    };
    let conflicted: Vec<&str> = item
        .fields
        .iter()
        .filter(|f| f.kind == ConflictKind::ConcurrentEdits)
        .map(|f| f.field.as_deref().unwrap_or(&f.path))
        .collect();
    if !conflicted.is_empty() {
        out.push_str(&format!("  differs: {}\n", conflicted.join(", ")));
    }
    for side in &item.sides {
        out.push_str(&format!(
            "  side {}  {}  {}  received {}\n",
            side.side,
            truncate(&side.author.display_name(), 36),
            truncate(&device(&side.author), 20),
            received(&side.author),
        ));
        let mut t = Table::new(&["FIELD", "VALUE"]).indented(4);
        for (field, value) in &side.values {
            let shown = item.fields.iter().any(|f| {
                f.field.as_deref() == Some(field.as_str())
                    && f.values
                        .iter()
                        .any(|v| v.side == Some(side.side) && v.winner)
            });
            let mut text = truncate(&value.to_string(), 60);
            if shown {
                text.push_str("  (shown now)");
            }
            t.row(vec![field.clone(), text]);
        }
        let recorded = |v: &Option<Value>| {
            v.as_ref().map_or("-".to_owned(), |v| {
                v.as_str().map_or(v.to_string(), str::to_owned)
            })
        };
        if side.recorded_by.is_some() || side.recorded_at.is_some() {
            t.row(vec![
                "recorded".to_owned(),
                format!(
                    "by {} at {}",
                    recorded(&side.recorded_by),
                    recorded(&side.recorded_at)
                ),
            ]);
        }
        out.push_str(
            &t.render()
                .lines()
                .skip(1)
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        );
    }
    for f in item.fields.iter().filter(|f| f.problem.is_some()) {
        out.push_str(&format!(
            "  problem in {}: {} (value {})\n",
            f.field.as_deref().unwrap_or(&f.path),
            f.problem.as_deref().unwrap_or_default(),
            value_text(&f.winner)
        ));
    }
    out
}

/// A conflict not under an item: its path, then a row per value.
fn render_flat(conflict: &Conflict) -> String {
    let mut out = format!("{}  ({})\n", conflict.path, conflict.kind);
    if let Some(problem) = &conflict.problem {
        out.push_str(&format!("  problem: {problem}\n"));
    }
    let mut t =
        Table::new(&["WINS", "VALUE", "AUTHOR", "DEVICE", "RECEIVED", "CHANGE"]).indented(2);
    for v in &conflict.values {
        t.row(vec![
            if v.winner { "yes" } else { "" }.to_owned(),
            truncate(&v.value.to_string(), 30),
            truncate(&v.author.display_name(), 24),
            device(&v.author),
            received(&v.author),
            v.change.as_deref().map_or("-", short).to_owned(),
        ]);
    }
    if conflict.values.is_empty() {
        out.push_str(&format!("  value: {}\n", value_text(&conflict.winner)));
    } else {
        out.push_str(&t.render());
    }
    out
}

/// The value given on the command line: JSON when it parses (`true`, `3`, `null`, `"x"`),
/// otherwise the text itself, so `resolve S /items/A/outcome fail` needs no quoting.
pub(super) fn parse_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

pub(super) async fn resolve(
    store: &CredentialStore,
    session: &str,
    path: &str,
    value: &str,
    json: bool,
) -> anyhow::Result<()> {
    let id = session_arg(session)?;
    if !path.starts_with('/') {
        bail!(
            "'{path}' is not a path: give the JSON pointer `conflicts` lists, e.g. /items/<asset id>/outcome"
        );
    }
    let value = parse_value(value);
    let sent = value.clone();
    let resolved = authed(store, |c| async move {
        c.resolve_conflict(id, path, sent).await
    })
    .await
    .map_err(|e| about_session(e, id, &format!("resolve {path}")))?;
    if json {
        return print_json(&resolved);
    }
    println!(
        "resolved {} in session {}: kept {}",
        resolved.path, resolved.session_id, value
    );
    println!("document heads now: {}", resolved.heads.join(", "));
    Ok(())
}

/// How `resolve-item` resolves: `--side N` or `--set field=value`….
pub(super) fn item_resolution(
    side: Option<usize>,
    set: &[String],
) -> anyhow::Result<ItemResolution> {
    match (side, set.is_empty()) {
        (Some(n), true) => Ok(ItemResolution::Side(n)),
        (None, false) => {
            let mut values = serde_json::Map::new();
            for pair in set {
                let Some((field, value)) = pair.split_once('=') else {
                    bail!("'{pair}' is not FIELD=VALUE (e.g. outcome=pass)");
                };
                values.insert(field.trim().to_owned(), parse_value(value));
            }
            Ok(ItemResolution::Values(values))
        }
        _ => bail!("give either --side N or one or more --set FIELD=VALUE"),
    }
}

pub(super) async fn resolve_item(
    store: &CredentialStore,
    session: &str,
    asset: &str,
    resolution: ItemResolution,
    json: bool,
) -> anyhow::Result<()> {
    let id = session_arg(session)?;
    // An asset is named by its UUID or by its tag as `conflicts` shows it.
    let asset_id = match asset.trim().parse::<Uuid>() {
        Ok(a) => a,
        Err(_) => {
            let c = authed(store, |c| async move { c.session_conflicts(id).await })
                .await
                .map_err(|e| about_session(e, id, "read the conflicts"))?;
            let found = c
                .items
                .iter()
                .find(|i| i.identifier.as_deref() == Some(asset.trim()))
                .and_then(|i| i.asset_id.parse::<Uuid>().ok());
            match found {
                Some(a) => a,
                None => bail!(
                    "'{asset}' is neither an asset id nor the tag of an item in conflict in session {id}"
                ),
            }
        }
    };
    let what = match &resolution {
        ItemResolution::Side(n) => format!("took side {n}"),
        ItemResolution::Values(v) => format!(
            "set {}",
            v.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
        ),
    };
    let resolved = authed(store, |c| async move {
        c.resolve_item(id, asset_id, resolution).await
    })
    .await
    .map_err(|e| about_session(e, id, &format!("resolve item {asset_id}")))?;
    if json {
        return print_json(&resolved);
    }
    println!(
        "resolved item {} in session {}: {what}",
        resolved.asset_id, resolved.session_id
    );
    println!("document heads now: {}", resolved.heads.join(", "));
    Ok(())
}

pub(super) async fn history(
    store: &CredentialStore,
    session: &str,
    json: bool,
) -> anyhow::Result<()> {
    let id = session_arg(session)?;
    let history = authed(store, |c| async move { c.session_history(id).await })
        .await
        .map_err(|e| about_session(e, id, "read the history"))?;
    if json {
        return print_json(&history);
    }
    print!("{}", render_history(&history));
    Ok(())
}

/// What a change touched, in a few words: its pointers, the first few only.
fn touched_text(touched: &[String]) -> String {
    const SHOWN: usize = 3;
    match touched.len() {
        0 => "-".to_owned(),
        n if n <= SHOWN => touched.join(", "),
        n => format!(
            "{}, … (+{} more)",
            touched[..SHOWN - 1].join(", "),
            n - (SHOWN - 1)
        ),
    }
}

fn render_history(h: &History) -> String {
    let id = h.session_id;
    if h.changes.is_empty() {
        return format!("no changes in session {id}\n");
    }
    let mut t = Table::new(&[
        "#", "CHANGE", "RECEIVED", "AUTHOR", "DEVICE", "TOUCHED", "MESSAGE",
    ]);
    for (i, c) in h.changes.iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            short(&c.hash).to_owned(),
            received(&c.author),
            c.author.display_name(),
            device(&c.author),
            touched_text(&c.touched),
            c.message
                .as_deref()
                .map_or(String::new(), |m| truncate(m, 60)),
        ]);
    }
    let n = h.changes.len();
    format!(
        "session {id}: {n} change{}\n{}",
        if n == 1 { "" } else { "s" },
        t.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConflictValue, HistoryEntry, ItemSide};
    use chrono::TimeZone;
    use serde_json::json;

    fn author(name: Option<&str>, device: &str) -> Author {
        Author {
            user_id: Some(Uuid::nil()),
            user_name: name.map(str::to_owned),
            device_id: Some(device.to_owned()),
            received_at: Some(Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()),
        }
    }

    #[test]
    fn values_from_the_command_line() {
        assert_eq!(parse_value("fail"), json!("fail"));
        assert_eq!(parse_value("\"fail\""), json!("fail"));
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value("3"), json!(3));
        assert_eq!(parse_value("2.5"), json!(2.5));
        assert_eq!(parse_value("null"), json!(null));
        assert_eq!(parse_value("not tested"), json!("not tested"));
        assert_eq!(parse_value(""), json!(""));
    }

    fn value(v: Value, winner: bool, side: Option<usize>, a: Author) -> ConflictValue {
        ConflictValue {
            value: v,
            winner,
            change: Some("0123456789abcdef".into()),
            side,
            author: a,
        }
    }

    #[test]
    fn flat_conflicts_render_one_block_per_path() {
        // What an older server sends: the flat list only.
        let c = Conflicts {
            session_id: Uuid::nil(),
            conflicts: vec![Conflict {
                field: None,
                path: "/items/a/outcome".into(),
                kind: ConflictKind::ConcurrentEdits,
                winner: json!("fail"),
                problem: None,
                values: vec![
                    value(json!("fail"), true, None, author(Some("Sam"), "sam-tablet")),
                    ConflictValue {
                        change: None,
                        ..value(json!("pass"), false, None, author(None, "ivy-tablet"))
                    },
                ],
            }],
            items: vec![],
            document: vec![],
        };
        let text = render_conflicts(&c);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "session {}: 0 items in conflict, 1 other conflict",
                Uuid::nil()
            )
        );
        assert_eq!(lines[2], "/items/a/outcome  (concurrent edits)");
        assert!(lines[3].starts_with("  WINS  VALUE   AUTHOR"), "{text}");
        assert!(lines[4].starts_with("  yes   \"fail\"  Sam "), "{text}");
        assert!(lines[4].contains("sam-tablet") && lines[4].ends_with("01234567"));
        assert!(lines[5].contains(&Uuid::nil().to_string()) && lines[5].ends_with(" -"));
        assert_eq!(
            render_conflicts(&Conflicts {
                session_id: Uuid::nil(),
                conflicts: vec![],
                items: vec![],
                document: vec![],
            }),
            format!("no conflicts in session {}\n", Uuid::nil())
        );
    }

    #[test]
    fn items_render_one_block_with_sides() {
        let field = |name: &str, a: &str, b: &str| Conflict {
            field: Some(name.into()),
            path: format!("/items/a/{name}"),
            kind: ConflictKind::ConcurrentEdits,
            winner: json!(a),
            problem: None,
            values: vec![
                value(json!(a), true, Some(0), author(Some("Sam"), "sam-tablet")),
                value(json!(b), false, Some(1), author(None, "ivy-tablet")),
            ],
        };
        let side = |n: usize, outcome: &str, notes: &str, a: Author| ItemSide {
            side: n,
            actor: "ab".repeat(16),
            change: None,
            author: a,
            recorded_by: Some(json!("u-1")),
            recorded_at: Some(json!("2026-12-06T01:00:00.005Z")),
            values: serde_json::Map::from_iter([
                ("outcome".to_string(), json!(outcome)),
                ("notes".to_string(), json!(notes.repeat(40))),
            ]),
        };
        let c = Conflicts {
            session_id: Uuid::nil(),
            conflicts: vec![],
            items: vec![ItemConflicts {
                asset_id: "a".into(),
                identifier: Some("EXT-003".into()),
                location: Some("Level 2 lobby".into()),
                asset_type: Some("portable_extinguisher".into()),
                path: "/items/a".into(),
                fields: vec![field("outcome", "fail", "pass"), field("notes", "x", "y")],
                sides: vec![
                    side(0, "fail", "x", author(Some("Sam"), "sam-tablet")),
                    side(1, "pass", "y", author(None, "ivy-tablet")),
                ],
            }],
            document: vec![],
        };
        let text = render_conflicts(&c);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("session {}: 1 item in conflict", Uuid::nil())
        );
        assert_eq!(lines[2], "EXT-003 · Level 2 lobby · portable_extinguisher");
        assert_eq!(lines[3], "  asset a");
        assert_eq!(lines[4], "  differs: outcome, notes");
        assert!(
            lines[5].starts_with("  side 0  Sam  sam-tablet  received "),
            "{text}"
        );
        let block = |n: usize| -> Vec<&str> {
            let start = lines
                .iter()
                .position(|l| l.starts_with(&format!("  side {n}")))
                .unwrap();
            lines[start..start + 4].to_vec()
        };
        let row = |block: &[&str], field: &str| -> String {
            block
                .iter()
                .find(|l| l.trim_start().starts_with(field))
                .unwrap_or_else(|| panic!("{field} in {text}"))
                .to_string()
        };
        let zero = block(0);
        assert!(
            row(&zero, "outcome").contains("\"fail\"  (shown now)"),
            "{text}"
        );
        assert!(
            row(&zero, "notes").contains('…'),
            "long values are cut: {text}"
        );
        assert!(
            row(&zero, "recorded").contains("by u-1 at 2026-12-06T01:00:00.005Z"),
            "{text}"
        );
        let one = block(1);
        assert!(one[0].contains(&Uuid::nil().to_string()) && one[0].contains("ivy-tablet"));
        let pass = row(&one, "outcome");
        assert!(
            pass.contains("\"pass\"") && !pass.contains("shown"),
            "{text}"
        );
        assert!(text.contains("firemode-cli resolve-item"));
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
    }

    #[test]
    fn item_resolutions_from_the_command_line() {
        assert_eq!(
            item_resolution(Some(1), &[]).unwrap(),
            ItemResolution::Side(1)
        );
        let set = [
            "outcome=pass".to_string(),
            "notes=pin replaced".into(),
            "readings={\"p\":3}".into(),
        ];
        let ItemResolution::Values(v) = item_resolution(None, &set).unwrap() else {
            panic!("values")
        };
        assert_eq!(v["outcome"], "pass");
        assert_eq!(v["notes"], "pin replaced");
        assert_eq!(v["readings"], json!({"p": 3}));
        assert!(item_resolution(None, &[]).is_err());
        assert!(item_resolution(Some(0), &set).is_err());
        assert!(item_resolution(None, &["outcome".to_string()]).is_err());
    }

    #[test]
    fn history_summarises_what_changed() {
        let h = History {
            session_id: Uuid::nil(),
            changes: vec![HistoryEntry {
                hash: "abcdef0123".into(),
                actor: "aa".into(),
                seq: 1,
                time: 0,
                message: Some("resolve /items/a/outcome".into()),
                deps: vec![],
                touched: (0..5).map(|i| format!("/items/{i}/outcome")).collect(),
                author: author(Some("Ada"), "server"),
            }],
        };
        let text = render_history(&h);
        assert!(text.contains("abcdef01 "), "{text}");
        assert!(
            text.contains("/items/0/outcome, /items/1/outcome, … (+3 more)"),
            "{text}"
        );
        assert!(text.contains("resolve /items/a/outcome"), "{text}");
        assert!(text.contains("Ada"), "{text}");
    }
}
