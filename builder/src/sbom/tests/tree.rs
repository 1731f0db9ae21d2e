//! A Debian tree for SBOM tests, from real captured files: a dpkg status
//! database, an apt `Packages` index (the `.deb` checksums), two
//! `debian/copyright` files (one DEP-5, one not), a Keel binary and another
//! program. Shared with `builder/tests/sbom_spdx.rs` (through `#[path]`), so
//! it uses nothing but std.

use std::path::Path;

/// Writes the tree under `root`.
pub fn tree(root: &Path) {
    let w = |p: &str, data: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    };
    w(
        "var/lib/dpkg/status",
        include_bytes!("../testdata/dpkg-status"),
    );
    w(
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
        include_bytes!("../testdata/Packages"),
    );
    w(
        "usr/share/doc/systemd/copyright",
        include_bytes!("../testdata/copyright-systemd"),
    );
    w(
        "usr/share/doc/base-files/copyright",
        include_bytes!("../testdata/copyright-base-files"),
    );
    w("usr/bin/keel-bootstrap", b"\x7fELF not really");
    w("usr/bin/ls", b"\x7fELF");
}
