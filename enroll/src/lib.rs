//! keel-enroll: the central enrollment service. It checks a node's TPM evidence
//! (all five checks, via keel-attest's verifier), decides admission (allow-lists,
//! one-time tokens, manual approval), records every decision in a hash-chained
//! audit log and hands out join material through pluggable issuers.
//!
//! The load generator and the test harness (the service in a temp dir) are in
//! keel-enroll-bench (enroll/bench), so that this crate carries no test code.

pub mod admin;
pub mod admission;
pub mod audit;
pub mod audit_heads;
pub mod audit_sign;
pub mod cli;
pub mod config;
pub mod devcerts;
pub mod evidence;
pub mod issue;
pub mod metrics;
pub mod release_gate;
pub mod secfile;
pub mod server;
pub mod show;
pub mod store;
