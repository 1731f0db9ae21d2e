//! Lock parsing, apt output parsing (captured samples in tests/fixtures/lock/).
use super::apt::{parse_missing_versions, parse_release_date, parse_show, parse_simulation};
use super::*;

const SIM: &str = include_str!("../../tests/fixtures/lock/apt-install-s.txt");

#[test]
fn parses_apt_simulation() {
    let pkgs = parse_simulation(SIM);
    assert!(pkgs.len() > 5, "{pkgs:?}");
    let sd = pkgs
        .iter()
        .find(|p| p.name == "systemd")
        .expect("systemd in sample");
    assert!(sd.version.starts_with("252."), "{sd:?}");
    assert_eq!(sd.architecture, "amd64");
    assert!(pkgs
        .iter()
        .all(|p| !p.version.is_empty() && !p.name.contains(' ')));
    // Conf lines are not installs.
    assert!(!pkgs.iter().any(|p| p.name.starts_with("Conf")));
}

#[test]
fn architecture_comes_from_inside_the_parentheses() {
    let pkgs = parse_simulation(
        "Inst libc6 (2.36-9+deb12u14 Debian:12.12/stable [amd64]) []\n\
         Inst tzdata (2025b-0+deb12u2 Debian:12.12/stable [all])\n",
    );
    assert_eq!(pkgs[0].architecture, "amd64", "{pkgs:?}");
    assert_eq!(pkgs[1].architecture, "all", "{pkgs:?}");
}

#[test]
fn parses_missing_version_errors() {
    let msg =
        "E: Version '1.0-1' for 'foo' was not found\nE: Version '2:3' for 'bar' was not found";
    assert_eq!(parse_missing_versions(msg), ["foo=1.0-1", "bar=2:3"]);
}

#[test]
fn parses_release_dates() {
    assert_eq!(parse_release_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
    assert_eq!(
        parse_release_date("Sat, 10 May 2025 09:03:48 UTC"),
        Some(1_746_867_828)
    );
    assert_eq!(parse_release_date("Sat, 10 Foo 2025 09:03:48 UTC"), None);
    assert_eq!(parse_release_date("garbage"), None);
}

fn lock_text() -> String {
    r#"version = 2
[[snapshot]]
suite = "bookworm"
date = "Sat, 10 May 2025 09:03:48 UTC"
date-epoch = 1746867828
inrelease-sha256 = "00"
[[package]]
name = "systemd"
version = "252.39-1~deb12u2"
architecture = "amd64"
sha256 = "5d8e0b6a3f2a9c1e7b4d0f6a2c8e1b3d5f7a9c0e2b4d6f8a1c3e5b7d9f0a2c4e"
"#
    .to_string()
}

#[test]
fn lock_round_trips_pins_and_dates() {
    let l = Lock::parse(&lock_text(), Path::new("p.lock")).expect("parse");
    assert_eq!(l.pinned(false), ["systemd=252.39-1~deb12u2"]);
    assert_eq!(l.source_date_epoch(), Some(1_746_867_828));
    assert_eq!(
        Lock::parse(&l.to_text(), Path::new("p.lock")).expect("again"),
        l
    );
}

#[test]
fn bad_locks_are_rejected_with_the_file_name() {
    for (bad, want) in [
        (
            lock_text().replace("version = 2", "version = 9"),
            "version 9",
        ),
        (
            lock_text().replace("version = 2", "version = 1"),
            "keel lock --update",
        ),
        (
            lock_text().replace("\nsha256 = ", "\n# sha256 = "),
            "sha256",
        ),
        (
            lock_text().replace("name = \"systemd\"", "nam = \"systemd\""),
            "unknown field",
        ),
        (
            "version = 2\nsnapshot = []\npackage = []\n".to_string(),
            "no packages",
        ),
    ] {
        let e = Lock::parse(&bad, Path::new("images/x/packages.lock")).expect_err("bad");
        let m = e.to_string();
        assert!(
            m.starts_with("images/x/packages.lock: ") && m.contains(want),
            "{m}"
        );
    }
}

#[test]
fn apt_cache_show_gives_each_pins_digest() {
    let show = "Package: foo\nVersion: 1.0-1\nArchitecture: amd64\nSHA256: aa\n\n\
                Package: bar\nVersion: 2:3\nSHA256: bb\nDescription: x\n\n\
                Package: nodigest\nVersion: 1\n\n";
    let m = parse_show(show);
    assert_eq!(m.get("foo=1.0-1").map(String::as_str), Some("aa"));
    assert_eq!(m.get("bar=2:3").map(String::as_str), Some("bb"));
    assert_eq!(m.len(), 2, "a stanza without SHA256 gives no digest: {m:?}");
    assert!(parse_show("").is_empty());
}

#[test]
fn describes_what_a_relock_changed() {
    let old = Lock::parse(&lock_text(), Path::new("p.lock")).expect("parse");
    let mut new = old.clone();
    assert_eq!(diff_text(&old, &new), "  no package changed\n");
    new.packages[0].version = "252.40-1".into();
    new.packages.push(LockedPackage {
        name: "less".into(),
        version: "590-2".into(),
        architecture: "amd64".into(),
        sha256: "00".into(),
    });
    let d = diff_text(&old, &new);
    assert!(d.contains("systemd 252.39-1~deb12u2 -> 252.40-1"), "{d}");
    assert!(d.contains("less 590-2 added"), "{d}");
    assert!(d.ends_with("2 package(s) changed\n"), "{d}");
}
