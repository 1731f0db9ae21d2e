//! The canonical bundle manifest (format v2, docs/gitops-bundles.md): the one
//! implementation in keel-manifest, shared with `keel bundle sign`.

pub use keel_manifest::bundle::{
    build, entries, parse, render, BundleManifestError, Header, SignedManifest, MANIFEST_PATH,
    SIGNATURE_PATH,
};

use super::GitopsError;

impl From<BundleManifestError> for GitopsError {
    fn from(e: BundleManifestError) -> Self {
        match e {
            BundleManifestError::Io { path, source } => GitopsError::Io {
                what: "reading bundle",
                path,
                source,
            },
            BundleManifestError::BadPath(p) => GitopsError::BadPath(p),
            BundleManifestError::Malformed(m) | BundleManifestError::BadHeader(m) => {
                GitopsError::BadManifest(m)
            }
        }
    }
}
