//! Telling keel-enroll which bundle revision the node runs:
//! `POST /v1/nodes/report` with a [`NodeReport`] body, authenticated by the
//! node identity certificate and a signature over the body made with the node
//! key (keel-attest's [`EnrollClient::report`]). The caller owns the node key,
//! so it passes the certificate and a signing function in.

use keel_attest::client::{EnrollClient, NodeReport};

use super::{GitopsError, SyncOutcome};

/// The report for a sync outcome (`status` is `applied`).
pub fn node_report(node_id: &str, outcome: &SyncOutcome) -> NodeReport {
    NodeReport {
        node_id: node_id.to_string(),
        revision: outcome.rev().to_string(),
        status: "applied".to_string(),
        at: time::OffsetDateTime::now_utc(),
    }
}

/// The report after a failed sync that kept or restored `rev`.
pub fn failure_report(node_id: &str, rev: &str, error: &GitopsError) -> NodeReport {
    let mut why = error.to_string();
    why.truncate(200);
    NodeReport {
        node_id: node_id.to_string(),
        revision: rev.to_string(),
        status: format!("failed: {why}"),
        at: time::OffsetDateTime::now_utc(),
    }
}

/// Posts `report`. Sent after every sync, also when up to date, so the
/// service learns the running revision after an outage.
pub async fn send(
    client: &EnrollClient,
    report: &NodeReport,
    cert_der: &[u8],
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<(), GitopsError> {
    client
        .report(report, cert_der, sign)
        .await
        .map_err(|e| GitopsError::Report(e.to_string()))
}
