//! `POST /v1/nodes/report`: a node reports the GitOps revision it applied.
//!
//! Authentication: [`super::nodeauth`] (node certificate issued by this
//! service, recorded, unrevoked and valid; body signed by its key). The
//! report's timestamp must be within five minutes of the service clock (no
//! replay of old reports).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_attest::protocol::NodeReport;
use keel_attest::protocol::{RejectCode, RejectReason};

use super::App;
use crate::audit::{bounded, Entry, DETAIL_MAX, FIELD_MAX};
use crate::store::{NodeKey, StoreError};

/// Largest accepted clock difference, seconds.
pub const MAX_SKEW: i64 = 300;

/// A refusal of a signed node request, with its HTTP status.
pub fn deny(code: RejectCode, msg: impl Into<String>) -> Response {
    let status = match code {
        RejectCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
        RejectCode::MalformedRequest => StatusCode::BAD_REQUEST,
        RejectCode::Revoked | RejectCode::IdentityConflict => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut r = (status, Json(RejectReason::new(code, msg))).into_response();
    r.extensions_mut()
        .insert(crate::metrics::Counted::Rejected(code));
    r
}

/// Handles a report.
pub async fn report(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    let signer =
        match super::nodeauth::authenticate(&*app.store, &app.node_ca_der, &headers, &body, now)
            .await
        {
            Ok(s) => NodeKey::new(s.cert.store_id, s.node_id),
            Err((code, msg)) => return deny(code, msg),
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
    if r.node_id != signer.node_id {
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
    match app.store.report(&signer, &revision, &status, now).await {
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
        store_id: signer.store_id.clone(),
        decision: "ok".into(),
        detail: format!("revision {revision} status {status}"),
        config_sha256: app.config_sha256.clone(),
        ..Default::default()
    };
    if let Err(e) = app.store.audit(audit).await {
        tracing::error!("auditing report: {e}");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.extensions_mut().insert(crate::metrics::Counted::Accepted);
    r
}
