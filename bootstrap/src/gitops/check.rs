//! Checking a fetched bundle tree before it is applied, in this order: the
//! signature over `.keel/manifest` (read once; the verified bytes are the
//! ones parsed), the signed header against this node (store, ref, serial
//! above the last applied one), then the tree against the signed entries.

use std::path::Path;

use super::manifest::{self, Header, MANIFEST_PATH, SIGNATURE_PATH};
use super::verify::TrustRoot;
use super::GitopsError;

/// What the node expects of a bundle's signed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The node's store.
    pub store: &'a str,
    /// The ref the node follows.
    pub reference: &'a str,
    /// The serial of the bundle applied last (`None` before the first).
    pub applied_serial: Option<u64>,
}

/// Checks a bundle tree: `.keel/signature` verifies over `.keel/manifest`
/// with the trust root, the signed header is for this store and ref with a
/// serial above the applied one, and the tree is exactly what the manifest
/// lists. Returns the signed header.
pub fn verify_tree(
    trust: &TrustRoot,
    dir: &Path,
    rev: &str,
    expected: &Expected<'_>,
) -> Result<Header, GitopsError> {
    let read = |rel: &'static str| match std::fs::read(dir.join(rel)) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(GitopsError::Unsigned {
            rev: rev.to_string(),
            missing: rel,
        }),
        Err(source) => Err(GitopsError::Io {
            what: "reading",
            path: dir.join(rel),
            source,
        }),
    };
    let signed = read(MANIFEST_PATH)?;
    let signature = read(SIGNATURE_PATH)?;
    let refused = |e: GitopsError| GitopsError::Refused {
        rev: rev.to_string(),
        detail: e.to_string(),
    };
    let sig_text = String::from_utf8(signature)
        .map_err(|_| refused(GitopsError::BadSignature("signature is not text".into())))?;
    trust.verify(&signed, &sig_text).map_err(refused)?;
    // From here on only the verified buffer is used; the file is not read again.
    let signed = String::from_utf8(signed)
        .map_err(|_| refused(GitopsError::BadManifest("not UTF-8".into())))?;
    let parsed = manifest::parse(&signed).map_err(|e| refused(e.into()))?;
    check_header(&parsed.header, rev, expected)?;
    let actual = manifest::render(&parsed.header, &manifest::entries(dir)?);
    if actual != signed {
        return Err(refused(GitopsError::Tampered(first_difference(
            &signed, &actual,
        ))));
    }
    Ok(parsed.header)
}

/// The header checks, each with its own error.
pub(crate) fn check_header(
    h: &Header,
    rev: &str,
    expected: &Expected<'_>,
) -> Result<(), GitopsError> {
    if h.store != expected.store {
        return Err(GitopsError::OtherStore {
            rev: rev.to_string(),
            signed_for: h.store.clone(),
            ours: expected.store.to_string(),
        });
    }
    if h.reference != expected.reference {
        return Err(GitopsError::OtherRef {
            rev: rev.to_string(),
            signed_for: h.reference.clone(),
            ours: expected.reference.to_string(),
        });
    }
    match expected.applied_serial {
        Some(applied) if h.serial == applied => Err(GitopsError::Replayed {
            rev: rev.to_string(),
            serial: h.serial,
        }),
        Some(applied) if h.serial < applied => Err(GitopsError::Rollback {
            rev: rev.to_string(),
            serial: h.serial,
            applied,
        }),
        _ => Ok(()),
    }
}

/// Names the first manifest line that differs, for the operator.
fn first_difference(signed: &str, actual: &str) -> String {
    let path = |l: &str| l.splitn(3, ' ').nth(2).unwrap_or(l).to_string();
    let mut s = signed.lines();
    let mut a = actual.lines();
    loop {
        match (s.next(), a.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) if path(x) == path(y) => return format!("{} changed", path(x)),
            (Some(x), Some(y)) if path(x) < path(y) => return format!("{} missing", path(x)),
            (Some(_), Some(y)) => return format!("{} added", path(y)),
            (Some(x), None) => return format!("{} missing", path(x)),
            (None, Some(y)) => return format!("{} added", path(y)),
            (None, None) => return "identical".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_table() {
        let h = "keel-bundle-manifest v2\nstore s\nref main\nserial 1";
        let cases = [
            (
                format!("{h}\naa 100644 a\n"),
                format!("{h}\nbb 100644 a\n"),
                "a changed",
            ),
            (format!("{h}\naa 100644 a\n"), format!("{h}\n"), "a missing"),
            (format!("{h}\n"), format!("{h}\naa 100644 x\n"), "x added"),
            (
                format!("{h}\naa 100644 b\n"),
                format!("{h}\naa 100644 a\naa 100644 b\n"),
                "a added",
            ),
        ];
        for (s, a, want) in cases {
            assert_eq!(first_difference(&s, &a), want);
        }
    }

    #[test]
    fn header_checks_each_have_their_own_error() {
        let h = Header::new("s1", "main", 5).expect("header");
        let exp = |store, reference, applied| Expected {
            store,
            reference,
            applied_serial: applied,
        };
        assert!(check_header(&h, "r", &exp("s1", "main", None)).is_ok());
        assert!(check_header(&h, "r", &exp("s1", "main", Some(4))).is_ok());
        let e = check_header(&h, "r", &exp("s2", "main", None)).expect_err("store");
        assert!(
            matches!(&e, GitopsError::OtherStore { signed_for, ours, .. } if signed_for == "s1" && ours == "s2"),
            "{e:?}"
        );
        let e = check_header(&h, "r", &exp("s1", "prod", None)).expect_err("ref");
        assert!(
            matches!(&e, GitopsError::OtherRef { signed_for, ours, .. } if signed_for == "main" && ours == "prod"),
            "{e:?}"
        );
        let e = check_header(&h, "r", &exp("s1", "main", Some(5))).expect_err("replay");
        assert!(
            matches!(e, GitopsError::Replayed { serial: 5, .. }),
            "{e:?}"
        );
        let e = check_header(&h, "r", &exp("s1", "main", Some(9))).expect_err("rollback");
        assert!(
            matches!(
                e,
                GitopsError::Rollback {
                    serial: 5,
                    applied: 9,
                    ..
                }
            ),
            "{e:?}"
        );
        // The store is checked before the serial: another store's bundle is
        // named as such even when its serial is also old.
        let e = check_header(&h, "r", &exp("s2", "main", Some(9))).expect_err("store first");
        assert!(matches!(e, GitopsError::OtherStore { .. }), "{e:?}");
    }
}
