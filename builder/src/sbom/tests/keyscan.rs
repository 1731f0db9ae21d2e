//! The private-key scan: real keys of every kind are found, look-alikes are not.

use crate::sbom::keyscan::*;
use keel_cmd::CommandRunExt as _;
use std::process::Command;

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).run_get_string();
    out.expect("openssl").into_bytes()
}

/// Real keys made by the real tools in `d`: PKCS#8 (PEM and DER), SEC1,
/// PKCS#1, Ed25519, and an OpenSSH key when ssh-keygen is there.
fn make_keys(d: &std::path::Path) {
    let p = |n: &str| d.join(n).display().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("pkcs8.pem"),
    ]);
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &p("pkcs8.pem"),
        "-outform",
        "DER",
        "-out",
        &p("pkcs8.der"),
    ]);
    openssl(&[
        "ec",
        "-in",
        &p("pkcs8.pem"),
        "-outform",
        "DER",
        "-out",
        &p("sec1.der"),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        &p("rsa.pem"),
    ]);
    openssl(&[
        "rsa",
        "-in",
        &p("rsa.pem"),
        "-traditional",
        "-outform",
        "DER",
        "-out",
        &p("rsa1.der"),
    ]);
    openssl(&["genpkey", "-algorithm", "ED25519", "-out", &p("ed.pem")]);
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &p("ed.pem"),
        "-outform",
        "DER",
        "-out",
        &p("ed.der"),
    ]);
    if Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", &p("id_ed25519")])
        .run()
        .is_err()
    {
        keel_testbed::report_skip(format_args!(
            "openssh part of finds_real_keys_and_ignores_lookalikes: ssh-keygen missing"
        ));
    }
}

#[test]
fn finds_real_keys_and_ignores_lookalikes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_keys(d);
    let cosign =
        crate::release::sign::generate_key_pair(&d.join("cosign"), b"pw").expect("cosign key");
    let cases: &[(&str, Option<&str>)] = &[
        ("pkcs8.pem", Some("PEM private key (PKCS#8)")),
        ("pkcs8.der", Some("DER private key (PKCS#8)")),
        ("sec1.der", Some("DER EC private key (SEC1)")),
        ("rsa.pem", Some("PEM private key (PKCS#8)")),
        ("rsa1.der", Some("DER RSA private key (PKCS#1)")),
        ("ed.der", Some("DER private key (PKCS#8)")),
        ("cosign.key", Some("cosign/sigstore encrypted private key")),
        ("cosign.pub", None),
    ];
    for (name, want) in cases {
        let data = std::fs::read(d.join(name)).expect(name);
        assert_eq!(scan_bytes(&data), *want, "{name}");
    }
    assert_eq!(cosign.0, d.join("cosign.key"));
    if d.join("id_ed25519").exists() {
        let data = std::fs::read(d.join("id_ed25519")).expect("ssh key");
        assert_eq!(scan_bytes(&data), Some("OpenSSH private key"));
        let public = std::fs::read(d.join("id_ed25519.pub")).expect("ssh pub");
        assert_eq!(scan_bytes(&public), None);
    }
    // Look-alikes: labels inside programs and docs, certificates, empty bodies.
    let lookalikes: &[&[u8]] = &[
        b"\0-----BEGIN OPENSSH PRIVATE KEY-----\n\0-----END OPENSSH PRIVATE KEY-----\n\0",
        b"see -----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY----- in the manual",
        b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZ2ZmZmZmZmZmZmZmZmZmZmZmZmZmZmYwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n",
        b"\x30\x03\x02\x01\x00",
        b"",
    ];
    for l in lookalikes {
        assert_eq!(scan_bytes(l), None, "{}", String::from_utf8_lossy(l));
    }
}

#[test]
fn tree_scan_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc/ssl/private")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    std::fs::write(
        root.join("usr/bin/tool"),
        b"\0-----BEGIN RSA PRIVATE KEY-----\0",
    )
    .expect("write");
    assert!(scan_tree(root).expect("scan").findings.is_empty());
    let key = root.join("etc/ssl/private/node.key");
    Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .run()
        .expect("openssl");
    std::os::unix::fs::symlink(&key, root.join("link.key")).expect("symlink");
    let found = scan_tree(root).expect("scan").findings;
    assert_eq!(found.len(), 1, "symlinks are not followed: {found:?}");
    assert_eq!(
        found[0].path,
        std::path::Path::new("/etc/ssl/private/node.key")
    );
}

#[test]
fn unmodified_package_files_are_exempt_but_changed_or_unowned_ones_are_not() {
    use md5::Digest as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc/ssh")).expect("mkdir");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).expect("mkdir");
    let key = openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ]);
    // A library that embeds self-test keys, as libgnutls does, shipped by a package.
    let mut lib = b"\x7fELF....".to_vec();
    lib.extend_from_slice(&key);
    std::fs::write(root.join("usr/lib/libselftest.so"), &lib).expect("write");
    // A file the same package lists but which was changed after installation.
    std::fs::write(root.join("usr/lib/changed.so"), &lib).expect("write");
    // A host key a maintainer script generated: owned by no md5sums list.
    std::fs::write(root.join("etc/ssh/ssh_host_ecdsa_key"), &key).expect("write");
    let sums = format!(
        "{}  usr/lib/libselftest.so\n{}  usr/lib/changed.so\n",
        hex::encode(md5::Md5::digest(&lib)),
        hex::encode(md5::Md5::digest(b"what the package shipped")),
    );
    std::fs::write(root.join("var/lib/dpkg/info/libselftest.md5sums"), sums).expect("write");

    let scan = scan_tree(root).expect("scan");
    let paths = |v: &[Finding]| {
        v.iter()
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        paths(&scan.findings),
        ["/etc/ssh/ssh_host_ecdsa_key", "/usr/lib/changed.so"]
    );
    assert_eq!(paths(&scan.exempt), ["/usr/lib/libselftest.so"]);
}

#[test]
fn md5sums_lines_parse_and_junk_is_ignored() {
    let mut map = std::collections::HashMap::new();
    parse_md5sums(
        "0123456789abcdef0123456789ABCDEF  usr/bin/x y\nnot a line\nzz  usr/bin/bad\n",
        &mut map,
    );
    assert_eq!(map.len(), 1);
    assert_eq!(
        map.get(std::path::Path::new("/usr/bin/x y"))
            .map(String::as_str),
        Some("0123456789abcdef0123456789abcdef")
    );
}
