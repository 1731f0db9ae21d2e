//! Authentication of signed node requests (`POST /v1/nodes/report`,
//! `POST /v1/nodes/renew`).
//!
//! The request carries the node identity certificate (`x-keel-node-cert`,
//! base64 DER) and a signature over the exact body bytes made with the node key
//! (`x-keel-signature`). Refused, each with its reject code:
//! - missing/undecodable headers or a body signature that does not verify with
//!   the certificate's key: `signature-invalid`;
//! - a certificate not signed by this service's node CA, or signed by it but
//!   with no record in the database (`node_certs`): `cert-unknown`;
//! - a certificate outside its validity: `cert-expired`;
//! - a certificate recorded as revoked (`nodes revoke`, `nodes reenroll`): `revoked`.
//!
//! We chose a request signature over mTLS so that reports survive
//! TLS-terminating proxies.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keel_attest::protocol::RejectCode;
use keel_attest::protocol::{CERT_HEADER, SIGNATURE_HEADER};
use x509_parser::prelude::*;

use crate::store::{CertRow, Store};

/// Why a signed request was refused: the code and a message for the node.
pub type Refusal = (RejectCode, String);

/// The authenticated signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The node id its certificate names.
    pub node_id: String,
    /// The certificate's record.
    pub cert: CertRow,
}

/// What the certificate and signature alone prove (no database): the node id
/// and the serial (lower-case hex) of a certificate signed by the node CA,
/// valid at `now`, whose key signed `body`.
pub fn check_signature(
    ca_der: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(String, String), Refusal> {
    let bad = |m: String| (RejectCode::SignatureInvalid, m);
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or_else(|| bad(format!("missing or invalid {name} header")))
    };
    let cert_der = h(CERT_HEADER)?;
    let sig = h(SIGNATURE_HEADER)?;
    let unknown = |m: String| (RejectCode::CertUnknown, m);
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|e| (RejectCode::Internal, format!("node CA: {e}")))?;
    let (_, cert) = X509Certificate::from_der(&cert_der)
        .map_err(|e| unknown(format!("node certificate does not parse: {e}")))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| unknown("node certificate is not signed by this service's node CA".into()))?;
    let v = cert.validity();
    if now < v.not_before.timestamp() || now > v.not_after.timestamp() {
        return Err((
            RejectCode::CertExpired,
            format!(
                "node certificate serial {} is outside its validity ({} to {})",
                hex::encode(cert.raw_serial()),
                v.not_before,
                v.not_after
            ),
        ));
    }
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| unknown("node certificate has no common name".into()))?
        .to_owned();
    let spki = cert.public_key();
    let key = &spki.subject_public_key.data;
    let oid = spki.algorithm.algorithm.to_id_string();
    let alg: &'static dyn ring::signature::VerificationAlgorithm = match oid.as_str() {
        "1.2.840.10045.2.1" => &ring::signature::ECDSA_P256_SHA256_ASN1,
        "1.2.840.113549.1.1.1" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        "1.3.101.112" => &ring::signature::ED25519,
        other => return Err(bad(format!("unsupported node key algorithm {other}"))),
    };
    ring::signature::UnparsedPublicKey::new(alg, key.as_ref())
        .verify(body, &sig)
        .map_err(|_| bad("request signature does not verify with the node key".into()))?;
    Ok((name, hex::encode(cert.raw_serial())))
}

/// [`check_signature`], then the certificate's record: known, unrevoked and
/// naming the same node.
pub async fn authenticate(
    store: &dyn Store,
    ca_der: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Signer, Refusal> {
    let (node_id, serial) = check_signature(ca_der, headers, body, now)?;
    let cert = match store.cert(&serial).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err((
                RejectCode::CertUnknown,
                format!("node certificate serial {serial} was not issued by this service"),
            ))
        }
        Err(e) => {
            tracing::error!("looking up certificate {serial}: {e}");
            return Err((
                RejectCode::Internal,
                "the service failed; retry later".into(),
            ));
        }
    };
    if cert.node_id != node_id {
        return Err((
            RejectCode::CertUnknown,
            format!("node certificate serial {serial} was issued to another node"),
        ));
    }
    if let Some(at) = cert.revoked_at {
        return Err((
            RejectCode::Revoked,
            format!(
                "node certificate serial {serial} of {node_id} was revoked (at unix time {at})"
            ),
        ));
    }
    Ok(Signer { node_id, cert })
}
