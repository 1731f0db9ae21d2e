use super::*;

#[test]
fn ref_names_have_four_parts_and_refuse_odd_components() {
    assert_eq!(
        ref_name("test-tiny", "x86_64", "stable"),
        "keel/test-tiny/x86_64/stable"
    );
    for good in ["stable", "store-node", "beta_2", "v1.2"] {
        check_ref_part("channel", good).expect(good);
    }
    for bad in ["", "a/b", ".hidden", "-x", "sp ace", "ü"] {
        let e = check_ref_part("channel", bad).expect_err(bad).to_string();
        assert!(e.contains("letters, digits"), "{e}");
    }
}

#[test]
fn delta_paths_use_ostree_modified_base64() {
    // Checked against `ostree static-delta generate` (2022.7) by hand.
    let from = "553a6a63a1bb6a83595f6129b4176361de99420cdb2603e355c7f800ba8d00bd";
    let to = "f5fa7139381e34fa58c638d7b07530fb6aa161bf1021eebfe914965fad2c361f";
    let d = publish::delta_dir(std::path::Path::new("/r"), Some(from), to).expect("path");
    assert_eq!(
        d,
        std::path::Path::new(
            "/r/deltas/VT/pqY6G7aoNZX2EptBdjYd6ZQgzbJgPjVcf4ALqNAL0-9fpxOTgeNPpYxjjXsHUw+2qhYb8QIe6_6RSWX60sNh8"
        )
    );
    let s = publish::delta_dir(std::path::Path::new("/r"), None, to).expect("path");
    assert_eq!(
        s,
        std::path::Path::new("/r/deltas/9f/pxOTgeNPpYxjjXsHUw+2qhYb8QIe6_6RSWX60sNh8")
    );
    assert!(publish::checksum_b64("zz").is_err());
}

#[test]
fn open_refuses_a_missing_repository_and_says_how_to_make_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let e = open(dir.path()).expect_err("no repo").to_string();
    assert!(e.contains("keel repo init"), "{e}");
    let repo = init(&dir.path().join("r")).expect("init");
    assert_eq!(repo.mode(), ::ostree::RepoMode::Archive);
    // Idempotent.
    init(&dir.path().join("r")).expect("init again");
    open(&dir.path().join("r")).expect("open");
}

#[test]
fn keys_beside_the_cosign_key() {
    let (k, p) = keys::beside(std::path::Path::new("/etc/keel/cosign.key"));
    assert_eq!(k, std::path::Path::new("/etc/keel/ostree-gpg.key"));
    assert_eq!(p, std::path::Path::new("/etc/keel/ostree-gpg.pub"));
}

#[test]
fn the_root_partition_type_names_the_architecture() {
    use crate::release::image::{types, Partition};
    let p = |t: &str| Partition {
        type_guid: t.to_string(),
        label: String::new(),
        offset: 0,
        size: 0,
    };
    let parts = [p(types::ESP), p(types::ROOT_ARM64)];
    let (root, arch) = extract::root_partition(&parts).expect("arm64 root");
    assert_eq!(
        (root.type_guid.as_str(), arch),
        (types::ROOT_ARM64, "aarch64")
    );
    let (_, arch) = extract::root_partition(&[p(types::ROOT_X86_64)]).expect("x86-64 root");
    assert_eq!(arch, "x86_64");
    let e = extract::root_partition(&[p(types::ESP), p(types::LINUX_DATA)])
        .expect_err("no root")
        .to_string();
    assert!(e.contains("no root partition"), "{e}");
}
