//! The GitOps test bed shared by gitops.rs and gitops_rollback.rs: a real
//! HTTPS Git server (keel-testbed) with one bundle repository, a signing key
//! the node trusts, and a node bundle root; bundles are signed the way
//! `keel bundle sign` does (canonical manifest with its signed header).
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use keel_bootstrap::gitops::manifest::Header;
use keel_bootstrap::gitops::{self, manifest, SyncConfig, SyncOutcome};
use keel_testbed::git::GitServerOptions;
use keel_testbed::{or_skip, GitServer};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey, LineEnding};

pub const REPO: &str = "bundle";
pub const STORE: &str = "store-0042";

pub struct Bed {
    pub server: GitServer,
    pub key: SigningKey,
    pub dir: tempfile::TempDir,
    /// The serial of the last bundle [`Bed::publish`] signed.
    pub serial: Cell<u64>,
}

pub fn bed(opts: GitServerOptions) -> Option<Bed> {
    let server = or_skip(GitServer::start(opts))?;
    server.create_repo(REPO).expect("repo");
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    fs::write(dir.path().join("trust.pem"), pem).expect("trust root");
    Some(Bed {
        server,
        key,
        dir,
        serial: Cell::new(0),
    })
}

impl Bed {
    pub fn config(&self) -> SyncConfig {
        SyncConfig {
            store: STORE.into(),
            url: self.server.repo_url(REPO),
            reference: "main".into(),
            trust_root: self.dir.path().join("trust.pem"),
            ca_bundle: Some(self.server.ca_path()),
            client_tls: None,
            root: self.dir.path().join("bundle"),
            health_check: Vec::new(),
        }
    }

    pub fn work(&self) -> PathBuf {
        self.server.work_dir(REPO).expect("work dir")
    }

    /// Writes `files` into the work tree, then (if `key`) signs the tree for
    /// this store, ref `main` and the next serial, and pushes.
    /// `edit_after_signing` changes the tree after the manifest was made.
    pub fn publish(
        &self,
        files: &[(&str, &str)],
        key: Option<&SigningKey>,
        edit_after_signing: Option<(&str, &str)>,
    ) -> String {
        self.serial.set(self.serial.get() + 1);
        let header = Header::new(STORE, "main", self.serial.get()).expect("header");
        self.publish_as(files, key, edit_after_signing, &header)
    }

    /// [`Bed::publish`] with the signed header given.
    pub fn publish_as(
        &self,
        files: &[(&str, &str)],
        key: Option<&SigningKey>,
        edit_after_signing: Option<(&str, &str)>,
        header: &Header,
    ) -> String {
        let w = self.work();
        for (p, c) in files {
            let path = w.join(p);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, c).expect("write");
            if p.ends_with(".sh") || p.ends_with("health-check") {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
            }
        }
        let _ = fs::remove_dir_all(w.join(".keel/sig-tmp"));
        match key {
            Some(k) => {
                let m = manifest::build(&w, header).expect("manifest");
                let sig: p256::ecdsa::Signature = k.sign(m.as_bytes());
                let b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
                fs::create_dir_all(w.join(".keel")).expect("mkdir");
                fs::write(w.join(manifest::MANIFEST_PATH), m).expect("manifest");
                fs::write(w.join(manifest::SIGNATURE_PATH), b64).expect("signature");
            }
            None => {
                let _ = fs::remove_file(w.join(manifest::MANIFEST_PATH));
                let _ = fs::remove_file(w.join(manifest::SIGNATURE_PATH));
            }
        }
        if let Some((p, c)) = edit_after_signing {
            fs::write(w.join(p), c).expect("tamper");
        }
        self.server
            .commit_and_push(REPO, "main", &[], "bundle")
            .expect("push")
    }

    /// The persisted sync state (`state.json`).
    pub fn state(&self) -> gitops::SyncState {
        gitops::Releases::open(&self.dir.path().join("bundle"))
            .expect("releases")
            .state()
            .expect("state")
    }

    pub fn current(&self) -> PathBuf {
        fs::read_link(self.dir.path().join("bundle/current")).expect("current link")
    }

    pub fn releases(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir.path().join("bundle/releases"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

pub fn rel(rev: &str) -> PathBuf {
    Path::new("releases").join(rev)
}

/// A signed first release, applied; returns its revision.
pub fn first_release(b: &Bed) -> String {
    let rev = b.publish(&[("app/config.yaml", "replicas: 1\n")], Some(&b.key), None);
    let t = std::time::Instant::now();
    let out = gitops::apply_latest(&b.config()).expect("first sync");
    eprintln!("first sync (fetch + verify + apply): {:?}", t.elapsed());
    assert_eq!(
        out,
        SyncOutcome::Applied {
            rev: rev.clone(),
            previous: None
        }
    );
    rev
}
