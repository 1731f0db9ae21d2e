//! Tests of the SBOM module: parsers are table-tested on real captured
//! fixtures; generated documents are checked with the official CycloneDX
//! schema; the key scan with real keys made by openssl and ssh-keygen. The
//! official SPDX validator runs in `builder/tests/sbom_spdx.rs`.

mod dpkg;
mod keyscan;
mod sbom;
mod tree;
