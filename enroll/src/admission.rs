//! The admission policy, as a pure function over what the database knows.
//!
//! - a node id held by another EK, or by the same EK already admitted, is refused
//!   (`identity-conflict`) until an admin re-enrolls it (RMA, re-imaging);
//! - a revoked node is refused;
//! - an admin-approved node (approve / re-enroll) is admitted with its EK;
//! - a valid one-time token for the node's store admits it (and is used up);
//! - an EK on the purchasing allow-list for that store is admitted;
//! - an EK with a vendor certificate but on no list is queued for approval;
//! - anything else is refused (`ek-not-allowed`).
//!
//! Storage backends gather [`Facts`] and apply the [`Outcome`] inside one
//! transaction, so two racing enrollments of one node admit exactly one.

use keel_attest::protocol::RejectCode;
use serde::{Deserialize, Serialize};

/// Lifecycle of a node in the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    /// Attested, waiting for an admin.
    Pending,
    /// Approved (or re-enroll allowed); admitted at its next enrollment.
    Approved,
    /// Enrolled and holding join material.
    Admitted,
    /// Refused for good.
    Revoked,
}

impl NodeStatus {
    /// Stable database/CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Approved => "approved",
            NodeStatus::Admitted => "admitted",
            NodeStatus::Revoked => "revoked",
        }
    }

    /// Parses [`NodeStatus::as_str`].
    pub fn parse(s: &str) -> Option<NodeStatus> {
        Some(match s {
            "pending" => NodeStatus::Pending,
            "approved" => NodeStatus::Approved,
            "admitted" => NodeStatus::Admitted,
            "revoked" => NodeStatus::Revoked,
            _ => return None,
        })
    }
}

/// What the node claims, backed by attestation.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Node id (host name from the seed).
    pub node_id: String,
    /// Store id from the seed.
    pub store_id: String,
    /// Hex SHA-256 of the EK SubjectPublicKeyInfo.
    pub ek_sha256: String,
    /// The EK certificate chained to a trusted vendor root.
    pub ek_certified: bool,
    /// SHA-256 (hex) of the one-time token, when one was presented.
    pub token_hash: Option<String>,
}

/// The inventory row of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeRow {
    /// Node id.
    pub node_id: String,
    /// Store.
    pub store_id: String,
    /// EK bound to this identity.
    pub ek_sha256: String,
    /// Status.
    pub status: NodeStatus,
    /// Claimed release (`name version`).
    pub release: String,
    /// Unix seconds of the last change.
    pub updated_at: i64,
    /// Last GitOps revision the node reported.
    pub revision: Option<String>,
    /// Last status the node reported.
    pub report: Option<String>,
}

/// A one-time token as stored (hashed).
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Store it is valid for.
    pub store_id: String,
    /// Unix seconds after which it is invalid.
    pub expires_at: i64,
    /// Already used.
    pub used: bool,
}

/// An allow-list entry from purchasing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AllowEntry {
    /// Hex SHA-256 of the EK SubjectPublicKeyInfo (lowercase).
    pub ek_sha256: String,
    /// Hardware serial number.
    pub serial: String,
    /// Store the hardware was shipped to.
    pub store_id: String,
}

/// What the database knows about a claim.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The node row with the claimed id.
    pub node: Option<NodeRow>,
    /// The allow-list entry of the EK.
    pub allow: Option<AllowEntry>,
    /// The presented token's row.
    pub token: Option<TokenRow>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admit now; `via` says why (audit).
    Admit {
        /// `approved`, `token`, `allow-list`.
        via: &'static str,
    },
    /// Queue for approval.
    Queue(String),
    /// Refuse.
    Reject(RejectCode, String),
}

/// Decision plus what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The decision.
    pub verdict: Verdict,
    /// Mark the token used.
    pub consume_token: bool,
}

/// Decides. `now` is unix seconds.
pub fn decide(claim: &Claim, facts: &Facts, now: i64) -> Outcome {
    let reject = |code, msg: String| Outcome {
        verdict: Verdict::Reject(code, msg),
        consume_token: false,
    };
    let mut pending_same_ek = false;
    if let Some(n) = &facts.node {
        if n.status == NodeStatus::Revoked {
            return reject(
                RejectCode::Revoked,
                format!("node {} is revoked", n.node_id),
            );
        }
        if n.ek_sha256 != claim.ek_sha256 {
            return reject(
                RejectCode::IdentityConflict,
                format!("node id {} is bound to another TPM", n.node_id),
            );
        }
        if n.store_id != claim.store_id {
            return reject(
                RejectCode::IdentityConflict,
                format!("node {} belongs to store {}", n.node_id, n.store_id),
            );
        }
        match n.status {
            NodeStatus::Admitted => {
                return reject(
                    RejectCode::IdentityConflict,
                    format!(
                        "node {} is already enrolled; an admin must allow re-enrollment",
                        n.node_id
                    ),
                )
            }
            NodeStatus::Approved => {
                return Outcome {
                    verdict: Verdict::Admit { via: "approved" },
                    consume_token: false,
                }
            }
            NodeStatus::Pending => pending_same_ek = true,
            NodeStatus::Revoked => {}
        }
    }
    if claim.token_hash.is_some() {
        return match &facts.token {
            None => reject(RejectCode::TokenInvalid, "unknown enrollment token".into()),
            Some(t) if t.used => reject(
                RejectCode::TokenReused,
                "enrollment token already used".into(),
            ),
            Some(t) if t.expires_at <= now => {
                reject(RejectCode::TokenInvalid, "enrollment token expired".into())
            }
            Some(t) if t.store_id != claim.store_id => reject(
                RejectCode::TokenInvalid,
                format!("enrollment token is for store {}", t.store_id),
            ),
            Some(_) => Outcome {
                verdict: Verdict::Admit { via: "token" },
                consume_token: true,
            },
        };
    }
    if let Some(a) = &facts.allow {
        if a.store_id != claim.store_id {
            return reject(
                RejectCode::EkNotAllowed,
                format!(
                    "this TPM is allow-listed for store {}, not {}",
                    a.store_id, claim.store_id
                ),
            );
        }
        return Outcome {
            verdict: Verdict::Admit { via: "allow-list" },
            consume_token: false,
        };
    }
    if claim.ek_certified || pending_same_ek {
        return Outcome {
            verdict: Verdict::Queue(format!(
                "node {} is waiting for approval by the enrollment admin",
                claim.node_id
            )),
            consume_token: false,
        };
    }
    reject(
        RejectCode::EkNotAllowed,
        "the TPM has no trusted EK certificate and is not on the allow-list".into(),
    )
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
