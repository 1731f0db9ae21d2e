//! Unit tests of the release module. Tests that run real tools (cosign,
//! mkfs.ext4/sfdisk/debugfs for a disk image, systemd-measure,
//! osslsigncode) are host tests in `builder/tests/` (`release_sign.rs`,
//! `release_once.rs`, `pcr_tools.rs`, `exit_codes.rs`).

mod after_build;
mod pcr;
