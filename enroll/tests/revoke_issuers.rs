//! Revocation takes issued secrets back, on real services from keel-testbed:
//! the Ceph key is removed from a real cluster (`ceph auth rm`), ACME EAB keys
//! come from a per-store pool (one per node, checked by opening accounts on a
//! real pebble) and a revoked node's key is never handed out again; an issuer
//! that cannot withdraw is reported by `keel-enroll nodes revoke` (non-zero
//! exit, what to do) and audited.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use keel_attest::protocol::CephJoin;
use keel_cmd::CommandRunExt;
use keel_enroll_bench::bench_policy;
use keel_enroll_bench::harness::{Harness, Options};
use keel_testbed::{or_skip, CephCluster, Pebble, PebbleOptions};

async fn harness_with(extra: String) -> Harness {
    Harness::start(Options {
        policy: bench_policy(),
        extra_config: extra,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn audit_has(rows: &[keel_enroll::audit::Row], action: &str, node: &str, text: &str) -> bool {
    rows.iter().any(|r| {
        r.entry.action == action && r.entry.node_id == node && r.entry.detail.contains(text)
    })
}

/// `ceph <args>` as the node, with only what the node was given.
fn as_node(j: &CephJoin, args: &[&str]) -> Result<String, keel_cmd::CmdError> {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("ceph.conf");
    std::fs::write(&conf, &j.conf).unwrap();
    let kr = d.path().join("keyring");
    std::fs::write(&kr, format!("[{}]\n\tkey = {}\n", j.key_name, j.key)).unwrap();
    Command::new("ceph")
        .arg("-c")
        .arg(&conf)
        .args(["-n", &j.key_name, "-k"])
        .arg(&kr)
        .args(["--connect-timeout", "10"])
        .args(args)
        .run_get_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_removes_the_cephx_key_from_a_real_cluster() {
    if keel_testbed::skip_unless_root_and(&["ceph", "ceph-mon", "ceph-osd"]) {
        return;
    }
    let cluster = tokio::task::spawn_blocking(CephCluster::shared)
        .await
        .unwrap();
    let Some(cl) = or_skip(cluster) else { return };
    let h = harness_with(format!(
        "[stores.store-1.ceph]\nconf = \"{}\"\nadmin-keyring = \"{}\"\n",
        cl.conf_path().display(),
        cl.admin_keyring_path().display()
    ))
    .await;
    let c = client(&h);
    let n = Node::new("ceph-rv-1");
    allow(&h, &n).await;
    let join = admitted(n.enroll(&c).await.unwrap());
    let ceph = join.ceph.clone().expect("ceph join material");
    assert_eq!(ceph.key_name, "client.keel-ceph-rv-1");
    let j = ceph.clone();
    tokio::task::spawn_blocking(move || as_node(&j, &["osd", "stat"]))
        .await
        .unwrap()
        .expect("the issued key works");

    let w = h.admin().revoke("ceph-rv-1").await.unwrap();
    assert!(w.failures.is_empty(), "{:?}", w.failures);
    assert!(
        w.notes
            .iter()
            .any(|(k, n)| k == "ceph" && n.contains("client.keel-ceph-rv-1")),
        "{:?}",
        w.notes
    );
    let (gone, refused) = tokio::task::spawn_blocking(move || {
        (
            cl.ceph(&["auth", "get", "client.keel-ceph-rv-1"]),
            as_node(&ceph, &["osd", "stat"]),
        )
    })
    .await
    .unwrap();
    let gone = gone.expect_err("the entity is gone after revoke");
    eprintln!("ceph auth get after revoke: {gone}");
    assert!(gone.to_string().contains("ENOENT") || gone.to_string().contains("failed to find"));
    let refused = refused.expect_err("the old key no longer authenticates");
    eprintln!("old node key after revoke: {refused}");
    let rows = h.store().audit_rows().await.unwrap();
    assert!(audit_has(
        &rows,
        "issuer-revoke",
        "ceph-rv-1",
        "ceph auth rm"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eab_pool_gives_each_node_its_own_key_and_never_reissues_a_revoked_one() {
    if keel_testbed::skip_unless(&["pebble"]) {
        return;
    }
    let keys: BTreeMap<String, String> = (1..=3)
        .map(|i| {
            (
                format!("keel-pool-{i}"),
                keel_testbed::pebble::random_b64url(32),
            )
        })
        .collect();
    let opts = PebbleOptions {
        eab_keys: keys.clone(),
        ..PebbleOptions::default()
    };
    let p = tokio::task::spawn_blocking(move || Pebble::start_with(opts))
        .await
        .unwrap();
    let Some(p) = or_skip(p) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pebble-ca.pem");
    std::fs::write(&ca, p.listener_ca_pem()).unwrap();
    let pool: Vec<String> = keys
        .iter()
        .map(|(id, hmac)| format!("{{ id = \"{id}\", hmac = \"{hmac}\" }}"))
        .collect();
    let h = harness_with(format!(
        "[stores.store-1.acme-eab]\ndirectory-url = \"{}\"\nca-bundle = \"{}\"\nkeys = [{}]\n",
        p.directory_url(),
        ca.display(),
        pool.join(", ")
    ))
    .await;
    let c = client(&h);
    let mut eab_of = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    for id in ["eab-n1", "eab-n2"] {
        let n = Node::new(id);
        allow(&h, &n).await;
        let join = admitted(n.enroll(&c).await.unwrap());
        let acme = join.acme.expect("acme join material");
        assert_eq!(acme.directory_url, p.directory_url());
        // The key works at the CA: the node opens its own ACME account with it.
        open_account(&p, &ca, &acme.eab_kid, &acme.eab_hmac_key)
            .await
            .unwrap_or_else(|e| panic!("{id}: account with {}: {e}", acme.eab_kid));
        eab_of.insert(id, (acme.eab_kid, acme.eab_hmac_key));
        nodes.insert(id, n);
    }
    assert_eq!(eab_of["eab-n1"].0, "keel-pool-1");
    assert_eq!(eab_of["eab-n2"].0, "keel-pool-2", "each node its own key");
    // A key's HMAC does not open an account under another key id.
    let wrong = open_account(&p, &ca, &eab_of["eab-n1"].0, &eab_of["eab-n2"].1).await;
    eprintln!("mixed EAB key refused: {:?}", wrong.as_ref().err());
    assert!(wrong.is_err());
    // Asking again for an admitted node returns the key it holds.
    let pool_ids: Vec<String> = keys.keys().cloned().collect();
    let again = h
        .store()
        .eab_assign("store-1", "eab-n1", &pool_ids, 0)
        .await;
    assert_eq!(again.unwrap().as_deref(), Some("keel-pool-1"));

    // Revoke n1: its key is marked revoked and the admin is told to deactivate it.
    let w = h.admin().revoke("eab-n1").await.unwrap();
    assert!(w.failures.is_empty(), "{:?}", w.failures);
    let note = &w
        .notes
        .iter()
        .find(|(k, _)| k == "acme-eab")
        .expect("eab note")
        .1;
    eprintln!("admin told: {note}");
    assert!(
        note.contains("keel-pool-1") && note.contains("deactivate"),
        "{note}"
    );
    let rows = h.store().audit_rows().await.unwrap();
    assert!(audit_has(&rows, "issuer-revoke", "eab-n1", "keel-pool-1"));

    // Re-enrolled, n1 gets a fresh key, never its revoked one.
    h.admin().reenroll("eab-n1", None).await.unwrap();
    let join = admitted(nodes["eab-n1"].enroll(&c).await.unwrap());
    let acme = join.acme.unwrap();
    assert_eq!(acme.eab_kid, "keel-pool-3");
    open_account(&p, &ca, &acme.eab_kid, &acme.eab_hmac_key)
        .await
        .unwrap();
    // The pool is used up (1 revoked, 2 held): a new node is not given the
    // revoked key; its enrollment fails, retryable, and the audit says why.
    let n3 = Node::new("eab-n3");
    allow(&h, &n3).await;
    let e = n3.enroll(&c).await.expect_err("pool used up");
    eprintln!("enrollment with the pool used up: {e}");
    assert!(e.is_retryable());
    let rows = h.store().audit_rows().await.unwrap();
    assert!(audit_has(&rows, "issue-failed", "eab-n3", "used up"));
    let assigned = h
        .store()
        .eab_assign("store-1", "eab-n3", &pool_ids, 0)
        .await;
    assert_eq!(
        assigned.unwrap(),
        None,
        "keel-pool-1 is never handed out again"
    );
}

/// Opens an ACME account on pebble with an EAB key (what the node does).
async fn open_account(
    p: &Pebble,
    ca: &std::path::Path,
    kid: &str,
    hmac_b64url: &str,
) -> Result<(), instant_acme::Error> {
    use base64::Engine as _;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(hmac_b64url.trim_end_matches('='))
        .unwrap();
    let eab = instant_acme::ExternalAccountKey::new(kid.to_owned(), &hmac);
    let new = instant_acme::NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    instant_acme::Account::builder_with_root(ca)?
        .create(&new, p.directory_url(), Some(&eab))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_issuer_revoke_is_reported_by_the_cli_and_audited() {
    let h = harness(None).await;
    let c = client(&h);
    let n = Node::new("fail-rv");
    allow(&h, &n).await;
    admitted(n.enroll(&c).await.unwrap());
    // The admin's configuration names a Ceph cluster whose files are missing.
    let mut text = std::fs::read_to_string(&h.config_path).unwrap();
    text.push_str(
        "[stores.store-1.ceph]\nconf = \"/nonexistent/ceph.conf\"\nadmin-keyring = \"/nonexistent/keyring\"\n",
    );
    let cfg = h.dir.path().join("admin.toml");
    std::fs::write(&cfg, text).unwrap();
    // The service refuses a configuration others may read.
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
            .arg("--config")
            .arg(&cfg)
            .args(["nodes", "revoke", "fail-rv"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        !out.status.success(),
        "a failed withdrawal fails the command"
    );
    assert!(stdout.contains("revoked fail-rv"));
    assert!(stdout.contains("node certificates revoked"));
    assert!(stderr.contains("ceph") && stderr.contains("/nonexistent/ceph.conf does not exist"));
    assert!(
        stderr.contains("run `keel-enroll nodes revoke fail-rv` again"),
        "{stderr}"
    );
    let rows = h.store().audit_rows().await.unwrap();
    assert!(rows.iter().any(|r| r.entry.action == "issuer-revoke"
        && r.entry.node_id == "fail-rv"
        && r.entry.decision == "failed:ceph"));
    h.admin().audit_verify().await.unwrap();
    let nodes = h.admin().nodes(None).await.unwrap();
    assert_eq!(nodes[0].status.as_str(), "revoked");
}
