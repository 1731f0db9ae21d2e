//! TPM identity for Keel: the node side (tss-esapi), the verifier side (pure
//! software) and the enrollment protocol messages.
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "tpm")]
pub mod node;
pub mod protocol;
#[cfg(feature = "soft")]
pub mod soft;
pub mod tpm2;
pub mod verify;
