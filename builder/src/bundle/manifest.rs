//! The canonical bundle manifest an operator signs: the one implementation
//! in keel-manifest, which keel-bootstrap checks nodes' checkouts with.

pub use keel_manifest::bundle::{build, MANIFEST_PATH, SIGNATURE_PATH};
