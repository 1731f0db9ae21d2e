//! Quote verification: signature by the AK, TPM magic and type, the
//! qualifying data, the PCR selection and the PCR digest.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use crate::protocol::{PcrBank, PcrSelection};
use crate::tpm2::attest::QuoteAttest;
use crate::tpm2::public::TpmPublic;
use crate::tpm2::signature::{SignatureError, TpmSignature};
use crate::tpm2::{alg, HashAlg, StructError};

/// Quote problems, one per check.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// TPMS_ATTEST or TPMT_SIGNATURE malformed, or not a TPM-generated quote.
    #[error("quote structure: {0}")]
    Struct(#[from] StructError),
    /// The signature does not verify with the AK.
    #[error("quote signature: {0}")]
    Signature(#[from] SignatureError),
    /// extraData differs from the expected qualifying data.
    #[error("quote is not over this session's nonce")]
    Nonce,
    /// The quoted PCR set is not the requested one.
    #[error("quote covers PCRs {quoted:?}, requested {requested:?}")]
    Selection {
        /// What the quote covers.
        quoted: Vec<u8>,
        /// What was requested.
        requested: Vec<u8>,
    },
    /// The PCR values sent do not cover the selection or are not digests.
    #[error("PCR values sent do not match the selection: {0}")]
    PcrValues(String),
    /// The PCR values do not hash to the quoted digest.
    #[error("PCR values do not match the quoted PCR digest")]
    PcrDigest,
}

/// Normalises a requested selection (sorted, unique).
fn requested(sel: &PcrSelection) -> Vec<u8> {
    let mut v = sel.pcrs.clone();
    v.sort_unstable();
    v.dedup();
    v
}

/// Verifies a quote made by `ak` and returns it parsed.
pub fn verify_quote(
    ak: &TpmPublic,
    attest: &[u8],
    signature: &[u8],
    expected_qualifying_data: &[u8; 32],
    selection: &PcrSelection,
    pcrs: &BTreeMap<u8, Vec<u8>>,
) -> Result<QuoteAttest, QuoteError> {
    let sig = TpmSignature::parse(signature)?;
    sig.verify(ak, attest)?;
    let q = QuoteAttest::parse(attest)?;
    if !bool::from(
        q.extra_data
            .as_slice()
            .ct_eq(expected_qualifying_data.as_slice()),
    ) {
        return Err(QuoteError::Nonce);
    }
    let PcrBank::Sha256 = selection.bank;
    let want = requested(selection);
    let quoted: Vec<u8> = q
        .pcr_select
        .iter()
        .filter(|s| !s.pcrs.is_empty())
        .flat_map(|s| {
            // A bank other than SHA-256 poisons the set so it cannot match.
            let poison = if s.hash == alg::SHA256 {
                None
            } else {
                Some(u8::MAX)
            };
            s.pcrs.iter().copied().chain(poison)
        })
        .collect();
    if quoted != want {
        return Err(QuoteError::Selection {
            quoted,
            requested: want,
        });
    }
    let keys: Vec<u8> = pcrs.keys().copied().collect();
    if keys != want {
        return Err(QuoteError::PcrValues(format!(
            "sent PCRs {keys:?}, quoted {want:?}"
        )));
    }
    if let Some((i, _)) = pcrs.iter().find(|(_, v)| v.len() != 32) {
        return Err(QuoteError::PcrValues(format!(
            "PCR {i} is not a SHA-256 digest"
        )));
    }
    let parts: Vec<&[u8]> = pcrs.values().map(Vec::as_slice).collect();
    let digest = HashAlg::Sha256.digest(&parts);
    if !bool::from(digest.as_slice().ct_eq(q.pcr_digest.as_slice())) {
        return Err(QuoteError::PcrDigest);
    }
    Ok(q)
}
