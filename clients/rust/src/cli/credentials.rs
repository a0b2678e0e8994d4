//! The credentials file: `<config dir>/credentials.json`, mode 0600, in a 0700 directory.
//! It holds bearer and refresh tokens, so it is written whole (temp file + rename) and never
//! with wider permissions, even for a moment.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Tokens;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "credentials.json";

/// What `login` saves and `whoami`/`logout` use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The server the tokens belong to.
    pub url: String,
    /// Who logged in (for messages only).
    pub email: String,
    /// The token pair, saved again whenever a command refreshed it.
    pub tokens: Tokens,
}

/// The config directory: `--config-dir`/`FIREMODE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/firemode`,
/// else `$HOME/.config/firemode`. Relative XDG values are ignored, as the XDG spec says.
pub fn resolve_dir(
    flag: Option<&Path>,
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    if let Some(xdg) = xdg_config_home.map(PathBuf::from) {
        if xdg.is_absolute() {
            return Ok(xdg.join("firemode"));
        }
    }
    match home.map(PathBuf::from) {
        Some(home) if home.is_absolute() => Ok(home.join(".config").join("firemode")),
        _ => bail!("cannot find a config directory: set HOME, XDG_CONFIG_HOME or --config-dir"),
    }
}

/// The credentials file in one config directory.
pub struct CredentialStore {
    dir: PathBuf,
}

impl CredentialStore {
    /// The store in `dir` (created on the first save).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `<dir>/credentials.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The saved credentials, or `None` when there are none.
    pub fn load(&self) -> anyhow::Result<Option<Credentials>> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let creds = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a credentials file of this version; delete it and log in again",
                path.display()
            )
        })?;
        Ok(Some(creds))
    }

    /// Write the credentials (replacing any), creating the directory (0700) if needed.
    pub fn save(&self, creds: &Credentials) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.path();
        let tmp = self
            .dir
            .join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let _ = fs::remove_file(&tmp);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // The mode above is filtered by the umask (only ever narrower); be exact anyway.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(&serde_json::to_vec_pretty(creds)?)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
        })
    }

    /// Delete the credentials; `Ok(false)` when there were none.
    pub fn remove(&self) -> anyhow::Result<bool> {
        let path = self.path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn sample() -> Credentials {
        Credentials {
            url: "http://127.0.0.1:8080".into(),
            email: "admin@acme.test".into(),
            tokens: Tokens {
                access_token: "eyJ.access".into(),
                refresh_token: "refresh-1".into(),
                access_expires_at: Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap(),
            },
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trip_with_private_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("firemode");
        let store = CredentialStore::new(dir.clone());
        assert_eq!(store.load().unwrap(), None);

        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));
        assert_eq!(mode(&store.path()), 0o600);
        assert_eq!(mode(&dir), 0o700);
        // No temp file left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

        let mut next = sample();
        next.tokens.refresh_token = "refresh-2".into();
        store.save(&next).unwrap();
        assert_eq!(store.load().unwrap(), Some(next));

        assert!(store.remove().unwrap());
        assert!(!store.remove().unwrap());
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn saving_over_a_world_readable_file_makes_it_private() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(tmp.path().to_owned());
        fs::write(store.path(), "{}").unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        store.save(&sample()).unwrap();
        assert_eq!(mode(&store.path()), 0o600);
    }

    #[test]
    fn a_corrupt_file_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(tmp.path().to_owned());
        fs::write(store.path(), "not json").unwrap();
        let err = format!("{:#}", store.load().unwrap_err());
        assert!(err.contains("delete it and log in again"), "{err}");
    }

    #[test]
    fn directory_resolution() {
        let flag = Path::new("/tmp/override");
        assert_eq!(
            resolve_dir(Some(flag), Some("/x".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/tmp/override")
        );
        assert_eq!(
            resolve_dir(None, Some("/xdg".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/xdg/firemode")
        );
        assert_eq!(
            resolve_dir(None, Some("relative".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/home/u/.config/firemode")
        );
        assert_eq!(
            resolve_dir(None, None, Some("/home/u".into())).unwrap(),
            PathBuf::from("/home/u/.config/firemode")
        );
        assert!(resolve_dir(None, None, None).is_err());
    }
}
