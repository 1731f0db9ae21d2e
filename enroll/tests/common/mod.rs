//! Shared helpers for keel-enroll's host tests: simulated nodes (keel-attest's
//! software TPM, exact TPM formats) enrolling against a real HTTPS service.
#![allow(dead_code, clippy::unwrap_used)]

use keel_attest::client::{ClientError, EnrollClient};
use keel_attest::protocol::{
    Challenge, Decision, FinishRequest, NodeClaims, RejectCode, StartRequest, StartResponse, B64,
};
use keel_attest::soft::SoftTpm;
use keel_enroll::admission::AllowEntry;
use keel_enroll::audit::Entry;
use keel_enroll_bench::harness::{Harness, Options};
use keel_enroll_bench::{bench_policy, bench_release, ek_sha256, make_csr};

pub async fn harness(database: Option<String>) -> Harness {
    Harness::start(Options {
        database,
        policy: bench_policy(),
        max_body: Some(256 * 1024),
        ..Default::default()
    })
    .await
    .unwrap()
}

pub fn client(h: &Harness) -> EnrollClient {
    EnrollClient::new(&h.base_url, &h.ca_pem).unwrap()
}

pub struct Node {
    pub tpm: SoftTpm,
    pub id: String,
    pub store: String,
    pub csr: Vec<u8>,
    pub token: Option<String>,
    pub ek_cert: Option<Vec<u8>>,
    pub release: keel_attest::protocol::ReleaseRef,
}

impl Node {
    pub fn new(id: &str) -> Node {
        Node {
            tpm: SoftTpm::new_ecc(&mut rand::rngs::OsRng),
            id: id.into(),
            store: "store-1".into(),
            csr: make_csr(id).unwrap(),
            token: None,
            ek_cert: None,
            release: bench_release(),
        }
    }

    pub fn ek_hash(&self) -> String {
        ek_sha256(&self.tpm.ek.public_tpm2b()).unwrap()
    }

    pub fn start_request(&self) -> StartRequest {
        let mut r = self.tpm.start_request(
            &self.csr,
            self.token.clone(),
            NodeClaims {
                hostname: self.id.clone(),
                machine_id: "0".repeat(32),
                store_id: self.store.clone(),
                release: self.release.clone(),
            },
        );
        r.ek_cert = self.ek_cert.clone().map(B64);
        r
    }

    pub async fn start(&self, c: &EnrollClient) -> Result<Challenge, ClientError> {
        match c.start(&self.start_request()).await? {
            StartResponse::Challenge(ch) => Ok(ch),
            StartResponse::Decision(d) => panic!("unexpected decision {d:?}"),
        }
    }

    pub fn answer(&self, ch: &Challenge) -> FinishRequest {
        self.tpm
            .answer(
                ch,
                &self.csr,
                Some(self.tpm.event_log()),
                &mut rand::rngs::OsRng,
            )
            .unwrap()
    }

    pub async fn enroll(&self, c: &EnrollClient) -> Result<Decision, ClientError> {
        let ch = self.start(c).await?;
        c.finish(&self.answer(&ch)).await
    }
}

pub async fn allow(h: &Harness, n: &Node) {
    h.store()
        .import_allow(
            vec![AllowEntry {
                ek_sha256: n.ek_hash(),
                serial: format!("SN-{}", n.id),
                store_id: n.store.clone(),
            }],
            Entry {
                actor: "admin:test".into(),
                action: "allowlist-import".into(),
                decision: "ok".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// The reject code of a result, panicking on success.
pub fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> RejectCode {
    match r {
        Err(ClientError::Rejected(reason)) => {
            eprintln!("rejected as expected: {reason}");
            reason.code
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

pub fn admitted(d: Decision) -> Box<keel_attest::protocol::JoinMaterial> {
    match d {
        Decision::Admitted { join, .. } => join,
        other => panic!("expected admitted, got {other:?}"),
    }
}
