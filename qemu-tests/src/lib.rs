//! End-to-end tests live in tests/: they build images, boot them under QEMU
//! with swtpm and talk to real services. This library holds what those tests
//! share: prerequisites and skip messages ([`prereq`]), building test images
//! with the real `keel build` once per input change ([`images`]), and reading
//! the machine-readable check lines test images print ([`check`]).

pub mod check;
pub mod images;
pub mod prereq;
pub mod store;
