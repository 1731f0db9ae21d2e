//! Table tests: every `write_files` form cloud-init 22.4 accepts, and every
//! form Keel refuses, with the message.

use crate::seed::user_data::{parse, Owner, WriteFile};

/// gzip of "zipped", base64.
const GZ_B64: &str = "H4sIAAAAAAACA6vKLChITQEAV2jC4gYAAAA=";

fn one(entry: &str) -> Result<WriteFile, String> {
    let ud = format!("#cloud-config\nwrite_files:\n  - path: /etc/x\n{entry}");
    let (mut cfg, warnings) = parse("user-data", &ud).map_err(|e| e.to_string())?;
    assert!(warnings.is_empty(), "{entry}: {warnings:?}");
    assert_eq!(cfg.write_files.len(), 1);
    Ok(cfg.write_files.remove(0))
}

#[test]
fn permissions_forms() {
    let cases: &[(&str, u32)] = &[
        ("", 0o644),
        ("    permissions: '0640'\n", 0o640),
        ("    permissions: \"600\"\n", 0o600),
        ("    permissions: '0o755'\n", 0o755),
        ("    permissions: ' 0644 '\n", 0o644),
        ("    permissions: '01777'\n", 0o1777),
        ("    permissions: '4755'\n", 0o4755),
        // YAML 1.1 octal integer, as cloud-init's PyYAML reads it.
        ("    permissions: 0644\n", 0o644),
        ("    permissions: 0600\n", 0o600),
        // YAML 1.2 octal integer.
        ("    permissions: 0o644\n", 0o644),
        // The mode's value in decimal (cloud-init: int as is).
        ("    permissions: 420\n", 0o644),
        ("    permissions: 0x1A4\n", 0o644),
        ("    permissions: 0\n", 0),
        ("    permissions:\n", 0o644),
    ];
    for (entry, want) in cases {
        let f = one(entry).unwrap_or_else(|e| panic!("{entry:?}: {e}"));
        assert_eq!(f.mode, *want, "{entry:?}: got {:o}", f.mode);
    }
}

#[test]
fn permissions_refused() {
    let cases: &[(&str, &str)] = &[
        (
            "    permissions: '0999'\n",
            "user-data:4:18: write_files[0].permissions: permissions \"0999\" is not an octal mode like '0644'",
        ),
        (
            "    permissions: rw-r--r--\n",
            "permissions \"rw-r--r--\" is not an octal mode",
        ),
        ("    permissions: ''\n", "permissions \"\" is not an octal mode"),
        ("    permissions: '-644'\n", "is not an octal mode"),
        ("    permissions: '010000'\n", "at most '7777'"),
        (
            "    permissions: 644\n",
            "permissions 644 is a plain integer above 0o777, which cloud-init takes as mode 0o1204; write the octal mode quoted, e.g. '0644'",
        ),
        ("    permissions: -1\n", "permissions -1 is not an octal mode"),
        ("    permissions: 6.44\n", "permissions 6.44 is not an octal mode"),
        ("    permissions: true\n", "permissions true is not an octal mode"),
        ("    permissions: [6, 4, 4]\n", "expected an octal mode"),
    ];
    for (entry, want) in cases {
        let e = one(entry).expect_err(entry);
        assert!(e.contains(want), "{entry:?}:\n got  {e}\n want {want}");
    }
}

#[test]
fn encodings_and_content() {
    let cases: &[(&str, &[u8])] = &[
        ("    content: hello\n", b"hello"),
        ("    content: |\n      line\n", b"line\n"),
        ("    content:\n", b""),
        ("    content: '0644'\n", b"0644"),
        ("    encoding: text/plain\n    content: hi\n", b"hi"),
        ("    encoding: b64\n    content: aGVsbG8=\n", b"hello"),
        ("    encoding: BASE64\n    content: aGVs\n      bG8=\n", b"hello"),
        ("    encoding: ' base64 '\n    content: aGVsbG8=\n", b"hello"),
        (
            "    encoding: gz+b64\n    content: H4sIAAAAAAACA6vKLChITQEAV2jC4gYAAAA=\n",
            b"zipped",
        ),
        (
            "    encoding: gzip+base64\n    content: H4sIAAAAAAACA6vKLChITQEAV2jC4gYAAAA=\n",
            b"zipped",
        ),
        (
            "    encoding: gz+base64\n    content: H4sIAAAAAAACA6vKLChITQEAV2jC4gYAAAA=\n",
            b"zipped",
        ),
        (
            "    encoding: gzip+b64\n    content: H4sIAAAAAAACA6vKLChITQEAV2jC4gYAAAA=\n",
            b"zipped",
        ),
        // YAML decodes !!binary; cloud-init then applies the encoding.
        ("    content: !!binary aGVsbG8=\n", b"hello"),
        ("    content: !!binary |\n      aGVs\n      bG8=\n", b"hello"),
        (
            "    encoding: gzip\n    content: !!binary H4sIAAAAAAACA6vKLChITQEAV2jC4gYAAAA=\n",
            b"zipped",
        ),
        (
            "    encoding: gz\n    content: !!binary |\n      H4sIAAAAAAACA6vKLChITQEAV2jC4gYAAAA=\n",
            b"zipped",
        ),
        ("    encoding: b64\n    content: !!binary ZEhkcFkyVT0=\n", b"twice"),
    ];
    for (entry, want) in cases {
        let f = one(entry).unwrap_or_else(|e| panic!("{entry:?}: {e}"));
        assert_eq!(
            f.data,
            *want,
            "{entry:?}: {:?}",
            String::from_utf8_lossy(&f.data)
        );
    }
    assert!(GZ_B64.starts_with("H4sI"));
}

#[test]
fn encodings_and_content_refused() {
    let cases: &[(&str, &str)] = &[
        (
            "    encoding: rot13\n",
            "user-data: write_files[0]: encoding \"rot13\" is not one cloud-init knows",
        ),
        (
            "    encoding: b64\n    content: '!!'\n",
            "write_files[0]: /etc/x: content is not valid base64",
        ),
        (
            "    encoding: b64\n    content: aGVsbG8\n",
            "content is not valid base64",
        ),
        (
            "    encoding: gzip\n    content: hello\n",
            "write_files[0]: /etc/x: content is not valid gzip",
        ),
        (
            "    encoding: gz+b64\n    content: aGVsbG8=\n",
            "content is not valid gzip",
        ),
        (
            "    content: !!binary '%%%'\n",
            "!!binary content is not base64",
        ),
        ("    content: 123\n", "invalid type: integer `123`"),
        ("    content: true\n", "invalid type: boolean `true`"),
        ("    content: [a]\n", "expected file content"),
        ("    content: !vault x\n", "content has YAML tag !vault"),
    ];
    for (entry, want) in cases {
        let e = one(entry).expect_err(entry);
        assert!(e.contains(want), "{entry:?}:\n got  {e}\n want {want}");
    }
}

#[test]
fn binary_inside_text_is_refused_not_corrupted() {
    // "!!binary" only inside a string: left alone.
    let f = one("    content: 'see !!binary tags'\n").expect("plain text");
    assert_eq!(f.data, b"see !!binary tags");
    // Both a tag and the same text inside a string: refused.
    let ud = "#cloud-config\nwrite_files:\n  - path: /etc/a\n    content: !!binary aGVsbG8=\n  - path: /etc/b\n    content: |\n      x: !!binary aGVsbG8=\n";
    let e = parse("user-data", ud).expect_err("ambiguous").to_string();
    assert!(
        e.contains("write the binary content with `encoding: b64`"),
        "{e}"
    );
}

#[test]
fn paths_and_owners() {
    let f = one("    owner: tech:adm\n").expect("owner");
    assert_eq!(
        f.owner,
        Owner {
            user: "tech".into(),
            group: Some("adm".into())
        }
    );
    let f = one("    owner: ' 1000 : 1000 '\n").expect("numbers");
    assert_eq!(f.owner.to_string(), "1000:1000");
    let f = one("    owner: tech\n").expect("user only");
    assert_eq!(f.owner.group, None, "group kept, as cloud-init does");
    let f = one("    append: true\n    defer: true\n").expect("flags");
    assert!(f.append && f.defer);
    assert_eq!(f.owner.to_string(), "root:root");

    let bad: &[(&str, &str)] = &[
        (
            "#cloud-config\nwrite_files:\n  - path: etc/x\n",
            "user-data: write_files[0]: path \"etc/x\" must be absolute, without '..' components",
        ),
        (
            "#cloud-config\nwrite_files:\n  - path: /etc/../../x\n",
            "must be absolute, without '..'",
        ),
        (
            "#cloud-config\nwrite_files:\n  - content: x\n",
            "user-data: write_files[0]: a file needs `path:`",
        ),
        (
            "#cloud-config\nwrite_files:\n  - path: /a\n  - path: /b\n    owner: 'a b'\n",
            "write_files[1]: /b: owner \"a b\" is not `user` or `user:group`",
        ),
        (
            "#cloud-config\nwrite_files:\n  - path: /a\n    owner: ':adm'\n",
            "is not `user` or `user:group`",
        ),
        (
            "#cloud-config\nwrite_files:\n  - path: /a\n    owner: 'a:b:c'\n",
            "is not `user` or `user:group`",
        ),
    ];
    for (ud, want) in bad {
        let e = parse("user-data", ud).expect_err(ud).to_string();
        assert!(e.contains(want), "{ud:?}:\n got  {e}\n want {want}");
    }
}
