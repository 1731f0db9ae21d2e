//! Telling keel-enroll which bundle revision the node runs:
//! `POST <report-url>` (`/v1/nodes/report`) over mTLS with the node identity
//! certificate, JSON body `{"bundle-revision": "<commit>", "bundle-status": "applied"}`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::GitopsError;

/// Where and how to report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReportConfig {
    /// The report URL from the join material (`enroll.report-url`).
    pub url: String,
    /// CA bundle for keel-enroll's TLS (PEM file); system roots when absent.
    pub ca_bundle: Option<PathBuf>,
    /// Node identity certificate chain (PEM) for mTLS.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub client_key: Option<PathBuf>,
}

/// The report body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BundleReport {
    /// Commit id of the applied bundle.
    pub bundle_revision: String,
    /// `applied` or `rolled-back`.
    pub bundle_status: String,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, GitopsError> {
    std::fs::read(path).map_err(|source| GitopsError::Io {
        what: "reading",
        path: path.clone(),
        source,
    })
}

/// Posts `report`; any non-2xx answer is an error carrying the server's text.
pub async fn send(cfg: &ReportConfig, report: &BundleReport) -> Result<(), GitopsError> {
    let err = |e: String| GitopsError::Report(format!("{}: {e}", cfg.url));
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(30));
    if let Some(ca) = &cfg.ca_bundle {
        for cert in
            reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| err(e.to_string()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(c), Some(k)) = (&cfg.client_cert, &cfg.client_key) {
        let mut pem = read(c)?;
        pem.push(b'\n');
        pem.extend(read(k)?);
        b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| err(e.to_string()))?);
    }
    let client = b.build().map_err(|e| err(e.to_string()))?;
    let resp = client
        .post(&cfg.url)
        .json(report)
        .send()
        .await
        .map_err(|e| err(format!("{e:#}")))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(err(format!("{status}: {}", text.trim())));
    }
    Ok(())
}
