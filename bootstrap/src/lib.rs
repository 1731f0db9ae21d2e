//! keel-bootstrap: the first-boot agent of a Keel store node.
//!
//! It reads the cloud-init style seed ([`seed`]), configures the target root
//! from its standard keys ([`configure`]), and drives the resumable
//! first-boot state machine ([`firstboot`]): enroll with keel-enroll, join
//! Ceph ([`ceph`]), obtain certificates ([`acme`]), sync the first GitOps
//! bundle ([`gitops`]). [`commands`] is what each subcommand does; the
//! `renew` and `sync` timers reuse [`acme`], [`gitops`] and [`identity`].
pub mod acme;
pub mod ceph;
pub mod cli;
pub mod commands;
pub mod configure;
pub mod firstboot;
pub mod fsutil;
pub mod gitops;
pub mod identity;
pub mod seed;
