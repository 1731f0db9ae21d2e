use super::*;

/// Captured from a Debian 12 host (root on sda2, a USB stick's first
/// partition mounted at a path with a space).
const MOUNTINFO: &str = "\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
25 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 22 8:1 / /boot/efi rw,relatime shared:2 - vfat /dev/sda1 rw,fmask=0077
91 22 8:17 / /media/tech/KEEL\\040STICK rw,nosuid,nodev,relatime shared:40 - vfat /dev/sdb1 rw
";

fn disk(name: &str, devs: &[(&str, &str)], size: u64) -> Disk {
    Disk {
        path: PathBuf::from(format!("/dev/{name}")),
        name: name.into(),
        size,
        logical_block: 512,
        description: String::new(),
        removable: true,
        read_only: false,
        in_tree: devs
            .iter()
            .map(|(d, n)| Node {
                dev: d.to_string(),
                name: n.to_string(),
                holder: n.starts_with("dm-"),
            })
            .collect(),
    }
}

#[test]
fn mountinfo_is_parsed_with_escapes() {
    let m = parse_mountinfo(MOUNTINFO);
    assert_eq!(m.len(), 4);
    assert_eq!(
        m[3],
        Mount {
            dev: "8:17".into(),
            mount_point: "/media/tech/KEEL STICK".into(),
            source: "/dev/sdb1".into()
        }
    );
    assert_eq!(
        parse_swaps("Filename\tType\tSize\tUsed\tPriority\n/dev/sdc2 partition 1 0 -2\n"),
        ["/dev/sdc2"]
    );
}

#[test]
fn system_mounted_swap_small_and_stacked_disks_are_refused() {
    let mounts = parse_mountinfo(MOUNTINFO);
    let sda = disk(
        "sda",
        &[("8:0", "sda"), ("8:1", "sda1"), ("8:2", "sda2")],
        1 << 40,
    );
    let why = sda.refusal(1 << 30, &mounts, &[]).expect("system disk");
    assert!(
        why.contains("holds the running system (/dev/sda2 is mounted on /)"),
        "{why}"
    );

    let sdb = disk("sdb", &[("8:16", "sdb"), ("8:17", "sdb1")], 32 << 30);
    let why = sdb.refusal(1 << 30, &mounts, &[]).expect("mounted");
    assert!(
        why.contains("is mounted (/dev/sdb1 on /media/tech/KEEL STICK)"),
        "{why}"
    );

    let sdc = disk("sdc", &[("8:32", "sdc"), ("8:34", "sdc2")], 32 << 30);
    let why = sdc
        .refusal(1 << 30, &mounts, &["/dev/sdc2".into()])
        .expect("swap");
    assert!(why.contains("in use as swap (/dev/sdc2)"), "{why}");

    let sdd = disk(
        "sdd",
        &[("8:48", "sdd"), ("8:49", "sdd1"), ("253:0", "dm-0")],
        32 << 30,
    );
    let why = sdd.refusal(1 << 30, &mounts, &[]).expect("stacked");
    assert!(why.contains("in use by dm-0"), "{why}");

    // A RAID array is a disk like any other: its partitions are not holders.
    let md = disk("md0", &[("9:0", "md0"), ("259:5", "md0p1")], 32 << 30);
    assert_eq!(md.refusal(1 << 30, &mounts, &[]), None);

    let sde = disk("sde", &[("8:64", "sde")], 512 << 20);
    let why = sde.refusal(1 << 30, &mounts, &[]).expect("small");
    assert!(why.contains("is too small: 512.00 MiB"), "{why}");
    assert_eq!(
        sde.refusal(512 << 20, &mounts, &[]),
        None,
        "exactly large enough"
    );
}

#[test]
fn device_numbers_decode_like_glibc() {
    assert_eq!(majmin(0x0811), "8:17");
    assert_eq!(majmin((259 << 8) | 3), "259:3");
    // minor 300 needs the high minor bits (makedev(259, 300)).
    assert_eq!(majmin(0x2c | (259 << 8) | (0x100 << 12)), "259:300");
}
