//! PostgreSQL over TLS against a real server (keel-testbed: `ssl=on`, a test
//! CA's certificate for localhost/127.0.0.1, pg_hba accepting TCP only over
//! TLS): each sslmode connects or is refused as libpq would, with an error
//! that names the fix.
#![allow(clippy::unwrap_used)]

use keel_enroll::audit::Entry;
use keel_enroll::store::{self, StoreError};
use keel_testbed::{Postgres, TestCa};

/// `postgres://postgres:PW@HOST:PORT/keel?QUERY`.
fn url(pg: &Postgres, host: &str, query: &str) -> String {
    format!(
        "postgres://postgres:{}@{host}:{}/keel?{query}",
        pg.password(),
        pg.port()
    )
}

async fn refused(url: &str) -> String {
    match store::open(url).await {
        Ok(_) => panic!("connected, expected a refusal: {url}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.contains(url.split('@').next().unwrap().rsplit(':').next().unwrap()),
                "password in message: {msg}"
            );
            keel_testbed::report!("refused as expected: {msg}");
            msg
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_sslmodes() {
    let ca = TestCa::new("keel test PostgreSQL CA").unwrap();
    let server = ca.server_cert(&[]).unwrap();
    let pg = match tokio::task::spawn_blocking(move || Postgres::start_tls(&server))
        .await
        .unwrap()
    {
        Ok(pg) => pg,
        Err(e) => {
            keel_testbed::report_skip(format_args!("postgres_tls_sslmodes: {e}"));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, ca.cert_pem()).unwrap();
    let other = TestCa::new("some other CA").unwrap();
    let wrong = dir.path().join("other-ca.pem");
    std::fs::write(&wrong, other.cert_pem()).unwrap();
    let (good, wrong) = (good.display().to_string(), wrong.display().to_string());

    // verify-full with the right CA: connects, and the store works over it.
    for host in ["127.0.0.1", "localhost"] {
        let u = url(
            &pg,
            host,
            &format!("sslmode=verify-full&sslrootcert={good}"),
        );
        let s = store::open(&u).await.unwrap();
        let row = s
            .audit(Entry {
                actor: "service".into(),
                action: "tls-test".into(),
                decision: "ok".into(),
                detail: format!("over TLS to {host}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let rows = s.audit_rows().await.unwrap();
        assert_eq!(rows.last().unwrap(), &row);
        keel_testbed::report!("verify-full to {host}: connected, audit row {}", row.seq);
    }
    // The server refuses plain text (hostssl only): so the connections above were TLS.
    let msg = refused(&url(&pg, "127.0.0.1", "sslmode=disable")).await;
    assert!(msg.contains("sslmode=disable"), "{msg}");
    assert!(msg.contains("accepts only TLS"), "{msg}");

    // Wrong CA: refused under verify-full, verify-ca, and require with a root file.
    for mode in ["verify-full", "verify-ca", "require"] {
        let msg = refused(&url(
            &pg,
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={wrong}"),
        ))
        .await;
        assert!(msg.contains("not signed by a CA in"), "{msg}");
        assert!(msg.contains("sslrootcert="), "{msg}");
        assert!(msg.contains(&format!("sslmode={mode}")), "{msg}");
    }

    // Host name mismatch: the certificate does not name db.example (reached
    // at 127.0.0.1 through hostaddr). verify-full refuses; verify-ca accepts.
    let mismatch = |mode: &str| {
        url(
            &pg,
            "db.example",
            &format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={good}"),
        )
    };
    let msg = refused(&mismatch("verify-full")).await;
    assert!(msg.contains("does not name db.example"), "{msg}");
    assert!(msg.contains("verify-ca"), "{msg}");
    store::open(&mismatch("verify-ca")).await.unwrap();
    // No sslmode and a host across the network: verify-full is the default.
    let msg = refused(&url(
        &pg,
        "db.example",
        &format!("hostaddr=127.0.0.1&sslrootcert={good}"),
    ))
    .await;
    assert!(msg.contains("(sslmode=verify-full, the default"), "{msg}");

    // require without a root file: encrypted, nothing verified: connects
    // although no CA vouches for the certificate.
    let s = store::open(&url(&pg, "127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    assert_eq!(s.backend(), "postgres");
    // No sslmode on loopback: prefer, which takes the offered TLS.
    store::open(&url(&pg, "127.0.0.1", "")).await.unwrap();

    // A missing root file is named.
    let msg = match store::open(&url(
        &pg,
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ))
    .await
    {
        Err(e @ StoreError::Tls(_)) => e.to_string(),
        other => panic!("expected a TLS settings error, got {:?}", other.err()),
    };
    assert!(msg.contains("/nonexistent/ca.pem"), "{msg}");
}
