//! Secrets and PII encryption.
//!
//! PII (names, phone numbers) is sealed with XChaCha20-Poly1305 (orion). Each ciphertext is
//! `b"P1" | key id (u32, big endian) | orion sealed box`, so keys can be rotated: new data is
//! sealed with the active key, old ciphertexts stay readable while their key is in the ring,
//! and `firemode admin rotate-pii-key` re-seals every row under the active key.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use orion::aead;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Secret};

const MAGIC: &[u8; 2] = b"P1";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("PII key {0} is not configured")]
    UnknownKey(u32),
    #[error("ciphertext failed authentication")]
    Auth,
}

struct Keyring {
    keys: BTreeMap<u32, aead::SecretKey>,
    active: u32,
}

impl Keyring {
    fn from_spec(spec: &str, active: Option<u32>) -> anyhow::Result<Self> {
        let mut keys = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, key) = part
                .split_once(':')
                .context("PII keys must look like 1:<base64 key>,2:<base64 key>")?;
            let id: u32 = id.trim().parse().context("PII key id must be a number")?;
            let bytes = B64
                .decode(key.trim())
                .context("PII key must be base64 of 32 random bytes")?;
            if bytes.len() != 32 {
                bail!(
                    "PII key {id} must be 32 bytes (base64 of 32 random bytes), got {}",
                    bytes.len()
                );
            }
            let key = aead::SecretKey::from_slice(&bytes).context("invalid PII key")?;
            keys.insert(id, key);
        }
        let Some(&highest) = keys.keys().next_back() else {
            bail!("no PII key configured");
        };
        let active = active.unwrap_or(highest);
        if !keys.contains_key(&active) {
            bail!("the active PII key {active} is not among the configured keys");
        }
        Ok(Self { keys, active })
    }
}

/// Generated secrets of zero-setup mode, kept in `<data dir>/secrets.toml` (mode 0600).
#[derive(Serialize, Deserialize)]
pub struct SecretsFile {
    pub jwt_secret: String,
    pub pii_active_key: u32,
    /// key id (as string, TOML keys are strings) -> base64 key
    pub pii_keys: BTreeMap<String, String>,
}

impl SecretsFile {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("secrets.toml")
    }

    fn generate() -> Self {
        Self {
            jwt_secret: random_b64(48),
            pii_active_key: 1,
            pii_keys: BTreeMap::from([("1".to_string(), random_b64(32))]),
        }
    }

    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
    }

    /// Write atomically (temp file + rename) with owner-only permissions.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self)?;
        let tmp = path.with_extension("toml.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    fn pii_spec(&self) -> String {
        self.pii_keys
            .iter()
            .map(|(id, k)| format!("{id}:{k}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Load, or generate on first start. Returns (secrets, freshly generated?).
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(Self, bool)> {
        let path = Self::path(data_dir);
        if path.exists() {
            return Ok((Self::read(&path)?, false));
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let s = Self::generate();
        s.write(&path)?;
        Ok((s, true))
    }

    /// Add a new PII key and make it active (zero-setup rotation).
    pub fn add_pii_key(&mut self) -> u32 {
        let next = self
            .pii_keys
            .keys()
            .filter_map(|k| k.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        self.pii_keys.insert(next.to_string(), random_b64(32));
        self.pii_active_key = next;
        next
    }
}

pub fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    B64.encode(buf)
}

enum KeySource {
    Configured,
    File(PathBuf),
}

/// Seals and opens PII. In zero-setup mode it re-reads the secrets file when it meets a key id
/// it does not know, so a key added by `rotate-pii-key` while the server runs is picked up.
pub struct PiiCipher {
    ring: RwLock<Keyring>,
    source: KeySource,
}

impl PiiCipher {
    pub fn from_spec(spec: &str, active: Option<u32>) -> anyhow::Result<Self> {
        Ok(Self {
            ring: RwLock::new(Keyring::from_spec(spec, active)?),
            source: KeySource::Configured,
        })
    }

    fn from_file(path: PathBuf, secrets: &SecretsFile) -> anyhow::Result<Self> {
        Ok(Self {
            ring: RwLock::new(Keyring::from_spec(
                &secrets.pii_spec(),
                Some(secrets.pii_active_key),
            )?),
            source: KeySource::File(path),
        })
    }

    pub fn active_key(&self) -> u32 {
        self.ring.read().map(|r| r.active).unwrap_or(0)
    }

    /// Re-read the key file (zero-setup mode); a no-op for configured keys.
    pub fn reload(&self) -> anyhow::Result<()> {
        if let KeySource::File(path) = &self.source {
            let s = SecretsFile::read(path)?;
            let ring = Keyring::from_spec(&s.pii_spec(), Some(s.pii_active_key))?;
            if let Ok(mut guard) = self.ring.write() {
                *guard = ring;
            }
        }
        Ok(())
    }

    pub fn encrypt(&self, plaintext: &str) -> Vec<u8> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let key = &ring.keys[&ring.active];
        // seal only fails for empty keys or absurd lengths, neither possible here.
        let sealed = aead::seal(key, plaintext.as_bytes()).unwrap_or_default();
        let mut out = Vec::with_capacity(6 + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&ring.active.to_be_bytes());
        out.extend_from_slice(&sealed);
        out
    }

    pub fn encrypt_opt(&self, plaintext: Option<&str>) -> Option<Vec<u8>> {
        plaintext.map(|p| self.encrypt(p))
    }

    /// The key id a ciphertext was sealed with.
    pub fn key_id(ciphertext: &[u8]) -> Result<u32, CryptoError> {
        if ciphertext.len() < 6 || &ciphertext[..2] != MAGIC {
            return Err(CryptoError::Malformed);
        }
        let mut id = [0u8; 4];
        id.copy_from_slice(&ciphertext[2..6]);
        Ok(u32::from_be_bytes(id))
    }

    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<String, CryptoError> {
        let id = Self::key_id(ciphertext)?;
        let known = self
            .ring
            .read()
            .map(|r| r.keys.contains_key(&id))
            .unwrap_or(false);
        if !known {
            let _ = self.reload();
        }
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let key = ring.keys.get(&id).ok_or(CryptoError::UnknownKey(id))?;
        let plain = aead::open(key, &ciphertext[6..]).map_err(|_| CryptoError::Auth)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Malformed)
    }

    /// Decrypt an optional column; an unreadable value is logged and shown as absent rather
    /// than failing a whole listing.
    pub fn decrypt_opt(&self, ciphertext: Option<&[u8]>) -> Option<String> {
        let c = ciphertext?;
        match self.decrypt(c) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, "cannot decrypt a PII value");
                None
            }
        }
    }
}

/// The secrets a server needs, resolved from config or (zero-setup) the data dir.
pub struct Secrets {
    pub jwt_secret: Secret<String>,
    pub pii: PiiCipher,
    /// True when the secrets file was generated just now (worth a warning in the log).
    pub generated: bool,
}

impl Secrets {
    pub fn resolve(cfg: &Config) -> anyhow::Result<Self> {
        match (&cfg.jwt_secret, &cfg.pii_keys) {
            (Some(jwt), Some(pii)) => Ok(Self {
                jwt_secret: jwt.clone(),
                pii: PiiCipher::from_spec(pii.expose(), cfg.pii_active_key)?,
                generated: false,
            }),
            _ if cfg.zero_setup() => {
                let (file, generated) = SecretsFile::load_or_create(&cfg.data_dir)?;
                let jwt_secret = cfg
                    .jwt_secret
                    .clone()
                    .unwrap_or_else(|| Secret::new(file.jwt_secret.clone()));
                let pii = match &cfg.pii_keys {
                    Some(spec) => PiiCipher::from_spec(spec.expose(), cfg.pii_active_key)?,
                    None => PiiCipher::from_file(SecretsFile::path(&cfg.data_dir), &file)?,
                };
                Ok(Self {
                    jwt_secret,
                    pii,
                    generated,
                })
            }
            _ => bail!("set FIREMODE_JWT_SECRET and FIREMODE_PII_KEYS"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ids: &[u32]) -> String {
        ids.iter()
            .map(|id| format!("{id}:{}", random_b64(32)))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn roundtrip_and_key_id() {
        let c = PiiCipher::from_spec(&spec(&[1, 2]), None).unwrap();
        let ct = c.encrypt("Jane Citizen");
        assert_eq!(PiiCipher::key_id(&ct).unwrap(), 2);
        assert!(!ct.windows(4).any(|w| w == b"Jane"));
        assert_eq!(c.decrypt(&ct).unwrap(), "Jane Citizen");
    }

    #[test]
    fn tampering_and_garbage_fail_cleanly() {
        let c = PiiCipher::from_spec(&spec(&[1]), None).unwrap();
        let mut ct = c.encrypt("0400 000 000");
        let last = ct.len() - 1;
        ct[last] ^= 1;
        assert!(matches!(c.decrypt(&ct), Err(CryptoError::Auth)));
        assert!(matches!(c.decrypt(b"xx"), Err(CryptoError::Malformed)));
        assert!(matches!(
            c.decrypt(b"P1\0\0\0\x09abc"),
            Err(CryptoError::UnknownKey(9))
        ));
    }

    #[test]
    fn bad_specs_are_rejected() {
        assert!(PiiCipher::from_spec("", None).is_err());
        assert!(PiiCipher::from_spec("1:c2hvcnQ=", None).is_err());
        assert!(PiiCipher::from_spec(&spec(&[1]), Some(2)).is_err());
    }
}
