//! Golden-file tests of the rendered mkosi configuration. The goldens live
//! in builder/tests/golden/<case>/; regenerate with KEEL_UPDATE_GOLDEN=1 and
//! review the diff.

use std::path::{Path, PathBuf};

use super::*;
use crate::lock::Lock;

fn golden_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

fn check_golden(case: &str, rendered: &Rendered) {
    let dir = golden_dir(case);
    if std::env::var_os("KEEL_UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for (rel, f) in rendered {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, &f.content).expect("write golden");
        }
    }
    let mut on_disk = Vec::new();
    collect(&dir, &dir, &mut on_disk);
    on_disk.sort();
    let mut want: Vec<PathBuf> = rendered.keys().cloned().collect();
    want.sort();
    assert_eq!(
        on_disk, want,
        "golden file set of {case} (KEEL_UPDATE_GOLDEN=1 to regenerate)"
    );
    for (rel, f) in rendered {
        let golden = std::fs::read_to_string(dir.join(rel)).expect("read golden");
        assert_eq!(
            f.content,
            golden,
            "{case}/{} differs from its golden file",
            rel.display()
        );
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.expect("entry").path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).expect("prefix").to_path_buf());
        }
    }
}

fn inputs<'a>(lock: Option<&'a Lock>, agent: bool) -> RenderInputs<'a> {
    RenderInputs {
        lock,
        mirrors: crate::spec::mirror::Mirrors {
            main: "http://archive.example/debian".into(),
            security: "http://archive.example/debian-security".into(),
        },
        source_date_epoch: 1_700_000_000,
        seed: "0e5a3c1b-7d7e-4b4c-9a39-3f0a6c0b9d11".into(),
        trees: if agent {
            vec!["00-overlay".into(), "zz-keel-agent".into()]
        } else {
            vec![]
        },
        agent_units: if agent {
            vec!["keel-bootstrap.service".into()]
        } else {
            vec![]
        },
    }
}

fn repo_spec(name: &str) -> crate::spec::ImageSpec {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../images")
        .join(name);
    crate::spec::load(&dir).expect("repository image definition is valid")
}

#[test]
fn test_tiny_renders_like_its_golden_files() {
    let spec = repo_spec("test-tiny");
    let lock = Lock::parse(
        include_str!("../../tests/golden/lock-small.lock"),
        Path::new("lock-small.lock"),
    )
    .expect("lock fixture");
    check_golden("test-tiny", &render(&spec, &inputs(Some(&lock), false)));
}

#[test]
fn store_node_renders_like_its_golden_files() {
    let spec = repo_spec("store-node");
    check_golden("store-node", &render(&spec, &inputs(None, true)));
}

#[test]
fn locked_versions_replace_package_names() {
    let spec = repo_spec("test-tiny");
    let lock = Lock::parse(
        include_str!("../../tests/golden/lock-small.lock"),
        Path::new("lock-small.lock"),
    )
    .expect("lock fixture");
    let r = render(&spec, &inputs(Some(&lock), false));
    let conf = &r[Path::new("mkosi.conf")].content;
    assert!(
        conf.contains("        systemd=252.39-1~deb12u2\n"),
        "{conf}"
    );
    assert!(
        conf.contains("InitrdPackages=\n        udev=252.39-1~deb12u2\n"),
        "{conf}"
    );
    assert!(
        !conf.contains("        tpm2-tools\n"),
        "unlocked name must not appear: {conf}"
    );
}

#[test]
fn verity_partitions_follow_the_definition() {
    let mut spec = repo_spec("test-tiny");
    let r = render(&spec, &inputs(None, false));
    let root = &r[Path::new("mkosi.repart/10-root.conf")].content;
    assert!(
        root.contains("Verity=data") && root.contains("Format=erofs"),
        "{root}"
    );
    assert!(r.contains_key(Path::new("mkosi.repart/11-root-verity.conf")));
    spec.partitions.verity = false;
    let r = render(&spec, &inputs(None, false));
    assert!(!r.contains_key(Path::new("mkosi.repart/11-root-verity.conf")));
    assert!(!r[Path::new("mkosi.repart/10-root.conf")]
        .content
        .contains("Verity"));
}

#[test]
fn scripts_are_executable_and_finalize_calls_keel() {
    let spec = repo_spec("store-node");
    let r = render(&spec, &inputs(None, true));
    let fin = &r[Path::new("mkosi.finalize")];
    assert_eq!(fin.mode, 0o755);
    assert!(fin
        .content
        .contains("internal finalize --root \"$BUILDROOT\""));
    let post = &r[Path::new("mkosi.postinst.chroot")].content;
    assert!(post.contains("keel-bootstrap.service"), "{post}");
    assert!(post.contains("keel-ssh-hostkeys.service"), "{post}");
}
