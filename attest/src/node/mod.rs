//! The node side: the TPM operations a node needs to enroll, through
//! tss-esapi (feature `tpm`, links libtss2). EK creation (TCG EK profile
//! default templates), EK certificate from NV, a restricted signing AK under
//! the EK whose blobs persist in a file, ActivateCredential, quotes, PCR reads
//! and extends, and the firmware event log.
//!
//! All TPM calls block (a command on a real TPM takes milliseconds to
//! seconds). Async callers run them inside `tokio::task::spawn_blocking` and
//! keep one [`NodeTpm`] per thread at a time: a tss-esapi context is not
//! `Sync`.

mod ak;
mod ops;
mod respond;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tss_esapi::abstraction::{ek, AsymmetricAlgorithmSelection};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

pub use ak::{Ak, AkAlg};
pub use respond::{answer_challenge, start_request, NodeIdentityInput};

/// The default TCTI: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// Where the kernel exposes the firmware event log.
pub const DEFAULT_EVENT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// TPM failures on the node, naming the operation.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// A TPM command or the TSS failed.
    #[error("TPM {op}: {source}")]
    Tss {
        /// Operation.
        op: &'static str,
        /// Cause.
        source: tss_esapi::Error,
    },
    /// The TCTI string is invalid.
    #[error("invalid TCTI {0:?}")]
    Tcti(String),
    /// The TPM returned something unexpected.
    #[error("TPM {op}: {detail}")]
    Unexpected {
        /// Operation.
        op: &'static str,
        /// What.
        detail: String,
    },
    /// File I/O (AK blob, event log).
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// PCR values kept changing between quote and read.
    #[error("PCRs changed during every quote attempt")]
    PcrRace,
}

pub(crate) fn tss(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Tss { op, source }
}

/// EK key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkAlg {
    /// RSA-2048 (template L-1, certificate at NV 0x01c00002).
    Rsa2048,
    /// ECC NIST P-256 (template L-2, certificate at NV 0x01c0000a).
    EccP256,
    /// ECC NIST P-384 (template H-3, certificate at NV 0x01c00016; the ECC
    /// EK swtpm certifies). Its authorisation allows the empty password.
    EccP384,
}

impl EkAlg {
    fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            EkAlg::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            EkAlg::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            EkAlg::EccP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
        }
    }
}

/// A loaded EK.
#[derive(Debug, Clone)]
pub struct Ek {
    /// Transient handle.
    pub handle: KeyHandle,
    /// Key type.
    pub alg: EkAlg,
    /// TPM2B_PUBLIC bytes.
    pub public: Vec<u8>,
    /// Certificate from NV (raw, may carry padding), if provisioned.
    pub cert: Option<Vec<u8>>,
}

/// An open TPM.
pub struct NodeTpm {
    pub(crate) ctx: Context,
}

impl std::fmt::Debug for NodeTpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTpm")
    }
}

/// Wraps a marshalled TPMT_PUBLIC into a TPM2B_PUBLIC.
pub(crate) fn tpm2b(tpmt: &[u8]) -> Vec<u8> {
    use crate::tpm2::wire::Writer;
    let mut v = Vec::with_capacity(tpmt.len() + 2);
    v.put_tpm2b(tpmt);
    v
}

impl NodeTpm {
    /// Opens the TPM through `tcti` (e.g. [`DEFAULT_TCTI`] or
    /// `swtpm:host=127.0.0.1,port=2321`).
    pub fn open(tcti: &str) -> Result<NodeTpm, TpmError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|_| TpmError::Tcti(tcti.to_string()))?;
        let ctx = Context::new(conf).map_err(tss("open"))?;
        Ok(NodeTpm { ctx })
    }

    /// Creates (re-derives) the EK from the TCG default template and reads
    /// its certificate from NV if one is provisioned. The EK is the same key
    /// every time on the same TPM.
    pub fn ek(&mut self, alg: EkAlg) -> Result<Ek, TpmError> {
        let handle = ek::create_ek_object_2(&mut self.ctx, alg.selection(), None)
            .map_err(tss("create EK"))?;
        let (public, _, _) = self
            .ctx
            .read_public(handle)
            .map_err(tss("read EK public"))?;
        let public = tpm2b(&public.marshall().map_err(tss("marshal EK public"))?);
        let cert = ek::retrieve_ek_pubcert(&mut self.ctx, alg.selection()).ok();
        Ok(Ek {
            handle,
            alg,
            public,
            cert,
        })
    }

    /// Flushes a transient object (EK or AK handle) from the TPM.
    pub fn flush(&mut self, handle: KeyHandle) -> Result<(), TpmError> {
        self.ctx.flush_context(handle.into()).map_err(tss("flush"))
    }
}

/// Reads the firmware event log; `Ok(None)` when the file does not exist
/// (no TPM driver, or firmware without a log).
pub fn read_event_log(path: &Path) -> Result<Option<Vec<u8>>, TpmError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TpmError::Io {
            what: "reading event log",
            path: path.to_path_buf(),
            source,
        }),
    }
}
