//! The hidden `keel sbom`: SBOMs for a Debian tree, by hand (what
//! `keel build` does inside the image through `keel internal finalize`).

use std::path::PathBuf;

use clap::Args;

/// Options of the hidden `keel sbom`.
#[derive(Debug, Args)]
pub struct SbomArgs {
    /// Root of a Debian tree (holds var/lib/dpkg/status).
    #[arg(long)]
    pub root: PathBuf,
    /// Where to write sbom.spdx.json and sbom.cdx.json (they also go into ROOT/usr/share/keel/sbom).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "image")]
    pub image_name: String,
    #[arg(long, default_value = "0")]
    pub image_version: String,
    #[arg(long, default_value = "debian")]
    pub distribution: String,
    #[arg(long, default_value = "bookworm")]
    pub release: String,
    #[arg(long, default_value = "amd64")]
    pub architecture: String,
}

/// Runs the hidden `keel sbom`.
pub fn run_sbom(a: SbomArgs) -> anyhow::Result<()> {
    super::finalize_tree(&super::TreeContext {
        root: a.root,
        publish_dir: a.out,
        image_name: a.image_name,
        image_version: a.image_version,
        distribution: a.distribution,
        release: a.release,
        architecture: a.architecture,
    })
}
