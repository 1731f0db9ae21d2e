//! Certified → BundleSynced: pull, verify and apply the store's signed
//! GitOps bundle ([`crate::gitops`]) and report the revision to keel-enroll.
//! The configs for the `sync` timer are saved here ([`SYNC_CONFIG`],
//! [`REPORT_CONFIG`]).

use std::path::Path;

use anyhow::{Context as _, Result};

use super::enroll::load_join;
use super::{runtime, Ctx, Step, StepError};

/// Name of the sync config the `sync` timer reads.
pub const SYNC_CONFIG: &str = "sync.json";

/// Where the revision report goes (written by first boot for the `sync`
/// timer): `{"enroll-url": .., "enroll-ca": "<PEM>"}`, from the seed.
pub const REPORT_CONFIG: &str = "report.json";

/// Certified → BundleSynced.
#[derive(Debug)]
pub struct GitopsStep;

impl GitopsStep {
    /// Builds (and saves for `sync`) the sync config from the join material
    /// and the seed's `keel: bundle` override.
    pub fn config(ctx: &Ctx) -> Result<crate::gitops::SyncConfig, StepError> {
        let join = load_join(ctx)?;
        let g = join.gitops.ok_or_else(|| StepError::Fatal {
            reason: "the join material has no GitOps section".into(),
            action: "configure the GitOps issuer in keel-enroll, then reset this node".into(),
        })?;
        let store = g
            .store
            .clone()
            .or_else(|| ctx.seed.user.keel.as_ref().and_then(|k| k.store_id.clone()))
            .ok_or_else(|| StepError::Fatal {
                reason: "neither the join material nor the seed names the store".into(),
                action: "set keel.store-id in the seed, then reset this node".into(),
            })?;
        let over = ctx.seed.user.keel.as_ref().and_then(|k| k.bundle.clone());
        let (url, reference) = match over {
            Some(b) => (b.url, b.git_ref.unwrap_or(g.reference)),
            None => (g.url, g.reference),
        };
        let trust = ctx.write_state_file("gitops-trust.pem", &g.trust_root, 0o644)?;
        let ca = match &g.ca_bundle_pem {
            Some(pem) => Some(ctx.write_state_file("gitops-ca.pem", pem, 0o644)?),
            None => None,
        };
        let mut v = serde_json::json!({
            "store": store,
            "url": url,
            "reference": reference,
            "trust-root": trust,
            "root": ctx.state_dir.file("bundle"),
        });
        if let Some(ca) = ca {
            v["ca-bundle"] = serde_json::json!(ca);
        }
        let text = serde_json::to_string_pretty(&v).context("encoding sync config")?;
        let cfg =
            crate::gitops::SyncConfig::parse(&text).context("sync config from join material")?;
        ctx.write_state_file(SYNC_CONFIG, &text, 0o600)
            .context("saving sync.json")?;
        Ok(cfg)
    }
}

impl Step for GitopsStep {
    fn describe(&self, _ctx: &Ctx) -> String {
        "pulling the signed GitOps bundle".into()
    }

    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError> {
        let cfg = Self::config(ctx)?;
        let rt = runtime()?;
        let out = rt
            .block_on(crate::gitops::sync(&cfg))
            .map_err(|e| StepError::classify(e, "the Git server"))?;
        ctx.progress.status(&format!("bundle: {out:?}"));
        // The bundle is applied; a failed report is not a reason to redo it:
        // the sync timer reports again on its next run.
        if let Err(e) = save_report_config(ctx)
            .and_then(|()| rt.block_on(report_applied(&ctx.state_dir.0, &out)))
        {
            tracing::warn!("reporting revision {} to keel-enroll: {e:#}", out.rev());
        }
        Ok(())
    }
}

fn save_report_config(ctx: &Ctx) -> Result<()> {
    let k = ctx.seed.user.keel.as_ref();
    let (Some(url), Some(ca)) = (
        k.and_then(|k| k.enroll_url.as_deref()),
        k.and_then(|k| k.enroll_ca.as_deref()),
    ) else {
        anyhow::bail!("the seed names no enroll-url/enroll-ca");
    };
    let v = serde_json::json!({"enroll-url": url, "enroll-ca": ca});
    ctx.write_state_file(REPORT_CONFIG, &serde_json::to_string_pretty(&v)?, 0o644)
        .context("saving report.json")?;
    Ok(())
}

/// Tells keel-enroll which revision is applied, signed with the node key
/// (the service checks the node certificate it issued and the signature).
/// Used by first boot and by the `sync` timer. The node certificate is
/// renewed first when a third of its lifetime remains ([`crate::identity`]);
/// a failed renewal is logged and the report still goes out with the old one.
pub async fn report_applied(state_dir: &Path, out: &crate::gitops::SyncOutcome) -> Result<()> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match crate::identity::renew_if_due(state_dir, now).await {
        Ok(r) => tracing::debug!("node certificate: {r:?}"),
        Err(e) => tracing::warn!("node certificate renewal: {e:#}"),
    }
    let id = crate::identity::Identity::load(state_dir)?;
    let report = crate::gitops::report::node_report(&id.node_id, out);
    crate::gitops::report::send(&id.client, &report, &id.cert_der, |body| id.sign(body)).await?;
    tracing::info!("reported revision {} to keel-enroll", out.rev());
    Ok(())
}
