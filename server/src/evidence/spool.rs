//! Receiving a file: chunks go to a temporary file in the data dir while they are hashed and
//! counted, so memory stays flat whatever the file size. The temporary file is deleted when
//! the `Spool`/`SpooledFile` is dropped, on every path (rejection, error, success).

use std::path::Path;

use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::sniff::SNIFF_LEN;

/// Writes are batched into blocks this large before they go to the file.
const WRITE_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct Spool {
    file: BufWriter<tokio::fs::File>,
    path: TempPath,
    hasher: Sha256,
    size: u64,
    max: u64,
    head: Vec<u8>,
}

/// A completely received file.
pub struct SpooledFile {
    pub path: TempPath,
    pub sha256: [u8; 32],
    pub size: u64,
}

impl Spool {
    /// A new temporary file in `dir`, accepting at most `max` bytes.
    pub async fn create(dir: &Path, max: u64) -> std::io::Result<Self> {
        let dir = dir.to_owned();
        let (file, path) = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix("upload-")
                .suffix(".part")
                .tempfile_in(dir)
        })
        .await
        .map_err(std::io::Error::other)??
        .into_parts();
        Ok(Self {
            file: BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file)),
            path,
            hasher: Sha256::new(),
            size: 0,
            max,
            head: Vec::with_capacity(SNIFF_LEN),
        })
    }

    /// Append a chunk. Fails as soon as the total passes the limit, before writing it.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        let size = self.size + chunk.len() as u64;
        if size > self.max {
            return Err(SpoolError::TooLarge(self.max));
        }
        self.size = size;
        if self.head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// The first bytes received (up to `SNIFF_LEN`), for type detection.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn finish(mut self) -> std::io::Result<SpooledFile> {
        self.file.flush().await?;
        // Close the handle before anyone reads the file back.
        drop(self.file);
        Ok(SpooledFile {
            path: self.path,
            sha256: self.hasher.finalize().into(),
            size: self.size,
        })
    }
}
