//! Table tests for the disk policy.

use super::*;

// Captured from `lsblk -J -b -p -o NAME,TYPE,SIZE,RO,MOUNTPOINT` on the build machine.
const LSBLK_HOST: &str = r#"{
   "blockdevices": [
      {"name": "/dev/zram0", "type": "disk", "size": 0, "ro": false, "mountpoint": null},
      {"name": "/dev/vda", "type": "disk", "size": 274877906944, "ro": false, "mountpoint": "/"}
   ]
}"#;

// A typical store node: system disk with partitions, two data disks, a DVD.
const LSBLK_NODE: &str = r#"{"blockdevices": [
  {"name": "/dev/sda", "type": "disk", "size": 256060514304, "ro": false, "mountpoint": null,
   "children": [
     {"name": "/dev/sda1", "type": "part", "size": 536870912, "ro": false, "mountpoint": "/boot/efi"},
     {"name": "/dev/sda2", "type": "part", "size": 255523643392, "ro": false, "mountpoint": "/"}]},
  {"name": "/dev/sdb", "type": "disk", "size": 4000787030016, "ro": false, "mountpoint": null},
  {"name": "/dev/sdc", "type": "disk", "size": 4000787030016, "ro": false, "mountpoint": null},
  {"name": "/dev/sr0", "type": "rom", "size": 1073741312, "ro": true, "mountpoint": null}
]}"#;

fn dev(path: &str, kind: &str, size: u64, sig: Option<&str>) -> BlockDev {
    BlockDev {
        path: path.into(),
        kind: kind.into(),
        size,
        ro: false,
        mounted: false,
        children: false,
        signature: sig.map(str::to_string),
    }
}

fn policy(devices: &[&str], allow_wipe: bool) -> DiskPolicy {
    DiskPolicy {
        devices: devices.iter().map(|s| s.to_string()).collect(),
        allow_wipe,
        file_backed_gib: None,
    }
}

fn kinds(ds: &[Decision]) -> Vec<String> {
    ds.iter()
        .map(|d| match d {
            Decision::Use(p) => format!("use {}", p.display()),
            Decision::Wipe(p) => format!("wipe {}", p.display()),
            Decision::Ours(p) => format!("ours {}", p.display()),
            Decision::Refuse(p, _) => format!("refuse {}", p.display()),
            Decision::Skip(p, _) => format!("skip {}", p.display()),
        })
        .collect()
}

#[test]
fn lsblk_samples_parse() {
    let h = parse_lsblk(LSBLK_HOST).expect("host");
    assert_eq!(h.len(), 2);
    assert!(h[1].mounted && !h[0].mounted);
    let n = parse_lsblk(LSBLK_NODE).expect("node");
    assert_eq!(n.len(), 6);
    assert!(
        n[0].mounted && n[0].children,
        "system disk: mounted partitions"
    );
    assert!(parse_lsblk("{}").is_err());
}

#[test]
fn policy_table() {
    let mut node = parse_lsblk(LSBLK_NODE).expect("node");
    node[0].signature = Some("gpt partition table".into());
    node[4].signature = Some("ext4".into()); // sdc holds a filesystem
    let ext4_loop = dev("/dev/loop3", "loop", 1 << 30, Some("ext4"));
    let blank_loop = dev("/dev/loop4", "loop", 1 << 30, None);
    let mut all = node.clone();
    all.push(ext4_loop);
    all.push(blank_loop);
    let none: Vec<PathBuf> = vec![];
    let cases: Vec<(&str, DiskPolicy, Vec<PathBuf>, Vec<&str>)> = vec![
        // Automatic: only the blank whole disk; never the system disk, partitions,
        // the DVD, loops, or a disk with a filesystem.
        (
            "auto",
            policy(&[], false),
            none.clone(),
            vec![
                "skip /dev/sda",
                "skip /dev/sda1",
                "skip /dev/sda2",
                "use /dev/sdb",
                "skip /dev/sdc",
                "skip /dev/sr0",
                "skip /dev/loop3",
                "skip /dev/loop4",
            ],
        ),
        // allow-wipe does not make automatic selection wipe.
        (
            "auto+wipe",
            policy(&[], true),
            none.clone(),
            vec![
                "skip /dev/sda",
                "skip /dev/sda1",
                "skip /dev/sda2",
                "use /dev/sdb",
                "skip /dev/sdc",
                "skip /dev/sr0",
                "skip /dev/loop3",
                "skip /dev/loop4",
            ],
        ),
        (
            "explicit data disk, no wipe",
            policy(&["/dev/sdc"], false),
            none.clone(),
            vec!["refuse /dev/sdc"],
        ),
        (
            "explicit data disk, wipe",
            policy(&["/dev/sdc"], true),
            none.clone(),
            vec!["wipe /dev/sdc"],
        ),
        (
            "mounted system disk even with wipe",
            policy(&["/dev/sda"], true),
            none.clone(),
            vec!["refuse /dev/sda"],
        ),
        (
            "mounted partition",
            policy(&["/dev/sda2"], true),
            none.clone(),
            vec!["refuse /dev/sda2"],
        ),
        (
            "dvd",
            policy(&["/dev/sr0"], true),
            none.clone(),
            vec!["refuse /dev/sr0"],
        ),
        (
            "missing",
            policy(&["/dev/sdz"], false),
            none.clone(),
            vec!["refuse /dev/sdz"],
        ),
        (
            "glob",
            policy(&["/dev/sd[b-z]"], false),
            none.clone(),
            vec!["use /dev/sdb", "refuse /dev/sdc"],
        ),
        (
            "glob no match is fine",
            policy(&["/dev/nvme*"], false),
            none.clone(),
            vec![],
        ),
        (
            "loop with fs",
            policy(&["/dev/loop3"], false),
            none.clone(),
            vec!["refuse /dev/loop3"],
        ),
        (
            "blank loop",
            policy(&["/dev/loop4"], false),
            none.clone(),
            vec!["use /dev/loop4"],
        ),
        (
            "our own osd",
            policy(&["/dev/sdc"], false),
            vec![PathBuf::from("/dev/sdc")],
            vec!["ours /dev/sdc"],
        ),
        (
            "listed twice",
            policy(&["/dev/sdb", "/dev/sd?"], false),
            none.clone(),
            vec!["use /dev/sdb", "skip /dev/sda"],
        ),
    ];
    for (name, pol, ours, want) in cases {
        let got = kinds(&select(&all, &pol, &ours));
        if name == "listed twice" {
            // sda matched by the glob is refused (mounted): explicit selection.
            assert_eq!(
                got,
                vec!["use /dev/sdb", "refuse /dev/sda", "refuse /dev/sdc"],
                "{name}"
            );
            continue;
        }
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn refusal_says_why_and_how() {
    let d = dev("/dev/sdc", "disk", 1 << 40, Some("ext4"));
    let r = select(&[d], &policy(&["/dev/sdc"], false), &[]);
    let Decision::Refuse(_, why) = &r[0] else {
        panic!("{r:?}")
    };
    assert!(why.contains("ext4") && why.contains("allow-wipe"), "{why}");
}

#[test]
fn globs() {
    for (p, s, want) in [
        ("/dev/sd[b-z]", "/dev/sdb", true),
        ("/dev/sd[b-z]", "/dev/sda", false),
        ("/dev/sd[!a]", "/dev/sdc", true),
        ("/dev/sd?", "/dev/sdb1", false),
        ("/dev/sd*", "/dev/sdb1", true),
        ("/dev/vd[", "/dev/vda", false),
    ] {
        assert_eq!(glob_match(p, s), want, "{p} vs {s}");
    }
}
