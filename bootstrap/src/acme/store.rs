//! On-disk layout of the node's ACME state, written so a power cut never
//! leaves a half-written key or a certificate that does not match its key.
//!
//! ```text
//! <state-dir>/account.json            ACME account credentials (0600)
//! <state-dir>/generations/<id>/       key.pem (0600), cert.pem, chain.pem, fullchain.pem
//! <state-dir>/live -> generations/<id>   switched by rename(2) of a new symlink
//! ```
//!
//! Consumers (TLS servers, the GitOps mTLS client) read `live/fullchain.pem`
//! and `live/key.pem`. A new generation is complete and synced before `live`
//! moves to it; the previous generation is kept, older ones are removed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::AcmeError;

/// Validity and identity of a certificate, read from its PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// notBefore, seconds since the epoch.
    pub not_before: i64,
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
    /// Serial number, hex.
    pub serial: String,
}

impl CertInfo {
    /// Reads the first certificate of a PEM chain.
    pub fn parse(pem_text: &str) -> Result<Self, AcmeError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
            .map_err(|e| AcmeError::BadCertificate(e.to_string()))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| AcmeError::BadCertificate(e.to_string()))?;
        let validity = cert.validity();
        Ok(CertInfo {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            serial: cert.raw_serial_as_string().replace(':', ""),
        })
    }

    /// Lifetime the CA chose, in seconds.
    pub fn lifetime_s(&self) -> i64 {
        self.not_after - self.not_before
    }
}

/// The ACME state directory.
#[derive(Debug, Clone)]
pub struct CertStore {
    dir: PathBuf,
}

impl CertStore {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(dir: &Path) -> Result<Self, AcmeError> {
        fs::create_dir_all(dir.join("generations"))
            .map_err(|e| AcmeError::io("creating", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| AcmeError::io("chmod", dir, e))?;
        Ok(CertStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The account credentials file.
    pub fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// The `live` symlink; `live/fullchain.pem` and `live/key.pem` are what services use.
    pub fn live(&self) -> PathBuf {
        self.dir.join("live")
    }

    /// The live certificate chain (leaf first), if there is one.
    pub fn live_fullchain(&self) -> Result<Option<String>, AcmeError> {
        let path = self.live().join("fullchain.pem");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AcmeError::io("reading", &path, e)),
        }
    }

    /// Validity of the live certificate, if there is one.
    pub fn live_info(&self) -> Result<Option<CertInfo>, AcmeError> {
        self.live_fullchain()?
            .map(|p| CertInfo::parse(&p))
            .transpose()
    }

    /// Writes a complete new generation and then switches `live` to it.
    pub fn install(&self, key_pem: &str, fullchain_pem: &str) -> Result<CertInfo, AcmeError> {
        let info = CertInfo::parse(fullchain_pem)?;
        let (leaf, chain) = split_chain(fullchain_pem);
        let id = format!("{}-{}", info.not_before, info.serial);
        let gen = self.dir.join("generations").join(&id);
        fs::create_dir_all(&gen).map_err(|e| AcmeError::io("creating", &gen, e))?;
        for (name, data, mode) in [
            ("key.pem", key_pem, 0o600),
            ("cert.pem", leaf.as_str(), 0o644),
            ("chain.pem", chain.as_str(), 0o644),
            ("fullchain.pem", fullchain_pem, 0o644),
        ] {
            let path = gen.join(name);
            keel_cmd::fs::write_atomic(&path, data.as_bytes(), mode)
                .map_err(|e| AcmeError::io("writing", &path, e))?;
        }
        let previous = fs::read_link(self.live()).ok();
        let target = Path::new("generations").join(&id);
        keel_cmd::fs::replace_symlink(&self.live(), &target)
            .map_err(|e| AcmeError::io("switching", &self.live(), e))?;
        self.prune(&target, previous.as_deref());
        Ok(info)
    }

    /// Removes generations other than the live and the previous one.
    fn prune(&self, live: &Path, previous: Option<&Path>) {
        let gens = self.dir.join("generations");
        let Ok(entries) = fs::read_dir(&gens) else {
            return;
        };
        for entry in entries.flatten() {
            let rel = Path::new("generations").join(entry.file_name());
            if rel != live && Some(rel.as_path()) != previous {
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not prune old certificate");
                }
            }
        }
    }
}

/// Splits a PEM chain into the leaf and the rest.
fn split_chain(fullchain: &str) -> (String, String) {
    const END: &str = "-----END CERTIFICATE-----";
    match fullchain.find(END) {
        Some(i) => {
            let cut = i + END.len();
            let leaf = format!("{}\n", fullchain[..cut].trim());
            let rest = fullchain[cut..].trim();
            let chain = if rest.is_empty() {
                String::new()
            } else {
                format!("{rest}\n")
            };
            (leaf, chain)
        }
        None => (fullchain.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_chain_table() {
        let a = "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----";
        let b = "-----BEGIN CERTIFICATE-----\nBB\n-----END CERTIFICATE-----";
        let (leaf, chain) = split_chain(&format!("{a}\n{b}\n"));
        assert_eq!(leaf, format!("{a}\n"));
        assert_eq!(chain, format!("{b}\n"));
        let (leaf, chain) = split_chain(&format!("{a}\n"));
        assert_eq!(leaf, format!("{a}\n"));
        assert_eq!(chain, "");
    }
}
