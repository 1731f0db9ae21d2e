//! Build record round trip and the no-change decision.
use super::*;

fn rec() -> BuildRecord {
    BuildRecord {
        format: 1,
        image_name: "t".into(),
        image_version: "1".into(),
        inputs: BTreeMap::from([
            ("definition".into(), "aa".into()),
            ("lock".into(), "bb".into()),
        ]),
        tools: BTreeMap::from([("mkosi".into(), "mkosi 24.3".into())]),
        source_date_epoch: 1_700_000_000,
        durations: BTreeMap::from([("mkosi".into(), 100.5)]),
        artifacts: BTreeMap::from([("t.raw".into(), "h1".into())]),
        verity_roothash: Some("ab".repeat(32)),
        finished_at: 1_800_000_000,
    }
}

#[test]
fn round_trips_and_rejects_unknown_fields() {
    let r = rec();
    assert_eq!(BuildRecord::parse(&r.to_json()).expect("parse"), r);
    let mut v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
    v["surprise"] = 1.into();
    assert!(BuildRecord::parse(&v.to_string()).is_err());
}

#[test]
fn stale_reason_names_changed_inputs_and_missing_or_changed_artifacts() {
    let r = rec();
    let dir = tempfile::tempdir().expect("tmp");
    let ok = |_: &Path| Ok("h1".to_string());
    assert_eq!(r.stale_reason(&r.inputs, dir.path(), &ok), None);
    let mut changed = r.inputs.clone();
    changed.insert("lock".into(), "cc".into());
    let why = r.stale_reason(&changed, dir.path(), &ok).expect("stale");
    assert!(why.contains("lock"), "{why}");
    let other = |_: &Path| Ok("h2".to_string());
    assert!(r
        .stale_reason(&r.inputs, dir.path(), &other)
        .expect("stale")
        .contains("changed"));
    let missing = |_: &Path| Err(std::io::Error::other("gone"));
    assert!(r
        .stale_reason(&r.inputs, dir.path(), &missing)
        .expect("stale")
        .contains("missing"));
}
