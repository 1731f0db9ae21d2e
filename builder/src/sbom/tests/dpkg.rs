//! dpkg database parsing on a status file captured from a real mkosi-built
//! Debian bookworm root (95 packages).

use crate::sbom::dpkg::*;

const STATUS: &str = include_str!("../testdata/dpkg-status");
const PACKAGES: &str = include_str!("../testdata/Packages");
const COPYRIGHT_SYSTEMD: &str = include_str!("../testdata/copyright-systemd");
const COPYRIGHT_BASE_FILES: &str = include_str!("../testdata/copyright-base-files");

#[test]
fn status_fixture_parses() {
    let pkgs = parse_status(STATUS);
    assert_eq!(pkgs.len(), 95);
    let libc = pkgs.iter().find(|p| p.name == "libc6").expect("libc6");
    assert_eq!(libc.version, "2.36-9+deb12u14");
    assert_eq!(libc.architecture, "amd64");
    assert_eq!(libc.source, "glibc");
    assert_eq!(
        libc.maintainer.as_deref(),
        Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>")
    );
    assert_eq!(libc.depends, vec![vec!["libgcc-s1".to_string()]]);
    let systemd = pkgs.iter().find(|p| p.name == "systemd").expect("systemd");
    assert_eq!(systemd.source, "systemd");
    assert!(
        systemd.depends.iter().any(|g| g == &["libc6"]),
        "Pre-Depends counted"
    );
}

#[test]
fn status_edge_cases() {
    /// (name, version, source, source version)
    type Want<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);
    let cases: &[(&str, &[Want])] = &[
        ("", &[]),
        (
            "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n",
            &[("a", "1", "a", None)],
        ),
        (
            "Package: b\nStatus: install ok installed\nVersion: 2+b1\nArchitecture: amd64\nSource: bsrc (2)\n",
            &[("b", "2+b1", "bsrc", Some("2"))],
        ),
        ("Package: c\nStatus: deinstall ok config-files\nVersion: 1\n", &[]),
        ("Package: d\nStatus: install ok installed\n", &[]),
    ];
    for (text, want) in cases {
        let got: Vec<_> = parse_status(text)
            .into_iter()
            .map(|p| (p.name, p.version, p.source, p.source_version))
            .collect();
        let want: Vec<_> = want
            .iter()
            .map(|(n, v, s, sv)| {
                (
                    n.to_string(),
                    v.to_string(),
                    s.to_string(),
                    sv.map(str::to_string),
                )
            })
            .collect();
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn depends_table() {
    let cases: &[(&str, &[&[&str]])] = &[
        ("libc6 (>= 2.34)", &[&["libc6"]]),
        ("a | b (<< 3), c:any", &[&["a", "b"], &["c"]]),
        (
            "default-dbus-system-bus | dbus-system-bus",
            &[&["default-dbus-system-bus", "dbus-system-bus"]],
        ),
        ("x [amd64] <!nocheck>", &[&["x"]]),
        ("", &[]),
    ];
    for (v, want) in cases {
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|g| g.iter().map(|s| s.to_string()).collect())
            .collect();
        assert_eq!(parse_depends(v), want, "{v}");
    }
}

#[test]
fn packages_index_gives_deb_sha256() {
    let idx = parse_packages_index(PACKAGES);
    assert_eq!(idx.len(), 5);
    let key = (
        "systemd".to_string(),
        "252.39-1~deb12u2".to_string(),
        "amd64".to_string(),
    );
    assert_eq!(
        idx[&key],
        "286f879c537bfba92e59d580c075ad20ab49020244c79634656850a306dd462b"
    );
}

#[test]
fn copyright_licenses() {
    let ids = parse_copyright(COPYRIGHT_SYSTEMD).expect("DEP-5");
    for want in [
        "GPL-2.0-or-later",
        "LGPL-2.1-or-later",
        "MIT",
        "CC0-1.0",
        "GPL-2.0-only WITH Linux-syscall-note",
        "LicenseRef-public-domain",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} in {ids:?}");
    }
    assert_eq!(
        parse_copyright(COPYRIGHT_BASE_FILES),
        None,
        "not machine-readable"
    );
}

#[test]
fn license_names_table() {
    let cases = [
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-2", "GPL-2.0-only"),
        ("LGPL-2.1+", "LGPL-2.1-or-later"),
        ("Expat", "MIT"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("public-domain", "LicenseRef-public-domain"),
        (
            "GPL-3+ with Bison-2.2 exception",
            "LicenseRef-GPL-3--with-Bison-2.2-exception",
        ),
        (
            "GPL-2 with Linux-syscall-note exception",
            "GPL-2.0-only WITH Linux-syscall-note",
        ),
        ("Custom (weird)", "LicenseRef-Custom--weird-"),
    ];
    for (deb, spdx) in cases {
        assert_eq!(spdx_license_id(deb), spdx, "{deb}");
    }
}

#[test]
fn resolve_keeps_installed_only() {
    let pkgs = parse_status(STATUS);
    let deps = resolve_depends(&pkgs);
    assert!(deps["systemd"].contains(&"libc6".to_string()));
    let names: std::collections::BTreeSet<_> = pkgs.iter().map(|p| p.name.clone()).collect();
    assert!(deps.values().flatten().all(|d| names.contains(d)));
}
