//! The enrollment step (Start → Enrolled): prove this node's TPM to
//! keel-enroll and receive the join material.
//!
//! 1. The node identity key is generated locally once (P-256, 0600 in the
//!    state dir) and a CSR for it is built; it never leaves the node.
//! 2. EK (re-derived) and AK (created once, blobs kept in the state dir).
//! 3. start → ActivateCredential + quote over the bound nonce → finish.
//! 4. Admitted: the join material is saved (0600) to `join.json`, the
//!    certificate chain to `node-cert.pem`.
//!
//! Idempotent: when `join.json` exists the node enrolled already and the step
//! does nothing, so a power cut after admission never enrolls twice.
//! Network trouble and `pending` are retried; a rejection is final and the
//! service's reason and advice go to the console.

use std::path::PathBuf;

use anyhow::{Context, Result};
use keel_attest::client::{ClientError, EnrollClient};
use keel_attest::node::{self, AkAlg, EkAlg, NodeIdentityInput, NodeTpm};
use keel_attest::protocol::{Decision, JoinMaterial, NodeClaims, ReleaseRef, StartResponse};

use super::{runtime, Ctx, Step, StepError};
use crate::seed::KeelConfig;
use keel_cmd::fs::write_atomic;

/// Files the step keeps in the state dir.
pub mod files {
    /// The node identity private key (PKCS#8 PEM, 0600).
    pub const NODE_KEY: &str = "node-key.pem";
    /// The node certificate chain from keel-enroll.
    pub const NODE_CERT: &str = "node-cert.pem";
    /// The AK blobs (sealed to this TPM).
    pub const AK: &str = "ak.json";
    /// The join material (0600: holds the Ceph key and the EAB secret).
    pub const JOIN: &str = "join.json";
}

/// The enrollment step.
#[derive(Debug)]
pub struct EnrollStep {
    /// Where the firmware event log is read (missing: none sent).
    pub event_log: PathBuf,
}

impl Default for EnrollStep {
    fn default() -> Self {
        EnrollStep {
            event_log: PathBuf::from("/sys/kernel/security/tpm0/binary_bios_measurements"),
        }
    }
}

/// Loads the saved join material.
pub fn load_join(ctx: &Ctx) -> Result<JoinMaterial> {
    let p = ctx.state_dir.file(files::JOIN);
    let b = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display()))
}

fn keel_cfg<'a>(ctx: &'a Ctx) -> Result<&'a KeelConfig, StepError> {
    ctx.seed.user.keel.as_ref().ok_or_else(|| StepError::Fatal {
        reason: "the seed's user-data has no `keel:` section".into(),
        action: "add keel: enroll-url, enroll-ca, store-id (and token) to the seed's user-data, then restart".into(),
    })
}

impl Step for EnrollStep {
    fn describe(&self, ctx: &Ctx) -> String {
        let url = ctx
            .seed
            .user
            .keel
            .as_ref()
            .and_then(|k| k.enroll_url.as_deref())
            .unwrap_or("(no enroll-url)");
        format!("enrolling with {url}")
    }

    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError> {
        if ctx.state_dir.file(files::JOIN).exists() {
            tracing::info!("join material present: already enrolled");
            return Ok(());
        }
        let cfg = keel_cfg(ctx)?;
        let missing = |what: &str| StepError::Fatal {
            reason: format!("the seed's keel: section has no `{what}`"),
            action: format!("add keel: {what}: ... to the seed's user-data, then restart"),
        };
        let url = cfg
            .enroll_url
            .as_deref()
            .ok_or_else(|| missing("enroll-url"))?;
        let ca = cfg
            .enroll_ca
            .as_deref()
            .ok_or_else(|| missing("enroll-ca"))?;
        let store_id = cfg.store_id.clone().ok_or_else(|| missing("store-id"))?;
        let client = EnrollClient::new(url, ca).map_err(|e| StepError::Fatal {
            reason: e.to_string(),
            action: "fix keel: enroll-url / enroll-ca in the seed".into(),
        })?;

        let (key_pem, csr_der) = identity(ctx).map_err(StepError::Other)?;
        let mut tpm = NodeTpm::open(ctx.tcti).map_err(|e| StepError::Fatal {
            reason: format!("cannot open the TPM ({}): {e}", ctx.tcti),
            action: "enable the TPM in the firmware setup, or pass --tcti".into(),
        })?;
        let ek = tpm
            .ek(EkAlg::Rsa2048)
            .context("reading the EK")
            .map_err(StepError::Other)?;
        let ak = tpm
            .load_or_create_ak(&ek, &ctx.state_dir.file(files::AK), AkAlg::EccP256)
            .context("creating the AK")
            .map_err(StepError::Other)?;
        let input = NodeIdentityInput {
            csr_der: csr_der.clone(),
            token: cfg.token.clone(),
            claims: NodeClaims {
                hostname: ctx.seed.hostname().unwrap_or_else(|| "localhost".into()),
                machine_id: machine_id(ctx),
                store_id,
                release: release(ctx),
            },
        };
        let req = node::start_request(&ek, &ak, &input);
        let event_log = node::read_event_log(&self.event_log)
            .context("reading the event log")
            .map_err(StepError::Other)?;

        // The client is async (reqwest); the agent is otherwise synchronous,
        // so one small current-thread runtime serves the two calls.
        let rt = runtime().map_err(StepError::Other)?;
        let challenge = match rt.block_on(client.start(&req)).map_err(client_error)? {
            StartResponse::Challenge(c) => c,
            StartResponse::Decision(d) => return decision(ctx, d, &key_pem),
        };
        let fin = node::answer_challenge(&mut tpm, &ek, &ak, &challenge, &csr_der, event_log)
            .context("answering the TPM challenge")
            .map_err(StepError::Other)?;
        let _ = tpm.flush(ak.handle);
        let _ = tpm.flush(ek.handle);
        let d = rt.block_on(client.finish(&fin)).map_err(client_error)?;
        decision(ctx, d, &key_pem)
    }
}

fn decision(ctx: &Ctx, d: Decision, _key_pem: &str) -> Result<(), StepError> {
    match d {
        Decision::Admitted { node_id, join } => {
            let cert = ctx.state_dir.file(files::NODE_CERT);
            write_atomic(&cert, join.identity.cert_chain_pem.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", cert.display()))?;
            let json = serde_json::to_vec_pretty(&join).context("encoding join material")?;
            // Written last: its presence means "enrolled" (see the module docs).
            let p = ctx.state_dir.file(files::JOIN);
            write_atomic(&p, &json, 0o600).with_context(|| format!("writing {}", p.display()))?;
            ctx.progress.status(&format!("enrolled as node {node_id}"));
            Ok(())
        }
        Decision::Pending { reason, retry_after } => Err(StepError::Retry(anyhow::anyhow!(
            "waiting for approval at the enrollment service: {reason} (service suggests {retry_after}s)"
        ))),
        Decision::Rejected { reason } => Err(StepError::Fatal {
            reason: format!("enrollment rejected ({}): {}", reason.code.as_str(), reason.message),
            action: reason.action,
        }),
    }
}

fn client_error(e: ClientError) -> StepError {
    if e.is_retryable() {
        return StepError::Retry(anyhow::Error::new(e));
    }
    match e {
        ClientError::Rejected(r) => StepError::Fatal {
            reason: format!("enrollment rejected ({}): {}", r.code.as_str(), r.message),
            action: r.action,
        },
        other => StepError::Fatal {
            reason: other.to_string(),
            action: "check keel: enroll-url and enroll-ca in the seed and the service's version"
                .into(),
        },
    }
}

/// Loads or creates the node identity key and builds a CSR for it.
fn identity(ctx: &Ctx) -> Result<(String, Vec<u8>)> {
    let path = ctx.state_dir.file(files::NODE_KEY);
    let key = match std::fs::read_to_string(&path) {
        Ok(pem) => {
            rcgen::KeyPair::from_pem(&pem).with_context(|| format!("parsing {}", path.display()))?
        }
        Err(_) => {
            let k = rcgen::KeyPair::generate().context("generating the node identity key")?;
            write_atomic(&path, k.serialize_pem().as_bytes(), 0o600)
                .with_context(|| format!("writing {}", path.display()))?;
            k
        }
    };
    let name = ctx.seed.hostname().unwrap_or_else(|| "localhost".into());
    let mut params = rcgen::CertificateParams::new(vec![name.clone()]).context("CSR parameters")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let csr = params.serialize_request(&key).context("building the CSR")?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

fn machine_id(ctx: &Ctx) -> String {
    std::fs::read_to_string(ctx.root.join("etc/machine-id"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ctx.seed.meta.instance_id.clone())
}

/// The booted image release from os-release (IMAGE_ID/IMAGE_VERSION, which
/// mkosi writes; else ID/VERSION_ID).
fn release(ctx: &Ctx) -> ReleaseRef {
    let text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(ctx.root.join(p)).ok())
        .unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
    };
    ReleaseRef {
        name: get("IMAGE_ID")
            .or_else(|| get("ID"))
            .unwrap_or_else(|| "unknown".into()),
        version: get("IMAGE_VERSION")
            .or_else(|| get("VERSION_ID"))
            .unwrap_or_else(|| "unknown".into()),
    }
}
