//! `POST /v1/enroll/start` and `POST /v1/enroll/finish`.
//!
//! The verifier's crypto runs inline on the async workers: on the service
//! side every step is public-key work (ECDSA/RSA verifications, one ECDH or
//! RSA-OAEP encryption, one ECDSA signature for the node certificate), about
//! 0.1-0.3 ms per step with ring. That is shorter than the two thread
//! hand-offs a `spawn_blocking` costs, and measured faster end to end
//! (`keel-enroll-bench`); no step waits on anything.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_attest::protocol::{
    Decision, EnrollInfo, FinishRequest, JoinMaterial, NodeIdentity, PcrBank, PcrSelection,
    RejectCode, RejectReason, ReleaseRef, StartRequest, StartResponse,
};
use keel_attest::verify::{SessionSecrets, StartEvidence, VerifyError};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::App;
use crate::admission::{Claim, EkCertInfo, Verdict};
use crate::audit::Entry;
use crate::issue::{IssueRequest, Material};
use crate::metrics::Counted;
use crate::store::{CertRow, SessionRow, Taken};

/// Seconds a pending node is told to wait before starting again.
const PENDING_RETRY_SECS: u64 = 60;

fn reply(status: StatusCode, body: impl serde::Serialize) -> Response {
    (status, Json(body)).into_response()
}

/// [`reply`], tagged with its outcome for the metrics.
fn counted(status: StatusCode, body: impl serde::Serialize, c: Counted) -> Response {
    let mut r = reply(status, body);
    r.extensions_mut().insert(c);
    r
}

fn rejected(code: RejectCode, msg: impl Into<String>) -> Decision {
    Decision::Rejected {
        reason: RejectReason::new(code, msg),
    }
}

fn status_for(code: RejectCode) -> StatusCode {
    match code {
        RejectCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
        RejectCode::MalformedRequest | RejectCode::UnsupportedVersion => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    }
}

/// A host-name-like identifier: 1-63 of `[a-z0-9-]`, not starting or ending with `-`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("internal error: {e}");
    let d = rejected(
        RejectCode::Internal,
        "the enrollment service failed; retry later",
    );
    counted(
        StatusCode::SERVICE_UNAVAILABLE,
        d,
        Counted::Rejected(RejectCode::Internal),
    )
}

/// Records a refusal and answers it.
async fn refuse(
    app: &App,
    mut entry: Entry,
    code: RejectCode,
    msg: String,
    start: bool,
) -> Response {
    // The message may quote the request (a parser error): bounded and
    // escaped like the audit row, so the answer cannot be used as a mirror.
    let msg = crate::audit::bounded(&msg, crate::audit::DETAIL_MAX);
    entry.decision = format!("rejected:{code}");
    entry.detail = msg.clone();
    if let Err(e) = app.store.audit(entry).await {
        return internal(e);
    }
    let d = rejected(code, msg);
    let c = Counted::Rejected(code);
    if start {
        counted(status_for(code), StartResponse::Decision(d), c)
    } else {
        counted(status_for(code), d, c)
    }
}

fn entry(app: &App, action: &str) -> Entry {
    Entry {
        actor: "service".into(),
        action: action.into(),
        config_sha256: app.config_sha256.clone(),
        ..Default::default()
    }
}

/// Handles a start request: parse, check the ids, verify the EK, check
/// admission, gate the release, then open a session with its challenge.
pub async fn start(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let mut audit = entry(&app, "enroll-start");
    let req: StartRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                &app,
                audit,
                RejectCode::MalformedRequest,
                format!("start request: {e}"),
                true,
            )
            .await
        }
    };
    audit.node_id = req.claims.hostname.clone();
    audit.store_id = req.claims.store_id.clone();
    if !valid_id(&req.claims.hostname) || !valid_id(&req.claims.store_id) {
        let msg = "host name and store id must be 1-63 characters of a-z, 0-9 and '-'".to_string();
        return refuse(&app, audit, RejectCode::MalformedRequest, msg, true).await;
    }
    let ev = match app.verifier.verify_start(&req) {
        Ok(ev) => ev,
        Err(e) => return refuse(&app, audit, e.code(), e.to_string(), true).await,
    };
    audit.ek_sha256 = ev.ek_sha256.clone();
    let claim = claim_of(&app, &req, &ev);
    let t0 = now();
    match app.store.precheck(&claim, t0.unix_timestamp()).await {
        Ok(o) => {
            if let Verdict::Reject(code, msg) = o.verdict {
                return refuse(&app, audit, code, msg, true).await;
            }
        }
        Err(e) => return internal(e),
    }
    let pcrs = match release_pcrs(&app, &claim.store_id, &req.claims.release) {
        Ok(p) => p,
        Err((code, msg)) => return refuse(&app, audit, code, msg, true).await,
    };
    open_session(&app, audit, req, &ev, claim, pcrs, t0).await
}

/// What the start request claims, as admission sees it.
fn claim_of(app: &App, req: &StartRequest, ev: &StartEvidence) -> Claim {
    Claim {
        node_id: req.claims.hostname.clone(),
        store_id: req.claims.store_id.clone(),
        ek_sha256: ev.ek_sha256.clone(),
        ek_certified: ev.ek_certified,
        token_hash: req
            .token
            .as_ref()
            .map(|t| hex::encode(Sha256::digest(t.trim().as_bytes()))),
        ek_cert: ev
            .ek_cert_names
            .clone()
            .map(|(subject, issuer, serial)| EkCertInfo {
                subject,
                issuer,
                serial,
            }),
        require_approval: app.requires_approval(&req.claims.store_id),
    }
}

/// The PCRs to quote for `release` in `store`, or why the release is
/// refused: unknown here, below a minimum or withdrawn, or constraining no
/// PCR. Every constrained PCR plus firmware and Secure Boot state; a release
/// without constrained PCRs never loads, and is refused if it got here.
fn release_pcrs(
    app: &App,
    store: &str,
    release: &ReleaseRef,
) -> Result<Vec<u8>, (RejectCode, String)> {
    if !app.verifier.policy.knows(release) {
        let msg = format!(
            "release {} {} has no reference values here",
            release.name, release.version
        );
        return Err((RejectCode::UnknownRelease, msg));
    }
    app.gate
        .check(store, release)
        .map_err(|msg| (RejectCode::ReleaseDenied, msg))?;
    app.verifier.policy.selection_for(release).ok_or_else(|| {
        let msg = format!(
            "release {} {} constrains no PCR",
            release.name, release.version
        );
        (RejectCode::PcrPolicy, msg)
    })
}

/// Makes the challenge, stores the session (secrets as the verifier keeps
/// them) and answers with the challenge.
async fn open_session(
    app: &App,
    audit: Entry,
    req: StartRequest,
    ev: &StartEvidence,
    claim: Claim,
    pcrs: Vec<u8>,
    t0: OffsetDateTime,
) -> Response {
    let release = req.claims.release.clone();
    let session_id = hex::encode(rand::random::<[u8; 16]>());
    let expires = t0 + time::Duration::seconds(app.session_ttl);
    let made = app.verifier.challenge(
        ev,
        session_id.clone(),
        PcrSelection {
            bank: PcrBank::Sha256,
            pcrs,
        },
        release.clone(),
        expires,
        &mut rand::rngs::OsRng,
    );
    let (challenge, secrets) = match made {
        Ok(v) => v,
        Err(e) => return refuse(app, audit, e.code(), e.to_string(), true).await,
    };
    let secrets_json = match serde_json::to_string(&secrets) {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let row = SessionRow {
        id: session_id,
        node_id: claim.node_id,
        store_id: claim.store_id,
        ek_sha256: claim.ek_sha256,
        ek_certified: claim.ek_certified,
        token_hash: claim.token_hash,
        release: format!("{} {}", release.name, release.version),
        csr_der: req.csr.0,
        secrets_json,
        expires_at: expires.unix_timestamp(),
        ek_cert: claim.ek_cert,
    };
    if let Err(e) = app.store.put_session(row).await {
        return internal(e);
    }
    counted(
        StatusCode::OK,
        StartResponse::Challenge(challenge),
        Counted::Challenge,
    )
}

/// Handles a finish request.
pub async fn finish(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let mut audit = entry(&app, "enroll-finish");
    let req: FinishRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                &app,
                audit,
                RejectCode::MalformedRequest,
                format!("finish request: {e}"),
                false,
            )
            .await
        }
    };
    let session = match app.store.take_session(&req.session_id).await {
        Ok(Taken::Fresh(s)) => s,
        Ok(Taken::Replayed) => {
            let msg = "this session was already finished (replayed request)".to_string();
            return refuse(&app, audit, RejectCode::SessionReplayed, msg, false).await;
        }
        Ok(Taken::Unknown) => {
            let msg = "unknown or purged session".to_string();
            return refuse(&app, audit, RejectCode::SessionUnknown, msg, false).await;
        }
        Err(e) => return internal(e),
    };
    audit.node_id = session.node_id.clone();
    audit.store_id = session.store_id.clone();
    audit.ek_sha256 = session.ek_sha256.clone();
    let secrets: SessionSecrets = match serde_json::from_str(&session.secrets_json) {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    if let Err(e) = app.verifier.verify_finish(&secrets, &req, now()) {
        return refuse_verify(&app, audit, &e).await;
    }
    let claim = session.claim(app.requires_approval(&session.store_id));
    let out = match app
        .store
        .admit(
            &claim,
            &session.release,
            now().unix_timestamp(),
            audit.clone(),
        )
        .await
    {
        Ok(o) => o,
        Err(e) => return internal(e),
    };
    match out.verdict {
        Verdict::Reject(code, msg) => counted(
            status_for(code),
            rejected(code, msg),
            Counted::Rejected(code),
        ),
        Verdict::Queue(reason) => counted(
            StatusCode::OK,
            Decision::Pending {
                reason,
                retry_after: PENDING_RETRY_SECS,
            },
            Counted::Pending,
        ),
        Verdict::Admit { .. } => issue(&app, &session, audit).await,
    }
}

async fn refuse_verify(app: &App, audit: Entry, e: &VerifyError) -> Response {
    refuse(app, audit, e.code(), e.to_string(), false).await
}

/// Issues the join material of an admitted node. If an issuer fails, the node
/// goes back to `approved` so its next attempt is admitted again.
async fn issue(app: &Arc<App>, s: &SessionRow, audit: Entry) -> Response {
    let issued = if app.issuers.iter().any(|i| i.blocks()) {
        let (app2, s2) = (app.clone(), s.clone());
        tokio::task::spawn_blocking(move || issue_all(&app2, &s2)).await
    } else {
        Ok(issue_all(app, s))
    };
    // The node certificate is recorded before the node gets it (report and
    // renew refuse unrecorded certificates); a failure here rolls back too.
    let issued = match issued {
        Ok(Ok((join, cert))) => match app.store.record_cert(&cert).await {
            Ok(true) => Ok(Ok(join)),
            Ok(false) => {
                let msg = format!(
                    "node {} is no longer admitted (revoked while its join material was issued)",
                    s.node_id
                );
                return internal(msg);
            }
            Err(e) => Ok(Err(format!(
                "recording node certificate {}: {e}",
                cert.serial
            ))),
        },
        Ok(Err(msg)) => Ok(Err(msg)),
        Err(e) => Err(e),
    };
    match issued {
        Ok(Ok(join)) => counted(
            StatusCode::OK,
            Decision::Admitted {
                node_id: s.node_id.clone(),
                join: Box::new(join),
            },
            Counted::Admitted,
        ),
        Ok(Err(msg)) => {
            let mut a = audit;
            a.action = "issue-failed".into();
            a.decision = "approved".into();
            a.detail = msg.clone();
            if let Err(e) = app
                .store
                .set_status(
                    &crate::store::NodeKey::new(&s.store_id, &s.node_id),
                    &[crate::admission::NodeStatus::Admitted],
                    crate::admission::NodeStatus::Approved,
                    None,
                    a,
                )
                .await
            {
                tracing::error!("rolling back admission of {}: {e}", s.node_id);
            }
            internal(format!("issuing join material for {}: {msg}", s.node_id))
        }
        Err(e) => internal(e),
    }
}

/// Runs every issuer for an admitted node's session; the join material and
/// the record of the node certificate in it (stored by the caller).
fn issue_all(app: &App, s: &SessionRow) -> Result<(JoinMaterial, CertRow), String> {
    let req = IssueRequest {
        node_id: &s.node_id,
        store: &s.store_id,
        ek_sha256: &s.ek_sha256,
        csr_der: &s.csr_der,
    };
    let signed = app
        .node_cert
        .sign(&s.node_id, &s.csr_der)
        .map_err(|e| format!("node-cert: {e}"))?;
    let cert = CertRow {
        serial: signed.serial,
        node_id: s.node_id.clone(),
        store_id: s.store_id.clone(),
        not_after: signed.not_after,
        issued_at: now().unix_timestamp(),
        revoked_at: None,
    };
    let identity = NodeIdentity {
        cert_chain_pem: signed.pem,
        ca_pem: Some(app.node_cert.ca_pem().to_owned()),
    };
    let mut join = JoinMaterial {
        identity,
        ceph: None,
        acme: None,
        gitops: None,
        enroll: app
            .report_url
            .clone()
            .map(|report_url| EnrollInfo { report_url }),
    };
    for i in &app.issuers {
        match i.issue(&req) {
            Ok(Some(Material::Ceph(c))) => join.ceph = Some(c),
            Ok(Some(Material::Acme(a))) => join.acme = Some(a),
            Ok(Some(Material::Gitops(g))) => join.gitops = Some(g),
            Ok(Some(Material::Identity(_))) | Ok(None) => {}
            Err(e) => return Err(format!("{}: {e}", i.kind())),
        }
    }
    Ok((join, cert))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids() {
        for ok in ["n1", "store-042-node-1", "a"] {
            assert!(super::valid_id(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"x".repeat(64)] {
            assert!(!super::valid_id(bad), "{bad}");
        }
    }
}
