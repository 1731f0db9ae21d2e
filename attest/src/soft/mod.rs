//! Software keys that produce TPM-format structures: a *simulated* EK and AK
//! whose TPM2B_PUBLIC, TPMS_ATTEST quotes, TPMT_SIGNATUREs and activated
//! credentials are byte-for-byte in the format a TPM produces, so load
//! generators and tests exercise the exact production verifier path without
//! a TPM. There is no hardware protection here at all: never use this
//! outside tests and benchmarks (it is behind the `soft` cargo feature).
//! Also offers helpers to craft malformed and adversarial structures.

mod keys;

use std::collections::BTreeMap;

use rand::{CryptoRng, RngCore};

pub use keys::{SoftAk, SoftEk};

use crate::protocol::{
    self, Bytes32, Challenge, FinishRequest, NodeClaims, Quote, StartRequest, B64, PROTOCOL_VERSION,
};

/// A simulated TPM: an EK, an AK under it, and a SHA-256 PCR bank.
#[derive(Debug, Clone)]
pub struct SoftTpm {
    /// The EK.
    pub ek: SoftEk,
    /// The AK.
    pub ak: SoftAk,
    /// PCR values (SHA-256 bank), all zero at start.
    pub pcrs: BTreeMap<u8, [u8; 32]>,
    /// The event log of every [`SoftTpm::measure`] (what firmware keeps).
    pub log: crate::verify::eventlog::EventLogBuilder,
}

/// Soft TPM failures.
#[derive(Debug, thiserror::Error)]
pub enum SoftError {
    /// Credential activation failed (wrong EK or name, tampered blob).
    #[error("credential activation failed: {0}")]
    Activation(String),
    /// Key generation or signing failed.
    #[error("soft key: {0}")]
    Key(String),
}

impl SoftTpm {
    /// A TPM with an ECC P-256 EK and AK (fast to generate).
    pub fn new_ecc<R: RngCore + CryptoRng>(rng: &mut R) -> SoftTpm {
        Self::with_keys(SoftEk::new_p256(rng), SoftAk::new_p256(rng))
    }

    /// A TPM with an RSA-2048 EK and AK (slow to generate).
    pub fn new_rsa<R: RngCore + CryptoRng>(rng: &mut R) -> Result<SoftTpm, SoftError> {
        Ok(Self::with_keys(
            SoftEk::new_rsa(rng)?,
            SoftAk::new_rsa(rng)?,
        ))
    }

    /// A TPM from existing keys.
    pub fn with_keys(ek: SoftEk, ak: SoftAk) -> SoftTpm {
        SoftTpm {
            ek,
            ak,
            pcrs: (0u8..24)
                .map(|i| (i, crate::verify::eventlog::initial_value(i, 0)))
                .collect(),
            log: crate::verify::eventlog::EventLogBuilder::new(),
        }
    }

    /// Measures `data` into `pcr` the way firmware does: an event in the
    /// log and the extend of its SHA-256 digest.
    pub fn measure(&mut self, pcr: u8, event_type: u32, data: &[u8]) {
        let d = self.log.measure(u32::from(pcr), event_type, data);
        self.extend(pcr, &d);
    }

    /// The event log so far (TCG crypto-agile format), as a node sends it.
    pub fn event_log(&self) -> Vec<u8> {
        self.log.clone().finish()
    }

    /// PCR_Extend without a log entry (what tampering looks like).
    pub fn extend(&mut self, pcr: u8, digest: &[u8; 32]) {
        let cur = self.pcrs.entry(pcr).or_insert([0; 32]);
        *cur = crate::tpm2::HashAlg::Sha256
            .digest(&[cur.as_slice(), digest.as_slice()])
            .try_into()
            .unwrap_or([0; 32]);
    }

    /// The start request this TPM's node would send.
    pub fn start_request(
        &self,
        csr_der: &[u8],
        token: Option<String>,
        claims: NodeClaims,
    ) -> StartRequest {
        StartRequest {
            version: PROTOCOL_VERSION,
            ek_public: B64(self.ek.public_tpm2b()),
            ek_cert: None,
            ak_public: B64(self.ak.public_tpm2b()),
            ak_name: B64(self.ak.name()),
            token,
            csr: B64(csr_der.to_vec()),
            claims,
        }
    }

    /// Answers a challenge exactly as `node::answer_challenge` does on a TPM.
    pub fn answer<R: RngCore + CryptoRng>(
        &self,
        ch: &Challenge,
        csr_der: &[u8],
        event_log: Option<Vec<u8>>,
        rng: &mut R,
    ) -> Result<FinishRequest, SoftError> {
        let secret = self.ek.activate_credential(
            &self.ak.name(),
            &ch.credential_blob,
            &ch.encrypted_secret,
        )?;
        let proof = protocol::activation_proof(&secret, &ch.session_id, &ch.nonce);
        let qd = protocol::qualifying_data_for_csr(&ch.nonce, csr_der, &ch.session_id)
            .map_err(|e| SoftError::Key(e.to_string()))?;
        let selected: BTreeMap<u8, Vec<u8>> = ch
            .pcr_selection
            .pcrs
            .iter()
            .map(|i| (*i, self.pcrs.get(i).copied().unwrap_or([0; 32]).to_vec()))
            .collect();
        let (attest, signature) = self.ak.quote(&qd, &selected, rng)?;
        Ok(FinishRequest {
            version: PROTOCOL_VERSION,
            session_id: ch.session_id.clone(),
            proof: Bytes32(proof),
            quote: Quote {
                attest: B64(attest),
                signature: B64(signature),
            },
            pcrs: protocol::encode_pcrs(&selected),
            event_log: event_log.map(B64),
        })
    }
}

#[cfg(test)]
mod tests;
