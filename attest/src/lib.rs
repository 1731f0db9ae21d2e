//! TPM identity for Keel: the node side (tss-esapi), the verifier side (pure
//! software) and the enrollment protocol messages.
//!
//! - [`protocol`]: the messages of the enrollment protocol (and of the node's
//!   later report and renewal calls) and the quote binding both sides compute
//!   (see docs/enrollment-protocol.md).
//! - `client` (feature `client`): the node's HTTPS client of the protocol. The
//!   service needs only [`protocol`] and [`verify`], with no features.
//! - [`node`] (feature `tpm`, default): EK, EK certificate, AK, credential
//!   activation, quotes, PCRs, event log on a real TPM. Blocking calls.
//! - [`verify`]: the service's checks, no TPM needed: EK certificate chain,
//!   AK attributes and name, MakeCredential, quote, event log replay, PCR
//!   policy. Typed errors map to protocol reject codes.
//! - [`tpm2`]: parsing/marshalling of the TPM structures involved.
//! - `soft` (feature `soft`, tests and benchmarks only): software keys that
//!   produce TPM-format structures.
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(feature = "client")]
pub mod client;
pub mod crypto;
#[cfg(feature = "tpm")]
pub mod node;
pub mod protocol;
#[cfg(feature = "soft")]
pub mod soft;
pub mod tpm2;
pub mod verify;
