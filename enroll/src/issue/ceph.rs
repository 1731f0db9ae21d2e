//! Ceph join material: a per-node cephx key with least-privilege caps.
//!
//! For each admitted node the issuer asks the store's cluster, through the
//! `ceph` CLI as the configured admin entity, for `client.keel-<node>` with the
//! caps in [`NODE_CAPS`], and returns it with the cluster's fsid and `mon_host`
//! (from `ceph config generate-minimal-conf`).
//!
//! Why `mon 'profile bootstrap-osd'` and nothing else: it is the narrowest
//! built-in profile that still lets a node create its own OSDs (`osd new` with
//! the OSD's own cephx secret) and read the monitor and OSD maps to confirm its
//! OSDs are up and in. Measured on a real cluster, such a key is refused
//! `auth ls`, `auth get client.admin`, pool create/delete, `osd out`,
//! `osd purge`, crush changes and `config-key`. The OSD daemon itself runs with
//! its own `osd.<id>` key that `osd new` registers; the node key gets no
//! `osd` or `mgr` caps, so it cannot read or write any pool's data.
//!
//! Idempotent: `auth get-or-create` returns the existing key when the node
//! asks again (a retried enrollment gets the same key); caps drifted by hand
//! are reset. Re-enrolling after RMA or re-imaging calls [`Issuer::revoke`]
//! first (`auth rm`), so the node then gets a fresh key and the old one stops
//! working.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use keel_attest::protocol::CephJoin;
use keel_cmd::{CmdError, CommandRunExt};
use serde::Deserialize;

use super::{IssueError, IssueRequest, Issuer, Material};

/// The caps every node key gets: `(service, caps)`.
pub const NODE_CAPS: &[(&str, &str)] = &[("mon", "profile bootstrap-osd")];

/// The `[stores.<id>.ceph]` table of the service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CephConfig {
    /// ceph.conf of the store's cluster (as the admin sees it).
    pub conf: PathBuf,
    /// Keyring of the admin entity used to create node keys.
    pub admin_keyring: PathBuf,
    /// The admin entity (default `client.admin`); it needs `mon 'allow *'` or
    /// at least the `auth` commands.
    #[serde(default = "default_admin")]
    pub admin_entity: String,
}

fn default_admin() -> String {
    "client.admin".to_string()
}

/// Issues cephx keys, one per node, per store cluster.
#[derive(Debug)]
pub struct CephIssuer {
    stores: BTreeMap<String, CephConfig>,
}

impl CephIssuer {
    /// An issuer for the stores that have a Ceph table.
    pub fn new(stores: BTreeMap<String, CephConfig>) -> Self {
        Self { stores }
    }
}

/// The cephx entity of a node: `client.keel-<node_id>`.
pub fn entity_for(node_id: &str) -> Result<String, IssueError> {
    let ok = !node_id.is_empty()
        && node_id.len() <= 64
        && node_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        return Err(IssueError::InvalidRequest(format!(
            "node id {node_id:?} cannot name a cephx entity (1-64 of A-Z a-z 0-9 . _ -)"
        )));
    }
    Ok(format!("client.keel-{node_id}"))
}

/// One entry of `ceph auth get-or-create ... --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthEntry {
    pub entity: String,
    pub key: String,
    #[serde(default)]
    pub caps: BTreeMap<String, String>,
}

/// Parses `ceph auth get[-or-create] --format json` output.
pub fn parse_auth(json: &str) -> Result<AuthEntry, String> {
    let v: Vec<AuthEntry> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    v.into_iter()
        .next()
        .ok_or_else(|| "empty auth output".to_string())
}

/// Parses `ceph config generate-minimal-conf` into (fsid, mon_host).
pub fn parse_minimal_conf(text: &str) -> Result<(String, String), String> {
    let mut fsid = None;
    let mut mon_host = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let k = k.trim().replace([' ', '-'], "_");
            match k.as_str() {
                "fsid" => fsid = Some(v.trim().to_string()),
                "mon_host" => mon_host = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    match (fsid, mon_host) {
        (Some(f), Some(m)) if !f.is_empty() && !m.is_empty() => Ok((f, m)),
        _ => Err("minimal conf lacks fsid or mon_host".to_string()),
    }
}

impl CephConfig {
    fn ceph(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ceph");
        c.arg("-c")
            .arg(&self.conf)
            .args(["-n", &self.admin_entity, "-k"])
            .arg(&self.admin_keyring)
            .args(["--connect-timeout", "15"])
            .args(args);
        c
    }
}

fn backend(e: impl std::fmt::Display) -> IssueError {
    IssueError::Backend {
        kind: "ceph",
        reason: e.to_string(),
    }
}

fn check_files(cfg: &CephConfig) -> Result<(), IssueError> {
    for p in [&cfg.conf, &cfg.admin_keyring] {
        if !p.is_file() {
            return Err(IssueError::Config(format!(
                "{} does not exist",
                p.display()
            )));
        }
    }
    Ok(())
}

impl Issuer for CephIssuer {
    fn kind(&self) -> &'static str {
        "ceph"
    }

    fn blocks(&self) -> bool {
        true
    }

    fn issue(&self, req: &IssueRequest<'_>) -> Result<Option<Material>, IssueError> {
        let Some(cfg) = self.stores.get(req.store) else {
            return Ok(None);
        };
        let entity = entity_for(req.node_id)?;
        check_files(cfg)?;
        let mut args = vec!["auth", "get-or-create", entity.as_str()];
        for (svc, caps) in NODE_CAPS {
            args.extend([*svc, *caps]);
        }
        args.extend(["--format", "json"]);
        let out = match cfg.ceph(&args).run_get_string() {
            Ok(o) => o,
            // The entity exists with other caps (changed by hand): reset them.
            Err(CmdError::Failed { tail, .. }) if tail.contains("does not match") => {
                let mut a = vec!["auth", "caps", entity.as_str()];
                for (svc, caps) in NODE_CAPS {
                    a.extend([*svc, *caps]);
                }
                cfg.ceph(&a).run().map_err(backend)?;
                tracing::warn!(%entity, "reset drifted cephx caps");
                cfg.ceph(&["auth", "get", &entity, "--format", "json"])
                    .run_get_string()
                    .map_err(backend)?
            }
            Err(e) => return Err(backend(e)),
        };
        let entry = parse_auth(&out).map_err(backend)?;
        let conf = cfg
            .ceph(&["config", "generate-minimal-conf"])
            .run_get_string()
            .map_err(backend)?;
        let (fsid, mon_host) = parse_minimal_conf(&conf).map_err(backend)?;
        tracing::info!(%entity, store = req.store, "issued cephx key");
        Ok(Some(Material::Ceph(CephJoin {
            conf: format!("[global]\n\tfsid = {fsid}\n\tmon_host = {mon_host}\n"),
            fsid,
            mon_host,
            key_name: entry.entity,
            key: entry.key,
            caps: entry.caps,
        })))
    }

    fn revoke(&self, node_id: &str, store: &str) -> Result<Option<String>, IssueError> {
        let Some(cfg) = self.stores.get(store) else {
            return Ok(None);
        };
        let entity = entity_for(node_id)?;
        check_files(cfg)?;
        // `auth rm` of a missing entity succeeds: revoking twice is fine.
        cfg.ceph(&["auth", "rm", &entity]).run().map_err(backend)?;
        tracing::info!(%entity, store, "removed cephx key");
        Ok(Some(format!(
            "cephx key {entity} removed from store {store}'s cluster (ceph auth rm)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_testbed::CephCluster;

    // Captured from `ceph config generate-minimal-conf` on Ceph 16.2.15.
    const MINIMAL_CONF: &str = "# minimal ceph.conf for 0c6b96f0-2d7c-4aa2-8555-9ef66c4db03d
[global]
\tfsid = 0c6b96f0-2d7c-4aa2-8555-9ef66c4db03d
\tmon_host = [v2:127.0.0.1:36257/0,v1:127.0.0.1:35691/0]
";
    // Captured from `ceph auth get-or-create client.keel-n1 mon 'profile bootstrap-osd' --format json`.
    const AUTH_JSON: &str = r#"[{"entity":"client.keel-n1","key":"AQCeYQRrJCOvDxAAJno+X2d5j6fToU8bkf3B4Q==","caps":{"mon":"profile bootstrap-osd"}}]"#;

    #[test]
    fn parses_real_outputs() {
        let (fsid, mon) = parse_minimal_conf(MINIMAL_CONF).expect("conf");
        assert_eq!(fsid, "0c6b96f0-2d7c-4aa2-8555-9ef66c4db03d");
        assert_eq!(mon, "[v2:127.0.0.1:36257/0,v1:127.0.0.1:35691/0]");
        let a = parse_auth(AUTH_JSON).expect("auth");
        assert_eq!(a.entity, "client.keel-n1");
        assert_eq!(a.caps["mon"], "profile bootstrap-osd");
    }

    #[test]
    fn malformed_outputs_are_errors() {
        for bad in [
            "",
            "[global]\n",
            "fsid = x\n",
            "mon_host = y\n",
            "fsid =\nmon_host = y",
        ] {
            assert!(parse_minimal_conf(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "[]", "{}", "not json", r#"[{"entity":"x"}]"#] {
            assert!(parse_auth(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn entity_names_are_validated() {
        assert_eq!(
            entity_for("store7-n1").expect("ok"),
            "client.keel-store7-n1"
        );
        for bad in ["", "a b", "x;rm", "n/1", "ü", &"x".repeat(65)] {
            assert!(
                matches!(entity_for(bad), Err(IssueError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    fn issuer(c: &CephCluster) -> CephIssuer {
        let mut stores = BTreeMap::new();
        stores.insert(
            "s1".to_string(),
            CephConfig {
                conf: c.conf_path(),
                admin_keyring: c.admin_keyring_path(),
                admin_entity: default_admin(),
            },
        );
        CephIssuer::new(stores)
    }

    fn req<'a>(node: &'a str, store: &'a str) -> IssueRequest<'a> {
        IssueRequest {
            node_id: node,
            store,
            ek_sha256: "00",
            csr_der: &[],
        }
    }

    /// Runs `ceph <args>` as the issued node key, with only the minimal conf.
    fn as_node(m: &Material, args: &[&str]) -> Result<String, CmdError> {
        let Material::Ceph(CephJoin {
            fsid,
            mon_host,
            key_name: entity,
            key,
            ..
        }) = m
        else {
            panic!("not ceph material: {m:?}");
        };
        let d = tempfile::tempdir().expect("tmp");
        let conf = d.path().join("ceph.conf");
        std::fs::write(
            &conf,
            format!("[global]\nfsid = {fsid}\nmon_host = {mon_host}\n"),
        )
        .expect("conf");
        let kr = d.path().join("keyring");
        std::fs::write(&kr, format!("[{entity}]\n\tkey = {key}\n")).expect("keyring");
        Command::new("ceph")
            .arg("-c")
            .arg(&conf)
            .args(["-n", entity, "-k"])
            .arg(&kr)
            .args(["--connect-timeout", "10"])
            .args(args)
            .run_get_string()
    }

    #[test]
    fn issued_key_has_least_privilege_on_a_real_cluster() {
        if keel_testbed::skip_unless_root_and(&["ceph", "ceph-mon", "ceph-osd"]) {
            return;
        }
        let Some(c) = keel_testbed::or_skip(CephCluster::shared()) else {
            return;
        };
        let iss = issuer(c);
        assert!(iss.issue(&req("n1", "other-store")).expect("ok").is_none());
        let m = iss
            .issue(&req("caps-n1", "s1"))
            .expect("issue")
            .expect("material");
        let Material::Ceph(CephJoin {
            fsid,
            key_name: entity,
            caps,
            conf,
            ..
        }) = &m
        else {
            panic!("{m:?}")
        };
        assert!(conf.contains(fsid.as_str()));
        assert_eq!(fsid, c.fsid());
        assert_eq!(entity, "client.keel-caps-n1");
        assert_eq!(caps.len(), 1);
        assert_eq!(caps["mon"], "profile bootstrap-osd");
        // Allowed: what a joining node needs to see.
        for ok in [&["osd", "tree"][..], &["osd", "stat"], &["mon", "stat"]] {
            as_node(&m, ok).unwrap_or_else(|e| panic!("{ok:?} must be allowed: {e}"));
        }
        // Refused: everything beyond creating its own OSDs.
        for refused in [
            &["auth", "ls"][..],
            &["auth", "get", "client.admin"],
            &["osd", "pool", "create", "evil", "8"],
            &[
                "osd",
                "pool",
                "delete",
                "device_health_metrics",
                "device_health_metrics",
                "--yes-i-really-really-mean-it",
            ],
            &["osd", "out", "0"],
            &["config-key", "ls"],
        ] {
            let e = as_node(&m, refused).expect_err("must be refused");
            assert!(
                e.to_string().contains("EACCES") || e.to_string().contains("access denied"),
                "{refused:?}: {e}"
            );
        }
    }

    #[test]
    fn issue_is_idempotent_and_revoke_rotates() {
        if keel_testbed::skip_unless_root_and(&["ceph", "ceph-mon", "ceph-osd"]) {
            return;
        }
        let Some(c) = keel_testbed::or_skip(CephCluster::shared()) else {
            return;
        };
        let iss = issuer(c);
        let key = |m: &Material| match m {
            Material::Ceph(j) => j.key.clone(),
            other => panic!("{other:?}"),
        };
        let a = iss.issue(&req("rot-n1", "s1")).expect("1").expect("m");
        let b = iss.issue(&req("rot-n1", "s1")).expect("2").expect("m");
        assert_eq!(key(&a), key(&b), "a retried enrollment gets the same key");
        // Caps changed by hand are reset on the next issue.
        c.ceph(&["auth", "caps", "client.keel-rot-n1", "mon", "allow *"])
            .expect("drift");
        let d = iss.issue(&req("rot-n1", "s1")).expect("3").expect("m");
        assert_eq!(key(&d), key(&a));
        let caps = c
            .ceph_json(&["auth", "get", "client.keel-rot-n1"])
            .expect("get");
        assert_eq!(caps[0]["caps"]["mon"], "profile bootstrap-osd");
        // Re-enrollment: revoke, then a fresh key; the old key stops working.
        iss.revoke("rot-n1", "s1").expect("revoke");
        iss.revoke("rot-n1", "s1").expect("revoke twice is fine");
        assert!(
            as_node(&a, &["osd", "stat"]).is_err(),
            "revoked key refused"
        );
        let e = iss.issue(&req("rot-n1", "s1")).expect("4").expect("m");
        assert_ne!(key(&e), key(&a));
        as_node(&e, &["osd", "stat"]).expect("new key works");
    }

    #[test]
    fn missing_config_files_are_config_errors() {
        let mut stores = BTreeMap::new();
        stores.insert(
            "s1".to_string(),
            CephConfig {
                conf: "/nonexistent/ceph.conf".into(),
                admin_keyring: "/nonexistent/keyring".into(),
                admin_entity: default_admin(),
            },
        );
        let e = CephIssuer::new(stores)
            .issue(&req("n1", "s1"))
            .expect_err("config");
        assert!(matches!(e, IssueError::Config(_)), "{e}");
    }

    #[test]
    fn config_table_parses_with_defaults_and_rejects_unknown_keys() {
        let c: CephConfig =
            toml::from_str("conf = \"/etc/ceph/ceph.conf\"\nadmin-keyring = \"/k\"\n")
                .expect("toml");
        assert_eq!(c.admin_entity, "client.admin");
        assert!(
            toml::from_str::<CephConfig>("conf = \"a\"\nadmin-keyring = \"b\"\nbogus = 1\n")
                .is_err()
        );
    }
}
