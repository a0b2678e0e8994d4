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
    parse_session_id, Author, Conflicts, History, Page, Session, SessionFilter, SessionStatus,
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

fn render_conflicts(c: &Conflicts) -> String {
    let id = c.session_id;
    let n = c.conflicts.len();
    if n == 0 {
        return format!("no conflicts in session {id}\n");
    }
    let mut out = format!(
        "session {id}: {n} conflict{}\n",
        if n == 1 { "" } else { "s" }
    );
    for conflict in &c.conflicts {
        out.push('\n');
        out.push_str(&format!("{}  ({})\n", conflict.path, conflict.kind));
        if let Some(problem) = &conflict.problem {
            out.push_str(&format!("  problem: {problem}\n"));
        }
        let mut t =
            Table::new(&["WINS", "VALUE", "AUTHOR", "DEVICE", "RECEIVED", "CHANGE"]).indented(2);
        for v in &conflict.values {
            t.row(vec![
                if v.winner { "yes" } else { "" }.to_owned(),
                value_text(&v.value),
                v.author.display_name(),
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
    }
    out.push_str(&format!(
        "\nresolve one with: firemode-cli resolve {id} <PATH> <VALUE>\n"
    ));
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
    use crate::{Conflict, ConflictKind, ConflictValue, HistoryEntry};
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

    #[test]
    fn conflicts_render_one_block_per_path() {
        let c = Conflicts {
            session_id: Uuid::nil(),
            conflicts: vec![Conflict {
                path: "/items/a/outcome".into(),
                kind: ConflictKind::ConcurrentEdits,
                winner: json!("fail"),
                problem: None,
                values: vec![
                    ConflictValue {
                        value: json!("fail"),
                        winner: true,
                        change: Some("0123456789abcdef".into()),
                        author: author(Some("Sam"), "sam-tablet"),
                    },
                    ConflictValue {
                        value: json!("pass"),
                        winner: false,
                        change: None,
                        author: author(None, "ivy-tablet"),
                    },
                ],
            }],
        };
        let text = render_conflicts(&c);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("session {}: 1 conflict", Uuid::nil()));
        assert_eq!(lines[2], "/items/a/outcome  (concurrent edits)");
        assert!(lines[3].starts_with("  WINS  VALUE   AUTHOR"), "{text}");
        assert!(lines[4].starts_with("  yes   \"fail\"  Sam "), "{text}");
        assert!(lines[4].contains("sam-tablet") && lines[4].ends_with("01234567"));
        assert!(lines[5].contains(&Uuid::nil().to_string()) && lines[5].ends_with(" -"));
        assert_eq!(
            render_conflicts(&Conflicts {
                session_id: Uuid::nil(),
                conflicts: vec![]
            }),
            format!("no conflicts in session {}\n", Uuid::nil())
        );
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
