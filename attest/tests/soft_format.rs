//! The software TPM's structures have the same format as swtpm's: same
//! templates (all fields but the key), and our marshalling reproduces the
//! TPM's bytes exactly. Skips when swtpm is missing.

use std::collections::BTreeMap;

use keel_attest::node::{AkAlg, EkAlg, NodeTpm};
use keel_attest::soft::{SoftAk, SoftEk};
use keel_attest::tpm2::attest::QuoteAttest;
use keel_attest::tpm2::public::TpmPublic;
use keel_attest::tpm2::signature::TpmSignature;

fn same_template(real: &TpmPublic, soft: &TpmPublic, what: &str) {
    assert_eq!(real.name_alg, soft.name_alg, "{what} nameAlg");
    assert_eq!(real.attributes, soft.attributes, "{what} attributes");
    assert_eq!(real.auth_policy, soft.auth_policy, "{what} authPolicy");
    assert_eq!(real.symmetric, soft.symmetric, "{what} symmetric");
    assert_eq!(real.scheme, soft.scheme, "{what} scheme");
    assert_eq!(real.rsa_bits, soft.rsa_bits, "{what} key bits");
    assert_eq!(real.raw.len(), soft.raw.len(), "{what} size");
}

#[test]
fn soft_structures_match_swtpm() {
    if keel_testbed::skip_unless(&["swtpm", "swtpm_setup", "swtpm_localca"]) {
        return;
    }
    let Some(tpm) = keel_testbed::or_skip(keel_testbed::Swtpm::start()) else {
        return;
    };
    let mut node = NodeTpm::open(&tpm.tcti()).expect("open");
    let dir = tempfile::tempdir().expect("tmp");
    let mut rng = rand::thread_rng();

    for (ek_alg, soft_ek) in [
        (EkAlg::EccP256, SoftEk::new_p256(&mut rng)),
        (EkAlg::Rsa2048, SoftEk::new_rsa(&mut rng).expect("rsa")),
    ] {
        let ek = node.ek(ek_alg).expect("ek");
        let real = TpmPublic::from_tpm2b(&ek.public).expect("real EK");
        let soft = TpmPublic::from_tpm2b(&soft_ek.public_tpm2b()).expect("soft EK");
        same_template(&real, &soft, &format!("{ek_alg:?} EK"));
        assert_eq!(real.to_tpm2b(), ek.public, "TPM2B re-marshal");
        node.flush(ek.handle).expect("flush");
    }

    let ek = node.ek(EkAlg::EccP256).expect("ek");
    for (ak_alg, soft_ak) in [
        (AkAlg::EccP256, SoftAk::new_p256(&mut rng)),
        (AkAlg::Rsa2048, SoftAk::new_rsa(&mut rng).expect("rsa")),
    ] {
        let ak = node
            .load_or_create_ak(&ek, &dir.path().join(format!("{ak_alg:?}.json")), ak_alg)
            .expect("ak");
        let real = TpmPublic::from_tpm2b(&ak.public).expect("real AK");
        let soft = TpmPublic::from_tpm2b(&soft_ak.public_tpm2b()).expect("soft AK");
        same_template(&real, &soft, &format!("{ak_alg:?} AK"));
        assert_eq!(real.name(), ak.name, "software name equals the TPM's");

        let q = node.quote(&ak, &[7; 32], &[0, 7]).expect("quote");
        let parsed = QuoteAttest::parse(&q.attest).expect("parse real quote");
        assert_eq!(
            parsed.marshal(),
            q.attest,
            "quote re-marshals to the TPM's bytes"
        );
        let sig = TpmSignature::parse(&q.signature).expect("parse real signature");
        assert_eq!(
            sig.marshal(),
            q.signature,
            "signature re-marshals to the TPM's bytes"
        );
        sig.verify(&real, &q.attest)
            .expect("real signature verifies");

        let pcrs: BTreeMap<u8, Vec<u8>> = q.pcrs.clone();
        let soft_q = soft_ak.quote_attest(&[7; 32], &pcrs);
        assert_eq!(soft_q.pcr_select, parsed.pcr_select);
        assert_eq!(soft_q.pcr_digest, parsed.pcr_digest);
        assert_eq!(
            soft_q.marshal().len(),
            q.attest.len(),
            "same TPMS_ATTEST size"
        );
        let (sa, ss) = soft_ak
            .quote(&[7; 32], &pcrs, &mut rng)
            .expect("soft quote");
        let soft_sig = TpmSignature::parse(&ss).expect("soft signature");
        assert_eq!(
            std::mem::discriminant(&soft_sig),
            std::mem::discriminant(&sig)
        );
        soft_sig
            .verify(&soft, &sa)
            .expect("soft signature verifies");
        node.flush(ak.handle).expect("flush");
    }
}
