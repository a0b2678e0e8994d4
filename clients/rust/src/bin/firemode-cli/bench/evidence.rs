//! `bench evidence-upload`: `POST /v1/evidence` with a photo of a fixed size (256 KiB by
//! default), as a tablet sends it: multipart form, `sha256` field, a fresh `Idempotency-Key`.
//!
//! Every upload has different bytes (a counter after the JPEG magic), so each one is hashed,
//! spooled and written to the object store as a new object: identical bytes would be
//! deduplicated by the content-addressed store and measure less than real photos cost.

use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;
use firemode_client::reqwest::multipart::{Form, Part};
use firemode_client::{Auth, Client, Error};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Workload;

#[derive(Args)]
pub struct EvidenceArgs {
    #[command(flatten)]
    pub common: crate::BenchArgs,
    /// Size of each uploaded photo in bytes.
    #[arg(long, default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(64..=(64 << 20)))]
    pub size: u32,
    /// Upload into this test session; default: create a building and a session for the run
    /// (needs an admin or office login).
    #[arg(long)]
    pub session: Option<Uuid>,
}

pub struct EvidenceUpload {
    session: Uuid,
    /// The photo's bytes after its first 32, shared by every upload.
    tail: Vec<u8>,
    /// Makes every file of this run (and of other runs) distinct.
    run: [u8; 16],
    next: AtomicU64,
}

impl EvidenceUpload {
    /// Log in, and find or create the session to upload into.
    pub async fn setup(
        client: &Client,
        email: &str,
        password: &str,
        session: Option<Uuid>,
        size: usize,
    ) -> Result<Self, Error> {
        client.login(email, password).await?;
        let session = match session {
            Some(s) => s,
            None => create_session(client).await?,
        };
        let tail = (0..size.saturating_sub(32))
            .map(|i| (i as u8).wrapping_mul(31) ^ 0x5a)
            .collect();
        let me = EvidenceUpload {
            session,
            tail,
            run: *Uuid::new_v4().as_bytes(),
            next: AtomicU64::new(0),
        };
        // Fail here, not in every request of the loop, if uploads cannot work.
        me.run_one(client).await?;
        Ok(me)
    }

    /// A JPEG-looking file: magic bytes, this run's id and the upload's number, then filler.
    fn photo(&self, n: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + self.tail.len());
        v.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F']);
        v.extend_from_slice(&self.run);
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&self.tail);
        v
    }
}

/// A building with one extinguisher and a six-monthly session for it.
async fn create_session(client: &Client) -> Result<Uuid, Error> {
    use super::fixtures;
    let building = fixtures::create_building(client, &["portable_extinguisher"], 1).await?;
    let session =
        fixtures::create_session(client, building, "evidence-upload bench", "six_monthly").await?;
    Ok(session.id)
}

impl Workload for EvidenceUpload {
    fn name(&self) -> &'static str {
        "evidence-upload"
    }

    async fn run_one(&self, client: &Client) -> Result<(), Error> {
        let photo = self.photo(self.next.fetch_add(1, Ordering::Relaxed));
        let sha256 = hex(&Sha256::digest(&photo));
        let key = Uuid::new_v4().to_string();
        let session = self.session.to_string();
        client
            .execute(Auth::Bearer, "/v1/evidence", |http, url| {
                let file = Part::bytes(photo.clone())
                    .file_name("bench.jpg")
                    .mime_str("image/jpeg")
                    .expect("static mime type");
                let form = Form::new()
                    .text("session_id", session.clone())
                    .text("evidence_type", "photo")
                    .text("sha256", sha256.clone())
                    .part("file", file);
                http.post(url)
                    .header("idempotency-key", &key)
                    .multipart(form)
            })
            .await
            .map(drop)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `firemode-cli bench evidence-upload`.
pub async fn run(args: &EvidenceArgs, json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let common = &args.common;
    let client = crate::bench_client(common)?;
    let workload = EvidenceUpload::setup(
        &client,
        &common.email,
        &common.password,
        args.session,
        args.size as usize,
    )
    .await
    .context("setup failed")?;
    crate::bench_run(workload, client, common, json).await
}
