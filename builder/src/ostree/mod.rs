//! The release repository: every signed release committed to an OSTree
//! repository (archive mode, served as static files over HTTPS), so a node
//! can later pull a small static delta instead of a whole disk image.
//!
//! What a commit holds ([`commit`]): the image's root file tree exactly as
//! the release's dm-verity-protected erofs root partition holds it (read by
//! mounting that partition read-only: ownership, modes, xattrs and symlinks
//! as built), with the ESP's content (systemd-boot, the UKI) under `/boot`,
//! where mkosi had it before systemd-repart split it off. Commit metadata
//! (all strings) carries the release: version, image name, architecture,
//! verity root hash, UKI path and sha256, and the cosign-signed
//! `manifest.json` itself with its signature, so a node can check that what
//! it is about to boot is what the release manifest names.
//!
//! Signing ([`keys`]): libostree 2022.7 as Debian bookworm builds it has no
//! ed25519 signer (`ostree sign --sign-type=ed25519` answers "Requested
//! signature type is not implemented"), so commits and the summary are
//! signed through libostree's GPG support with an **ed25519 OpenPGP key**
//! (`ostree-gpg.key` / `ostree-gpg.pub` beside the cosign key). A node
//! verifies with `gpg-verify=true` / `gpg-verify-summary=true`.
//!
//! Publishing ([`publish`]): static deltas from the previous N commits of
//! each `keel/` ref (optionally from scratch too), then the summary,
//! regenerated and signed.

pub mod cli;
pub mod commit;
pub mod extract;
pub mod keys;
pub mod log;
pub mod publish;

use std::path::Path;

use anyhow::Context as _;
use ostree::gio;

/// Every ref Keel writes starts with this.
pub const REF_PREFIX: &str = "keel/";

/// The default channel of a ref (`keel/<image>/<arch>/<channel>`).
pub const DEFAULT_CHANNEL: &str = "stable";

/// Commit metadata keys (values are strings: integers would need
/// byte-order care, `ostree show` prints them byte-swapped).
pub mod meta {
    /// Image version; `version` is the key `ostree log` shows.
    pub const VERSION: &str = "version";
    pub const IMAGE: &str = "keel.image";
    /// OSTree-style architecture name (`x86_64`, `aarch64`).
    pub const ARCH: &str = "keel.arch";
    pub const SOURCE_DATE_EPOCH: &str = "keel.source-date-epoch";
    pub const VERITY_ROOTHASH: &str = "keel.verity-roothash";
    /// Path of the UKI inside the commit (`/boot/EFI/Linux/...`).
    pub const UKI_PATH: &str = "keel.uki-path";
    /// The UKI's file name on the release's ESP (holds the root hash); in
    /// the commit it is `/boot/EFI/Linux/<image>.efi`, a name stable across
    /// releases so deltas patch it.
    pub const UKI_ESP_NAME: &str = "keel.uki-esp-name";
    pub const UKI_SHA256: &str = "keel.uki-sha256";
    pub const MANIFEST_SHA256: &str = "keel.manifest-sha256";
    /// `manifest.json`, byte for byte as signed.
    pub const MANIFEST: &str = "keel.manifest";
    /// `manifest.json.sig`: cosign's base64 ECDSA signature over it.
    pub const MANIFEST_SIGNATURE: &str = "keel.manifest-signature";
}

/// `keel/<image>/<arch>/<channel>`.
pub fn ref_name(image: &str, arch: &str, channel: &str) -> String {
    format!("{REF_PREFIX}{image}/{arch}/{channel}")
}

/// Checks a ref component (image name, channel): what OSTree allows in a
/// ref and no `/`, so the ref keeps its four parts.
pub fn check_ref_part(what: &str, s: &str) -> anyhow::Result<()> {
    let ok = !s.is_empty()
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    anyhow::ensure!(
        ok,
        "{what} {s:?} cannot be part of an OSTree ref: use letters, digits, '-', '_' and '.'"
    );
    Ok(())
}

/// Creates an archive-mode repository at `dir` (an existing one is kept:
/// OSTree's own init is idempotent for the same mode) and returns it open.
pub fn init(dir: &Path) -> anyhow::Result<ostree::Repo> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let repo = ostree::Repo::new_for_path(dir);
    if dir.join("config").is_file() {
        return open(dir);
    }
    repo.create(ostree::RepoMode::Archive, gio::Cancellable::NONE)
        .with_context(|| {
            format!(
                "creating an archive-mode OSTree repository in {}",
                dir.display()
            )
        })?;
    Ok(repo)
}

/// Opens an existing repository, saying what to do when there is none.
pub fn open(dir: &Path) -> anyhow::Result<ostree::Repo> {
    if !dir.join("config").is_file() {
        anyhow::bail!(
            "{} is not an OSTree repository (no config file): create it with `keel repo init {}`",
            dir.display(),
            dir.display()
        );
    }
    let repo = ostree::Repo::new_for_path(dir);
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("opening OSTree repository {}", dir.display()))?;
    if repo.mode() != ostree::RepoMode::Archive {
        anyhow::bail!(
            "{} is a {:?}-mode repository; a release repository is served over HTTP and must be archive mode",
            dir.display(),
            repo.mode()
        );
    }
    Ok(repo)
}

/// The string value of `key` in a commit's metadata, if present.
pub fn commit_meta(commit: &ostree::glib::Variant, key: &str) -> Option<String> {
    let meta = commit.child_value(0);
    let dict = ostree::glib::VariantDict::new(Some(&meta));
    dict.lookup::<String>(key).ok().flatten()
}

/// The commits of `refname` from its head back, at most `limit`.
pub fn history(
    repo: &ostree::Repo,
    refname: &str,
    limit: usize,
) -> anyhow::Result<Vec<(String, ostree::glib::Variant)>> {
    let mut out = Vec::new();
    let mut next = repo
        .resolve_rev(refname, true)
        .with_context(|| format!("resolving {refname}"))?
        .map(|s| s.to_string());
    while let Some(c) = next {
        if out.len() >= limit {
            break;
        }
        // A pulled repository may lack older commits: history ends there.
        let Some(v) = repo
            .load_variant_if_exists(ostree::ObjectType::Commit, &c)
            .with_context(|| format!("loading commit {c}"))?
        else {
            break;
        };
        next = ostree::commit_get_parent(&v).map(|s| s.to_string());
        out.push((c, v));
    }
    Ok(out)
}

/// Every `keel/` ref with its head commit, sorted by name.
pub fn keel_refs(repo: &ostree::Repo) -> anyhow::Result<Vec<(String, String)>> {
    let refs = repo
        .list_refs(None, gio::Cancellable::NONE)
        .context("listing refs")?;
    let mut v: Vec<(String, String)> = refs
        .into_iter()
        .filter(|(name, _)| name.starts_with(REF_PREFIX))
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests;
