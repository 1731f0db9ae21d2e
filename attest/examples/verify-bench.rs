//! Verifier throughput on one core with software TPMs: how many complete
//! enrollments (start checks + MakeCredential + finish checks) per second the
//! pure-software verifier does, for ECC and RSA EK/AK pairs.
//!
//! `cargo run --release -p keel-attest --features soft --example verify-bench [N]`

use std::time::{Duration, Instant};

use keel_attest::protocol::{NodeClaims, PcrBank, PcrSelection, ReleaseRef};
use keel_attest::soft::SoftTpm;
use keel_attest::verify::eventlog::EventLogBuilder;
use keel_attest::verify::Verifier;
use time::OffsetDateTime;

const CSR: &[u8] = include_bytes!("../tests/fixtures/node-csr.der");

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200);
    let mut rng = rand::thread_rng();
    let release = ReleaseRef {
        name: "store-node".into(),
        version: "1".into(),
    };
    let claims = NodeClaims {
        hostname: "h".into(),
        machine_id: "m".into(),
        store_id: "s".into(),
        release: release.clone(),
    };
    for (label, mut tpm) in [
        ("ecc", SoftTpm::new_ecc(&mut rng)),
        ("rsa", SoftTpm::new_rsa(&mut rng)?),
    ] {
        let mut log = EventLogBuilder::new();
        for pcr in [0u8, 4, 7] {
            let d = log.measure(u32::from(pcr), 1, &[pcr; 64]);
            tpm.extend(pcr, &d);
        }
        let log = log.finish();
        let mut v = Verifier {
            require_event_log: true,
            ..Verifier::default()
        };
        for p in [0u8, 4, 7] {
            v.policy.allow(&release, p, vec![tpm.pcrs[&p]]);
        }
        let start = tpm.start_request(CSR, None, claims.clone());
        let (mut t_start, mut t_finish, mut t_node) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for i in 0..n {
            let t = Instant::now();
            let ev = v.verify_start(&start)?;
            let sel = PcrSelection {
                bank: PcrBank::Sha256,
                pcrs: vec![0, 4, 7],
            };
            let exp = OffsetDateTime::now_utc() + Duration::from_secs(60);
            let (ch, s) = v.challenge(&ev, format!("s{i}"), sel, release.clone(), exp, &mut rng)?;
            t_start += t.elapsed();
            let t = Instant::now();
            let f = tpm.answer(&ch, CSR, Some(log.clone()), &mut rng)?;
            t_node += t.elapsed();
            let t = Instant::now();
            v.verify_finish(&s, &f, OffsetDateTime::now_utc())?;
            t_finish += t.elapsed();
        }
        let server = t_start + t_finish;
        println!(
            "{label}: {n} enrollments, verifier {:.0}/s per core (start+challenge {:?}/op, finish {:?}/op), soft node {:?}/op",
            n as f64 / server.as_secs_f64(),
            t_start / n as u32,
            t_finish / n as u32,
            t_node / n as u32
        );
    }
    Ok(())
}
