//! Table tests for seed parsing.

use super::*;

const META: &str = "instance-id: iid-store-0042-n1\nlocal-hostname: meta-name\n";

const FULL: &str = r#"#cloud-config
hostname: node1
fqdn: node1.store-0042.example.com
timezone: Europe/Berlin
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3Nza root@laptop
users:
  - default
  - name: tech
    gecos: Field Tech
    groups: [adm, wheel]
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    ssh_authorized_keys: [ssh-ed25519 AAAAC3Nzb tech@laptop]
write_files:
  - path: /etc/motd
    content: hello
    permissions: '0640'
    owner: root:adm
  - path: /etc/b64
    encoding: b64
    content: aGVsbG8=
    append: true
ntp:
  servers: [ntp1.example.com]
  pools: [pool.ntp.org]
keel:
  enroll-url: https://enroll.example.com:8443
  token: tok-123
  store-id: store-0042
  disks:
    devices: [/dev/vdb]
    allow-wipe: false
  bundle:
    url: https://git.example.com/store.git
    ref: stable
"#;

#[test]
fn full_seed_parses() {
    let s = Seed::parse(META, FULL, None).expect("parses");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.meta.instance_id, "iid-store-0042-n1");
    assert_eq!(s.hostname().as_deref(), Some("node1"));
    assert_eq!(s.user.users.len(), 1);
    let u = &s.user.users[0];
    assert_eq!(u.name, "tech");
    assert_eq!(u.groups, ["adm", "wheel"]);
    assert_eq!(u.sudo, ["ALL=(ALL) NOPASSWD:ALL"]);
    assert_eq!(s.user.write_files[0].permissions, Some(0o640));
    assert!(s.user.write_files[1].append);
    let k = s.user.keel.as_ref().expect("keel section");
    assert_eq!(k.store_id.as_deref(), Some("store-0042"));
    assert_eq!(k.disks.devices, ["/dev/vdb"]);
    assert_eq!(
        k.bundle.as_ref().and_then(|b| b.git_ref.as_deref()),
        Some("stable")
    );
    assert_eq!(s.user.ntp.as_ref().map(|n| n.pools.len()), Some(1));
}

#[test]
fn hostname_precedence() {
    let cases: &[(&str, Option<&str>)] = &[
        ("#cloud-config\nhostname: a\nfqdn: b.x\n", Some("a")),
        ("#cloud-config\nfqdn: b.x\n", Some("meta-name")),
        ("#cloud-config\n", Some("meta-name")),
    ];
    for (ud, want) in cases {
        let s = Seed::parse(META, ud, None).expect(ud);
        assert_eq!(s.hostname().as_deref(), *want, "{ud}");
    }
    let s = Seed::parse("instance-id: x\n", "#cloud-config\nfqdn: b.x\n", None).expect("parses");
    assert_eq!(s.hostname().as_deref(), Some("b"));
}

#[test]
fn unknown_keys_warn_not_fail() {
    let ud = "#cloud-config\npackages: [vim]\nruncmd: [ls]\nkeel:\n  enrol-url: typo\nusers:\n  - name: a\n    plain_text_passwd: x\n";
    let s = Seed::parse(META, ud, None).expect("unknown keys are not fatal");
    let w = s.warnings.join("\n");
    for key in [
        "`packages`",
        "`runcmd`",
        "`keel.enrol-url`",
        "`users[0].plain_text_passwd`",
    ] {
        assert!(w.contains(key), "missing warning for {key}: {w}");
    }
}

#[test]
fn malformed_seeds_give_file_line_column() {
    let cases: &[(&str, &str, &str)] = &[
        // (meta, user, expected prefix)
        (META, "#cloud-config\nruncmd: [a, b\n", "user-data:3:1"),
        (META, "#cloud-config\nhostname: [a]\n", "user-data:2:11"),
        (
            META,
            "#cloud-config\nkeel:\n\tstore-id: x\n",
            "user-data:3:1",
        ),
        (META, "#cloud-config\nusers: 7\n", "user-data:2:"),
        (
            META,
            "#cloud-config\nwrite_files:\n  - path: /a\n    permissions: '0999'\n",
            "user-data:3:",
        ),
        ("instance-id: [x\n", "#cloud-config\n", "meta-data:1:14"),
        ("a: b: c\n", "#cloud-config\n", "meta-data:1:5"),
        (
            META,
            "#cloud-config\nkeel:\n  disks:\n    allow-wipe: maybe\n",
            "user-data:4:17",
        ),
    ];
    for (meta, ud, want) in cases {
        let e = Seed::parse(meta, ud, None).expect_err(ud).to_string();
        assert!(e.starts_with(want), "{ud:?}: got {e:?}, want prefix {want}");
    }
}

#[test]
fn invalid_seeds_are_refused() {
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        ("", "#cloud-config\n", None, "instance-id"),
        (
            "local-hostname: x\n",
            "#cloud-config\n",
            None,
            "instance-id",
        ),
        (
            META,
            "#cloud-config\nusers:\n  - gecos: nobody\n",
            None,
            "name",
        ),
        (
            META,
            "#cloud-config\nusers:\n  - name: a\n    sudo: true\n",
            None,
            "sudo",
        ),
        (
            META,
            "#cloud-config\n",
            Some("ethernets: {}\n"),
            "version: 2",
        ),
    ];
    for (meta, ud, net, want) in cases {
        let e = Seed::parse(meta, ud, *net).expect_err(ud).to_string();
        assert!(e.contains(want), "{ud:?}: {e}");
    }
}

#[test]
fn non_cloud_config_user_data_is_a_warning() {
    for ud in [
        "#!/bin/sh\necho hi\n",
        "Content-Type: multipart/mixed\n",
        "hostname: x\n",
    ] {
        let s = Seed::parse(META, ud, None).expect(ud);
        assert_eq!(s.user, CloudConfig::default());
        assert!(s.warnings[0].contains("#cloud-config"), "{:?}", s.warnings);
    }
}

#[test]
fn network_v2_renders_networkd() {
    let net = r#"network:
  version: 2
  ethernets:
    lan:
      match: {name: "en*"}
      addresses: [192.0.2.10/24]
      gateway4: 192.0.2.1
      routes: [{to: 198.51.100.0/24, via: 192.0.2.254, metric: 50}]
      nameservers: {addresses: [192.0.2.53], search: [store.example]}
      mtu: 1400
    eth1:
      dhcp4: true
      dhcp6: true
"#;
    let s = Seed::parse(META, "#cloud-config\n", Some(net)).expect("parses");
    let files = s.network.expect("v2").render_networkd();
    assert_eq!(files.len(), 2);
    let (name, eth1) = &files[0];
    assert_eq!(name, "10-keel-eth1.network");
    assert!(
        eth1.contains("Name=eth1\n") && eth1.contains("DHCP=yes\n"),
        "{eth1}"
    );
    let lan = &files[1].1;
    for line in [
        "Name=en*",
        "MTUBytes=1400",
        "Address=192.0.2.10/24",
        "Gateway=192.0.2.1",
        "DNS=192.0.2.53",
        "Domains=store.example",
        "Destination=198.51.100.0/24",
        "Metric=50",
    ] {
        assert!(lan.contains(line), "missing {line} in\n{lan}");
    }
}

#[test]
fn network_v1_is_a_warning() {
    let s = Seed::parse(META, "#cloud-config\n", Some("version: 1\nconfig: []\n")).expect("v1");
    assert!(s.network.is_none());
    assert!(s.warnings[0].contains("version 1"));
}
