//! CephJoined → Certified: obtain the node certificate from the store's
//! ACME CA ([`crate::acme`]). The config built from the join material is
//! saved for the `renew` timer ([`ACME_CONFIG`]).

use std::path::PathBuf;

use anyhow::Context as _;

use super::enroll::load_join;
use super::{runtime, Ctx, Step, StepError};

/// Name of the ACME config the `renew` timer reads.
pub const ACME_CONFIG: &str = "acme.json";

/// CephJoined → Certified.
#[derive(Debug)]
pub struct AcmeStep {
    /// Where the HTTP-01 responder listens.
    pub http01_listen: Option<std::net::SocketAddr>,
}

impl AcmeStep {
    /// Builds (and saves for `renew`) the ACME config from the join material.
    pub fn config(&self, ctx: &Ctx) -> Result<crate::acme::AcmeConfig, StepError> {
        let join = load_join(ctx)?;
        let a = join.acme.ok_or_else(|| StepError::Fatal {
            reason: "the join material has no ACME section".into(),
            action: "configure the ACME issuer in keel-enroll, then reset this node".into(),
        })?;
        let ca = match &a.ca_bundle_pem {
            Some(pem) => ctx.write_state_file("acme-ca.pem", pem, 0o644)?,
            None => PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        };
        let host = ctx.seed.hostname().unwrap_or_else(|| "localhost".into());
        let mut domains = vec![];
        if let Some(f) = &ctx.seed.user.fqdn {
            domains.push(f.clone());
        }
        domains.push(host);
        let mut v = serde_json::json!({
            "directory-url": a.directory_url,
            "ca-bundle": ca,
            "eab": {"kid": a.eab_kid, "hmac-key": a.eab_hmac_key},
            "domains": domains,
            "state-dir": ctx.state_dir.file("acme"),
        });
        if let Some(l) = self.http01_listen {
            v["http01-listen"] = serde_json::json!(l.to_string());
        }
        let text = serde_json::to_string_pretty(&v).context("encoding ACME config")?;
        let cfg =
            crate::acme::AcmeConfig::parse(&text).context("ACME config from join material")?;
        ctx.write_state_file(ACME_CONFIG, &text, 0o600)
            .context("saving acme.json")?;
        Ok(cfg)
    }
}

impl Step for AcmeStep {
    fn describe(&self, _ctx: &Ctx) -> String {
        "obtaining the node certificate (ACME)".into()
    }

    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError> {
        let cfg = self.config(ctx)?;
        let out = runtime()?
            .block_on(crate::acme::renew(&cfg))
            .map_err(|e| StepError::classify(e, "the ACME CA"))?;
        ctx.progress.status(&format!("certificate: {out:?}"));
        Ok(())
    }
}
