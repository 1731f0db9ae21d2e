//! The release repository's signing key: an ed25519 OpenPGP key, because
//! bookworm's libostree signs and verifies through GnuPG only (see the
//! module docs of [`super`]).
//!
//! Files, beside the cosign key (`keel key generate` writes both pairs):
//! `ostree-gpg.key`, the armored secret key protected by the same password
//! as the cosign key (OpenPGP's own S2K protection), mode 0600; and
//! `ostree-gpg.pub`, the armored public key a node's remote names with
//! `gpgkeypath=`. Neither goes into an image.
//!
//! To sign, [`Signer::load`] imports the secret key into a private,
//! temporary GnuPG home (mode 0700) whose `gpg.conf` hands gpg the password
//! from a file there (loopback pinentry, so libostree's gpgme never asks a
//! terminal); the home, the password file and its gpg-agent go when the
//! signer is dropped. The password never reaches argv or the environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use keel_cmd::CommandRunExt as _;

/// File name of the secret key, beside the cosign key.
pub const KEY_FILE: &str = "ostree-gpg.key";
/// File name of the public key, beside the cosign key.
pub const PUB_FILE: &str = "ostree-gpg.pub";
/// The user ID of generated keys.
pub const DEFAULT_UID: &str = "Keel OSTree release signing";

/// `DIR/ostree-gpg.key` and `DIR/ostree-gpg.pub` for a cosign key in DIR.
pub fn beside(cosign_key: &Path) -> (PathBuf, PathBuf) {
    let dir = cosign_key.parent().unwrap_or(Path::new("."));
    (dir.join(KEY_FILE), dir.join(PUB_FILE))
}

/// A temporary GnuPG home; its gpg-agent is stopped on drop.
struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    /// A fresh home whose gpg reads the password from a file in it.
    fn new(password: &[u8]) -> anyhow::Result<GpgHome> {
        use std::os::unix::fs::PermissionsExt as _;
        // Short path: gpg-agent's socket path must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("keel-gpg-")
            .tempdir_in("/tmp")
            .context("creating a temporary GnuPG home")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let pw = dir.path().join("password");
        write_private(&pw, password)?;
        let conf = format!(
            "batch\nno-tty\npinentry-mode loopback\npassphrase-file {}\n",
            pw.display()
        );
        write_private(&dir.path().join("gpg.conf"), conf.as_bytes())?;
        write_private(
            &dir.path().join("gpg-agent.conf"),
            b"allow-loopback-pinentry\n",
        )?;
        Ok(GpgHome { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir").arg(self.path());
        c
    }

    /// The fingerprint of the only secret key in this home.
    fn fingerprint(&self) -> anyhow::Result<String> {
        let out = self
            .gpg()
            .args(["--with-colons", "--list-secret-keys"])
            .run_get_string()
            .context("listing the imported key")?;
        let fprs: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .filter_map(|l| l.split(':').nth(9))
            .collect();
        match fprs.first() {
            Some(f) => Ok(f.to_string()),
            None => bail!("no secret key found"),
        }
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        // The agent gpg started for this home would outlive it otherwise.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.path())
            .args(["--kill", "gpg-agent"])
            .run();
    }
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// Writes a new ed25519 signing key: `key_path` (armored secret key,
/// protected by `password`, mode 0600) and `pub_path` (armored public key).
/// Refuses to overwrite either. Returns the key's fingerprint.
pub fn generate(
    key_path: &Path,
    pub_path: &Path,
    uid: &str,
    password: &[u8],
) -> anyhow::Result<String> {
    for p in [key_path, pub_path] {
        if p.exists() {
            bail!(
                "{} exists already; refusing to overwrite a key",
                p.display()
            );
        }
    }
    if password.is_empty() {
        bail!("refusing an empty key password");
    }
    let home = GpgHome::new(password)?;
    home.gpg()
        .args(["--quick-gen-key", uid, "ed25519", "sign", "never"])
        .run()
        .context("generating an ed25519 OpenPGP key with gpg")?;
    let fpr = home.fingerprint()?;
    let secret = home
        .gpg()
        .args(["--armor", "--export-secret-keys", &fpr])
        .run_get_string()
        .context("exporting the secret key")?;
    let public = home
        .gpg()
        .args(["--armor", "--export", &fpr])
        .run_get_string()
        .context("exporting the public key")?;
    if !secret.contains("BEGIN PGP PRIVATE KEY BLOCK") || !public.contains("BEGIN PGP PUBLIC KEY") {
        bail!("gpg exported no armored key for {fpr}");
    }
    write_private(key_path, secret.as_bytes())?;
    keel_cmd::fs::write_atomic(pub_path, public.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", pub_path.display()))?;
    Ok(fpr)
}

/// A loaded signing key: what libostree's GPG signing calls take.
pub struct Signer {
    home: GpgHome,
    fingerprint: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Imports the secret key at `key_path` and checks `password` opens it
    /// (by signing a probe), so a wrong password fails here, not halfway
    /// through a publish.
    pub fn load(key_path: &Path, password: &[u8]) -> anyhow::Result<Signer> {
        if !key_path.is_file() {
            bail!(
                "no OSTree signing key at {}: create one with `keel repo key generate --out {}` (or `keel key generate`, which writes it beside the cosign key)",
                key_path.display(),
                key_path.display()
            );
        }
        let home = GpgHome::new(password)?;
        home.gpg()
            .arg("--import")
            .arg(key_path)
            .run()
            .with_context(|| {
                format!(
                    "importing {} (an armored OpenPGP secret key?)",
                    key_path.display()
                )
            })?;
        let fingerprint = home
            .fingerprint()
            .with_context(|| format!("{} holds no OpenPGP secret key", key_path.display()))?;
        let probe = home.path().join("probe");
        std::fs::write(&probe, b"keel")?;
        home.gpg()
            .args(["--detach-sign", "--local-user", &fingerprint])
            .arg(&probe)
            .run()
            .with_context(|| {
                format!(
                    "unlocking {} (wrong password? it is the cosign key's)",
                    key_path.display()
                )
            })?;
        Ok(Signer { home, fingerprint })
    }

    /// The key's fingerprint (libostree's key ID).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The GnuPG home libostree signs from.
    pub fn homedir(&self) -> anyhow::Result<&str> {
        self.home
            .path()
            .to_str()
            .context("temporary GnuPG home is not UTF-8")
    }
}
