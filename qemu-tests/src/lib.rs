//! End-to-end tests live in tests/: they build images, boot them under QEMU with swtpm and talk to real services.
