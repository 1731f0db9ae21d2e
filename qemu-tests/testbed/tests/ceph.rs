//! The Ceph starter: the shared cluster reaches HEALTH_OK and stores objects.

use keel_cmd::CommandRunExt;
use std::time::Instant;

#[test]
fn ceph_cluster_is_healthy_and_stores_objects() {
    if keel_testbed::skip_unless_root_and(&["ceph", "ceph-mon", "ceph-osd", "rados"]) {
        return;
    }
    let t = Instant::now();
    let Some(c) = keel_testbed::or_skip(keel_testbed::CephCluster::shared()) else {
        return;
    };
    eprintln!(
        "ceph cluster up in {:?} (start() took {:?}), mon_host {}",
        t.elapsed(),
        c.startup_time(),
        c.mon_host()
    );
    assert!(c.health_ok(), "{}", c.ceph(&["status"]).unwrap_or_default());
    assert!(c.osds_up() >= 1);
    let _g = c.lock();
    c.ceph(&["osd", "pool", "create", "testbed", "8"])
        .expect("pool");
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("in");
    std::fs::write(&src, b"keel testbed object").expect("write");
    c.rados_cmd(&["-p", "testbed", "put", "obj1"])
        .arg(&src)
        .run()
        .expect("rados put");
    let dst = dir.path().join("out");
    c.rados_cmd(&["-p", "testbed", "get", "obj1"])
        .arg(&dst)
        .run()
        .expect("rados get");
    assert_eq!(std::fs::read(&dst).expect("read"), b"keel testbed object");
    // The minimal conf a node gets names this cluster.
    assert!(c.minimal_conf().contains(c.fsid()));
    assert!(!c.admin_key().expect("admin key").is_empty());
}
