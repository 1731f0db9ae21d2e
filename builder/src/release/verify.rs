//! `keel verify DIR --key PUB`: the manifest's signature first, then every
//! artifact's size, digest and signature (and its bundle), then the SBOMs
//! embedded in the image against the manifest. Stops at the first mismatch and
//! names the file and the reason.
//!
//! Every file is read once and what was verified is what is used: the
//! manifest is parsed from the buffer its signature was checked over, and
//! the SBOMs are read out of the raw image through the file descriptor it
//! was hashed through (`/proc/self/fd/N`), so replacing a file after its
//! check changes nothing the verification reports on.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use keel_manifest::{Artifact, Manifest};
use p256::ecdsa::VerifyingKey;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::MANIFEST_FILE;
use super::{image, sign};
use crate::exit;

/// The outcome of a verification, printed as text or JSON (`--json`).
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub ok: bool,
    /// What was checked, in order (`manifest.json: signature`, ...).
    pub checked: Vec<String>,
    /// Checks that could not run, with the reason.
    pub skipped: Vec<String>,
    pub failure: Option<Failure>,
}

/// The first thing that did not match.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub file: String,
    pub reason: String,
}

struct Ctx<'a> {
    dir: PathBuf,
    key: VerifyingKey,
    report: Report,
    /// Called with the name of each point reached (see [`verify_dir_observed`]).
    after: &'a mut dyn FnMut(&str),
}

type Step<T> = Result<T, Failure>;

fn fail<T>(file: &str, reason: impl Into<String>) -> Step<T> {
    Err(Failure {
        file: file.to_string(),
        reason: reason.into(),
    })
}

impl Ctx<'_> {
    /// Checks `FILE.sig` and `FILE.sigstore.json` against the file's digest.
    fn check_signature(&mut self, name: &str, digest: &[u8; 32]) -> Step<()> {
        let sig_name = format!("{name}.sig");
        let sig = match std::fs::read_to_string(self.dir.join(&sig_name)) {
            Ok(s) => s,
            Err(e) => return fail(&sig_name, format!("signature missing: {e}")),
        };
        if let Err(e) = sign::verify_digest(&self.key, digest, &sig) {
            return fail(
                name,
                format!("{e:#} ({sig_name}, wrong key or file changed)"),
            );
        }
        self.report.checked.push(format!("{name}: signature"));
        let b_name = format!("{name}.sigstore.json");
        let text = match std::fs::read_to_string(self.dir.join(&b_name)) {
            Ok(s) => s,
            Err(e) => return fail(&b_name, format!("bundle missing: {e}")),
        };
        let b: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return fail(&b_name, format!("bundle is not JSON: {e}")),
        };
        let ms = &b["messageSignature"];
        if ms["messageDigest"]["algorithm"] != "SHA2_256"
            || ms["messageDigest"]["digest"].as_str() != Some(B64.encode(digest).as_str())
        {
            return fail(&b_name, "bundle digest does not match the file");
        }
        let Some(bsig) = ms["signature"].as_str() else {
            return fail(&b_name, "bundle has no signature");
        };
        if let Err(e) = sign::verify_digest(&self.key, digest, bsig) {
            return fail(&b_name, format!("bundle {e:#}"));
        }
        self.report.checked.push(format!("{name}: bundle"));
        Ok(())
    }

    fn run(&mut self) -> Step<()> {
        let m = self.signed_manifest()?;
        // The raw image stays open: its SBOMs are read through this descriptor.
        let mut raw_file: Option<File> = None;
        for a in &m.artifacts {
            let f = self.check_artifact(a)?;
            if a.name.ends_with(".raw") && raw_file.is_none() {
                raw_file = Some(f);
            }
        }
        (self.after)("artifacts");
        let raw = m.artifacts.iter().find(|a| a.name.ends_with(".raw"));
        match (raw, m.sboms.is_empty()) {
            (_, true) => self
                .report
                .skipped
                .push("embedded SBOMs: manifest lists none".into()),
            (None, false) => self
                .report
                .skipped
                .push("embedded SBOMs: no raw disk image in the release".into()),
            (Some(raw), false) => self.check_embedded_sboms(&m, raw, raw_file.as_ref())?,
        }
        Ok(())
    }

    /// Reads the manifest once, checks its signature over those bytes and
    /// parses the same buffer; the path is not opened again.
    fn signed_manifest(&mut self) -> Step<Manifest> {
        let mpath = self.dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&mpath) {
            Ok(b) => b,
            Err(e) => return fail(MANIFEST_FILE, format!("reading: {e}")),
        };
        let mdigest: [u8; 32] = Sha256::digest(&bytes).into();
        self.check_signature(MANIFEST_FILE, &mdigest)?;
        (self.after)(MANIFEST_FILE);
        match std::str::from_utf8(&bytes)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|t| keel_manifest::parse(t).map_err(|e| e.to_string()))
        {
            Ok(m) => Ok(m),
            Err(e) => fail(MANIFEST_FILE, e),
        }
    }

    /// Size, sha256 and signature of one artifact, read once through the
    /// returned (still open) file.
    fn check_artifact(&mut self, a: &Artifact) -> Step<File> {
        let p = self.dir.join(&a.name);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) => return fail(&a.name, format!("missing: {e}")),
        };
        let size = match f.metadata() {
            Ok(md) => md.len(),
            Err(e) => return fail(&a.name, format!("stat: {e}")),
        };
        if size != a.size {
            return fail(&a.name, format!("size is {size}, manifest says {}", a.size));
        }
        let (d, read) = match sign::sha256_reader(&mut f) {
            Ok(d) => d,
            Err(e) => return fail(&a.name, format!("reading: {e}")),
        };
        if read != a.size {
            return fail(&a.name, format!("size is {read}, manifest says {}", a.size));
        }
        if hex::encode(d) != a.sha256 {
            return fail(
                &a.name,
                format!("sha256 is {}, manifest says {}", hex::encode(d), a.sha256),
            );
        }
        self.report
            .checked
            .push(format!("{}: size and sha256", a.name));
        self.check_signature(&a.name, &d)?;
        Ok(f)
    }

    /// The SBOMs inside the raw image, read through the descriptor it was
    /// hashed through, against the manifest's digests.
    fn check_embedded_sboms(
        &mut self,
        m: &Manifest,
        raw: &Artifact,
        raw_file: Option<&File>,
    ) -> Step<()> {
        let tmp = tempfile::tempdir().map_err(|e| Failure {
            file: raw.name.clone(),
            reason: e.to_string(),
        })?;
        // The verified inode, whatever the path names by now.
        let image_path = match raw_file {
            Some(f) => PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd())),
            None => return fail(&raw.name, "raw image was not opened"),
        };
        for s in &m.sboms {
            let out = tmp.path().join(s.path.replace('/', "_"));
            if let Err(e) = image::copy_from_image(&image_path, &s.path, &out) {
                return fail(
                    &raw.name,
                    format!("reading {} from the image: {e:#}", s.path),
                );
            }
            let d = sign::sha256_file(&out)
                .map(|(d, _)| hex::encode(d))
                .unwrap_or_default();
            if d != s.sha256 {
                return fail(
                    &raw.name,
                    format!(
                        "embedded {} has sha256 {d}, manifest says {}",
                        s.path, s.sha256
                    ),
                );
            }
            self.report
                .checked
                .push(format!("{}: embedded {}", raw.name, s.path));
        }
        Ok(())
    }
}

/// Fails with [`exit::Error::NotFound`] when the release directory, its
/// manifest or the key does not exist (not a verification failure: there
/// is no release to verify). A missing artifact or signature is one.
pub fn require_inputs(dir: &Path, key: &Path) -> Result<(), exit::Error> {
    exit::require(dir, "release directory")?;
    exit::require(&dir.join(MANIFEST_FILE), "release manifest")?;
    exit::require(key, "public key")
}

/// Verifies the release in `dir` with the public key at `key`. The report
/// says whether it verified; an error means it could not be checked (a
/// missing directory, manifest or key: [`require_inputs`]).
pub fn verify_dir(dir: &Path, key: &Path) -> anyhow::Result<Report> {
    verify_dir_observed(dir, key, &mut |_| {})
}

/// [`verify_dir`], calling `after` with the name of each point reached:
/// `manifest.json` once the manifest's signature is checked, `artifacts`
/// once every artifact is. Tests replace files there behind the verifier's
/// back, to show that what was verified is what is used.
pub fn verify_dir_observed(
    dir: &Path,
    key: &Path,
    after: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    require_inputs(dir, key)?;
    let key = sign::load_public_key(key)?;
    let mut ctx = Ctx {
        dir: dir.to_path_buf(),
        key,
        report: Report::default(),
        after,
    };
    match ctx.run() {
        Ok(()) => ctx.report.ok = true,
        Err(f) => ctx.report.failure = Some(f),
    }
    Ok(ctx.report)
}
