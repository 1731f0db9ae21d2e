//! The admission policy, as a pure function over what the database knows.
//! Node ids are scoped by store: `n1` of store A and `n1` of store B are two
//! inventory rows, so a node of one store cannot squat another store's names.
//!
//! - a node id held by another EK, or by the same EK already admitted, is refused
//!   (`identity-conflict`) until an admin re-enrolls it (RMA, re-imaging);
//! - a revoked node is refused;
//! - an admin-approved node (approve / re-enroll) is admitted with its EK;
//! - a node already pending stays pending (its row was made by a token or
//!   allow-list holder);
//! - a valid one-time token for the node's store admits it (and is used up),
//!   but only from a genuine TPM: one whose EK certificate chains to a trusted
//!   vendor root, or whose EK is allow-listed for the store; a token bound to
//!   an EK at creation admits only that EK;
//! - an EK on the purchasing allow-list for that store is admitted;
//! - in a store that requires approval, the last two are queued instead;
//! - anything else is refused (`ek-not-allowed`) and leaves no row behind: a
//!   vendor certificate alone does not let a TPM queue itself for approval.
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

/// Subject, issuer and serial of a node's EK certificate, for the admin who
/// approves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EkCertInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
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
    /// The EK certificate's names, when one was presented and trusted.
    pub ek_cert: Option<EkCertInfo>,
    /// The node's store requires an admin's approval of every new node.
    pub require_approval: bool,
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
    /// The EK certificate's names, when the node presented one.
    pub ek_cert: Option<EkCertInfo>,
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
    /// The only EK (SHA-256 hex) the token admits, when bound at creation.
    pub ek_sha256: Option<String>,
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
    if let Some(n) = &facts.node {
        if let Some(out) = known_node(claim, n) {
            return out;
        }
    }
    // The allow-list entry counts only for the store it was shipped to.
    let allowed = match &facts.allow {
        Some(a) if a.store_id != claim.store_id => {
            return reject(
                RejectCode::EkNotAllowed,
                format!(
                    "this TPM is allow-listed for store {}, not {}",
                    a.store_id, claim.store_id
                ),
            )
        }
        Some(_) => true,
        None => false,
    };
    if claim.token_hash.is_some() {
        if let Err(out) = check_token(claim, facts.token.as_ref(), now) {
            return out;
        }
        if !claim.ek_certified && !allowed {
            return reject(
                RejectCode::EkNotAllowed,
                "a token admits only a genuine TPM: this one has no EK certificate from a \
                 trusted vendor and is not on the allow-list"
                    .into(),
            );
        }
        return admit_or_queue(claim, "token", true);
    }
    if allowed {
        return admit_or_queue(claim, "allow-list", false);
    }
    let why = if claim.ek_certified {
        "the TPM is vendor-certified but holds no token and is not on the allow-list"
    } else {
        "the TPM has no trusted EK certificate, holds no token and is not on the allow-list"
    };
    reject(RejectCode::EkNotAllowed, why.into())
}

fn reject(code: RejectCode, msg: String) -> Outcome {
    Outcome {
        verdict: Verdict::Reject(code, msg),
        consume_token: false,
    }
}

/// The verdict for a node id that already has a row, or `None` to go on.
fn known_node(claim: &Claim, n: &NodeRow) -> Option<Outcome> {
    if n.status == NodeStatus::Revoked {
        return Some(reject(
            RejectCode::Revoked,
            format!("node {} is revoked", n.node_id),
        ));
    }
    if n.ek_sha256 != claim.ek_sha256 {
        return Some(reject(
            RejectCode::IdentityConflict,
            format!("node id {} is bound to another TPM", n.node_id),
        ));
    }
    if n.store_id != claim.store_id {
        return Some(reject(
            RejectCode::IdentityConflict,
            format!("node {} belongs to store {}", n.node_id, n.store_id),
        ));
    }
    Some(match n.status {
        NodeStatus::Admitted => reject(
            RejectCode::IdentityConflict,
            format!(
                "node {} is already enrolled; an admin must allow re-enrollment",
                n.node_id
            ),
        ),
        NodeStatus::Approved => Outcome {
            verdict: Verdict::Admit { via: "approved" },
            consume_token: false,
        },
        NodeStatus::Pending => Outcome {
            verdict: Verdict::Queue(waiting(claim)),
            consume_token: false,
        },
        NodeStatus::Revoked => return None,
    })
}

/// Checks a presented token; `Err` is the refusal.
fn check_token(claim: &Claim, token: Option<&TokenRow>, now: i64) -> Result<(), Outcome> {
    let t =
        token.ok_or_else(|| reject(RejectCode::TokenInvalid, "unknown enrollment token".into()))?;
    if t.used {
        return Err(reject(
            RejectCode::TokenReused,
            "enrollment token already used".into(),
        ));
    }
    if t.expires_at <= now {
        return Err(reject(
            RejectCode::TokenInvalid,
            "enrollment token expired".into(),
        ));
    }
    if t.store_id != claim.store_id {
        return Err(reject(
            RejectCode::TokenInvalid,
            format!("enrollment token is for store {}", t.store_id),
        ));
    }
    if t.ek_sha256
        .as_ref()
        .is_some_and(|ek| *ek != claim.ek_sha256)
    {
        return Err(reject(
            RejectCode::TokenInvalid,
            "enrollment token is bound to another TPM".into(),
        ));
    }
    Ok(())
}

fn waiting(claim: &Claim) -> String {
    format!(
        "node {} of store {} is waiting for approval by the enrollment admin",
        claim.node_id, claim.store_id
    )
}

fn admit_or_queue(claim: &Claim, via: &'static str, consume_token: bool) -> Outcome {
    let verdict = if claim.require_approval {
        Verdict::Queue(waiting(claim))
    } else {
        Verdict::Admit { via }
    };
    Outcome {
        verdict,
        consume_token,
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
