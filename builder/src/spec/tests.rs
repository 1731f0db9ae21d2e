//! Table tests of the definition format: one good definition, and every kind of bad one.
use super::*;

const GOOD: &str = r#"
[image]
name = "demo"
version = "1.0.0"
source-date-epoch = 1700000000
seed = "0e5a3c1b-7d7e-4b4c-9a39-3f0a6c0b9d11"

[distribution]
name = "debian"
release = "bookworm"

[packages]
install = ["systemd", "udev", "linux-image-amd64"]

[files]
trees = ["overlay"]
[[files.file]]
path = "/etc/motd"
content = "hello\n"

[[group]]
name = "ops"
gid = 2000

[[user]]
name = "alice"
uid = 2000
groups = ["ops", "sudo"]
ssh-authorized-keys = ["ssh-ed25519 AAAA alice"]

[kernel]
command-line = ["console=ttyS0"]

[services]
enable = ["systemd-networkd.service"]

[output]
formats = ["raw", "qcow2"]

[partitions]
root-filesystem = "erofs"
var-size = "2G"
"#;

fn parse_str(s: &str) -> Result<ImageSpec, SpecError> {
    parse(s, Path::new("images/demo/image.toml"))
}

#[test]
fn good_definition_parses_with_defaults() {
    let s = parse_str(GOOD).expect("good");
    assert_eq!(s.image.name, "demo");
    assert_eq!(s.distribution.architecture, "x86-64");
    assert_eq!(
        s.distribution.mirror, None,
        "default: the host's own apt source"
    );
    assert_eq!(s.output.formats, [Format::Raw, Format::Qcow2]);
    assert!(s.partitions.verity);
    assert_eq!(s.partitions.root_filesystem, RootFs::Erofs);
    assert_eq!(s.users[0].shell, "/bin/bash");
    assert!(!s.keel.agent);
}

#[test]
fn minimal_definition_parses() {
    let s = parse_str(
        "[image]\nname = \"x\"\nversion = \"1\"\n[distribution]\nname = \"debian\"\nrelease = \"bookworm\"\n",
    )
    .expect("minimal");
    assert!(s.packages.install.is_empty());
}

/// (edit applied to GOOD, key expected in the error, text expected in the error)
const BAD: &[(&str, &str, &str, &str)] = &[
    (
        "[partitions]",
        "[partitions]\nbogus = 1",
        "partitions.bogus",
        "unknown field `bogus`",
    ),
    (
        "[image]",
        "[image]\ncolour = \"red\"",
        "image.colour",
        "unknown field `colour`",
    ),
    (
        "name = \"debian\"",
        "name = \"fedora\"",
        "distribution.name",
        "allowed: debian",
    ),
    (
        "release = \"bookworm\"",
        "release = \"sid\"",
        "distribution.release",
        "allowed: bookworm",
    ),
    (
        "[distribution]",
        "[distribution]\narchitecture = \"s390x\"",
        "distribution.architecture",
        "allowed: x86-64",
    ),
    (
        "name = \"demo\"",
        "name = \"my image\"",
        "image.name",
        "letters, digits",
    ),
    (
        "version = \"1.0.0\"",
        "version = \"\"",
        "image.version",
        "non-empty",
    ),
    (
        "version = \"1.0.0\"",
        "version = 1",
        "image.version",
        "expected a string",
    ),
    (
        "source-date-epoch = 1700000000",
        "source-date-epoch = -5",
        "image.source-date-epoch",
        ">= 0",
    ),
    (
        "seed = \"0e5a3c1b-7d7e-4b4c-9a39-3f0a6c0b9d11\"",
        "seed = \"abc\"",
        "image.seed",
        "not a UUID",
    ),
    (
        "\"linux-image-amd64\"]",
        "\"Linux_Image\"]",
        "packages.install",
        "not a package name",
    ),
    (
        "\"linux-image-amd64\"]",
        "\"udev\"]",
        "packages.install",
        "listed twice",
    ),
    (
        "install = [",
        "install = 3\nx = [",
        "packages.install",
        "expected a sequence",
    ),
    (
        "trees = [\"overlay\"]",
        "trees = [\"../etc\"]",
        "files.trees",
        "without `..`",
    ),
    (
        "path = \"/etc/motd\"",
        "path = \"etc/motd\"",
        "files.file.path",
        "absolute path",
    ),
    (
        "content = \"hello\\n\"",
        "mode = \"0644\"",
        "files.file",
        "exactly one of",
    ),
    (
        "content = \"hello\\n\"",
        "content = \"x\"\nmode = \"999\"",
        "files.file.mode",
        "octal",
    ),
    ("gid = 2000", "gid = 10", "group.gid", "1000..59999"),
    (
        "groups = [\"ops\", \"sudo\"]",
        "groups = [\"nope\"]",
        "user.groups",
        "group `nope` is not defined",
    ),
    ("uid = 2000", "uid = 0", "user.uid", "1000..59999"),
    (
        "command-line = [\"console=ttyS0\"]",
        "command-line = [\"a b\"]",
        "kernel.command-line",
        "no spaces",
    ),
    (
        "command-line = [\"console=ttyS0\"]",
        "command-line = [\"roothash=00\"]",
        "kernel.command-line",
        "added by the build",
    ),
    (
        "enable = [\"systemd-networkd.service\"]",
        "enable = [\"networkd\"]",
        "services",
        "not a unit name",
    ),
    (
        "formats = [\"raw\", \"qcow2\"]",
        "formats = [\"vmdk\"]",
        "output.formats[0]",
        "unknown variant `vmdk`",
    ),
    (
        "formats = [\"raw\", \"qcow2\"]",
        "formats = []",
        "output.formats",
        "at least one",
    ),
    (
        "root-filesystem = \"erofs\"",
        "root-filesystem = \"btrfs\"",
        "partitions.root-filesystem",
        "expected one of",
    ),
    (
        "var-size = \"2G\"",
        "var-size = \"lots\"",
        "partitions.var-size",
        "size like",
    ),
    ("[keel]", "", "", ""),
];

#[test]
fn bad_definitions_name_file_key_and_what_is_allowed() {
    for (from, to, key, text) in BAD {
        if key.is_empty() {
            continue;
        }
        assert!(GOOD.contains(from), "fixture edit `{from}` does not apply");
        let bad = GOOD.replacen(from, to, 1);
        let err = parse_str(&bad).expect_err(&format!("{to} must be rejected"));
        let msg = err.to_string();
        assert!(msg.starts_with("images/demo/image.toml: "), "{msg}");
        assert!(
            msg.contains(&format!("key `{key}`")),
            "want key `{key}`: {msg}"
        );
        assert!(msg.contains(text), "want `{text}`: {msg}");
    }
}

#[test]
fn missing_required_section_is_named() {
    let err = parse_str("[image]\nname = \"x\"\nversion = \"1\"\n").expect_err("no distribution");
    assert!(
        err.to_string().contains("missing field `distribution`"),
        "{err}"
    );
}

#[test]
fn syntax_error_has_a_line() {
    let err = parse_str("[image\nname = 1").expect_err("syntax");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn load_names_a_missing_file() {
    let err = load(Path::new("/nonexistent/keel")).expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/keel/image.toml"),
        "{err}"
    );
}
