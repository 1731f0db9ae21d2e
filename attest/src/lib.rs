//! TPM identity for Keel: the node side (tss-esapi), the verifier side (pure
//! software) and the enrollment protocol messages.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod protocol;
