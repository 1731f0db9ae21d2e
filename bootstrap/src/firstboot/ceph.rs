//! Enrolled → CephJoined: join the store's Ceph cluster ([`crate::ceph`])
//! with the Ceph section of the join material saved by [`super::enroll`].

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::enroll::load_join;
use super::{Ctx, Step, StepError};
use crate::ceph::{self, CephMaterial, CephPaths, CephState, Launch};

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
        const MONITORS: &str = "the Ceph monitors";
        let mut state = CephState::load(&self.paths.state_file())
            .map_err(|e| StepError::classify(e, MONITORS))?;
        let osds = ceph::join(&material, &policy, &self.paths, &mut state)
            .map_err(|e| StepError::classify(e, MONITORS))?;
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

/// The Ceph paths for a run: a node's defaults, or spawned OSDs for host tests.
pub fn ceph_paths(root: &Path, spawn: bool, options: &[String]) -> anyhow::Result<CephPaths> {
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
