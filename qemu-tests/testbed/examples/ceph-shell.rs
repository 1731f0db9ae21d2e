//! Starts a test Ceph cluster and keeps it up for manual poking:
//! `cargo run -p keel-testbed --example ceph-shell -- [seconds]` prints the
//! `ceph` command line to use, then stops the cluster after the given time.

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let c = keel_testbed::CephCluster::start()?;
    println!("up in {:?}", c.startup_time());
    println!(
        "ceph -c {} -n client.admin -k {}",
        c.conf_path().display(),
        c.admin_keyring_path().display()
    );
    println!("fsid {} mon_host {}", c.fsid(), c.mon_host());
    std::thread::sleep(std::time::Duration::from_secs(secs));
    Ok(())
}
