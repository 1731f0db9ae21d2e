//! PCR prediction from known inputs: PCR 4's components replay to its
//! value, and PCR 11 follows the systemd-stub version inside the UKI. The
//! cross-checks with the real tools are in `builder/tests/pcr_tools.rs`.

use crate::release::pcr::*;

#[test]
fn pcr4_replays_its_components() {
    let apps = [("boot loader", [1u8; 32]), ("UKI", [2u8; 32])];
    let p = pcr4(&apps);
    let mut pcr = [0u8; 32];
    for c in &p.components {
        let d: [u8; 32] = hex::decode(&c.sha256).expect("hex").try_into().expect("32");
        extend(&mut pcr, &d);
    }
    assert_eq!(p.value.as_deref(), Some(hex::encode(pcr).as_str()));
    assert_eq!(p.components.len(), 4, "action, separator, two applications");
    assert_eq!(
        p.source,
        keel_manifest::PcrSource::PredictedFirmwareDependent
    );
}

#[test]
fn pcr11_follows_the_stub_inside_the_uki() {
    let sec = |n: &str, d: &[u8]| (n.to_string(), d.to_vec());
    let with = |magic: &str| {
        vec![
            sec(".sdmagic", magic.as_bytes()),
            sec(".osrel", b"ID=debian\n"),
            sec(".cmdline", b"ro"),
            sec(".uname", b"6.1.0-41-amd64\n"),
            sec(".sbat", b"sbat,1\n"),
            sec(".initrd", b"cpio"),
            sec(".linux", b"kernel"),
        ]
    };
    let old = with("#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####\0");
    let new = with("#### LoaderInfo: systemd-stub 254.26-1~bpo12+1 ####\0");
    assert_eq!(stub_version(&old), Some(252));
    assert_eq!(stub_version(&new), Some(254));
    let what = |e: &keel_manifest::PcrExpectation| -> Vec<String> {
        e.components.iter().map(|c| c.what.clone()).collect()
    };
    let o = what(&pcr11(&old));
    let n = what(&pcr11(&new));
    assert!(
        !o.iter()
            .any(|w| w.starts_with(".uname") || w.starts_with(".sbat")),
        "systemd-stub 252 measures neither .uname nor .sbat: {o:?}"
    );
    assert!(n.contains(&".uname".to_string()) && n.contains(&".sbat".to_string()));
    assert_ne!(pcr11(&old).value, pcr11(&new).value);
    // No magic (not a systemd-stub UKI we know): the current list.
    assert_eq!(stub_version(&old[1..]), None);
    assert_eq!(what(&pcr11(&new[1..])), n);
}
