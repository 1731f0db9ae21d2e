use super::*;
use crate::build::sfdisk::Table;

const SEED: &str = "0e5a3c1b-7d7e-4b4c-9a39-3f0a6c0b9d11";
const ROOT: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const OLD: &str = "e3809bc39a86e07b89827e97ef003f4903a7a0bb674a6b8342362732955dd30d";
const NEW: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn salt_and_uuid_are_stable_and_distinct() {
    // Pinned: a change here changes every image's root hash.
    assert_eq!(
        derive_salt(SEED, ROOT, 32),
        derive_salt(SEED, &ROOT.to_ascii_lowercase(), 32)
    );
    let salt = derive_salt(SEED, ROOT, 32);
    assert_eq!(salt.len(), 64);
    assert_eq!(salt, derive_salt(SEED, ROOT, 32));
    assert_eq!(
        &derive_salt(SEED, ROOT, 48)[..64],
        salt,
        "longer salts extend"
    );
    assert_eq!(derive_salt(SEED, ROOT, 48).len(), 96);
    let uuid = derive_uuid(SEED, ROOT);
    assert_eq!(uuid, derive_uuid(SEED, ROOT));
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
    assert!("89ab".contains(&uuid[19..20]), "RFC 4122 variant: {uuid}");
    // Each purpose, partition type and seed gets its own value.
    assert_ne!(salt[..32], uuid.replace('-', ""));
    assert_ne!(
        salt,
        derive_salt(SEED, "B921B045-1DF0-41C3-AF44-4C6F280D3FAE", 32)
    );
    let other = "11111111-2222-4333-8444-555555555555";
    assert_ne!(salt, derive_salt(other, ROOT, 32));
    assert_ne!(uuid, derive_uuid(other, ROOT));
    assert_eq!(
        salt,
        hex::encode(Sha256::digest(
            format!("keel-verity-salt:{}:{SEED}:0", ROOT.to_ascii_lowercase()).as_bytes()
        )),
        "the documented derivation"
    );
}

#[test]
fn superblock_is_read_from_a_real_dump() {
    let sb = Superblock::parse(include_str!("../testdata/veritysetup-dump.txt")).expect("parses");
    assert_eq!(
        sb,
        Superblock {
            uuid: "bb3b488a-8974-46ed-b216-6d4327b47d6b".into(),
            hash_type: 1,
            data_blocks: 1296928,
            data_block_size: 512,
            hash_block_size: 512,
            algorithm: "sha256".into(),
            salt: "9953ba5d007ef4da357a3551521eb659a74fe045913bf99065cd97ff8a2b8974".into(),
        }
    );
    let e = Superblock::parse("UUID: x\n").expect_err("incomplete");
    assert!(e.to_string().contains("Hash type"), "{e}");
}

#[test]
fn root_hash_is_read_from_format_output() {
    let out = include_str!("../testdata/veritysetup-format.txt");
    assert_eq!(parse_root_hash(out).expect("hash"), OLD);
    assert!(parse_root_hash("Root hash: \tnope\n").is_err());
    assert!(parse_root_hash("Salt: 00\n").is_err());
}

#[test]
fn partition_uuids_are_the_root_hash_halves() {
    // What systemd-repart did in the captured image (testdata/sfdisk-test-tiny.json).
    let t = Table::parse(include_str!("../testdata/sfdisk-test-tiny.json")).expect("parses");
    let data = t.find_type(ROOT).expect("root");
    let hash = t.find_type(VERITY_PAIRS[0].1).expect("verity");
    check_labels(data, hash, OLD).expect("repart's labels");
    let (d, h) = partition_uuids(OLD).expect("uuids");
    assert_eq!(d, "E3809BC3-9A86-E07B-8982-7E97EF003F49");
    assert_eq!(h, "03A7A0BB-674A-6B83-4236-2732955DD30D");
    let e = check_labels(data, hash, NEW).expect_err("other hash");
    assert!(e.to_string().contains("not the halves"), "{e}");
    assert!(partition_uuids("abc").is_err());
}

/// A minimal PE32+ file with one `.cmdline` section holding `cmdline`,
/// optionally with a (fake) Authenticode certificate table entry.
fn pe(cmdline: &[u8], signed: bool) -> Vec<u8> {
    let mut b = vec![0u8; 0x400];
    b[0..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    b[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
    b[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
    b[coff + 18..coff + 20].copy_from_slice(&0x22u16.to_le_bytes());
    let opt = coff + 20;
    b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    b[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes()); // section alignment
    b[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes()); // file alignment
    b[opt + 56..opt + 60].copy_from_slice(&0x2000u32.to_le_bytes()); // size of image
    b[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes()); // size of headers
    b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
    if signed {
        let sec = opt + 112 + 4 * 8;
        b[sec..sec + 4].copy_from_slice(&0x400u32.to_le_bytes());
        b[sec + 4..sec + 8].copy_from_slice(&8u32.to_le_bytes());
    }
    let sh = opt + 240;
    b[sh..sh + 8].copy_from_slice(b".cmdline");
    b[sh + 8..sh + 12].copy_from_slice(&(cmdline.len() as u32).to_le_bytes());
    b[sh + 12..sh + 16].copy_from_slice(&0x1000u32.to_le_bytes());
    b[sh + 16..sh + 20].copy_from_slice(&0x200u32.to_le_bytes());
    b[sh + 20..sh + 24].copy_from_slice(&0x200u32.to_le_bytes());
    b[0x200..0x200 + cmdline.len()].copy_from_slice(cmdline);
    b
}

#[test]
fn uki_root_hash_is_replaced_in_cmdline() {
    let cmdline = format!("console=ttyS0 roothash={OLD} ro");
    let orig = pe(cmdline.as_bytes(), false);
    let patched = patch_uki(&orig, OLD, NEW).expect("patches");
    assert_eq!(patched.len(), orig.len());
    assert_eq!(
        crate::build::outputs::roothash_from_uki(&patched).as_deref(),
        Some(NEW)
    );
    let diff: Vec<usize> = (0..orig.len()).filter(|&i| orig[i] != patched[i]).collect();
    assert!(diff
        .iter()
        .all(|&i| (0x200..0x200 + cmdline.len()).contains(&i)));
}

#[test]
fn uki_patch_refuses_missing_ambiguous_or_misplaced_hashes() {
    let ok = format!("roothash={OLD}");
    assert_eq!(
        patch_uki(&pe(b"console=ttyS0", false), OLD, NEW),
        Err(PatchError::NotFound(OLD.into()))
    );
    assert_eq!(
        patch_uki(
            &pe(format!("{ok} usrhash={OLD}").as_bytes(), false),
            OLD,
            NEW
        ),
        Err(PatchError::Ambiguous { count: 2 })
    );
    assert_eq!(
        patch_uki(&pe(format!("verityhash={OLD}").as_bytes(), false), OLD, NEW),
        Err(PatchError::NotFound(OLD.into())),
        "the hash is only replaced as roothash="
    );
    let mut outside = pe(b"console=ttyS0", false);
    outside[0x300..0x300 + ok.len()].copy_from_slice(ok.as_bytes());
    assert_eq!(
        patch_uki(&outside, OLD, NEW),
        Err(PatchError::OutsideCmdline)
    );
    assert_eq!(
        patch_uki(&pe(ok.as_bytes(), true), OLD, NEW),
        Err(PatchError::Signed)
    );
    assert_eq!(
        patch_uki(&pe(ok.as_bytes(), false), OLD, &NEW[..10]),
        Err(PatchError::Length)
    );
    assert!(matches!(
        patch_uki(b"not a PE file", OLD, NEW),
        Err(PatchError::NotPe(_))
    ));
}

#[test]
fn finds_needles_across_chunk_boundaries() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("img");
    let mut data = vec![0u8; (16 << 20) * 2 + 100];
    let chunk = 16 << 20;
    // One needle straddling the first chunk boundary, one at the very end,
    // one before the searched range.
    data[chunk - 3..chunk + 3].copy_from_slice(b"NEEDLE");
    let end = data.len() - 6;
    data[end..].copy_from_slice(b"NEEDLE");
    data[10..16].copy_from_slice(b"NEEDLE");
    data[5000..5003].copy_from_slice(b"xyz");
    std::fs::write(&p, &data).expect("write");
    let hits = find_in_file(&p, 100, data.len() as u64 - 100, &[b"NEEDLE", b"xyz"]).expect("scan");
    assert_eq!(
        hits,
        vec![(1, 5000), (0, chunk as u64 - 3), (0, end as u64)],
    );
    assert!(find_in_file(&p, 0, 12, &[b"NEEDLE"])
        .expect("scan")
        .is_empty());
}
