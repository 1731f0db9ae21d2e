//! Keel builder: image definitions, mkosi driving, SBOMs, signing, release manifests, VMs.
//!
//! `keel build` reads an image definition ([`spec`]), resolves or checks its
//! package lock ([`lock`]), renders an mkosi configuration ([`render`]), runs
//! mkosi ([`build`]) and records what went in and came out ([`record`]).

pub mod bench;
pub mod build;
pub mod bundle;
pub mod cli;
pub mod exit;
pub mod flash;
pub mod fsutil;
pub mod hooks;
pub mod lock;
pub mod ostree;
pub mod pool;
pub mod record;
pub mod release;
pub mod render;
pub mod sbom;
pub mod seed;
pub mod spec;
pub mod vm;
