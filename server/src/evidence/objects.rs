//! The evidence object store: content-addressed by SHA-256 and written once. A local folder
//! (`<data_dir>/evidence`) by default, an S3-compatible bucket by configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::config::{Config, EvidenceStoreKind};

/// Files up to this size are stored with one conditional put (read back into memory once);
/// larger ones are streamed from the temporary file in parts.
const SINGLE_PUT_MAX: u64 = 4 * 1024 * 1024;
/// Multipart part sizes: S3 wants at least 5 MiB per part; a folder takes anything.
const PART_SIZE_LOCAL: usize = 1024 * 1024;
const PART_SIZE_S3: usize = 8 * 1024 * 1024;
/// Parts being written at once, per upload.
const PART_CONCURRENCY: usize = 2;
/// A temporary upload file untouched for this long belongs to no running request.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(3600);

pub struct EvidenceObjects {
    store: Arc<dyn ObjectStore>,
    kind: EvidenceStoreKind,
    tmp_dir: PathBuf,
}

/// Whether `put` wrote the object or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Written,
    AlreadyPresent,
}

impl EvidenceObjects {
    /// Build the configured store and the folder for uploads in progress. Temporary files
    /// left by a crash are removed: nothing refers to them. (Only old ones: an upload lives
    /// for seconds, and another process on this data dir may be receiving one right now.)
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let tmp_dir = config.data_dir.join("evidence-tmp");
        std::fs::create_dir_all(&tmp_dir)
            .with_context(|| format!("cannot create {}", tmp_dir.display()))?;
        let stale = std::time::SystemTime::now() - STALE_UPLOAD;
        for entry in std::fs::read_dir(&tmp_dir)?.flatten() {
            if entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < stale)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let store: Arc<dyn ObjectStore> =
            match config.evidence_store {
                EvidenceStoreKind::Local => {
                    let root = config.data_dir.join("evidence");
                    std::fs::create_dir_all(&root)
                        .with_context(|| format!("cannot create {}", root.display()))?;
                    Arc::new(LocalFileSystem::new_with_prefix(&root).with_context(|| {
                        format!("evidence folder {} is not usable", root.display())
                    })?)
                }
                EvidenceStoreKind::S3 => {
                    let bucket = config
                        .evidence_s3_bucket
                        .as_deref()
                        .context("evidence_store = s3 needs FIREMODE_EVIDENCE_S3_BUCKET")?;
                    // Credentials and defaults from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
                    // AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT...; settings below win.
                    let mut b = AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .with_allow_http(config.evidence_s3_allow_http)
                        // Write-once: PUT with If-None-Match: *.
                        .with_conditional_put(S3ConditionalPut::ETagMatch);
                    if let Some(region) = &config.evidence_s3_region {
                        b = b.with_region(region);
                    }
                    if let Some(endpoint) = &config.evidence_s3_endpoint {
                        b = b.with_endpoint(endpoint);
                    }
                    Arc::new(b.build().context(
                        "evidence S3 store: check the evidence_s3_* settings and AWS_* variables",
                    )?)
                }
            };
        Ok(Self {
            store,
            kind: config.evidence_store,
            tmp_dir,
        })
    }

    /// Where uploads are received before they are stored.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// `sha256/<first two hex digits>/<hex>`: spreads objects over 256 folders.
    pub fn location(sha256: &[u8]) -> ObjectPath {
        let hex = hex::encode(sha256);
        ObjectPath::from(format!("sha256/{}/{hex}", &hex[..2]))
    }

    /// Store the file at `path` (whose SHA-256 the caller computed) unless an object with
    /// that hash exists already. Content addressing makes a second copy pointless and lets
    /// write-once hold: an existing object is never replaced.
    pub async fn put_file(
        &self,
        sha256: &[u8; 32],
        path: &Path,
        size: u64,
    ) -> anyhow::Result<Stored> {
        let location = Self::location(sha256);
        match self.store.head(&location).await {
            Ok(_) => return Ok(Stored::AlreadyPresent),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e).context("evidence store: head"),
        }
        if size <= SINGLE_PUT_MAX {
            let bytes = tokio::fs::read(path).await.context("read spooled upload")?;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            return match self
                .store
                .put_opts(&location, PutPayload::from(bytes), opts)
                .await
            {
                Ok(_) => Ok(Stored::Written),
                // Lost a race with an upload of the same bytes: same content, nothing to do.
                Err(object_store::Error::AlreadyExists { .. }) => Ok(Stored::AlreadyPresent),
                Err(e) => Err(e).context("evidence store: put"),
            };
        }
        // Multipart uploads have no create-only mode. The `head` above keeps existing objects
        // untouched; two concurrent uploads of the same large file may both complete, and
        // then the object is replaced by identical bytes (same SHA-256), never by others.
        let part = match self.kind {
            EvidenceStoreKind::Local => PART_SIZE_LOCAL,
            EvidenceStoreKind::S3 => PART_SIZE_S3,
        };
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .context("evidence store: start multipart upload")?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        let mut file = tokio::fs::File::open(path)
            .await
            .context("open spooled upload")?;
        let result: anyhow::Result<()> = async {
            loop {
                writer.wait_for_capacity(PART_CONCURRENCY).await?;
                let mut buf = vec![0u8; part];
                let mut filled = 0;
                while filled < part {
                    let n = file.read(&mut buf[filled..]).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    return Ok(());
                }
                buf.truncate(filled);
                writer.put(Bytes::from(buf));
                if filled < part {
                    return Ok(());
                }
            }
        }
        .await;
        match result {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .context("evidence store: finish multipart upload")?;
                Ok(Stored::Written)
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e.context("evidence store: multipart upload"))
            }
        }
    }

    /// The stored bytes, as a stream, with their size.
    pub async fn get(
        &self,
        sha256: &[u8],
    ) -> anyhow::Result<(
        u64,
        futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    )> {
        let got = self
            .store
            .get(&Self::location(sha256))
            .await
            .context("evidence store: get")?;
        let size = got.meta.size;
        Ok((size, got.into_stream()))
    }

    /// Delete a stored object: only the purge of an archived building does, for objects no
    /// evidence row refers to any more. An object already gone is not an error.
    pub async fn delete(&self, sha256: &[u8]) -> anyhow::Result<()> {
        match self.store.delete(&Self::location(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).context("evidence store: delete"),
        }
    }

    /// Recompute the SHA-256 of the stored bytes (streaming). `None` when the object is gone.
    pub async fn rehash(&self, sha256: &[u8]) -> anyhow::Result<Option<([u8; 32], u64)>> {
        let mut stream = match self.store.get(&Self::location(sha256)).await {
            Ok(got) => got.into_stream(),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e).context("evidence store: get"),
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("evidence store: read")?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some((hasher.finalize().into(), size)))
    }
}
