//! Renders an mkosi configuration from an image definition.
//!
//! [`render`] is pure: definition + lock + a few build facts in, a map of
//! file path → content out, so the output is golden-file tested. The
//! caller ([`crate::build`]) writes it into a work directory and copies the
//! definition's own trees beside it.
//!
//! The rendered configuration builds a GPT disk with an EFI system partition
//! (systemd-boot + a UKI), a read-only root file system protected by
//! dm-verity (mkosi puts the root hash on the UKI's command line), and
//! definitions for systemd-repart at boot that create the writable /var
//! partition on first boot. See docs/building-images.md for why.

mod files;
pub mod state;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::lock::Lock;
use crate::spec::mirror::Mirrors;
use crate::spec::ImageSpec;

pub use files::{KEEL_EXE_NAME, MKOSI_INITRD_PACKAGES, VAR_LABEL};

/// The work directory's folder of extra .debs (from the package pool) that
/// mkosi turns into a local repository; empty when the archive has them all.
pub const PACKAGE_DIR: &str = "packages";

/// Build facts the rendering needs besides the definition.
#[derive(Debug, Clone)]
pub struct RenderInputs<'a> {
    pub lock: Option<&'a Lock>,
    /// The archives (from the definition or the host's apt configuration).
    pub mirrors: Mirrors,
    pub source_date_epoch: i64,
    /// Seed UUID for systemd-repart (partition UUIDs, file system ids).
    pub seed: String,
    /// Names (in the work dir's `trees/`) of extra trees, in order.
    pub trees: Vec<String>,
    /// systemd units shipped by the Keel agent, enabled when `[keel] agent`.
    pub agent_units: Vec<String>,
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub content: String,
    pub mode: u32,
}

/// The rendered configuration: relative path in the work directory → file.
pub type Rendered = BTreeMap<PathBuf, RenderedFile>;

fn file(content: String) -> RenderedFile {
    RenderedFile {
        content,
        mode: 0o644,
    }
}

fn script(content: String) -> RenderedFile {
    RenderedFile {
        content,
        mode: 0o755,
    }
}

/// Renders the whole mkosi configuration; see the module docs.
pub fn render(spec: &ImageSpec, inp: &RenderInputs<'_>) -> Rendered {
    let mut out = Rendered::new();
    out.insert("mkosi.conf".into(), file(mkosi_conf(spec, inp)));
    out.insert(
        "mkosi.pkgmngr/etc/apt/sources.list.d/mkosi.sources".into(),
        file(files::apt_sources(spec, &inp.mirrors)),
    );
    for (name, text) in files::build_partitions(spec) {
        out.insert(PathBuf::from("mkosi.repart").join(name), file(text));
    }
    for (path, text) in files::image_files(spec) {
        out.insert(PathBuf::from("mkosi.extra").join(path), file(text));
    }
    out.insert(
        "mkosi.postinst.chroot".into(),
        script(files::postinst(spec, inp)),
    );
    out.insert("mkosi.finalize".into(), script(files::finalize(spec)));
    out.insert(
        PathBuf::from(state::INITRD_DIR).join("mkosi.conf"),
        file(initrd_conf()),
    );
    for (path, content, mode) in state::initrd_files() {
        out.insert(path.into(), RenderedFile { content, mode });
    }
    out
}

fn push_list(s: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(s, "{key}=");
    for i in items {
        let _ = writeln!(s, "        {i}");
    }
}

fn mkosi_conf(spec: &ImageSpec, inp: &RenderInputs<'_>) -> String {
    let d = &spec.distribution;
    let mut s = String::from("# Rendered by keel from image.toml: do not edit.\n\n");
    // The initrd mounts /var and the persistent /etc overlay (see [`state`]).
    let _ = writeln!(s, "[Config]\nInitrdInclude={}\n", state::INITRD_DIR);
    let _ = writeln!(
        s,
        "[Distribution]\nDistribution={}\nRelease={}\nArchitecture={}\nMirror={}\n",
        d.name, d.release, d.architecture, inp.mirrors.main
    );
    let _ = writeln!(
        s,
        "[Output]\nFormat=disk\nOutput={name}\nImageId={name}\nImageVersion={ver}\n\
         ManifestFormat=json\nCompressOutput=no\nSeed={seed}\n",
        name = spec.image.name,
        ver = spec.image.version,
        seed = inp.seed
    );

    s.push_str("[Content]\n");
    let (packages, initrd) = match inp.lock {
        // Exact versions: the image and its initrd get what the lock says.
        Some(lock) => (lock.pinned(false), lock.pinned(true)),
        None => (spec.packages.install.clone(), spec.packages.initrd.clone()),
    };
    push_list(&mut s, "Packages", &packages);
    push_list(&mut s, "InitrdPackages", &initrd);
    // Always present (and usually empty, when mkosi does nothing with it),
    // so whether the pool was needed does not change the configuration.
    let _ = writeln!(s, "PackageDirectories={PACKAGE_DIR}");
    let _ = writeln!(
        s,
        "WithRecommends={}\nWithDocs={}\nCleanPackageMetadata=no\nSourceDateEpoch={}\n\
         Bootable=yes\nBootloader=systemd-boot\nUnifiedKernelImages=yes\nLocale=C.UTF-8\nTimezone=UTC",
        yes_no(spec.packages.with_recommends),
        yes_no(spec.packages.with_docs),
        inp.source_date_epoch,
    );
    if let Some(h) = &spec.image.hostname {
        let _ = writeln!(s, "Hostname={h}");
    }
    if spec.services.serial_autologin {
        s.push_str("Autologin=yes\n");
    }
    push_list(&mut s, "KernelCommandLine", &spec.kernel.command_line);
    if !spec.kernel.initrd_modules.is_empty() {
        // Only the listed modules (and their dependencies) go into the
        // initrd's module archive: mkosi's default copies all of them.
        s.push_str("KernelModulesInitrdExclude=.*\n");
        push_list(
            &mut s,
            "KernelModulesInitrdInclude",
            &spec.kernel.initrd_modules,
        );
    }
    let trees: Vec<String> = inp.trees.iter().map(|t| format!("trees/{t}:/")).collect();
    push_list(&mut s, "ExtraTrees", &trees);
    let mut remove = vec![
        // Host keys would be shared by every node: each generates its own on first boot.
        "/etc/ssh/ssh_host_*".to_string(),
        // bootctl's seed would be shared by every node (and differ per
        // build): systemd-boot creates one on each node's first boot.
        "/efi/loader/random-seed".to_string(),
    ];
    remove.extend(NON_DETERMINISTIC.iter().map(|f| f.to_string()));
    remove.extend([
        // nvme-cli's postinst writes a random host NQN and host ID: one per
        // build, shared by every node, while an NVMe-oF target tells hosts
        // apart by them. Without the files nvme-cli derives both from the
        // machine's own DMI UUID.
        "/etc/nvme/hostnqn".to_string(),
        "/etc/nvme/hostid".to_string(),
    ]);
    remove.extend(spec.files.remove.iter().cloned());
    push_list(&mut s, "RemoveFiles", &remove);
    s
}

/// Files that differ between two builds of the same lock and that nothing
/// needs: caches and logs with build timestamps. Removed from the image
/// and from mkosi's default initrd.
const NON_DETERMINISTIC: &[&str] = &[
    "/var/cache/ldconfig/aux-cache",
    "/var/log/*.log",
    "/var/log/apt/*",
    // apt's binary caches differ between two builds of the same lock;
    // apt rebuilds them when needed.
    "/var/cache/apt/*.bin",
];

/// The configuration mkosi adds to its default initrd (`InitrdInclude=`,
/// with the files of [`state`]): mkosi builds the default initrd as an
/// image of its own, which needs the same clean-up, or the UKI differs
/// between two builds of one lock.
fn initrd_conf() -> String {
    let mut s = String::from(
        "# Rendered by keel: added to mkosi's default initrd (InitrdInclude=).\n\n[Content]\n",
    );
    let files: Vec<String> = NON_DETERMINISTIC.iter().map(|f| f.to_string()).collect();
    push_list(&mut s, "RemoveFiles", &files);
    s
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests;
