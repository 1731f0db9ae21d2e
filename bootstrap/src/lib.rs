//! keel-bootstrap: the first-boot agent of a Keel store node.
//!
//! It reads the cloud-init style seed ([`seed`]), applies the standard keys
//! to the target root ([`apply`]), and drives the resumable first-boot state
//! machine ([`machine`], [`state`]): enroll with keel-enroll, join Ceph,
//! obtain certificates, sync the first GitOps bundle.
pub mod acme;
pub mod apply;
pub mod ceph;
pub mod cli;
pub mod enroll;
pub mod fsutil;
pub mod gitops;
pub mod identity;
pub mod machine;
pub mod progress;
pub mod run;
pub mod seed;
pub mod state;
pub mod steps;
