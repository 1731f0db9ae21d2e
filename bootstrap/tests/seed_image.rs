//! Seeds made by the real `cloud-localds` (ISO 9660 and vfat) are found and parsed.

use std::path::Path;
use std::process::Command;

use keel_bootstrap::seed::locate::{self, ImageKind};
use keel_cmd::CommandRunExt;

const USER: &str = "#cloud-config\nhostname: node7\nkeel:\n  enroll-url: https://127.0.0.1:1\n  store-id: store-7\n";
const NET: &str = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";

fn have(tool: &str) -> bool {
    keel_cmd::which(tool).is_some()
}

fn make(dir: &Path, fs: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("ud"), USER).expect("ud");
    std::fs::write(
        dir.join("md"),
        "instance-id: iid-7\nlocal-hostname: ignored\n",
    )
    .expect("md");
    std::fs::write(dir.join("nc"), NET).expect("nc");
    let out = dir.join(format!("seed-{fs}.img"));
    Command::new("cloud-localds")
        .args(["--filesystem", fs, "--network-config"])
        .arg(dir.join("nc"))
        .arg(&out)
        .arg(dir.join("ud"))
        .arg(dir.join("md"))
        .run()
        .expect("cloud-localds");
    out
}

#[test]
fn cloud_localds_iso_and_vfat_are_accepted() {
    for tool in [
        "cloud-localds",
        "xorriso",
        "mcopy",
        "genisoimage",
        "mkfs.vfat",
    ] {
        if !have(tool) {
            keel_testbed::report_skip(format_args!("cloud_localds_iso_and_vfat_are_accepted: {tool} not installed (setup.sh installs it)"));
            return;
        }
    }
    let d = tempfile::tempdir().expect("tempdir");
    for (fs, kind) in [("iso9660", ImageKind::Iso9660), ("vfat", ImageKind::Vfat)] {
        let img = make(d.path(), fs);
        assert_eq!(locate::detect(&img).expect("detect"), kind);
        let found = locate::locate(Some(&img), Path::new("/nonexistent")).expect(fs);
        let s = found.seed;
        assert_eq!(s.meta.instance_id, "iid-7", "{fs}");
        assert_eq!(s.hostname().as_deref(), Some("node7"), "{fs}");
        assert_eq!(
            s.user.keel.and_then(|k| k.store_id).as_deref(),
            Some("store-7")
        );
        assert!(s.network.is_some(), "{fs}: network-config read");
        assert!(s.warnings.is_empty(), "{fs}: {:?}", s.warnings);
    }
}

#[test]
fn nocloud_dir_under_root_and_errors() {
    let root = tempfile::tempdir().expect("tempdir");
    let err = locate::locate(None, root.path());
    if Path::new("/dev/disk/by-label/CIDATA").exists()
        || Path::new("/dev/disk/by-label/cidata").exists()
    {
        keel_testbed::report_skip(format_args!(
            "nocloud_dir_under_root_and_errors: this host has a CIDATA volume"
        ));
        return;
    }
    assert!(err
        .expect_err("no seed")
        .to_string()
        .contains("no seed found"));
    let dir = root.path().join("var/lib/cloud/seed/nocloud");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("meta-data"), "instance-id: d1\n").expect("md");
    let e = locate::locate(None, root.path()).expect_err("user-data missing");
    assert!(e.to_string().contains("user-data: missing"), "{e}");
    std::fs::write(dir.join("user-data"), USER).expect("ud");
    let found = locate::locate(None, root.path()).expect("found");
    assert_eq!(found.seed.meta.instance_id, "d1");
    assert_eq!(found.source, dir);

    let junk = root.path().join("junk.img");
    std::fs::write(&junk, vec![0u8; 40000]).expect("junk");
    let e = locate::locate(Some(&junk), root.path()).expect_err("junk");
    assert!(e.to_string().contains("not an ISO 9660 or FAT"), "{e}");
}
