//! Keel builder: image definitions, mkosi driving, SBOMs, signing, release manifests, VMs.
pub mod supply;
