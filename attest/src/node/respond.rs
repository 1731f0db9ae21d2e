//! The node's half of the protocol on top of the TPM: builds the start
//! request and answers a challenge (activate, prove, quote, read PCRs).

use super::{Ak, Ek, NodeTpm, TpmError};
use crate::protocol::{
    self, Bytes32, Challenge, FinishRequest, NodeClaims, Quote, StartRequest, B64, PROTOCOL_VERSION,
};

/// What the node asks to have certified and says about itself.
#[derive(Debug, Clone)]
pub struct NodeIdentityInput {
    /// DER PKCS#10 request for the node identity key.
    pub csr_der: Vec<u8>,
    /// One-time token, if any.
    pub token: Option<String>,
    /// Claims from the seed and image.
    pub claims: NodeClaims,
}

/// Builds the [`StartRequest`] for this EK and AK.
pub fn start_request(ek: &Ek, ak: &Ak, input: &NodeIdentityInput) -> StartRequest {
    StartRequest {
        version: PROTOCOL_VERSION,
        ek_public: B64(ek.public.clone()),
        ek_cert: ek.cert.clone().map(B64),
        ak_public: B64(ak.public.clone()),
        ak_name: B64(ak.name.clone()),
        token: input.token.clone(),
        csr: B64(input.csr_der.clone()),
        claims: input.claims.clone(),
    }
}

/// Answers a challenge: activates the credential, proves it, quotes the
/// requested PCRs over the bound qualifying data and attaches the event log.
pub fn answer_challenge(
    tpm: &mut NodeTpm,
    ek: &Ek,
    ak: &Ak,
    ch: &Challenge,
    csr_der: &[u8],
    event_log: Option<Vec<u8>>,
) -> Result<FinishRequest, TpmError> {
    let secret = tpm.activate_credential(ek, ak, &ch.credential_blob, &ch.encrypted_secret)?;
    let proof = protocol::activation_proof(&secret, &ch.session_id, &ch.nonce);
    let qd =
        protocol::qualifying_data_for_csr(&ch.nonce, csr_der, &ch.session_id).map_err(|e| {
            TpmError::Unexpected {
                op: "qualifying data",
                detail: e.to_string(),
            }
        })?;
    let q = tpm.quote(ak, &qd, &ch.pcr_selection.pcrs)?;
    Ok(FinishRequest {
        version: PROTOCOL_VERSION,
        session_id: ch.session_id.clone(),
        proof: Bytes32(proof),
        quote: Quote {
            attest: B64(q.attest),
            signature: B64(q.signature),
        },
        pcrs: protocol::encode_pcrs(&q.pcrs),
        event_log: event_log.map(B64),
    })
}
