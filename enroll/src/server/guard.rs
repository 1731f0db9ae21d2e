//! The per-request guard in front of every route: the address's token bucket
//! (over it: `429`, code `rate-limited`, `Retry-After`), then the
//! whole-request timeout around reading the body and handling it (past it:
//! `503`, code `internal`, so the node retries).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_attest::protocol::REPORT_PATH;
use keel_attest::protocol::{Decision, RejectCode, RejectReason};

use super::ratelimit::RateLimiter;

/// What the guard needs.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Per-address token buckets.
    pub rate: Arc<RateLimiter>,
    /// The whole-request timeout.
    pub request_timeout: Duration,
}

/// A refusal in the shape the endpoint answers in: the report endpoint
/// answers a bare reason, the enrollment endpoints a decision.
fn rejected(status: StatusCode, code: RejectCode, msg: String, report: bool) -> Response {
    let reason = RejectReason::new(code, msg);
    if report {
        (status, Json(reason)).into_response()
    } else {
        (status, Json(Decision::Rejected { reason })).into_response()
    }
}

/// The middleware.
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let report = req.uri().path() == REPORT_PATH;
    if let Some(peer) = peer {
        if let Err(wait) = g.rate.check(peer.ip(), Instant::now()) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::debug!(%peer, "rate-limited ({secs} s)");
            let mut r = rejected(
                StatusCode::TOO_MANY_REQUESTS,
                RejectCode::RateLimited,
                format!(
                    "too many requests from {}; retry in {secs} s",
                    super::ratelimit::key(peer.ip())
                ),
                report,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
    }
    match tokio::time::timeout(g.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let secs = g.request_timeout.as_secs_f64();
            tracing::warn!(?peer, "request did not complete within {secs} s");
            let mut r = rejected(
                StatusCode::SERVICE_UNAVAILABLE,
                RejectCode::Internal,
                format!(
                    "the request did not complete within {secs} s (request-timeout-secs); retry later"
                ),
                report,
            );
            // The rest of a trickling body is not waited for.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}
