//! Hooks mkosi calls back into during `keel build`: the rendered
//! mkosi.finalize script runs `keel internal finalize` on the finished image
//! tree, which hands it to the supply chain (SBOMs, private-key scan)
//! before mkosi seals it into the read-only, verity-protected partition.

use crate::cli::FinalizeArgs;

/// Runs `keel internal finalize`.
pub fn finalize(args: FinalizeArgs) -> anyhow::Result<()> {
    let ctx = crate::sbom::TreeContext {
        root: args.root,
        publish_dir: args.publish_dir,
        image_name: args.image_name,
        image_version: args.image_version,
        distribution: args.distribution,
        release: args.release,
        architecture: args.architecture,
    };
    crate::sbom::finalize_tree(&ctx)
}
