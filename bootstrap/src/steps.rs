//! The steps after enrollment, as [`Step`]s over the other modules:
//! Ceph join ([`crate::ceph`]), certificates ([`crate::acme`]) and the first
//! bundle sync ([`crate::gitops`]), each configured from the join material
//! saved by [`crate::enroll`]. The configs for the renew/sync timers are
//! written to the state directory here (`acme.json`, `sync.json`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::ceph::{self, CephMaterial, CephPaths, CephState, Launch};
use crate::enroll::{files, load_join};
use crate::machine::{Ctx, Step, StepError};
use keel_cmd::fs::write_atomic;

/// Name of the ACME config the `renew` timer reads.
pub const ACME_CONFIG: &str = "acme.json";
/// Name of the sync config the `sync` timer reads.
pub const SYNC_CONFIG: &str = "sync.json";

/// Enrolled → CephJoined.
#[derive(Debug)]
pub struct CephStep {
    /// How OSDs are run, extra options.
    pub paths: CephPaths,
}

impl Step for CephStep {
    fn describe(&self, _ctx: &Ctx) -> String {
        "joining the Ceph cluster".into()
    }

    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError> {
        let join = load_join(ctx)?;
        let c = join.ceph.ok_or_else(|| StepError::Fatal {
            reason: "the join material has no Ceph section".into(),
            action: "configure the Ceph issuer in keel-enroll, then reset this node (docs/first-boot.md)".into(),
        })?;
        let material = CephMaterial {
            fsid: c.fsid,
            mon_host: c.mon_host,
            conf: c.conf,
            key_name: c.key_name,
            key: c.key,
            caps: c.caps,
        };
        let policy = ctx
            .seed
            .user
            .keel
            .as_ref()
            .map(|k| k.disks.clone())
            .unwrap_or_default();
        let mut state = CephState::load(&self.paths.state_file())?;
        let osds = ceph::join(&material, &policy, &self.paths, &mut state)
            .map_err(|e| classify(e, "the Ceph monitors"))?;
        ctx.progress.status(&format!(
            "Ceph joined: {} OSD(s) up and in ({})",
            osds.len(),
            osds.iter()
                .map(|o| format!("osd.{}", o.id))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(())
    }
}

/// Network-looking failures are retried; the rest end the run (systemd restarts it).
fn classify(e: anyhow::Error, what: &str) -> StepError {
    let text = format!("{e:#}").to_lowercase();
    let transient = [
        "timed out",
        "timeout",
        "connection refused",
        "unreachable",
        "connect",
        "dns",
    ]
    .iter()
    .any(|w| text.contains(w));
    if transient {
        StepError::Retry(e.context(format!("waiting for {what}")))
    } else {
        StepError::Other(e)
    }
}

/// CephJoined → Certified.
#[derive(Debug)]
pub struct AcmeStep {
    /// Where the HTTP-01 responder listens.
    pub http01_listen: Option<std::net::SocketAddr>,
}

fn write_pem(ctx: &Ctx, name: &str, pem: &str, mode: u32) -> Result<PathBuf> {
    let p = ctx.state_dir.file(name);
    write_atomic(&p, pem.as_bytes(), mode).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
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
            Some(pem) => write_pem(ctx, "acme-ca.pem", pem, 0o644)?,
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
        write_atomic(&ctx.state_dir.file(ACME_CONFIG), text.as_bytes(), 0o600)
            .context("saving acme.json")?;
        Ok(cfg)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // The ACME and Git clients are async; one small runtime per step.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

impl Step for AcmeStep {
    fn describe(&self, _ctx: &Ctx) -> String {
        "obtaining the node certificate (ACME)".into()
    }

    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError> {
        let cfg = self.config(ctx)?;
        let out = runtime()?
            .block_on(crate::acme::renew(&cfg))
            .map_err(|e| classify(anyhow::Error::new(e), "the ACME CA"))?;
        ctx.progress.status(&format!("certificate: {out:?}"));
        Ok(())
    }
}

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
        let trust = write_pem(ctx, "gitops-trust.pem", &g.trust_root, 0o644)?;
        let ca = match &g.ca_bundle_pem {
            Some(pem) => Some(write_pem(ctx, "gitops-ca.pem", pem, 0o644)?),
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
        write_atomic(&ctx.state_dir.file(SYNC_CONFIG), text.as_bytes(), 0o600)
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
            .map_err(|e| classify(anyhow::Error::new(e), "the Git server"))?;
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

/// Where the revision report goes (written by first boot for the `sync`
/// timer): `{"enroll-url": .., "enroll-ca": "<PEM>"}`, from the seed.
pub const REPORT_CONFIG: &str = "report.json";

fn save_report_config(ctx: &Ctx) -> Result<()> {
    let k = ctx.seed.user.keel.as_ref();
    let (Some(url), Some(ca)) = (
        k.and_then(|k| k.enroll_url.as_deref()),
        k.and_then(|k| k.enroll_ca.as_deref()),
    ) else {
        anyhow::bail!("the seed names no enroll-url/enroll-ca");
    };
    let v = serde_json::json!({"enroll-url": url, "enroll-ca": ca});
    write_atomic(
        &ctx.state_dir.file(REPORT_CONFIG),
        serde_json::to_string_pretty(&v)?.as_bytes(),
        0o644,
    )
    .context("saving report.json")
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

/// BundleSynced → Done: checks the pieces later timers rely on exist.
#[derive(Debug)]
pub struct FinishStep;

impl Step for FinishStep {
    fn describe(&self, _ctx: &Ctx) -> String {
        "finishing first boot".into()
    }

    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError> {
        for f in [files::JOIN, files::NODE_KEY, ACME_CONFIG, SYNC_CONFIG] {
            let p = ctx.state_dir.file(f);
            if !p.exists() {
                return Err(StepError::Other(anyhow::anyhow!(
                    "{} is missing",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}

/// The Ceph paths for a run: a node's defaults, or spawned OSDs for host tests.
pub fn ceph_paths(root: &Path, spawn: bool, options: &[String]) -> Result<CephPaths> {
    let mut p = CephPaths::node();
    p.root = root.to_path_buf();
    if spawn {
        p.launch = Launch::Spawn;
        p.up_timeout = Duration::from_secs(120);
    }
    for o in options {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--osd-option {o:?} is not KEY=VALUE"))?;
        p.osd_options
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(p)
}

/// The agent's own CPU time and peak RSS, read from `/proc/self` (child
/// processes such as `ceph`, `git` and `ceph-osd --mkfs` are not counted):
/// `user_ms=.. sys_ms=.. maxrss_kb=..`. `None` where /proc is unavailable.
pub fn own_usage() -> Option<String> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_usage(&stat, &status)
}

/// [`own_usage`] over the texts of `/proc/self/stat` and `/proc/self/status`.
fn parse_usage(stat: &str, status: &str) -> Option<String> {
    // Fields after "(comm)": state is field 3, utime 14, stime 15 (clock ticks;
    // USER_HZ is 100 on Linux).
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| f.get(i)?.parse::<u64>().ok().map(|t| t * 10);
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(format!(
        "user_ms={} sys_ms={} maxrss_kb={hwm}",
        ticks(11)?,
        ticks(12)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_parses_proc_texts() {
        let stat =
            "4242 (keel boot) S 1 4242 4242 0 -1 4194560 1 0 0 0 12 3 0 0 20 0 1 0 5 1000 200";
        let status = "Name:\tkeel\nVmHWM:\t   14320 kB\nVmRSS:\t 9000 kB\n";
        assert_eq!(
            parse_usage(stat, status).as_deref(),
            Some("user_ms=120 sys_ms=30 maxrss_kb=14320")
        );
        assert_eq!(parse_usage("garbage", status), None);
        assert_eq!(parse_usage(stat, "Name: x\n"), None);
        assert!(own_usage().is_some());
    }
}
