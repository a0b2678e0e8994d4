//! The `firemode` command line: `serve`, and `admin` commands that work beside a running server
//! (they talk to the same database).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::auth::password;
use crate::config::Config;
use crate::crypto::{random_b64, PiiCipher, Secrets, SecretsFile};
use crate::state::AppState;
use crate::store::{self, NewUser, Role, Store, UserPatch};

#[derive(Parser)]
#[command(
    name = "firemode",
    version,
    about = "FireMode: AS 1851 compliance backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct CommonArgs {
    /// TOML config file.
    #[arg(long, env = "FIREMODE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (SQLite file, evidence, generated secrets). Default ./data
    #[arg(long, global = true)]
    data_dir: Option<String>,
    /// sqlite://<path> or postgres://user@host/db (also DATABASE_URL).
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        /// Address to listen on. Default 127.0.0.1:8080
        #[arg(long)]
        listen: Option<String>,
    },
    /// Administrative commands. They find the database as `serve` does (--config,
    /// FIREMODE_* variables, --data-dir, --database-url) and say on stderr which one they use.
    Admin {
        #[command(flatten)]
        common: CommonArgs,
        /// Print the result as one JSON object on stdout (for scripts).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an organisation and its first admin. Password from FIREMODE_ADMIN_PASSWORD or prompt.
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        #[arg(long)]
        admin_full_name: Option<String>,
    },
    /// Create a user. Password from FIREMODE_ADMIN_PASSWORD or prompt.
    CreateUser {
        #[arg(long)]
        org: uuid::Uuid,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        full_name: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    /// Revoke every token of a user (their sync sockets close within a second).
    RevokeTokens {
        #[arg(long)]
        email: String,
    },
    /// Lift login throttling for an email (every client address), e.g. after a user was locked
    /// out by someone guessing their password.
    Unlock {
        #[arg(long)]
        email: String,
    },
    /// Re-encrypt all PII under a new key (zero-setup) or the configured active key.
    RotatePiiKey,
    /// Print a random key suitable for FIREMODE_PII_KEYS (as 1:<key>) or FIREMODE_JWT_SECRET.
    GenKey,
    /// Back up a zero-setup server (SQLite, local evidence, generated secrets) into an empty
    /// folder, consistently, while it runs.
    Backup {
        /// Where to write the backup (created; must be empty if it exists).
        dir: PathBuf,
    },
    /// Restore a backup made by `admin backup` into an empty data folder (the server stopped).
    Restore {
        /// The backup folder.
        dir: PathBuf,
    },
    /// Check that every change whose stored bytes a compaction dropped is in its document's
    /// snapshot. Reports what is not (exit status 1); repairs nothing.
    VerifyDocuments,
    /// Remove archived buildings whose seven-year retention has ended, with everything that
    /// belongs to them (records, documents, evidence objects). Audited; safe beside running
    /// servers and other purges. Lists what it would do with --dry-run.
    PurgeArchived {
        /// Only buildings archived more than this many years ago (at least 7).
        #[arg(long, default_value_t = 7)]
        older_than_years: u32,
        /// List what would be purged and kept; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::Admin, Role::Office, Role::Inspector, Role::Auditor]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(common: &CommonArgs, listen: Option<&String>) -> anyhow::Result<Config> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut flags = BTreeMap::new();
    if let Some(d) = &common.data_dir {
        flags.insert("data_dir", d.clone());
    }
    if let Some(u) = &common.database_url {
        flags.insert("database_url", u.clone());
    }
    if let Some(l) = listen {
        flags.insert("listen", l.clone());
    }
    Config::load(common.config.as_deref(), &env, &flags)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { common, listen } => {
            let config = load_config(&common, listen.as_ref())?;
            let _telemetry = crate::telemetry::init(config.log_format);
            run_server(config).await
        }
        Command::Admin {
            common,
            json,
            command,
        } => {
            let out = Output { json };
            if let AdminCommand::GenKey = command {
                let key = random_b64(32);
                out.print(&key, serde_json::json!({ "key": key }));
                return Ok(());
            }
            let config = load_config(&common, None)?;
            admin(config, command, out, common.config.as_deref()).await
        }
    }
}

/// Run until SIGINT/SIGTERM, then drain and exit.
pub async fn run_server(config: Config) -> anyhow::Result<()> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let (listen, metrics_listen) = (config.listen, config.metrics_listen);
    tracing::info!(database = %config.database_url, data_dir = %config.data_dir.display(), "starting");
    let state = AppState::new(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (set --listen or FIREMODE_LISTEN)"))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    if let Some(addr) = metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for metrics (set FIREMODE_METRICS_LISTEN)")
        })?;
        tracing::info!(address = %metrics.local_addr()?, "metrics listening");
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::serve_metrics(metrics, state).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
    let draining = state.clone();
    crate::serve(listener, state).await?;
    tracing::info!("connections closed; flushing documents");
    // Unload and flush every document, stop the group committer, wait for the tasks.
    draining.drain().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn read_password(prompt: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FIREMODE_ADMIN_PASSWORD") {
        return Ok(p);
    }
    let p = rpassword::prompt_password(prompt)
        .context("no password: set FIREMODE_ADMIN_PASSWORD or run in a terminal")?;
    Ok(p)
}

/// How an admin command answers: labelled lines for people, or one JSON object.
#[derive(Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn print(self, text: &str, json: serde_json::Value) {
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
    }
}

/// Say which data folder and database an admin command works on, and refuse to run anything
/// but `create-org` against a database that does not exist yet (a command run from the wrong
/// folder used to create an empty one there and then report a missing organisation).
async fn locate(
    config: &Config,
    command: &AdminCommand,
    config_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let folder = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let database = match &config.database_url {
        crate::config::DatabaseUrl::Sqlite(p) => {
            crate::config::DatabaseUrl::Sqlite(std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        }
        other => other.clone(),
    };
    let from = config_file
        .map(|f| format!(" (config file {})", f.display()))
        .unwrap_or_default();
    eprintln!(
        "firemode admin: data folder {}, database {database}{from}",
        folder.display()
    );
    if matches!(
        command,
        AdminCommand::CreateOrg { .. } | AdminCommand::Restore { .. }
    ) {
        return Ok(());
    }
    let exists = match &config.database_url {
        crate::config::DatabaseUrl::Sqlite(p) => p.exists(),
        crate::config::DatabaseUrl::Postgres(url) => postgres_has_schema(url.expose()).await?,
    };
    if !exists {
        anyhow::bail!(
            "there is no FireMode database at {database}: nothing to do. Point the command at the \
             server's data with --data-dir, --database-url or --config (the same settings as \
             `firemode serve`), or run `firemode admin create-org` to start a new one"
        );
    }
    Ok(())
}

/// Whether FireMode's migrations ever ran on this PostgreSQL database.
async fn postgres_has_schema(url: &str) -> anyhow::Result<bool> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("cannot connect to the PostgreSQL database")?;
    let (found,): (bool,) =
        sqlx::query_as("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut conn)
            .await?;
    let _ = conn.close().await;
    Ok(found)
}

async fn admin(
    config: Config,
    command: AdminCommand,
    out: Output,
    config_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    locate(&config, &command, config_file).await?;
    // Backup and restore work on files: no migrations, no generated secrets.
    match &command {
        AdminCommand::Backup { dir } => {
            let m = crate::backup::backup(&config, dir).await?;
            out.print(
                &format!(
                    "backed up into {}: the database as of {}, {} evidence objects ({} bytes){}",
                    dir.display(),
                    m.created_at.to_rfc3339(),
                    m.evidence_objects,
                    m.evidence_bytes,
                    if m.secrets_file {
                        ", secrets.toml"
                    } else {
                        "; the secrets are configured, keep them with the backup yourself"
                    }
                ),
                serde_json::to_value(&m)?,
            );
            return Ok(());
        }
        AdminCommand::Restore { dir } => {
            let m = crate::backup::restore(&config, dir).await?;
            out.print(
                &format!(
                    "restored the backup of {} into {}: {} evidence objects{}",
                    m.created_at.to_rfc3339(),
                    config.data_dir.display(),
                    m.evidence_objects,
                    if m.secrets_file { ", secrets.toml" } else { "" }
                ),
                serde_json::to_value(&m)?,
            );
            return Ok(());
        }
        _ => {}
    }
    let store = store::connect(&config.database_url).await?;
    let secrets = Secrets::resolve(&config)?;
    match command {
        AdminCommand::CreateOrg {
            name,
            admin_email,
            admin_full_name,
        } => {
            let email = crate::http::users::normalise_email(&admin_email)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if name.trim().is_empty() {
                anyhow::bail!("--name must not be empty");
            }
            let pw = read_password("Password for the new admin: ")?;
            let ctx = password::PolicyContext {
                email: Some(&email),
                org_name: Some(name.trim()),
            };
            password::check_policy(&pw, ctx).map_err(|m| anyhow::anyhow!(m))?;
            let hash = password::hash(pw).await?;
            let org = store.create_org(name.trim()).await?;
            let user = store
                .create_user(NewUser {
                    org_id: org.id,
                    email,
                    password_hash: hash,
                    role: Role::Admin,
                    full_name_enc: secrets.pii.encrypt_opt(admin_full_name.as_deref()),
                    phone_enc: None,
                })
                .await
                .map_err(|e| match e {
                    store::StoreError::Conflict(_) => {
                        anyhow::anyhow!("a user with this email already exists")
                    }
                    other => other.into(),
                })?;
            audit_cli(
                store.as_ref(),
                Some(org.id),
                "org.create",
                "organisation",
                org.id.to_string(),
            )
            .await?;
            audit_cli(
                store.as_ref(),
                Some(org.id),
                "user.create",
                "user",
                user.id.to_string(),
            )
            .await?;
            out.print(
                &format!(
                    "created organisation \"{}\"\norganisation id: {}\nadmin user id:   {} ({})",
                    org.name, org.id, user.id, user.email
                ),
                serde_json::json!({
                    "org_id": org.id, "org_name": org.name,
                    "admin_user_id": user.id, "admin_email": user.email,
                }),
            );
        }
        AdminCommand::CreateUser {
            org,
            email,
            role,
            full_name,
            phone,
        } => {
            let organisation = store
                .get_org(org)
                .await
                .map_err(|_| anyhow::anyhow!("no organisation {org}"))?;
            let email =
                crate::http::users::normalise_email(&email).map_err(|e| anyhow::anyhow!("{e}"))?;
            let pw = read_password("Password for the new user: ")?;
            let ctx = password::PolicyContext {
                email: Some(&email),
                org_name: Some(&organisation.name),
            };
            password::check_policy(&pw, ctx).map_err(|m| anyhow::anyhow!(m))?;
            let hash = password::hash(pw).await?;
            let user = store
                .create_user(NewUser {
                    org_id: org,
                    email,
                    password_hash: hash,
                    role,
                    full_name_enc: secrets.pii.encrypt_opt(full_name.as_deref()),
                    phone_enc: secrets.pii.encrypt_opt(phone.as_deref()),
                })
                .await
                .map_err(|e| match e {
                    store::StoreError::Conflict(_) => {
                        anyhow::anyhow!("a user with this email already exists")
                    }
                    other => other.into(),
                })?;
            audit_cli(
                store.as_ref(),
                Some(org),
                "user.create",
                "user",
                user.id.to_string(),
            )
            .await?;
            out.print(
                &format!(
                    "created user {} ({}) in \"{}\"\nuser id: {}",
                    user.email,
                    role.as_str(),
                    organisation.name,
                    user.id
                ),
                serde_json::json!({
                    "user_id": user.id, "org_id": org, "email": user.email, "role": role.as_str(),
                }),
            );
        }
        AdminCommand::RevokeTokens { email } => {
            let user = store
                .get_user_by_email(&email.trim().to_lowercase())
                .await
                .map_err(|_| anyhow::anyhow!("no user with email {email}"))?;
            let list = crate::auth::revocation::RevocationList::default();
            list.revoke_user(store.as_ref(), user.id, config.access_token_ttl)
                .await?;
            audit_cli(
                store.as_ref(),
                Some(user.org_id),
                "user.revoke_tokens",
                "user",
                user.id.to_string(),
            )
            .await?;
            out.print(
                &format!("revoked all tokens of {}", user.email),
                serde_json::json!({ "user_id": user.id, "email": user.email, "revoked": true }),
            );
        }
        AdminCommand::Unlock { email } => {
            let email = email.trim().to_lowercase();
            if email.is_empty() {
                anyhow::bail!("--email must not be empty");
            }
            let cleared = store.throttle_clear(&email, None).await?;
            // Audited against the account when there is one (throttling also counts unknown
            // emails, which have no organisation to file it under).
            if let Ok(user) = store.get_user_by_email(&email).await {
                audit_cli(
                    store.as_ref(),
                    Some(user.org_id),
                    "user.unlock",
                    "user",
                    user.id.to_string(),
                )
                .await?;
            }
            out.print(
                &format!("unlocked {email} ({cleared} throttled client addresses cleared)"),
                serde_json::json!({ "email": email, "cleared_addresses": cleared }),
            );
        }
        AdminCommand::RotatePiiKey => {
            let cipher = if config.zero_setup() && config.pii_keys.is_none() {
                let path = SecretsFile::path(&config.data_dir);
                let (mut file, _) = SecretsFile::load_or_create(&config.data_dir)?;
                let id = file.add_pii_key();
                file.write(&path)?;
                eprintln!(
                    "added PII key {id} to {} and made it active",
                    path.display()
                );
                secrets.pii.reload()?;
                secrets.pii
            } else {
                eprintln!(
                    "re-encrypting under the configured active key {} (add a new key to FIREMODE_PII_KEYS first)",
                    secrets.pii.active_key()
                );
                secrets.pii
            };
            let n = rotate_pii(store.as_ref(), &cipher).await?;
            audit_cli(
                store.as_ref(),
                None,
                "pii.rotate_key",
                "pii_key",
                cipher.active_key().to_string(),
            )
            .await?;
            out.print(
                &format!("re-encrypted {n} values under key {}", cipher.active_key()),
                serde_json::json!({ "reencrypted": n, "active_key": cipher.active_key() }),
            );
        }
        AdminCommand::GenKey | AdminCommand::Backup { .. } | AdminCommand::Restore { .. } => {
            unreachable!("handled before connecting")
        }
        AdminCommand::VerifyDocuments => verify_documents(store.as_ref(), out).await?,
        AdminCommand::PurgeArchived {
            older_than_years,
            dry_run,
        } => {
            let objects = crate::evidence::EvidenceObjects::from_config(&config)?;
            let done = crate::purge::run(
                store.as_ref(),
                &objects,
                older_than_years,
                dry_run,
                chrono::Utc::now(),
            )
            .await?;
            let mut text = String::new();
            for o in &done {
                let why = o
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                text.push_str(&format!(
                    "{} {} \"{}\" archived {}, kept until {}{why}\n",
                    o.action,
                    o.building_id,
                    o.name,
                    o.archived_at.date_naive(),
                    o.retain_until.date_naive()
                ));
            }
            let purged = done.iter().filter(|o| o.action == "purged").count();
            let refused = done.iter().filter(|o| o.action == "refused").count();
            text.push_str(&format!(
                "{} archived buildings: {purged} purged, {} would be purged, {refused} refused{}",
                done.len(),
                done.iter().filter(|o| o.action == "would_purge").count(),
                if dry_run {
                    " (dry run: nothing changed)"
                } else {
                    ""
                }
            ));
            out.print(
                &text,
                serde_json::json!({ "dry_run": dry_run, "older_than_years": older_than_years, "buildings": done }),
            );
        }
    }
    Ok(())
}

async fn verify_documents(store: &dyn Store, out: Output) -> anyhow::Result<()> {
    let report = crate::hub::verify::verify_documents(store).await?;
    let mut text = String::new();
    for lost in &report.lost {
        text.push_str(&format!(
            "LOST session {} change {}: its bytes were dropped and the snapshot does not hold it\n",
            lost.session_id, lost.change_hash
        ));
    }
    for id in &report.unreadable_snapshots {
        text.push_str(&format!(
            "UNREADABLE session {id}: the snapshot does not load\n"
        ));
    }
    text.push_str(&format!(
        "checked {} sessions, {} compacted changes: {} lost, {} unreadable snapshots",
        report.sessions,
        report.compacted_changes,
        report.lost.len(),
        report.unreadable_snapshots.len()
    ));
    out.print(
        &text,
        serde_json::json!({
            "sessions": report.sessions,
            "compacted_changes": report.compacted_changes,
            "lost": report.lost.iter().map(|l| serde_json::json!({
                "session_id": l.session_id, "change_hash": l.change_hash,
            })).collect::<Vec<_>>(),
            "unreadable_snapshots": report.unreadable_snapshots,
        }),
    );
    if !report.lost.is_empty() || !report.unreadable_snapshots.is_empty() {
        anyhow::bail!("document verification found problems (nothing was changed)");
    }
    Ok(())
}

/// Re-seal every PII value not already under the active key. Returns how many were rewritten.
pub async fn rotate_pii(store: &dyn Store, cipher: &PiiCipher) -> anyhow::Result<usize> {
    let active = cipher.active_key();
    let mut n = 0;
    for (id, name, phone) in store.all_user_pii().await? {
        let reseal = |v: &Option<Vec<u8>>| -> anyhow::Result<Option<Option<Vec<u8>>>> {
            match v {
                Some(ct) if PiiCipher::key_id(ct)? != active => {
                    Ok(Some(Some(cipher.encrypt(&cipher.decrypt(ct)?))))
                }
                _ => Ok(None),
            }
        };
        let full_name_enc = reseal(&name)?;
        let phone_enc = reseal(&phone)?;
        if full_name_enc.is_none() && phone_enc.is_none() {
            continue;
        }
        n += usize::from(full_name_enc.is_some()) + usize::from(phone_enc.is_some());
        let org = store.get_user(id).await?.org_id;
        store
            .update_user(
                org,
                id,
                UserPatch {
                    full_name_enc,
                    phone_enc,
                    ..Default::default()
                },
            )
            .await?;
    }
    // Building contacts: a compare-and-swap per row, so a contact edited meanwhile (already
    // sealed under the active key) is left alone.
    for (id, name, phone) in store.all_building_contact_pii().await? {
        let reseal = |v: &Option<Vec<u8>>| -> anyhow::Result<(Option<Vec<u8>>, bool)> {
            match v {
                Some(ct) if PiiCipher::key_id(ct)? != active => {
                    Ok((Some(cipher.encrypt(&cipher.decrypt(ct)?)), true))
                }
                other => Ok((other.clone(), false)),
            }
        };
        let (new_name, name_changed) = reseal(&name)?;
        let (new_phone, phone_changed) = reseal(&phone)?;
        if !name_changed && !phone_changed {
            continue;
        }
        let swapped = store
            .reseal_building_contact(
                id,
                (name.as_deref(), phone.as_deref()),
                (new_name.as_deref(), new_phone.as_deref()),
            )
            .await?;
        if swapped {
            n += usize::from(name_changed) + usize::from(phone_changed);
        }
    }
    Ok(n)
}

async fn audit_cli(
    store: &dyn Store,
    org: Option<uuid::Uuid>,
    action: &str,
    kind: &str,
    id: String,
) -> anyhow::Result<()> {
    store
        .insert_audit(crate::store::NewAudit {
            org_id: org,
            actor_id: None,
            action: action.into(),
            target_type: Some(kind.into()),
            target_id: Some(id),
            details: serde_json::json!({ "via": "cli" }),
            request_id: None,
        })
        .await?;
    Ok(())
}
