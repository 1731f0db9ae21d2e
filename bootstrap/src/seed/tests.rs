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
    assert_eq!(s.user.write_files[0].mode, 0o640);
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
        (
            META,
            "#cloud-config\nwrite_files:\n  - path: /a\n    permissions: '0999'\n",
            "user-data:4:18",
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

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBeTCCAR+gAwIBAgIUOu8WPF3xkJ8UbiJZ/t0ju7OHyTMwCgYIKoZIzj0EAwIw\nEjEQMA4GA1UEAwwHdGVzdC1jYTAeFw0yNjEyMDIwMTIxMTlaFw0zNjExMjkwMTIx\nMTlaMBIxEDAOBgNVBAMMB3Rlc3QtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\nAARUkZ/8fLVBziSkVMVqIvAP0yy3hJzlbUg8muH8fUH9jC1m15ib9/Sx47eYz6yQ\ngdc7E/4eQUVL4Ejjv0tzLUN7o1MwUTAdBgNVHQ4EFgQUV/W/TaCicbPZf/JHjqcR\nMOg/BsQwHwYDVR0jBBgwFoAUV/W/TaCicbPZf/JHjqcRMOg/BsQwDwYDVR0TAQH/\nBAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAxD9uK1+W/9khqvZWiAadskDDcDFOF\n46qOdL72DbVLdAIhAO/UiAGldZVKfBc65DKZIHly5HzP4lBDUQppTIhUu+nT\n-----END CERTIFICATE-----\n";

fn keel_seed(keel: &str) -> String {
    format!("#cloud-config\n{keel}")
}

#[test]
fn keel_section_is_required_and_checked() {
    let ca = CA.replace('\n', "\n    ");
    let ok = keel_seed(&format!(
        "keel:\n  enroll-url: https://enroll.example.com:8443\n  store-id: s1\n  enroll-ca: |\n    {ca}\n"
    ));
    let s = Seed::parse(META, &ok, None).expect("parses");
    s.keel().expect("complete keel section");

    let cases: &[(&str, &str)] = &[
        ("hostname: a\n", "user-data has no `keel:` section, so the node cannot enroll; add at least: keel: {enroll-url: https://enroll.example.com:8443, enroll-ca: <PEM CA certificate>, store-id: <store>, token: <one-time token>}"),
        ("keel: {}\n", "user-data: keel: has no `enroll-url:`; add e.g. `enroll-url: https://enroll.example.com:8443`"),
        ("keel: {enroll-url: 'http://x:1', store-id: s}\n", "keel.enroll-url \"http://x:1\" is not an https:// URL"),
        ("keel: {enroll-url: 'enroll.example.com', store-id: s}\n", "is not an https:// URL"),
        ("keel: {enroll-url: 'https://x:1', store-id: s}\n", "keel: has no `enroll-ca:`"),
        ("keel: {enroll-url: 'https://x:1', store-id: s, enroll-ca: nope}\n", "keel.enroll-ca holds no PEM certificate"),
    ];
    for (ud, want) in cases {
        let s = Seed::parse(META, &keel_seed(ud), None).expect(ud);
        let e = s.keel().expect_err(ud).to_string();
        assert!(e.contains(want), "{ud:?}:\n got  {e}\n want {want}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    let no_store = ok.replace("  store-id: s1\n", "");
    let e = Seed::parse(META, &no_store, None)
        .expect("parses")
        .keel()
        .expect_err("no store-id")
        .to_string();
    assert!(e.contains("keel: has no `store-id:`"), "{e}");
}

#[test]
fn bad_hostnames_are_refused_at_parse() {
    let cases: &[(&str, &str, &str)] = &[
        (
            META,
            "#cloud-config\nhostname: bad_name\n",
            "user-data: host name \"bad_name\" is not valid",
        ),
        (
            META,
            "#cloud-config\nhostname: -x\n",
            "user-data: host name \"-x\"",
        ),
        (
            "instance-id: i\nlocal-hostname: 'a b'\n",
            "#cloud-config\n",
            "meta-data: host name \"a b\"",
        ),
        (
            "instance-id: i\n",
            "#cloud-config\nfqdn: x_y.example\n",
            "user-data: host name \"x_y\"",
        ),
    ];
    for (meta, ud, want) in cases {
        let e = Seed::parse(meta, ud, None).expect_err(ud).to_string();
        assert!(e.contains(want), "{ud:?}: {e}");
    }
    let e = Seed::parse(META, "#cloud-config\nntp: {ntp_client: ntpd}\n", None)
        .expect_err("ntpd")
        .to_string();
    assert!(
        e.contains("ntp.ntp_client \"ntpd\" is not supported"),
        "{e}"
    );
}

#[test]
fn check_report_summarises() {
    let s = Seed::parse(META, FULL, None).expect("parses");
    let r = check::report("/seed", Ok(&s));
    assert!(!r.valid, "FULL has no enroll-ca");
    assert!(r.error.as_deref().unwrap_or_default().contains("enroll-ca"));
    let sum = r.summary.as_ref().expect("summary");
    assert_eq!(sum.users[0].name, "tech");
    assert_eq!(sum.files[0].mode, "0640");
    assert_eq!(sum.files[1].bytes, 5);
    assert!(sum.keel.as_ref().expect("keel").token);
    let text = check::render_text(&r);
    for want in [
        "seed /seed: INVALID\n",
        "error: user-data: keel: has no `enroll-ca:`",
        "  hostname   node1 (node1.store-0042.example.com)\n",
        "  users      tech [adm,wheel] sudo 1 key(s)\n",
        "  files      /etc/motd 0640 root:adm 5 bytes\n",
        "             /etc/b64 0644 root:root 5 bytes (append)\n",
        "  enroll     https://enroll.example.com:8443 store store-0042 token given\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("tok-123"), "the token is never printed");
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["valid"], false);
    assert_eq!(json["summary"]["files"][0]["path"], "/etc/motd");
    assert_eq!(json["summary"]["keel"]["store-id"], "store-0042");

    let e = SeedError::Missing("/s/user-data".into());
    let r = check::report("/s", Err(&e));
    assert!(!r.valid && r.summary.is_none());
    assert_eq!(
        check::render_text(&r),
        "seed /s: INVALID\nerror: /s/user-data: missing (a NoCloud seed needs meta-data and user-data)\n"
    );
}
