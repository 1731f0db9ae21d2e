//! Lock parsing, apt output parsing (captured samples in tests/fixtures/lock/).
use super::apt::{missing_from_show, parse_missing_versions, parse_release_date, parse_simulation};
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
    r#"version = 1
[[snapshot]]
uri = "http://deb.debian.org/debian"
suite = "bookworm"
date = "Sat, 10 May 2025 09:03:48 UTC"
date-epoch = 1746867828
inrelease-sha256 = "00"
[[package]]
name = "systemd"
version = "252.39-1~deb12u2"
architecture = "amd64"
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
            lock_text().replace("version = 1", "version = 9"),
            "version 9",
        ),
        (
            lock_text().replace("name = \"systemd\"", "nam = \"systemd\""),
            "unknown field",
        ),
        (
            "version = 1\nsnapshot = []\npackage = []\n".to_string(),
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
fn pins_missing_from_apt_cache_show_output_are_named() {
    let show =
        "Package: foo\nVersion: 1.0-1\nArchitecture: amd64\n\nPackage: bar\nVersion: 2:3\n\n";
    let pins = [
        "foo=1.0-1".to_string(),
        "bar=2:3".to_string(),
        "foo=0.9".to_string(),
    ];
    assert_eq!(missing_from_show(&pins, show), ["foo=0.9"]);
    assert_eq!(missing_from_show(&pins[..2], show), Vec::<String>::new());
    assert_eq!(missing_from_show(&pins[..1], ""), ["foo=1.0-1"]);
}
