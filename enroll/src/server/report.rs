//! `POST /v1/nodes/report`: a node reports the GitOps revision it applied.
//!
//! Authentication (documented in docs/enrollment.md): the request carries the
//! node identity certificate (`x-keel-node-cert`, base64 DER) and a signature
//! over the exact body bytes made with the node key (`x-keel-signature`). The
//! certificate must be signed by this service's node CA, be within its validity
//! and name the node of the report; the report's timestamp must be within five
//! minutes of the service clock (no replay of old reports). We chose a request
//! signature over mTLS so that reports survive TLS-terminating proxies.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keel_attest::client::{NodeReport, CERT_HEADER, SIGNATURE_HEADER};
use keel_attest::protocol::{RejectCode, RejectReason};
use x509_parser::prelude::*;

use super::App;
use crate::audit::{bounded, Entry, DETAIL_MAX, FIELD_MAX};
use crate::store::StoreError;

/// Largest accepted clock difference, seconds.
const MAX_SKEW: i64 = 300;

fn deny(code: RejectCode, msg: impl Into<String>) -> Response {
    (StatusCode::UNAUTHORIZED, Json(RejectReason::new(code, msg))).into_response()
}

/// Checks the signer and returns the node id named by its certificate.
pub fn authenticate(
    ca_der: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<String, String> {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or_else(|| format!("missing or invalid {name} header"))
    };
    let cert_der = h(CERT_HEADER)?;
    let sig = h(SIGNATURE_HEADER)?;
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| format!("node CA: {e}"))?;
    let (_, cert) =
        X509Certificate::from_der(&cert_der).map_err(|e| format!("node certificate: {e}"))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| "node certificate is not signed by this service's node CA".to_string())?;
    let v = cert.validity();
    if now < v.not_before.timestamp() || now > v.not_after.timestamp() {
        return Err("node certificate is expired or not yet valid".into());
    }
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("node certificate has no common name")?
        .to_owned();
    let spki = cert.public_key();
    let key = &spki.subject_public_key.data;
    let oid = spki.algorithm.algorithm.to_id_string();
    let alg: &'static dyn ring::signature::VerificationAlgorithm = match oid.as_str() {
        "1.2.840.10045.2.1" => &ring::signature::ECDSA_P256_SHA256_ASN1,
        "1.2.840.113549.1.1.1" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        "1.3.101.112" => &ring::signature::ED25519,
        other => return Err(format!("unsupported node key algorithm {other}")),
    };
    ring::signature::UnparsedPublicKey::new(alg, key.as_ref())
        .verify(body, &sig)
        .map_err(|_| "report signature does not verify with the node key".to_string())?;
    Ok(name)
}

/// Handles a report.
pub async fn report(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    let signer = match authenticate(&app.node_ca_der, &headers, &body, now) {
        Ok(n) => n,
        Err(msg) => return deny(RejectCode::Unknown, msg),
    };
    let r: NodeReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(RejectReason::new(
                    RejectCode::MalformedRequest,
                    bounded(&e.to_string(), DETAIL_MAX),
                )),
            )
                .into_response()
        }
    };
    if r.node_id != signer {
        return deny(RejectCode::IdentityConflict, "report is for another node");
    }
    if (r.at.unix_timestamp() - now).abs() > MAX_SKEW {
        return deny(
            RejectCode::SessionExpired,
            "report timestamp is more than 5 minutes off (replayed or clock wrong)",
        );
    }
    // Signed by an admitted node, but still input: stored bounded.
    let (revision, status) = (
        bounded(&r.revision, FIELD_MAX),
        bounded(&r.status, FIELD_MAX),
    );
    match app.store.report(&r.node_id, &revision, &status, now).await {
        Ok(()) => {}
        Err(StoreError::NotFound(m)) => return deny(RejectCode::Revoked, m),
        Err(e) => {
            tracing::error!("storing report: {e}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let audit = Entry {
        actor: format!("node:{}", r.node_id),
        action: "report".into(),
        node_id: r.node_id.clone(),
        decision: "ok".into(),
        detail: format!("revision {revision} status {status}"),
        config_sha256: app.config_sha256.clone(),
        ..Default::default()
    };
    if let Err(e) = app.store.audit(audit).await {
        tracing::error!("auditing report: {e}");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}
