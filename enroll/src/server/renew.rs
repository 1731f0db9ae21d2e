//! `POST /v1/nodes/renew` (a node's new identity certificate) and `GET /v1/crl`
//! (the node CA's revocation list).
//!
//! Renewal is authenticated like a report ([`super::nodeauth`]): only the
//! holder of a current, valid, unrevoked node certificate of an admitted node
//! gets a new one, for the node id that certificate names. The new
//! certificate gets a new serial, recorded like the first one; the old one
//! stays valid until it expires (the node switches atomically).
//!
//! The CRL lists the serials of revoked certificates that have not expired
//! yet. It is rebuilt when the revoked set in the database differs from the
//! one it was built from (so a `nodes revoke` run by the admin CLI, another
//! process, shows in the next fetch) and at least every [`CRL_REFRESH`]
//! seconds; `nextUpdate` is [`CRL_VALIDITY`] hours ahead. The CRL number is
//! the build time in milliseconds, so it grows across restarts and replicas.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_attest::protocol::{NodeIdentity, RejectCode};
use keel_attest::protocol::{RenewRequest, RenewResponse};

use super::report::{deny, MAX_SKEW};
use super::App;
use crate::audit::Entry;
use crate::issue::IssueError;
use crate::store::CertRow;

/// Seconds after which a CRL is rebuilt even if nothing changed.
pub const CRL_REFRESH: i64 = 3600;
/// Hours a CRL is valid (`nextUpdate - thisUpdate`).
pub const CRL_VALIDITY: i64 = 24;

/// The last CRL built.
#[derive(Debug, Default)]
pub struct CrlCache {
    revoked: Vec<(String, i64)>,
    built_at: i64,
    number: u64,
    der: Vec<u8>,
}

/// Handles a renewal.
pub async fn renew(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    let signer =
        match super::nodeauth::authenticate(&*app.store, &app.node_ca_der, &headers, &body, now)
            .await
        {
            Ok(s) => s,
            Err((code, msg)) => return deny(code, msg),
        };
    let r: RenewRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return deny(RejectCode::MalformedRequest, format!("renew request: {e}")),
    };
    if r.node_id != signer.node_id {
        return deny(
            RejectCode::IdentityConflict,
            "renewal is for another node than the certificate names",
        );
    }
    if (r.at.unix_timestamp() - now).abs() > MAX_SKEW {
        return deny(
            RejectCode::SessionExpired,
            "renewal timestamp is more than 5 minutes off (replayed or clock wrong)",
        );
    }
    let signed = match app.node_cert.sign(&r.node_id, &r.csr.0) {
        Ok(s) => s,
        Err(IssueError::InvalidRequest(m)) => return deny(RejectCode::CsrInvalid, m),
        Err(e) => return deny(RejectCode::Internal, e.to_string()),
    };
    let row = CertRow {
        serial: signed.serial.clone(),
        node_id: r.node_id.clone(),
        store_id: signer.cert.store_id.clone(),
        not_after: signed.not_after,
        issued_at: now,
        revoked_at: None,
    };
    match app.store.record_cert(&row).await {
        Ok(true) => {}
        Ok(false) => {
            return deny(
                RejectCode::Revoked,
                format!(
                    "node {} is not admitted (revoked or re-enrolling)",
                    r.node_id
                ),
            )
        }
        Err(e) => {
            tracing::error!("recording certificate {}: {e}", row.serial);
            return deny(RejectCode::Internal, "the service failed; retry later");
        }
    }
    let audit = Entry {
        actor: format!("node:{}", r.node_id),
        action: "renew".into(),
        node_id: r.node_id.clone(),
        store_id: row.store_id.clone(),
        decision: "ok".into(),
        detail: format!(
            "certificate {} replaces {} (not after {})",
            row.serial, signer.cert.serial, row.not_after
        ),
        config_sha256: app.config_sha256.clone(),
        ..Default::default()
    };
    if let Err(e) = app.store.audit(audit).await {
        tracing::error!("auditing renewal: {e}");
        return deny(RejectCode::Internal, "the service failed; retry later");
    }
    let identity = NodeIdentity {
        cert_chain_pem: signed.pem,
        ca_pem: Some(app.node_cert.ca_pem().to_owned()),
    };
    (StatusCode::OK, Json(RenewResponse { identity })).into_response()
}

/// Serves the CRL (DER, `application/pkix-crl`).
pub async fn crl(State(app): State<Arc<App>>) -> Response {
    let now = ::time::OffsetDateTime::now_utc();
    let revoked: Vec<(String, i64)> = match app.store.revoked_certs(now.unix_timestamp()).await {
        Ok(rows) => rows
            .into_iter()
            .map(|c| (c.serial, c.revoked_at.unwrap_or(c.issued_at)))
            .collect(),
        Err(e) => {
            tracing::error!("reading revoked certificates: {e}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let der = {
        let mut cache = match app.crl.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let fresh = now.unix_timestamp() - cache.built_at < CRL_REFRESH;
        if cache.der.is_empty() || cache.revoked != revoked || !fresh {
            let number = ((now.unix_timestamp_nanos() / 1_000_000) as u64).max(cache.number + 1);
            let built = app
                .node_cert
                .crl(&revoked, number, ::time::Duration::hours(CRL_VALIDITY));
            match built {
                Ok(der) => {
                    *cache = CrlCache {
                        revoked,
                        built_at: now.unix_timestamp(),
                        number,
                        der,
                    };
                }
                Err(e) => {
                    tracing::error!("building the CRL: {e}");
                    return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
                }
            }
        }
        cache.der.clone()
    };
    ([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response()
}
