//! keel-enroll-bench: keel-enroll's load generator and the test harness that
//! runs the service in a temp dir. Kept apart from keel-enroll so that the
//! production service carries no test code: no software TPM, no testbed.
//!
//! The load generator ([`run`], the `keel-enroll-bench` program): N simulated
//! nodes enroll against a real `keel-enroll serve` process on 127.0.0.1 over
//! HTTPS. The nodes use keel-attest's software TPM keys, which produce the
//! exact TPM structures a real TPM does, and send an EK certificate from a
//! vendor CA the service trusts, so the service runs the production path: all
//! five checks, the admission transaction, the audit row and the node
//! certificate.
//!
//! The service runs in its own process so that its CPU time per enrollment is
//! measured apart from the load generator's; the capacity figure is the
//! machine's cores divided by that time. Wall-clock throughput is printed too
//! but it is a lower bound: the simulated nodes' TLS and TPM work runs on the
//! same cores.
//!
//! Two load shapes: closed loop (`--concurrency` nodes always in flight: the
//! most the service can do) and open loop (`--rate`: a node arrives every
//! 1/rate seconds, at most `--concurrency` in flight; latency counts from the
//! scheduled arrival, so a slow service cannot hide its queueing).
//!
//! [`harness`]: the service in a temp dir, in-process, for the tests of
//! keel-enroll, keel-bootstrap and the end-to-end tests.

pub mod cli;
mod fleet;
pub mod harness;
mod report;
mod run;
mod server;

pub use cli::{Backend, BenchArgs, KeyType};
pub use fleet::{bench_policy, bench_release, ek_sha256, make_csr, EkCa, Fleet, SimNode};
pub use report::Report;
pub use run::run;
pub use server::cpu_seconds;
