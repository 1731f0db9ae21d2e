//! The attestation key: a restricted signing key created under the EK, whose
//! public and private blobs are kept in a file so later boots load the same
//! AK instead of making a new one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tss_esapi::abstraction::{ak, AsymmetricAlgorithmSelection};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::structures::{Private, Public};
use tss_esapi::traits::{Marshall, UnMarshall};

use super::{tpm2b, tss, Ek, NodeTpm, TpmError};
use crate::protocol::B64;

/// AK key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AkAlg {
    /// ECDSA NIST P-256 with SHA-256 (default: fast to create).
    EccP256,
    /// RSASSA RSA-2048 with SHA-256.
    Rsa2048,
}

/// A loaded AK.
#[derive(Debug, Clone)]
pub struct Ak {
    /// Transient handle.
    pub handle: KeyHandle,
    /// TPM2B_PUBLIC bytes.
    pub public: Vec<u8>,
    /// Name (nameAlg || digest), as the TPM computes it.
    pub name: Vec<u8>,
    /// True when this boot created it (false: loaded from the blob file).
    pub created: bool,
}

/// The AK blob file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AkFile {
    version: u32,
    alg: AkAlg,
    /// TPM2B_PUBLIC of the EK it lives under.
    ek_public: B64,
    /// TPMT_PUBLIC.
    public: B64,
    /// TPM2B_PRIVATE contents (sealed to the TPM; useless elsewhere).
    private: B64,
}

impl NodeTpm {
    /// Loads the AK from `path` if it exists and belongs to this EK;
    /// otherwise creates a new one and writes its blobs to `path`
    /// atomically.
    pub fn load_or_create_ak(&mut self, ek: &Ek, path: &Path, alg: AkAlg) -> Result<Ak, TpmError> {
        if let Ok(text) = std::fs::read(path) {
            match serde_json::from_slice::<AkFile>(&text) {
                Ok(f) if f.alg == alg && f.ek_public.as_bytes() == ek.public.as_slice() => {
                    match self.load_ak_blobs(ek, &f) {
                        Ok(ak) => return Ok(ak),
                        Err(e) => tracing::warn!("stored AK does not load, making a new one: {e}"),
                    }
                }
                Ok(_) => tracing::warn!("stored AK is for another EK or type, making a new one"),
                Err(e) => tracing::warn!("stored AK file is unreadable, making a new one: {e}"),
            }
        }
        let (sel, scheme) = match alg {
            AkAlg::EccP256 => (
                AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                SignatureSchemeAlgorithm::EcDsa,
            ),
            AkAlg::Rsa2048 => (
                AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                SignatureSchemeAlgorithm::RsaSsa,
            ),
        };
        let created = ak::create_ak_2(
            &mut self.ctx,
            ek.handle,
            HashingAlgorithm::Sha256,
            sel,
            scheme,
            None,
            None,
        )
        .map_err(tss("create AK"))?;
        let f = AkFile {
            version: 1,
            alg,
            ek_public: B64(ek.public.clone()),
            public: B64(created
                .out_public
                .marshall()
                .map_err(tss("marshal AK public"))?),
            private: B64(created.out_private.value().to_vec()),
        };
        write_atomic(
            path,
            &serde_json::to_vec_pretty(&f).map_err(|e| TpmError::Unexpected {
                op: "encode AK file",
                detail: e.to_string(),
            })?,
        )?;
        let mut ak = self.load_ak_blobs(ek, &f)?;
        ak.created = true;
        Ok(ak)
    }

    fn load_ak_blobs(&mut self, ek: &Ek, f: &AkFile) -> Result<Ak, TpmError> {
        let public = Public::unmarshall(&f.public).map_err(tss("parse AK public"))?;
        let private =
            Private::try_from(f.private.as_bytes().to_vec()).map_err(tss("parse AK private"))?;
        let handle =
            ak::load_ak(&mut self.ctx, ek.handle, None, private, public).map_err(tss("load AK"))?;
        let (public, name, _) = self
            .ctx
            .read_public(handle)
            .map_err(tss("read AK public"))?;
        Ok(Ak {
            handle,
            public: tpm2b(&public.marshall().map_err(tss("marshal AK public"))?),
            name: name.value().to_vec(),
            created: false,
        })
    }
}

/// Writes `data` to `path` (0600) so that a power cut leaves the old or the new file.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), TpmError> {
    keel_cmd::fs::write_atomic(path, data, 0o600).map_err(|source| TpmError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// Template change that drops `restricted` (test support).
#[derive(Debug, Clone, Copy)]
struct Unrestricted;

impl tss_esapi::abstraction::KeyCustomization for Unrestricted {
    fn attributes(
        &self,
        b: tss_esapi::attributes::ObjectAttributesBuilder,
    ) -> tss_esapi::attributes::ObjectAttributesBuilder {
        b.with_restricted(false)
    }
}

impl NodeTpm {
    /// Creates an ECC signing key under the EK that is NOT restricted, so
    /// tests can check that verifiers refuse it as an AK. Never use it as an
    /// AK: an unrestricted key signs anything, including forged quotes.
    pub fn create_unrestricted_signing_key_for_tests(&mut self, ek: &Ek) -> Result<Ak, TpmError> {
        let created = ak::create_ak_2(
            &mut self.ctx,
            ek.handle,
            HashingAlgorithm::Sha256,
            AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            SignatureSchemeAlgorithm::EcDsa,
            None,
            Unrestricted,
        )
        .map_err(tss("create unrestricted key"))?;
        let f = AkFile {
            version: 1,
            alg: AkAlg::EccP256,
            ek_public: B64(ek.public.clone()),
            public: B64(created
                .out_public
                .marshall()
                .map_err(tss("marshal public"))?),
            private: B64(created.out_private.value().to_vec()),
        };
        let mut ak = self.load_ak_blobs(ek, &f)?;
        ak.created = true;
        Ok(ak)
    }
}
