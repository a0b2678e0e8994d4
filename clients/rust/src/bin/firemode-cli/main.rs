//! `firemode-cli`: log in to a FireMode server, see who you are, log out, and load-test it.
//!
//! Exit status: 0 on success, 1 on any error (one line on stderr; with `--json`, one JSON
//! object `{"error": {...}}` on stderr), 2 on bad usage.

mod bench;
mod credentials;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use firemode_client::{Client, User};
use serde_json::json;

use bench::workloads::UsersMe;
use credentials::{CredentialStore, Credentials};

#[derive(Parser)]
#[command(
    name = "firemode-cli",
    version,
    about = "FireMode command line: log in, whoami, logout, and load benchmarks",
    after_help = "Exit status: 0 success, 1 error (one line on stderr), 2 bad usage."
)]
struct Cli {
    /// Machine-readable output: JSON on stdout, errors as one JSON object on stderr.
    #[arg(long, global = true)]
    json: bool,

    /// Where credentials.json is kept [default: $XDG_CONFIG_HOME/firemode or ~/.config/firemode]
    #[arg(long, global = true, env = "FIREMODE_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in and store the tokens. Password from FIREMODE_PASSWORD, else prompted (or read
    /// as one line from stdin when it is not a terminal).
    Login {
        /// Server base URL, e.g. http://127.0.0.1:8080
        #[arg(long, env = "FIREMODE_URL")]
        url: String,
        #[arg(long, env = "FIREMODE_EMAIL")]
        email: String,
    },
    /// Show the logged-in user; an expired access token is refreshed and the new pair saved.
    Whoami,
    /// Revoke the stored tokens on the server and delete them locally.
    Logout,
    /// Load-test a server (closed loop: each task sends its next request when the last is done).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// GET /v1/users/me with one bearer token (JWT check + one database read per request).
    UsersMe(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Server base URL; the only host this sends requests to.
    #[arg(long, env = "FIREMODE_URL")]
    url: String,
    #[arg(long, env = "FIREMODE_EMAIL")]
    email: String,
    /// Password (or FIREMODE_PASSWORD, which keeps it out of the process list).
    #[arg(long, env = "FIREMODE_PASSWORD", hide_env_values = true)]
    password: String,
    /// Concurrent tasks, each with its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4096))]
    concurrency: u16,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    duration: f64,
    /// Seconds of unmeasured load before measuring.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_secs)]
    warmup: f64,
    /// Per-request timeout in seconds (a timed-out request counts as an error).
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    timeout: f64,
}

fn non_negative_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of seconds between 0 and 86400"
        )),
    }
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match non_negative_secs(s) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds above 0")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
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
        if cause.is::<firemode_client::Error>() || cause.is::<firemode_client::ApiError>() {
            break;
        }
    }
    parts.join(": ")
}

fn report_error(e: &anyhow::Error, json: bool) {
    let message = one_line(e);
    if !json {
        eprintln!("error: {message}");
        return;
    }
    let api = e.chain().find_map(|c| {
        c.downcast_ref::<firemode_client::Error>()
            .and_then(|e| e.api())
            .or_else(|| c.downcast_ref::<firemode_client::ApiError>())
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let store = || -> anyhow::Result<CredentialStore> {
        let dir = credentials::resolve_dir(
            cli.config_dir.as_deref(),
            std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()),
            std::env::var_os("HOME").filter(|v| !v.is_empty()),
        )?;
        Ok(CredentialStore::new(dir))
    };
    match &cli.command {
        Command::Login { url, email } => login(&store()?, url, email, cli.json).await,
        Command::Whoami => whoami(&store()?, cli.json).await,
        Command::Logout => logout(&store()?, cli.json).await,
        Command::Bench(BenchCommand::UsersMe(args)) => bench_users_me(args, cli.json).await,
    }
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

async fn login(store: &CredentialStore, url: &str, email: &str, json: bool) -> anyhow::Result<()> {
    let client = Client::new(url)?;
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

fn load_or_hint(store: &CredentialStore) -> anyhow::Result<Credentials> {
    match store.load()? {
        Some(c) => Ok(c),
        None => bail!(
            "not logged in (no {}); run: firemode-cli login --url <URL> --email <EMAIL>",
            store.path().display()
        ),
    }
}

async fn whoami(store: &CredentialStore, json: bool) -> anyhow::Result<()> {
    let creds = load_or_hint(store)?;
    let client = Client::new(&creds.url)?.with_tokens(creds.tokens.clone());
    let result = client.me().await;
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
    let user = result?;
    print_user(&user, json)
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

async fn bench_users_me(args: &BenchArgs, json: bool) -> anyhow::Result<()> {
    let concurrency = usize::from(args.concurrency);
    let http = firemode_client::reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(args.timeout))
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    let client = Client::with_http_client(&args.url, http)?;
    let workload = UsersMe::setup(&client, &args.email, &args.password)
        .await
        .context("setup failed")?;
    let settings = bench::Settings {
        concurrency,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
    };
    if !json {
        eprintln!(
            "running users-me against {}: {} tasks, {:.1} s warm-up + {:.1} s",
            client.base_url(),
            concurrency,
            args.warmup,
            args.duration
        );
    }
    let report = bench::run(Arc::new(workload), client, settings).await;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
