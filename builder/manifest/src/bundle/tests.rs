use super::*;

fn hdr() -> Header {
    Header::new("store-0042", "main", 7).expect("header")
}

#[test]
fn build_is_canonical_and_skips_signature_files() {
    let d = tempfile::tempdir().expect("tempdir");
    let r = d.path();
    fs::create_dir_all(r.join("b/c")).expect("mkdir");
    fs::create_dir_all(r.join(".keel")).expect("mkdir");
    fs::create_dir_all(r.join(".git")).expect("mkdir");
    fs::write(r.join(".git/HEAD"), "ref").expect("write");
    fs::write(r.join("b/c/z.txt"), "z").expect("write");
    fs::write(r.join("a.sh"), "#!/bin/sh\n").expect("write");
    fs::set_permissions(r.join("a.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink("a.sh", r.join("link")).expect("symlink");
    fs::write(r.join(MANIFEST_PATH), "x").expect("write");
    fs::write(r.join(SIGNATURE_PATH), "y").expect("write");
    let m = build(r, &hdr()).expect("manifest");
    // Pinned bytes: a change here changes every signed bundle.
    let golden = "keel-bundle-manifest v2\nstore store-0042\nref main\nserial 7\n\
a8076d3d28d21e02012b20eaf7dbf75409a6277134439025f282e368e3305abf 100755 a.sh\n\
594e519ae499312b29433b7dd8a97ff068defcba9755b6d5d00e84c524d67b06 100644 b/c/z.txt\n\
36477ea265eafe923930d4967d718203c440cc57c29ff57ef0a7c5e76fcaf307 120000 link\n";
    assert_eq!(m, golden);
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    let want = format!(
        "{HEADER}\nstore store-0042\nref main\nserial 7\n{} 100755 a.sh\n{} 100644 b/c/z.txt\n{} 120000 link\n",
        sha(b"#!/bin/sh\n"),
        sha(b"z"),
        sha(b"a.sh")
    );
    assert_eq!(m, want);
    let parsed = parse(&m).expect("parses");
    assert_eq!(parsed.header, hdr());
    assert_eq!(parsed.entries.len(), 3);
    assert_eq!(render(&parsed.header, &parsed.entries), m, "round trip");
}

#[test]
fn header_values_are_checked() {
    assert!(Header::new("s", "refs/tags/v1", 1).is_ok());
    for (store, reference, serial, want) in [
        ("", "main", 1, "store"),
        ("a b", "main", 1, "store"),
        ("s", "", 1, "ref"),
        ("s", "ma\nin", 1, "ref"),
        ("s", "main", 0, "at least 1"),
    ] {
        let e = Header::new(store, reference, serial)
            .expect_err(want)
            .to_string();
        assert!(e.contains(want), "{e} vs {want}");
    }
}

#[test]
fn parse_table() {
    let h = "0".repeat(64);
    let top = format!("{HEADER}\nstore s\nref main\nserial 3\n");
    let cases = [
        (top.clone(), Ok(0)),
        (format!("{top}{h} 100644 a b\n"), Ok(1)),
        ("nope\n".to_string(), Err("header")),
        (
            format!("{HEADER_V1}\n{h} 100644 a\n"),
            Err("format v1 carries no store, ref and serial"),
        ),
        (
            format!("{HEADER}\nref main\n"),
            Err("line 2: expected `store"),
        ),
        (format!("{HEADER}\nstore s\n"), Err("line 3: expected `ref")),
        (
            format!("{HEADER}\nstore s\nref main\nserial x\n"),
            Err("serial is not a decimal"),
        ),
        (
            format!("{HEADER}\nstore s\nref main\nserial +3\n"),
            Err("serial is not a decimal"),
        ),
        (
            format!("{HEADER}\nstore s\nref main\nserial 0\n"),
            Err("at least 1"),
        ),
        (
            format!("{HEADER}\nstore s\nref main\nserial 03\n"),
            Err("canonical"),
        ),
        (
            format!("{HEADER}\nstore  s\nref main\nserial 3\n"),
            Err("store"),
        ),
        (format!("{top}{h} 100644 a"), Err("final newline")),
        (format!("{top}{h} 100600 a\n"), Err("mode")),
        (format!("{top}abc 100644 a\n"), Err("hash")),
        (format!("{top}{h} 100644 ../a\n"), Err("clean relative")),
        (format!("{top}{h} 100644 b\n{h} 100644 a\n"), Err("sorted")),
        (format!("{top}{h} 100644 a\n{h} 100644 a\n"), Err("sorted")),
    ];
    for (text, want) in cases {
        match (parse(&text), want) {
            (Ok(m), Ok(n)) => assert_eq!(m.entries.len(), n, "{text:?}"),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} vs {w}"),
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }
}
