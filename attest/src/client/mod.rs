//! The node-side HTTPS client of the enrollment protocol: `start` and `finish`
//! calls (and the post-enrollment progress report) against keel-enroll, trusting
//! only the configured CA bundle.
//!
//! Errors are typed so the caller (keel-bootstrap) can decide what to do:
//! [`ClientError::is_retryable`] is true for network trouble and server-side
//! failures (retry with backoff), false for a rejection ([`ClientError::Rejected`],
//! final, carrying the service's reason to show on the console) and for
//! configuration or protocol mistakes.

mod report;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::protocol::{
    paths, Decision, FinishRequest, RejectCode, RejectReason, StartRequest, StartResponse,
};

// The report and renewal messages are protocol types (the service decodes
// them without this client); re-exported here for the node side.
pub use crate::protocol::{
    NodeReport, RenewRequest, RenewResponse, CERT_HEADER, CRL_PATH, RENEW_PATH, REPORT_PATH,
    SIGNATURE_HEADER,
};
pub use report::sign_report_headers;

/// What went wrong talking to the enrollment service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client could not be set up (bad CA bundle, bad URL).
    #[error("enrollment client configuration: {0}")]
    Config(String),
    /// The service could not be reached or the connection broke (retryable).
    #[error("enrollment service unreachable: {0}")]
    Network(#[source] reqwest::Error),
    /// The service answered with a server error (retryable).
    #[error("enrollment service error (HTTP {status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The service's message, if any.
        message: String,
    },
    /// The service refused the node (final; show `reason` on the console).
    #[error("enrollment rejected: {0}")]
    Rejected(RejectReason),
    /// The service's answer did not parse (wrong URL? incompatible version?).
    #[error("unexpected answer from enrollment service (HTTP {status}): {detail}")]
    Protocol {
        /// HTTP status.
        status: u16,
        /// What did not parse.
        detail: String,
    },
}

impl ClientError {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Network(_) | ClientError::Server { .. } => true,
            ClientError::Rejected(r) => matches!(
                r.code,
                RejectCode::RateLimited
                    | RejectCode::Internal
                    | RejectCode::SessionExpired
                    | RejectCode::SessionUnknown
                    | RejectCode::SessionReplayed
            ),
            ClientError::Config(_) | ClientError::Protocol { .. } => false,
        }
    }

    /// The rejection, if the service refused.
    pub fn rejection(&self) -> Option<&RejectReason> {
        match self {
            ClientError::Rejected(r) => Some(r),
            _ => None,
        }
    }
}

/// HTTPS client for one enrollment service.
#[derive(Debug, Clone)]
pub struct EnrollClient {
    http: reqwest::Client,
    base: String,
}

impl EnrollClient {
    /// A client for `base_url` (`https://host:port`), trusting only the CA
    /// certificates in `ca_bundle_pem`.
    pub fn new(base_url: &str, ca_bundle_pem: &str) -> Result<Self, ClientError> {
        Self::with_timeout(base_url, ca_bundle_pem, Duration::from_secs(30))
    }

    /// Like [`EnrollClient::new`] with an overall per-request timeout.
    pub fn with_timeout(
        base_url: &str,
        ca_bundle_pem: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        if !base_url.starts_with("https://") {
            return Err(ClientError::Config(format!(
                "{base_url}: the enrollment service is only spoken to over https"
            )));
        }
        let certs = reqwest::Certificate::from_pem_bundle(ca_bundle_pem.as_bytes())
            .map_err(|e| ClientError::Config(format!("CA bundle: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Config("CA bundle holds no certificate".into()));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .pool_max_idle_per_host(1024);
        for c in certs {
            b = b.add_root_certificate(c);
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The service's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends the start request; a challenge, or a decision (normally a rejection,
    /// returned as [`ClientError::Rejected`]).
    pub async fn start(&self, req: &StartRequest) -> Result<StartResponse, ClientError> {
        let resp: StartResponse = self.post(paths::START, req).await?;
        if let StartResponse::Decision(Decision::Rejected { reason }) = resp {
            return Err(ClientError::Rejected(reason));
        }
        Ok(resp)
    }

    /// Sends the finish request; `Admitted` or `Pending`, or
    /// [`ClientError::Rejected`].
    pub async fn finish(&self, req: &FinishRequest) -> Result<Decision, ClientError> {
        match self.post(paths::FINISH, req).await? {
            Decision::Rejected { reason } => Err(ClientError::Rejected(reason)),
            d => Ok(d),
        }
    }

    /// Posts a signed progress report (see [`sign_report_headers`]).
    pub async fn report(
        &self,
        body: &NodeReport,
        cert_der: &[u8],
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<(), ClientError> {
        self.signed_post(REPORT_PATH, body, cert_der, sign)
            .await
            .map(|_| ())
    }

    /// Asks for a new node certificate, signed with the current node key and
    /// certificate like a report.
    pub async fn renew(
        &self,
        body: &RenewRequest,
        cert_der: &[u8],
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<RenewResponse, ClientError> {
        let text = self.signed_post(RENEW_PATH, body, cert_der, sign).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Protocol {
            status: 200,
            detail: format!("renewal response: {e}"),
        })
    }

    /// Fetches the node certificate revocation list (DER).
    pub async fn crl(&self) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .http
            .get(format!("{}{}", self.base, CRL_PATH))
            .send()
            .await
            .map_err(ClientError::Network)?;
        let status = resp.status().as_u16();
        if !(200..=299).contains(&status) {
            let message = resp.text().await.map_err(ClientError::Network)?;
            return Err(ClientError::Server { status, message });
        }
        Ok(resp.bytes().await.map_err(ClientError::Network)?.to_vec())
    }

    /// POSTs `body` as JSON with the node certificate and a signature over the
    /// exact bytes; the response text on success.
    async fn signed_post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        cert_der: &[u8],
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<String, ClientError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ClientError::Config(format!("encoding {path} body: {e}")))?;
        let (cert_h, sig_h) = sign_report_headers(&bytes, cert_der, sign);
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(CERT_HEADER, cert_h)
            .header(SIGNATURE_HEADER, sig_h)
            .body(bytes)
            .send()
            .await
            .map_err(ClientError::Network)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(ClientError::Network)?;
        match status {
            200..=299 => Ok(text),
            500..=599 => Err(ClientError::Server {
                status,
                message: text,
            }),
            _ => Err(match serde_json::from_str::<RejectReason>(&text) {
                Ok(r) => ClientError::Rejected(r),
                Err(_) => ClientError::Protocol {
                    status,
                    detail: text,
                },
            }),
        }
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .json(body)
            .send()
            .await
            .map_err(ClientError::Network)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(ClientError::Network)?;
        // Decisions travel with 4xx statuses too: parse the body first.
        if let Ok(r) = serde_json::from_slice::<R>(&bytes) {
            return Ok(r);
        }
        if let Ok(Decision::Rejected { reason }) = serde_json::from_slice::<Decision>(&bytes) {
            if status >= 500 {
                return Err(ClientError::Server {
                    status,
                    message: reason.to_string(),
                });
            }
            return Err(ClientError::Rejected(reason));
        }
        let text = String::from_utf8_lossy(&bytes)
            .chars()
            .take(300)
            .collect::<String>();
        if status >= 500 || status == 429 {
            return Err(ClientError::Server {
                status,
                message: text,
            });
        }
        if status == 413 {
            return Err(ClientError::Rejected(RejectReason::new(
                RejectCode::MalformedRequest,
                "request too large for the enrollment service",
            )));
        }
        Err(ClientError::Protocol {
            status,
            detail: text,
        })
    }
}
