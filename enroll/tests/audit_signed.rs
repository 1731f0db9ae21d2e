//! Signed audit chain heads and exports against the real stores: an attacker
//! with write access to the database (append-only triggers dropped) who edits
//! a row and recomputes every later hash is caught by the signed heads; a
//! forged or re-signed head is caught by the audit key; the export's detached
//! signature verifies with our code, `openssl` and `cosign`, and a tampered
//! export fails all three.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use keel_enroll::audit::{self, row_hash, Row};
use keel_enroll::audit_sign::{AuditKey, HeadError};
use keel_enroll_bench::harness::Harness;

/// A few admin changes: each appends a row and signs the tip.
async fn activity(h: &Harness) {
    let admin = h.admin();
    for store in ["store-1", "store-2", "store-3"] {
        admin.create_token(store, 600).await.unwrap();
    }
}

/// Edits row `seq` and recomputes the hash and link of it and every later row
/// (what an attacker does so that the hash chain alone still verifies).
fn rewrite_from(rows: &[Row], seq: i64, detail: &str) -> Vec<Row> {
    let mut out: Vec<Row> = rows.to_vec();
    let i = (seq - 1) as usize;
    out[i].entry.detail = detail.into();
    for j in i..out.len() {
        if j > 0 {
            out[j].prev_hash = out[j - 1].hash.clone();
        }
        let r = &out[j];
        out[j].hash = row_hash(&r.prev_hash, r.seq, &r.at, &r.entry);
    }
    audit::verify(&out).expect("the rewritten chain is self-consistent");
    out
}

fn sqlite_rewrite(db: &Path, rows: &[Row]) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
    )
    .unwrap();
    for r in rows {
        conn.execute(
            "UPDATE audit SET detail = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![r.entry.detail, r.prev_hash, r.hash, r.seq],
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recomputed_chain_is_detected() {
    let h = harness(None).await;
    activity(&h).await;
    let admin = h.admin();
    let r = admin.audit_verify_with(None).await.unwrap();
    assert_eq!(r.rows, 3);
    assert_eq!(r.heads.last_signed, 3, "{r:?}");
    let rows = h.store().audit_rows().await.unwrap();
    let forged = rewrite_from(&rows, 2, "token for store-2 never existed");
    sqlite_rewrite(&h.dir.path().join("enroll.db"), &forged);
    // The hash chain alone no longer tells.
    let now = h.store().audit_rows().await.unwrap();
    assert_eq!(now, forged);
    audit::verify(&now).unwrap();
    // The signed heads do.
    let err = admin.audit_verify().await.unwrap_err();
    let he = err.downcast_ref::<HeadError>().expect("a head error");
    assert_eq!(he, &HeadError::Mismatch { seq: 2 });
    keel_testbed::report!("recomputed chain detected: {err:#}");
    // The signer refuses to bless the rewritten chain once it grows.
    h.store()
        .audit(keel_enroll::audit::Entry {
            actor: "service".into(),
            action: "after-rewrite".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = admin.sign_head().await.unwrap_err();
    assert!(e.to_string().contains("refusing to sign"), "{e:#}");
    // The CLI says the same and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
        .arg("--config")
        .arg(&h.config_path)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("rewritten"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_heads_are_detected() {
    let h = harness(None).await;
    activity(&h).await;
    let db = h.dir.path().join("enroll.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    // The heads table is append-only too.
    assert!(conn
        .execute("UPDATE audit_heads SET signature = 'x' WHERE seq = 1", [])
        .is_err());
    assert!(conn.execute("DELETE FROM audit_heads", []).is_err());
    conn.execute_batch(
        "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
         DROP TRIGGER audit_heads_no_update; DROP TRIGGER audit_heads_no_delete;",
    )
    .unwrap();
    let admin = h.admin();

    // 1. The attacker rewrites the chain and re-signs every head with a key of
    //    their own (they do not have the service's).
    let rows = h.store().audit_rows().await.unwrap();
    let forged = rewrite_from(&rows, 1, "edited");
    sqlite_rewrite(&db, &forged);
    let (pem, _) = keel_enroll::audit_sign::generate_pem().unwrap();
    let kf = h.dir.path().join("attacker.key");
    std::fs::write(&kf, pem).unwrap();
    let mallory = AuditKey::load(&kf).unwrap();
    conn.execute("DELETE FROM audit_heads", []).unwrap();
    for r in &forged {
        let head = mallory.sign_head(r.seq, &r.hash);
        h.store().put_head(head).await.unwrap();
    }
    let err = admin.audit_verify().await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<HeadError>(),
            Some(HeadError::BadSignature { seq: 1, .. })
        ),
        "{err:#}"
    );
    keel_testbed::report!("re-signed heads detected: {err:#}");

    // 2. A genuine head whose signature bytes were altered.
    conn.execute("DELETE FROM audit_heads", []).unwrap();
    sqlite_rewrite(&db, &rows);
    let good = h.audit_key.sign_head(3, &rows[2].hash);
    let mut bad = good.clone();
    bad.signed_at = "2020-01-01T00:00:00Z".into();
    h.store().put_head(bad).await.unwrap();
    let err = admin.audit_verify().await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<HeadError>(),
            Some(HeadError::BadSignature { seq: 3, .. })
        ),
        "{err:#}"
    );

    // 3. With the honest head back, the chain verifies again.
    conn.execute("DELETE FROM audit_heads", []).unwrap();
    h.store().put_head(good).await.unwrap();
    let r = admin.audit_verify_with(None).await.unwrap();
    assert_eq!((r.rows, r.heads.last_signed), (3, 3));

    // 4. All heads deleted: refused, not silently accepted.
    conn.execute("DELETE FROM audit_heads", []).unwrap();
    let err = admin.audit_verify().await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<HeadError>(),
        Some(&HeadError::NoHead { rows: 3 })
    );
    // The signer does not re-sign such a chain on its own...
    let e = admin.sign_head().await.unwrap_err();
    assert!(e.to_string().contains("no signed head"), "{e:#}");
    assert!(e.to_string().contains("audit adopt"), "{e:#}");
    // ...only `audit adopt`, an operator's explicit decision, does.
    let adopted = admin.audit_adopt().await.unwrap().unwrap();
    assert_eq!(adopted.seq, 3);
    admin.audit_verify().await.unwrap();
    conn.execute("DELETE FROM audit_heads", []).unwrap();

    // 5. Rows deleted below a signed head (truncation).
    h.store()
        .put_head(h.audit_key.sign_head(3, &rows[2].hash))
        .await
        .unwrap();
    conn.execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
    let err = admin.audit_verify().await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<HeadError>(),
        Some(&HeadError::Beyond { seq: 3, rows: 2 })
    );
}

/// Runs a command; (success, stdout+stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Checks `file` with openssl and cosign (when installed); returns how many ran.
fn external_verify(file: &Path, pubkey: &Path, expect_ok: bool) -> usize {
    let mut ran = 0;
    let sig = keel_enroll::audit_sign::sig_path(file);
    if keel_testbed::which("openssl").is_some() {
        let der = file.with_extension("sig.der");
        let raw = std::fs::read_to_string(&sig).unwrap();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .unwrap();
        std::fs::write(&der, bytes).unwrap();
        let (ok, text) = run(Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(pubkey)
            .arg("-signature")
            .arg(&der)
            .arg(file));
        assert_eq!(ok, expect_ok, "openssl: {text}");
        keel_testbed::report!("openssl dgst -verify: {}", text.trim());
        ran += 1;
    } else {
        keel_testbed::report_skip(format_args!("export check with openssl: not installed"));
    }
    if keel_testbed::which("cosign").is_some() {
        let (ok, text) = run(Command::new("cosign")
            .args(["verify-blob", "--insecure-ignore-tlog=true", "--key"])
            .arg(pubkey)
            .arg("--signature")
            .arg(&sig)
            .arg(file));
        assert_eq!(ok, expect_ok, "cosign: {text}");
        keel_testbed::report!("cosign verify-blob: {}", text.trim());
        ran += 1;
    } else {
        keel_testbed::report_skip(format_args!("export check with cosign: not installed"));
    }
    ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_signature_verifies_and_tampering_fails() {
    let h = harness(None).await;
    activity(&h).await;
    let admin = h.admin();
    let day = &audit::now_rfc3339()[..10];
    let out = tempfile::tempdir().unwrap();
    let file = admin.audit_export(day, out.path(), None).await.unwrap();
    let pubkey = h.dir.path().join("audit.pub");
    let key = keel_enroll::audit_sign::AuditPub::load(&pubkey).unwrap();
    let r = keel_enroll::audit_heads::check_export(&file, &key).unwrap();
    assert_eq!((r.rows, r.head.seq), (3, 3));
    external_verify(&file, &pubkey, true);
    // The CLI checks it too, from the public key alone.
    let (ok, text) = run(Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
        .arg("--config")
        .arg(&h.config_path)
        .args(["audit", "verify-export"])
        .arg(&file)
        .arg("--key")
        .arg(&pubkey));
    assert!(ok, "{text}");
    assert!(text.contains("export OK"), "{text}");
    let (ok, text) = run(Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
        .arg("--config")
        .arg(&h.config_path)
        .args(["audit", "verify", "--key"])
        .arg(&pubkey));
    assert!(ok, "{text}");
    assert!(
        text.contains("signed heads verified, last signed row 3"),
        "{text}"
    );
    keel_testbed::report!("{}", text.trim());

    // Tampered: one decision changed in the export.
    let original = std::fs::read_to_string(&file).unwrap();
    let tampered = original.replacen("\"ok\"", "\"rejected:token-invalid\"", 1);
    assert_ne!(tampered, original);
    std::fs::write(&file, &tampered).unwrap();
    let e = keel_enroll::audit_heads::check_export(&file, &key).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    keel_testbed::report!("tampered export refused: {e}");
    external_verify(&file, &pubkey, false);
    let (ok, text) = run(Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
        .arg("--config")
        .arg(&h.config_path)
        .args(["audit", "verify-export"])
        .arg(&file));
    assert!(!ok, "{text}");
    // Signed by another key: refused as well.
    std::fs::write(&file, &original).unwrap();
    let (pem, _) = keel_enroll::audit_sign::generate_pem().unwrap();
    let kf = out.path().join("other.key");
    std::fs::write(&kf, pem).unwrap();
    keel_enroll::audit_sign::sign_file(&AuditKey::load(&kf).unwrap(), &file).unwrap();
    assert!(keel_enroll::audit_heads::check_export(&file, &key).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recomputed_chain_is_detected() {
    let pg = match tokio::task::spawn_blocking(keel_testbed::Postgres::start)
        .await
        .unwrap()
    {
        Ok(pg) => pg,
        Err(e) => {
            keel_testbed::report_skip(format_args!("postgres_recomputed_chain_is_detected: {e}"));
            return;
        }
    };
    let h = harness(Some(pg.url())).await;
    activity(&h).await;
    let admin = h.admin();
    assert_eq!(
        admin
            .audit_verify_with(None)
            .await
            .unwrap()
            .heads
            .last_signed,
        3
    );
    let rows = h.store().audit_rows().await.unwrap();
    let forged = rewrite_from(&rows, 2, "edited on the database server");
    let mut sql = String::from("DROP TRIGGER audit_append_only ON audit;");
    for r in &forged[1..] {
        sql.push_str(&format!(
            "UPDATE audit SET detail = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
            r.entry.detail, r.prev_hash, r.hash, r.seq
        ));
    }
    pg.psql(keel_testbed::postgres::DATABASE, &sql).unwrap();
    let now = h.store().audit_rows().await.unwrap();
    assert_eq!(now, forged);
    let err = admin.audit_verify().await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<HeadError>(),
        Some(&HeadError::Mismatch { seq: 2 })
    );
    keel_testbed::report!("postgres: recomputed chain detected: {err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_refuses_after_heads_vanish() {
    // The harness's own periodic signer must stay out of the way: one round
    // at start, the next a day later.
    let h = Harness::start(keel_enroll_bench::harness::Options {
        policy: keel_enroll_bench::bench_policy(),
        extra_config: "audit-sign-secs = 86400".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let store = h.store();
    let mut signer = keel_enroll::audit_heads::Signer::new(h.audit_key.clone());
    activity(&h).await;
    let entry = || keel_enroll::audit::Entry {
        actor: "service".into(),
        action: "signer-test".into(),
        ..Default::default()
    };
    store.audit(entry()).await.unwrap();
    let head = signer.tick(&*store).await.unwrap().unwrap();
    assert_eq!(head.seq, 4);
    assert_eq!(signer.tick(&*store).await.unwrap(), None, "nothing new");
    // Heads above row 2 deleted behind the signer's back, a new row appended.
    let conn = rusqlite::Connection::open(h.dir.path().join("enroll.db")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_heads_no_delete; DELETE FROM audit_heads WHERE seq > 2;",
    )
    .unwrap();
    store.audit(entry()).await.unwrap();
    let e = signer.tick(&*store).await.unwrap_err();
    assert!(e.to_string().contains("signed heads were deleted"), "{e}");
    keel_testbed::report!("signer refused: {e}");
}
