//! The commands of `firemode-cli` for people: log in, see who you are, list sessions, inspect
//! and resolve conflicts, read a session's history, log out.
//!
//! They live in the library (not the binary) so that other binaries can carry the same tool:
//! the end-to-end tests build it as `firemode-e2e-cli` with [`main`], and `firemode-cli` adds
//! its load benchmarks next to [`Command`] with `#[command(flatten)]`.
//!
//! Tokens are kept in `<config dir>/credentials.json` (mode 0600). Every command that calls
//! the server saves the pair again when the client refreshed it on the way, because the server
//! rotates refresh tokens and the old one is then dead.
//!
//! Exit status: 0 on success, 1 on any error (one line on stderr; with `--json`, one JSON
//! object `{"error": {...}}` on stderr), 2 on bad usage.

mod backoffice;
mod credentials;
mod sessions;
mod table;

use std::future::Future;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::{Client, User};
use credentials::{CredentialStore, Credentials};

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Machine-readable output: JSON on stdout, errors as one JSON object on stderr.
    #[arg(long, global = true)]
    pub json: bool,

    /// Where credentials.json is kept [default: $XDG_CONFIG_HOME/firemode or ~/.config/firemode]
    #[arg(long, global = true, env = "FIREMODE_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

/// The commands of this module (everything but `bench`).
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Log in and store the tokens. Password from FIREMODE_PASSWORD, else prompted (or read
    /// as one line from stdin when it is not a terminal).
    Login {
        /// Server base URL, e.g. http://127.0.0.1:8080 (without a scheme, http:// is added)
        #[arg(long, env = "FIREMODE_URL")]
        url: String,
        /// Login email.
        #[arg(long, env = "FIREMODE_EMAIL")]
        email: String,
    },
    /// Show the logged-in user; an expired access token is refreshed and the new pair saved.
    Whoami,
    /// Revoke the stored tokens on the server and delete them locally.
    Logout,
    /// List test sessions (inspectors see those assigned to them).
    Sessions(sessions::SessionsArgs),
    /// Show where concurrent edits left several values in a session, or values that break
    /// the schema, with who wrote each and which one wins.
    Conflicts {
        /// Session UUID, document id (base58check) or automerge: URL.
        session: String,
    },
    /// Settle a conflict: write VALUE at PATH as a new change, superseding every concurrent
    /// value.
    #[command(
        after_help = "VALUE is read as JSON when it parses (true, 3, null, \"x\"), \
        else taken as a string:\n  firemode-cli resolve <session> /items/<asset>/outcome fail"
    )]
    Resolve {
        /// Session UUID, document id (base58check) or automerge: URL.
        session: String,
        /// JSON pointer of the conflicted value, as `conflicts` lists it.
        path: String,
        /// The value to keep.
        value: String,
    },
    /// Settle every conflict of one item (asset) at once: take one writer's side (its values
    /// for all conflicted fields and the fields that go with them), or set values.
    #[command(
        after_help = "ASSET is the asset id or its tag as `conflicts` shows it. VALUE is read \
        as JSON when it parses, else taken as a string:\n  \
        firemode-cli resolve-item <session> EXT-0003 --side 1\n  \
        firemode-cli resolve-item <session> <asset> --set outcome=pass --set notes='pin replaced'"
    )]
    ResolveItem {
        /// Session UUID, document id (base58check) or automerge: URL.
        session: String,
        /// The asset id, or its tag (identifier).
        asset: String,
        /// Take this side (the number `conflicts` shows).
        #[arg(long, conflicts_with = "set")]
        side: Option<usize>,
        /// Set FIELD=VALUE (outcome, observedCondition, observedConditions, readings, notes);
        /// repeat for several fields.
        #[arg(long, value_name = "FIELD=VALUE")]
        set: Vec<String>,
    },
    /// Show every change of a session: when, who, from which device, what it touched.
    History {
        /// Session UUID, document id (base58check) or automerge: URL.
        session: String,
    },
    /// List the buildings of your organisation (names, addresses, ids).
    Buildings,
    /// Assets of a building.
    #[command(subcommand)]
    Assets(backoffice::AssetsCommand),
    /// List defects, with building names; filter by building, status, overdue.
    Defects(backoffice::DefectsArgs),
    /// Act on one defect.
    #[command(subcommand)]
    Defect(backoffice::DefectCommand),
    /// Download a building's compliance report (PDF, CSV or JSON).
    Report(backoffice::ReportArgs),
    /// Upload evidence, or verify stored evidence.
    #[command(subcommand)]
    Evidence(backoffice::EvidenceCommand),
}

/// The command line of a binary carrying only these commands.
#[derive(Parser, Debug)]
#[command(
    name = "firemode-cli",
    version,
    about = "FireMode command line: log in, sessions, conflicts, history, buildings, assets, defects, reports",
    after_help = "Exit status: 0 success, 1 error (one line on stderr), 2 bad usage."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Parse the process arguments, run the command on a fresh runtime, report any error, and
/// return the exit status. A binary's whole `main` can be `firemode_client::cli::main()`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return exit(Err(anyhow::Error::new(e).context("cannot start")), false),
    };
    let result = runtime.block_on(run(&cli.command, &cli.global));
    exit(result, cli.global.json)
}

/// Run one command.
pub async fn run(command: &Command, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = || -> anyhow::Result<CredentialStore> {
        let dir = credentials::resolve_dir(
            global.config_dir.as_deref(),
            std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()),
            std::env::var_os("HOME").filter(|v| !v.is_empty()),
        )?;
        Ok(CredentialStore::new(dir))
    };
    let json = global.json;
    match command {
        Command::Login { url, email } => login(&store()?, url, email, json).await,
        Command::Whoami => {
            let user = authed(&store()?, |c| async move { c.me().await }).await?;
            print_user(&user, json)
        }
        Command::Logout => logout(&store()?, json).await,
        Command::Sessions(args) => sessions::list(&store()?, args, json).await,
        Command::Conflicts { session } => sessions::conflicts(&store()?, session, json).await,
        Command::Resolve {
            session,
            path,
            value,
        } => sessions::resolve(&store()?, session, path, value, json).await,
        Command::ResolveItem {
            session,
            asset,
            side,
            set,
        } => {
            let resolution = sessions::item_resolution(*side, set)?;
            sessions::resolve_item(&store()?, session, asset, resolution, json).await
        }
        Command::History { session } => sessions::history(&store()?, session, json).await,
        Command::Buildings => backoffice::buildings(&store()?, json).await,
        Command::Assets(cmd) => backoffice::assets(&store()?, cmd, json).await,
        Command::Defects(args) => backoffice::defects(&store()?, args, json).await,
        Command::Defect(cmd) => backoffice::defect(&store()?, cmd, json).await,
        Command::Report(args) => backoffice::report(&store()?, args, json).await,
        Command::Evidence(cmd) => backoffice::evidence(&store()?, cmd, json).await,
    }
}

/// The exit status for `result`; an error is reported first (see [`report_error`]).
pub fn exit(result: anyhow::Result<()>, json: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e, json);
            ExitCode::FAILURE
        }
    }
}

/// One line: the context chain down to the first client error, whose own message already
/// names the root cause (so reqwest/hyper internals are not repeated).
fn one_line(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        parts.push(cause.to_string());
        if cause.is::<crate::Error>() || cause.is::<crate::ApiError>() {
            break;
        }
    }
    parts.join(": ")
}

/// Print `e` on stderr: `error: <one line>`, or with `json` one object
/// `{"error": {message, status, code, detail, request_id, retryable}}`.
pub fn report_error(e: &anyhow::Error, json: bool) {
    let message = one_line(e);
    if !json {
        eprintln!("error: {message}");
        return;
    }
    let api = e.chain().find_map(|c| {
        c.downcast_ref::<crate::Error>()
            .and_then(|e| e.api())
            .or_else(|| c.downcast_ref::<crate::ApiError>())
    });
    let body = match api {
        Some(a) => json!({"error": {
            "message": message, "status": a.status, "code": a.code,
            "detail": a.detail, "request_id": a.request_id, "retryable": a.retryable,
        }}),
        None => json!({"error": {"message": message}}),
    };
    eprintln!("{body}");
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FIREMODE_PASSWORD") {
        return Ok(p);
    }
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").context("cannot read the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        bail!("no password given (set FIREMODE_PASSWORD or type it at the prompt)");
    }
    Ok(password)
}

/// A server address as people type it: `127.0.0.1:8080` or `localhost:8080` get `http://`
/// (the server speaks plain HTTP unless a proxy terminates TLS in front of it).
pub fn with_scheme(url: &str) -> String {
    let url = url.trim();
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

async fn login(store: &CredentialStore, url: &str, email: &str, json: bool) -> anyhow::Result<()> {
    let client = Client::new(&with_scheme(url))?;
    let password = read_password()?;
    client.login(email, &password).await?;
    let tokens = client.tokens().context("the server sent no tokens")?;
    let creds = Credentials {
        url: client.base_url().to_owned(),
        email: email.trim().to_lowercase(),
        tokens,
    };
    store.save(&creds)?;
    if json {
        println!(
            "{}",
            json!({
                "url": creds.url, "email": creds.email,
                "credentials": store.path(), "access_expires_at": creds.tokens.access_expires_at,
            })
        );
    } else {
        println!(
            "logged in to {} as {}; credentials saved in {}",
            creds.url,
            creds.email,
            store.path().display()
        );
    }
    Ok(())
}

pub(super) fn load_or_hint(store: &CredentialStore) -> anyhow::Result<Credentials> {
    match store.load()? {
        Some(c) => Ok(c),
        None => bail!(
            "not logged in (no {}); run: firemode-cli login --url <URL> --email <EMAIL>",
            store.path().display()
        ),
    }
}

/// Run `call` with a client holding the saved tokens, then save the tokens again if the
/// client refreshed them on the way, or delete them if the server ended the login.
async fn authed<T, F, Fut>(store: &CredentialStore, call: F) -> anyhow::Result<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<T, crate::Error>>,
{
    let creds = load_or_hint(store)?;
    let client = Client::new(&creds.url)?.with_tokens(creds.tokens.clone());
    let result = call(client.clone()).await;
    // Save before looking at the result: a refresh may have rotated the refresh token even if
    // the call then failed, and the old one is dead (reusing it would end the login).
    match client.tokens() {
        Some(t) if t != creds.tokens => store.save(&Credentials {
            tokens: t,
            ..creds.clone()
        })?,
        Some(_) => {}
        None => {
            store.remove()?;
            let e = result.err().map(anyhow::Error::from);
            let e = e.unwrap_or_else(|| anyhow::anyhow!("the server ended the login"));
            return Err(e.context(format!(
                "the login of {} at {} has ended; log in again",
                creds.email, creds.url
            )));
        }
    }
    Ok(result?)
}

fn print_user(u: &User, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(u)?);
    } else {
        println!("{} ({})", u.email, u.role);
        if let Some(name) = &u.full_name {
            println!("name          {name}");
        }
        println!("user id       {}", u.id);
        println!("organisation  {}", u.org_id);
        if !u.active {
            println!("inactive");
        }
    }
    Ok(())
}

async fn logout(store: &CredentialStore, json: bool) -> anyhow::Result<()> {
    let Some(creds) = store.load()? else {
        if json {
            println!("{}", json!({"logged_out": true, "was_logged_in": false}));
        } else {
            println!("not logged in");
        }
        return Ok(());
    };
    let client = Client::new(&creds.url)?.with_tokens(creds.tokens.clone());
    let result = client.logout().await;
    // The local copy goes in every case: the user asked to be logged out here.
    store.remove()?;
    match result {
        // A 401 means the tokens were already dead (expired login, revoked by an admin).
        Ok(()) => {}
        Err(e) if e.status() == Some(401) => {}
        Err(e) => {
            return Err(anyhow::Error::from(e).context(
                "deleted the local credentials, but the server could not revoke them (they stay valid until they expire)",
            ))
        }
    }
    if json {
        println!("{}", json!({"logged_out": true, "was_logged_in": true}));
    } else {
        println!("logged out of {} ({})", creds.url, creds.email);
    }
    Ok(())
}
