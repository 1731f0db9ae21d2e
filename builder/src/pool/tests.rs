use super::*;
use crate::fsutil::sha256;

fn pkg(name: &str, version: &str, content: &[u8]) -> LockedPackage {
    LockedPackage {
        name: name.into(),
        version: version.into(),
        architecture: "amd64".into(),
        sha256: sha256(content),
    }
}

fn lock(pkgs: Vec<LockedPackage>) -> Lock {
    Lock {
        version: crate::lock::FORMAT,
        snapshots: vec![],
        packages: pkgs,
        initrd_packages: vec![],
    }
}

#[test]
fn deb_file_names_follow_apt() {
    assert_eq!(pkg("a", "1.0-1", b"").deb_file_name(), "a_1.0-1_amd64.deb");
    assert_eq!(
        pkg("dbus", "1:1.14-1", b"").deb_file_name(),
        "dbus_1%3a1.14-1_amd64.deb",
        "epoch colon as apt writes it"
    );
}

#[test]
fn harvest_adds_verified_debs_once() {
    let t = tempfile::tempdir().expect("tmp");
    let archives = t.path().join("archives");
    std::fs::create_dir_all(&archives).expect("mkdir");
    let a = pkg("a", "1:2", b"deb a");
    let b = pkg("b", "3", b"deb b");
    std::fs::write(archives.join(a.deb_file_name()), b"deb a").expect("w");
    let pool = Pool::open(&t.path().join("pool")).expect("pool");
    let l = lock(vec![a.clone(), b.clone()]);
    let h = pool.harvest(&l, &archives).expect("harvest");
    assert_eq!((h.added, h.present, h.absent), (1, 0, 1));
    assert!(pool.contains(&a) && !pool.contains(&b));
    let h = pool.harvest(&l, &archives).expect("again");
    assert_eq!((h.added, h.present), (0, 1));
}

#[test]
fn a_deb_with_another_digest_is_refused_on_the_way_in() {
    let t = tempfile::tempdir().expect("tmp");
    let archives = t.path().join("archives");
    std::fs::create_dir_all(&archives).expect("mkdir");
    let a = pkg("a", "1", b"the real one");
    std::fs::write(archives.join(a.deb_file_name()), b"something else").expect("w");
    let pool = Pool::open(&t.path().join("pool")).expect("pool");
    let e = pool
        .harvest(&lock(vec![a.clone()]), &archives)
        .expect_err("digest differs");
    assert!(matches!(e, PoolError::Digest { .. }), "{e}");
    assert!(e.to_string().contains("a=1"), "{e}");
    assert!(!pool.contains(&a), "nothing half-added");
}

#[test]
fn a_tampered_pool_file_is_refused_on_the_way_out() {
    let t = tempfile::tempdir().expect("tmp");
    let src = t.path().join("a.deb");
    std::fs::write(&src, b"deb a").expect("w");
    let a = pkg("a", "1", b"deb a");
    let pool = Pool::open(&t.path().join("pool")).expect("pool");
    assert!(pool.add(&a, &src).expect("add"));
    let staged = t.path().join("stage");
    pool.stage(std::slice::from_ref(&a), &staged)
        .expect("stage");
    assert_eq!(
        std::fs::read(staged.join("a_1_amd64.deb")).expect("r"),
        b"deb a"
    );
    std::fs::write(pool.object(&a.sha256), b"evil").expect("tamper");
    let e = pool
        .stage(std::slice::from_ref(&a), &t.path().join("stage2"))
        .expect_err("tampered");
    assert!(matches!(e, PoolError::Digest { .. }), "{e}");
}

#[test]
fn export_writes_a_pool_of_its_own_or_names_what_is_missing() {
    let t = tempfile::tempdir().expect("tmp");
    let a = pkg("a", "1", b"deb a");
    let b = pkg("b", "2", b"deb b");
    let pool = Pool::open(&t.path().join("pool")).expect("pool");
    let src = t.path().join("x.deb");
    std::fs::write(&src, b"deb a").expect("w");
    pool.add(&a, &src).expect("add");
    let e = pool
        .export(&lock(vec![a.clone(), b.clone()]), &t.path().join("ex1"))
        .expect_err("b missing");
    assert!(e.to_string().contains("b=2"), "{e}");
    std::fs::write(&src, b"deb b").expect("w");
    pool.add(&b, &src).expect("add b");
    let l = lock(vec![a.clone(), b.clone()]);
    let dest = t.path().join("ex2");
    assert_eq!(pool.export(&l, &dest).expect("export"), 2);
    let exported = Pool::open(&dest).expect("open export");
    assert!(exported.contains(&a) && exported.contains(&b));
    let text = std::fs::read_to_string(dest.join("packages.lock")).expect("lock copy");
    assert_eq!(
        Lock::parse(&text, &dest.join("packages.lock")).expect("parse"),
        l
    );
}
