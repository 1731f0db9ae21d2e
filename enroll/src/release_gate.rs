//! Which releases a store accepts beyond "has reference values": a minimum
//! version per image (globally and per store) and a deny-list of withdrawn
//! releases. Without it a node could boot an older signed release, whose
//! PCRs the service still knows, and be admitted on it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use keel_attest::protocol::ReleaseRef;

use crate::config::Config;

/// The minimums and the deny-list in force.
#[derive(Debug, Clone, Default)]
pub struct ReleaseGate {
    min: BTreeMap<String, String>,
    store_min: BTreeMap<String, BTreeMap<String, String>>,
    deny: BTreeSet<(String, String)>,
}

impl ReleaseGate {
    /// Builds the gate from the configuration; a deny-list entry that is not
    /// `NAME VERSION` is an error.
    pub fn from_config(c: &Config) -> Result<ReleaseGate, String> {
        let mut deny = BTreeSet::new();
        for d in &c.deny_releases {
            let mut parts = d.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(n), Some(v), None) => {
                    deny.insert((n.to_string(), v.to_string()));
                }
                _ => {
                    return Err(format!(
                        "deny-releases entry {d:?} is not \"IMAGE-NAME VERSION\" (e.g. \"store-node 1.2.0\")"
                    ))
                }
            }
        }
        Ok(ReleaseGate {
            min: c.min_release.clone(),
            store_min: c
                .stores
                .iter()
                .map(|(k, s)| (k.clone(), s.min_release.clone()))
                .filter(|(_, m)| !m.is_empty())
                .collect(),
            deny,
        })
    }

    /// `Err(message)` when `store` must not admit `release`.
    pub fn check(&self, store: &str, release: &ReleaseRef) -> Result<(), String> {
        if self
            .deny
            .contains(&(release.name.clone(), release.version.clone()))
        {
            return Err(format!(
                "release {} {} is withdrawn (deny-releases)",
                release.name, release.version
            ));
        }
        let store_min = self.store_min.get(store).and_then(|m| m.get(&release.name));
        for (scope, min) in [
            ("the fleet", self.min.get(&release.name)),
            ("this store", store_min),
        ] {
            if let Some(min) = min {
                if version_cmp(&release.version, min) == Ordering::Less {
                    return Err(format!(
                        "release {} {} is older than the minimum {min} for {scope}",
                        release.name, release.version
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Compares versions the way people read them: runs of digits as numbers,
/// everything else as text, left to right (`1.10` > `1.9`,
/// `2026.12.1` > `2026.2.9`, `1.0` < `1.0.1`).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x, y) {
            (Part::Num(x), Part::Num(y)) => x.cmp(y),
            (Part::Text(x), Part::Text(y)) => x.cmp(y),
            (Part::Num(_), Part::Text(_)) => Ordering::Greater,
            (Part::Text(_), Part::Num(_)) => Ordering::Less,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

#[derive(Debug)]
enum Part<'a> {
    Num(u128),
    Text(&'a str),
}

fn parts(v: &str) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let digit = b[i].is_ascii_digit();
        let j = (i..b.len())
            .find(|&j| b[j].is_ascii_digit() != digit)
            .unwrap_or(b.len());
        let s = &v[i..j];
        if digit {
            out.push(Part::Num(s.parse().unwrap_or(u128::MAX)));
        } else if !matches!(s, "." | "-" | "+" | "_") {
            out.push(Part::Text(s));
        }
        i = j;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_order() {
        for (a, b, o) in [
            ("1.10", "1.9", Ordering::Greater),
            ("2026.12.1", "2026.2.9", Ordering::Greater),
            ("1.0", "1.0.1", Ordering::Less),
            ("0.1.0", "0.1.0", Ordering::Equal),
            ("1.0rc1", "1.0rc2", Ordering::Less),
        ] {
            assert_eq!(version_cmp(a, b), o, "{a} vs {b}");
        }
    }

    fn rel(v: &str) -> ReleaseRef {
        ReleaseRef {
            name: "store-node".into(),
            version: v.into(),
        }
    }

    #[test]
    fn gate() {
        let c = Config::parse(
            r#"
tls-cert = "a"
tls-key = "b"
node-ca-cert = "c"
node-ca-key = "d"
database = "sqlite:x"
ek-roots = "r"
audit-key = "k"
deny-releases = ["store-node 1.5.0"]
[min-release]
store-node = "1.2.0"
[stores.s1.min-release]
store-node = "1.4.0"
"#,
        )
        .unwrap();
        let g = ReleaseGate::from_config(&c).unwrap();
        assert!(g.check("s2", &rel("1.2.0")).is_ok());
        assert!(g
            .check("s2", &rel("1.1.9"))
            .unwrap_err()
            .contains("the fleet"));
        assert!(g
            .check("s1", &rel("1.3.0"))
            .unwrap_err()
            .contains("this store"));
        assert!(g
            .check("s1", &rel("1.5.0"))
            .unwrap_err()
            .contains("withdrawn"));
        assert!(g.check("s1", &rel("1.10.0")).is_ok());
        let mut bad = c.clone();
        bad.deny_releases = vec!["store-node".into()];
        assert!(ReleaseGate::from_config(&bad).is_err());
    }
}
