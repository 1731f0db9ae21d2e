//! The swtpm starter: a fresh TPM answers tpm2-tools through the TCTI it exposes.

use keel_cmd::CommandRunExt;
use std::process::Command;
use std::time::Instant;

#[test]
fn swtpm_answers_getrandom_and_holds_ek_certs() {
    if keel_testbed::skip_unless(&["swtpm", "swtpm_setup", "tpm2_getrandom", "tpm2_nvread"]) {
        return;
    }
    let t = Instant::now();
    let Some(tpm) = keel_testbed::or_skip(keel_testbed::Swtpm::start()) else {
        return;
    };
    eprintln!("swtpm ready in {:?} (tcti {})", t.elapsed(), tpm.tcti());
    let out = Command::new("tpm2_getrandom")
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .args(["--hex", "16"])
        .run_get_string()
        .expect("getrandom");
    assert_eq!(out.trim().len(), 32, "16 random bytes as hex: {out}");

    // Both EK certificates are in NV, and the issuer chains to the exposed root.
    let dir = tempfile::tempdir().expect("tmp");
    for ek in [keel_testbed::EkType::Rsa2048, keel_testbed::EkType::EccP384] {
        let der = dir.path().join(format!("{ek:?}.der"));
        Command::new("tpm2_nvread")
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .arg(format!("{:#x}", ek.cert_nv_index()))
            .arg("-o")
            .arg(&der)
            .run()
            .expect("nvread ek cert");
        let pem = dir.path().join(format!("{ek:?}.pem"));
        Command::new("openssl")
            .args(["x509", "-inform", "DER", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem)
            .run()
            .expect("EK cert is DER X.509");
        let verify = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(tpm.ca_root_path())
            .arg("-untrusted")
            .arg(tpm.ca_issuer_path())
            .arg(&pem)
            .run_get_string();
        // swtpm EK certs carry a critical SAN extension openssl may reject as
        // unhandled; only a signature/chain error is a real failure here.
        if let Err(e) = verify {
            let msg = e.to_string();
            assert!(
                msg.contains("unhandled critical extension") || msg.contains("unsupported"),
                "EK cert must chain to the exposed CA: {msg}"
            );
        }
    }
    assert!(tpm
        .ca_root_pem()
        .expect("root")
        .contains("BEGIN CERTIFICATE"));
}

#[test]
fn swtpm_restart_keeps_state() {
    if keel_testbed::skip_unless(&["swtpm", "swtpm_setup", "tpm2_nvreadpublic"]) {
        return;
    }
    let Some(mut tpm) = keel_testbed::or_skip(keel_testbed::Swtpm::start()) else {
        return;
    };
    let read = |tcti: &str| {
        Command::new("tpm2_nvreadpublic")
            .env("TPM2TOOLS_TCTI", tcti)
            .run_get_string()
            .expect("nvreadpublic")
    };
    let before = read(&tpm.tcti());
    tpm.restart().expect("restart");
    assert_eq!(read(&tpm.tcti()), before);
}
