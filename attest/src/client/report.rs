//! Signing the node-authenticated calls (report, renewal): the request
//! carries the node certificate and a signature over the exact body bytes.
//! The messages themselves are protocol types ([`crate::protocol::NodeReport`], ...).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The two header values for a report body: (certificate, signature).
pub fn sign_report_headers(
    body: &[u8],
    cert_der: &[u8],
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> (String, String) {
    (STANDARD.encode(cert_der), STANDARD.encode(sign(body)))
}
