//! TPM commands used during enrollment: credential activation, quote, PCR
//! read and extend.

use std::collections::BTreeMap;

use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, PcrHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, Digest, DigestValues, EncryptedSecret, IdObject, PcrSelectionList, PcrSlot,
    SignatureScheme, SymmetricDefinition,
};
use tss_esapi::traits::Marshall;

use super::{tss, Ak, Ek, EkAlg, NodeTpm, TpmError};
use crate::tpm2::attest::QuoteAttest;
use crate::tpm2::HashAlg;

/// A quote and the PCR values it covers.
#[derive(Debug, Clone)]
pub struct QuoteResult {
    /// Marshalled TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// SHA-256 PCR values, read after the quote and checked against its digest.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
}

fn selection(pcrs: &[u8]) -> Result<PcrSelectionList, TpmError> {
    let slots = pcrs
        .iter()
        .map(|p| {
            if *p > 23 {
                return Err(TpmError::Unexpected {
                    op: "PCR selection",
                    detail: format!("PCR {p} out of range"),
                });
            }
            PcrSlot::try_from(1u32 << p).map_err(tss("PCR slot"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionList::builder()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(tss("PCR selection"))
}

impl NodeTpm {
    /// TPM2_ActivateCredential: recovers the secret the verifier wrapped for
    /// this AK under this EK. Fails (TPM_RC_INTEGRITY) when the credential was
    /// made for another name or EK.
    pub fn activate_credential(
        &mut self,
        ek: &Ek,
        ak: &Ak,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let id = IdObject::try_from(credential_blob.to_vec()).map_err(tss("credential blob"))?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec())
            .map_err(tss("encrypted secret"))?;
        if ek.alg == EkAlg::EccP384 {
            // High-range templates set userWithAuth: the empty password works.
            return self
                .ctx
                .execute_with_sessions(
                    (
                        Some(AuthSession::Password),
                        Some(AuthSession::Password),
                        None,
                    ),
                    |c| c.activate_credential(ak.handle, ek.handle, id, secret),
                )
                .map(|d| d.value().to_vec())
                .map_err(tss("activate credential"));
        }
        // The EK (low-range template) authorises through PolicySecret(endorsement).
        let policy = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(tss("start policy session"))?
            .ok_or_else(|| TpmError::Unexpected {
                op: "start policy session",
                detail: "no session returned".into(),
            })?;
        let result = (|| {
            let ps = PolicySession::try_from(policy).map_err(tss("policy session"))?;
            self.ctx
                .execute_with_nullauth_session(|c| {
                    c.policy_secret(
                        ps,
                        AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })
                .map_err(tss("policy secret"))?;
            self.ctx
                .execute_with_sessions((Some(AuthSession::Password), Some(policy), None), |c| {
                    c.activate_credential(ak.handle, ek.handle, id, secret)
                })
                .map_err(tss("activate credential"))
        })();
        let _ = self.ctx.flush_context(SessionHandle::from(policy).into());
        Ok(result?.value().to_vec())
    }

    /// Quotes `pcrs` (SHA-256 bank) with `qualifying_data`, then reads the
    /// PCR values; if a PCR changed in between (the digest of the values read
    /// differs from the quoted digest) it quotes again, up to 5 times.
    pub fn quote(
        &mut self,
        ak: &Ak,
        qualifying_data: &[u8],
        pcrs: &[u8],
    ) -> Result<QuoteResult, TpmError> {
        let mut want: Vec<u8> = pcrs.to_vec();
        want.sort_unstable();
        want.dedup();
        for _attempt in 0..5 {
            let data = Data::try_from(qualifying_data.to_vec()).map_err(tss("qualifying data"))?;
            let sel = selection(&want)?;
            let (attest, signature) = self
                .ctx
                .execute_with_nullauth_session(|c| {
                    c.quote(ak.handle, data, SignatureScheme::Null, sel)
                })
                .map_err(tss("quote"))?;
            let attest = attest.marshall().map_err(tss("marshal attest"))?;
            let signature = signature.marshall().map_err(tss("marshal signature"))?;
            let values = self.read_pcrs(&want)?;
            let parsed = QuoteAttest::parse(&attest).map_err(|e| TpmError::Unexpected {
                op: "quote",
                detail: e.to_string(),
            })?;
            let parts: Vec<&[u8]> = values.values().map(Vec::as_slice).collect();
            if HashAlg::Sha256.digest(&parts) == parsed.pcr_digest {
                return Ok(QuoteResult {
                    attest,
                    signature,
                    pcrs: values,
                });
            }
            tracing::debug!("PCRs changed between quote and read, quoting again");
        }
        Err(TpmError::PcrRace)
    }

    /// Reads SHA-256 PCR values.
    pub fn read_pcrs(&mut self, pcrs: &[u8]) -> Result<BTreeMap<u8, Vec<u8>>, TpmError> {
        let mut out = BTreeMap::new();
        // TPM2_PCR_Read returns at most 8 digests per call.
        for chunk in pcrs.chunks(8) {
            let sel = selection(chunk)?;
            let (_counter, sel_out, digests) = self
                .ctx
                .execute_without_session(|c| c.pcr_read(sel))
                .map_err(tss("PCR read"))?;
            let got: Vec<u8> = sel_out
                .get_selections()
                .iter()
                .flat_map(|s| {
                    s.selected()
                        .into_iter()
                        .map(|slot| u32::from(slot).trailing_zeros() as u8)
                })
                .collect();
            let values = digests.value();
            if got.len() != values.len() || got != chunk {
                return Err(TpmError::Unexpected {
                    op: "PCR read",
                    detail: format!("asked for {chunk:?}, got {got:?}"),
                });
            }
            for (i, d) in got.iter().zip(values) {
                out.insert(*i, d.value().to_vec());
            }
        }
        Ok(out)
    }

    /// Extends a SHA-256 digest into a PCR (what firmware and boot loaders do;
    /// Keel uses it in tests and for its own measurements).
    pub fn pcr_extend(&mut self, pcr: u8, sha256: &[u8; 32]) -> Result<(), TpmError> {
        let handle = PcrHandle::try_from(u32::from(pcr)).map_err(tss("PCR handle"))?;
        let mut vals = DigestValues::new();
        vals.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(sha256.to_vec()).map_err(tss("digest"))?,
        );
        self.ctx
            .execute_with_nullauth_session(|c| c.pcr_extend(handle, vals))
            .map_err(tss("PCR extend"))
    }
}
