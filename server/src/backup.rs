//! `firemode admin backup` and `admin restore` for the zero-setup deployment (SQLite, evidence
//! in the data folder, generated secrets), safe while the server runs.
//!
//! A backup is a folder:
//!
//! - `firemode.db`: the database as of one instant, made with SQLite's `VACUUM INTO` (a read
//!   transaction: writers go on meanwhile, the copy is one consistent snapshot, WAL included);
//! - `evidence/sha256/..`: every evidence object the snapshot's records refer to, copied after
//!   the snapshot and checked against its SHA-256 (objects are stored before their records and
//!   never change, so each is there to copy);
//! - `secrets.toml` when the server generated its secrets into the data folder (without the PII
//!   keys the names in the database are unreadable);
//! - `manifest.json`: what the folder holds.
//!
//! PostgreSQL with evidence on S3 is backed up with the tools made for them (`pg_dump`, a
//! bucket copy); see docs/operations.md and `docs/backup/postgres-s3.sh`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::config::{Config, DatabaseUrl, EvidenceStoreKind};
use crate::crypto::SecretsFile;

const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "firemode.db";
const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub firemode_version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub database: String,
    /// Evidence objects copied (each referred to by at least one record).
    pub evidence_objects: usize,
    pub evidence_bytes: u64,
    /// Whether `secrets.toml` is in the backup; false when the secrets are configured (they
    /// must then be kept wherever the configuration is).
    pub secrets_file: bool,
}

fn sqlite_path(config: &Config) -> anyhow::Result<&Path> {
    match &config.database_url {
        DatabaseUrl::Sqlite(p) => Ok(p),
        DatabaseUrl::Postgres(_) => bail!(
            "admin backup and restore handle the zero-setup SQLite deployment; for PostgreSQL \
             use pg_dump / pg_restore and copy the evidence bucket (docs/operations.md#backups, \
             docs/backup/postgres-s3.sh)"
        ),
    }
}

/// A folder that does not exist or is empty.
fn empty_folder(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

async fn open(path: &Path, read_only: bool) -> anyhow::Result<sqlx::SqliteConnection> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .busy_timeout(std::time::Duration::from_secs(30));
    sqlx::SqliteConnection::connect_with(&opts)
        .await
        .with_context(|| format!("cannot open {}", sqlite_url(path)))
}

/// The object file of a hash under an evidence root (`sha256/ab/abcd...`).
fn object_path(root: &Path, sha256: &[u8]) -> PathBuf {
    let hex = hex::encode(sha256);
    root.join("sha256").join(&hex[..2]).join(&hex)
}

/// Copy `from` to `to`, returning the SHA-256 of the bytes copied and their count.
fn copy_hashed(from: &Path, to: &Path) -> anyhow::Result<([u8; 32], u64)> {
    use std::io::{Read, Write};
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut src =
        std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut dst =
        std::fs::File::create(to).with_context(|| format!("cannot write {}", to.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let read = src.read(&mut buf)?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
        dst.write_all(&buf[..read])?;
        n += read as u64;
    }
    dst.sync_all()?;
    Ok((hasher.finalize().into(), n))
}

#[cfg(unix)]
fn owner_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Back up the data of `config` into `dest` (which must not exist or be empty).
pub async fn backup(config: &Config, dest: &Path) -> anyhow::Result<Manifest> {
    let db = sqlite_path(config)?;
    if config.evidence_store != EvidenceStoreKind::Local {
        bail!(
            "evidence is in an S3 bucket: copy the bucket with your S3 tools \
             (docs/operations.md#backups); admin backup copies a local evidence folder"
        );
    }
    if !db.exists() {
        bail!("there is no database at {}", sqlite_url(db));
    }
    if !empty_folder(dest)? {
        bail!("{} is not empty: back up into a new folder", dest.display());
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let created_at = chrono::Utc::now();

    // 1. The database, as of one read transaction.
    let copy = dest.join(DATABASE);
    let mut live = open(db, false).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(copy.to_string_lossy().into_owned())
        .execute(&mut live)
        .await
        .context("the online copy of the database failed")?;
    live.close().await.ok();

    // 2. The evidence objects the copy refers to, each checked against its hash.
    let mut snapshot = open(&copy, true).await?;
    let hashes: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT DISTINCT sha256 FROM evidence")
        .fetch_all(&mut snapshot)
        .await?;
    snapshot.close().await.ok();
    let live_root = config.data_dir.join("evidence");
    let backup_root = dest.join("evidence");
    let mut bytes = 0u64;
    for (sha,) in &hashes {
        let (got, n) = copy_hashed(
            &object_path(&live_root, sha),
            &object_path(&backup_root, sha),
        )?;
        if got.as_slice() != sha.as_slice() {
            bail!(
                "evidence object {} does not match its hash: the evidence folder is damaged \
                 (`GET /v1/evidence/{{id}}/verify` names the record)",
                hex::encode(sha)
            );
        }
        bytes += n;
    }

    // 3. Generated secrets.
    let secrets = SecretsFile::path(&config.data_dir);
    let secrets_file = secrets.exists();
    if secrets_file {
        let to = dest.join("secrets.toml");
        std::fs::copy(&secrets, &to)
            .with_context(|| format!("cannot copy {}", secrets.display()))?;
        owner_only(&to)?;
    }

    let manifest = Manifest {
        format: FORMAT,
        firemode_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at,
        database: "sqlite".into(),
        evidence_objects: hashes.len(),
        evidence_bytes: bytes,
        secrets_file,
    };
    std::fs::write(dest.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

/// Restore the backup in `src` into the (empty or missing) data folder of `config`.
pub async fn restore(config: &Config, src: &Path) -> anyhow::Result<Manifest> {
    let db = sqlite_path(config)?;
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(src.join(MANIFEST)).with_context(|| {
            format!("{} is not a FireMode backup (no {MANIFEST})", src.display())
        })?)
        .with_context(|| format!("{} is not readable", src.join(MANIFEST).display()))?;
    if manifest.format != FORMAT {
        bail!(
            "the backup has format {} and this binary reads format {FORMAT}",
            manifest.format
        );
    }
    if !empty_folder(&config.data_dir)? {
        bail!(
            "the data folder {} is not empty: restore into an empty folder (stop the server \
             and move the old folder aside first)",
            config.data_dir.display()
        );
    }
    if db.exists() {
        bail!(
            "{} exists already: restore refuses to replace a database",
            sqlite_url(db)
        );
    }
    std::fs::create_dir_all(&config.data_dir)?;
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The database: copied, then checked by SQLite before anything else is put beside it.
    let tmp = db.with_extension("db.restoring");
    std::fs::copy(src.join(DATABASE), &tmp)
        .with_context(|| format!("cannot copy {}", src.join(DATABASE).display()))?;
    let mut conn = open(&tmp, true).await?;
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    let hashes: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT DISTINCT sha256 FROM evidence")
        .fetch_all(&mut conn)
        .await?;
    conn.close().await.ok();
    if check != "ok" {
        let _ = std::fs::remove_file(&tmp);
        bail!("the backup's database fails SQLite's integrity check: {check}");
    }
    let root = config.data_dir.join("evidence");
    for (sha,) in &hashes {
        let (got, _) = copy_hashed(
            &object_path(&src.join("evidence"), sha),
            &object_path(&root, sha),
        )?;
        if got.as_slice() != sha.as_slice() {
            bail!(
                "evidence object {} in the backup does not match its hash",
                hex::encode(sha)
            );
        }
    }
    if manifest.secrets_file {
        let to = SecretsFile::path(&config.data_dir);
        std::fs::copy(src.join("secrets.toml"), &to)
            .context("the backup lists secrets.toml but it cannot be copied")?;
        owner_only(&to)?;
    }
    std::fs::rename(&tmp, db)?;
    Ok(manifest)
}
