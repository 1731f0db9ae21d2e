//! Tests applying a seed to a temporary root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::seed::user_data::{Owner, WriteFile};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn scratch_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let etc = d.path().join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(etc.join("group"), "root:x:0:\nadm:x:4:\n").expect("group");
    std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").expect("shadow");
    std::fs::write(etc.join("gshadow"), "root:*::\nadm:*::\n").expect("gshadow");
    let zi = d.path().join("usr/share/zoneinfo/Europe");
    std::fs::create_dir_all(&zi).expect("zoneinfo");
    std::fs::write(zi.join("Berlin"), "TZif").expect("zone");
    d
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn write_files_modes_owners_append() {
    let root = scratch_root();
    let wf = |path: &str, data: &[u8], mode: u32, owner: Owner, append: bool| WriteFile {
        path: path.into(),
        data: data.to_vec(),
        mode,
        owner,
        append,
        defer: false,
    };
    let root_owner = Owner::default;
    let files = vec![
        wf("/etc/plain", b"hello\n", 0o600, root_owner(), false),
        wf("/etc/bin", &[0, 159, 255], 0o644, root_owner(), false),
        wf("/etc/app", b"one\n", 0o640, root_owner(), true),
        wf("/etc/app", b"two\n", 0o640, root_owner(), true),
    ];
    if !is_root() {
        keel_testbed::report_skip(format_args!(
            "write_files_modes_owners_append: chown needs root"
        ));
        return;
    }
    write_files(root.path(), &files).expect("writes");
    let r = |p: &str| std::fs::read(root.path().join(p)).expect(p);
    assert_eq!(r("etc/plain"), b"hello\n");
    assert_eq!(mode(&root.path().join("etc/plain")), 0o600);
    assert_eq!(r("etc/bin"), [0, 159, 255]);
    assert_eq!(r("etc/app"), b"one\ntwo\n");
    assert_eq!(mode(&root.path().join("etc/app")), 0o640);

    // Owner without a group: the group stays (root), as in cloud-init.
    let adm = Owner {
        user: "root".into(),
        group: Some("adm".into()),
    };
    write_files(root.path(), &[wf("/etc/g", b"", 0o644, adm, false)]).expect("adm");
    assert_eq!(
        std::fs::metadata(root.path().join("etc/g"))
            .expect("stat")
            .gid(),
        4
    );
    let no_group = Owner {
        user: "0".into(),
        group: None,
    };
    write_files(root.path(), &[wf("/etc/g", b"", 0o644, no_group, false)]).expect("uid only");
    assert_eq!(
        std::fs::metadata(root.path().join("etc/g"))
            .expect("stat")
            .gid(),
        0
    );

    // Seed errors found while applying are SeedErrors: exit code 4.
    let bad = [
        wf("relative", b"", 0o644, root_owner(), false),
        wf("/etc/../../x", b"", 0o644, root_owner(), false),
        wf(
            "/etc/x",
            b"",
            0o644,
            Owner {
                user: "nobody-here".into(),
                group: None,
            },
            false,
        ),
        wf(
            "/etc/x",
            b"",
            0o644,
            Owner {
                user: "root".into(),
                group: Some("nogroup-here".into()),
            },
            false,
        ),
    ];
    for b in bad {
        let e = write_files(root.path(), std::slice::from_ref(&b))
            .context("writing write_files")
            .expect_err(&b.path);
        assert_eq!(
            crate::commands::exit_code(&e),
            crate::commands::EXIT_SEED,
            "{e:#}"
        );
    }
    let e = write_files(
        root.path(),
        &[wf(
            "/etc/x",
            b"",
            0o644,
            Owner {
                user: "nobody-here".into(),
                group: None,
            },
            false,
        )],
    )
    .expect_err("unknown user");
    assert_eq!(
        e.to_string(),
        "user-data: write_files /etc/x: owner nobody-here: no user \"nobody-here\" in the image or the seed's users"
    );
    assert!(!root.path().join("x").exists());
    assert!(!root.path().join("etc/x").exists());
}

#[test]
fn full_seed_applies_and_reapplies() {
    if !is_root() {
        keel_testbed::report_skip(format_args!(
            "full_seed_applies_and_reapplies: useradd needs root"
        ));
        return;
    }
    let root = scratch_root();
    let r = root.path();
    let seed = crate::seed::Seed::parse(
        "instance-id: i1\n",
        r#"#cloud-config
hostname: node1
fqdn: node1.store.example
timezone: Europe/Berlin
ssh_authorized_keys: [ssh-ed25519 AAAAroot root@x]
users:
  - name: tech
    groups: adm, keelops
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    ssh_authorized_keys: [ssh-ed25519 AAAAtech tech@x]
write_files:
  - {path: /etc/keel/hello, content: hi, owner: 'tech:adm', permissions: '0640'}
ntp: {servers: [ntp1.example], pools: [pool.example]}
"#,
        Some("version: 2\nethernets:\n  eth0: {dhcp4: true}\n"),
    )
    .expect("seed");
    for _ in 0..2 {
        apply_seed(&seed, r).expect("applies (twice: idempotent)");
    }
    let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("etc/hostname"), "node1\n");
    assert!(read("etc/hosts").contains("127.0.1.1\tnode1.store.example node1"));
    assert_eq!(read("etc/hosts").matches("127.0.1.1").count(), 1);
    let passwd = read("etc/passwd");
    assert_eq!(passwd.matches("\ntech:").count(), 1, "{passwd}");
    assert!(passwd.contains("/bin/bash"));
    let group = read("etc/group");
    assert!(
        group.contains("adm:x:4:tech") && group.contains("keelops:"),
        "{group}"
    );
    assert_eq!(
        read("etc/sudoers.d/90-keel-users").lines().last(),
        Some("tech ALL=(ALL) NOPASSWD:ALL")
    );
    let ak = r.join("home/tech/.ssh/authorized_keys");
    assert_eq!(
        std::fs::read_to_string(&ak).expect("keys"),
        "ssh-ed25519 AAAAtech tech@x\n"
    );
    assert_eq!(mode(&ak), 0o600);
    assert_eq!(mode(ak.parent().expect("dir")), 0o700);
    let tech = users::passwd(r)
        .into_iter()
        .find(|e| e.name == "tech")
        .expect("tech");
    assert_eq!(std::fs::metadata(&ak).expect("stat").uid(), tech.uid);
    assert_eq!(
        read("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAroot root@x\n"
    );
    let hello = r.join("etc/keel/hello");
    assert_eq!(std::fs::metadata(&hello).expect("stat").uid(), tech.uid);
    assert_eq!(std::fs::metadata(&hello).expect("stat").gid(), 4);
    assert_eq!(
        std::fs::read_link(r.join("etc/localtime"))
            .expect("link")
            .to_string_lossy(),
        "../usr/share/zoneinfo/Europe/Berlin"
    );
    assert!(
        read("etc/systemd/timesyncd.conf.d/keel.conf").contains("NTP=ntp1.example pool.example")
    );
    assert!(read("etc/systemd/network/10-keel-eth0.network").contains("DHCP=ipv4"));
}

#[test]
fn chrony_when_present_and_bad_timezone_is_warning() {
    let root = scratch_root();
    std::fs::create_dir_all(root.path().join("etc/chrony")).expect("chrony dir");
    let n = Ntp {
        servers: vec!["a".into()],
        pools: vec!["b".into()],
        ..Ntp::default()
    };
    ntp(root.path(), &n).expect("ntp");
    let c = std::fs::read_to_string(root.path().join("etc/chrony/conf.d/keel.conf")).expect("conf");
    assert!(c.contains("server a iburst\npool b iburst\n"), "{c}");
    timezone(root.path(), "Mars/Olympus").expect("unknown zone is not fatal");
    timezone(root.path(), "../../etc/passwd").expect("refused, not fatal");
    assert!(!root.path().join("etc/localtime").exists());
    assert!(hostname(root.path(), "bad_name!", None).is_err());
}
