//! What the admin commands print: the node inventory as a table for people,
//! or as JSON for scripts (`--json`).

use std::fmt::Write as _;

use crate::admission::NodeRow;

/// The inventory as a table. `ek_cert` adds the EK certificate's subject,
/// issuer and serial under each node (what an admin checks before approving).
pub fn nodes_table(nodes: &[NodeRow], ek_cert: bool) -> String {
    let mut out = format!(
        "{:<24} {:<12} {:<9} {:<16} {:<20} REVISION\n",
        "NODE", "STORE", "STATUS", "EK", "RELEASE"
    );
    for n in nodes {
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:<9} {:<16} {:<20} {}",
            n.node_id,
            n.store_id,
            n.status.as_str(),
            &n.ek_sha256[..n.ek_sha256.len().min(16)],
            n.release,
            n.revision.as_deref().unwrap_or("-")
        );
        if ek_cert {
            match &n.ek_cert {
                Some(c) => {
                    let _ = writeln!(
                        out,
                        "    EK certificate: subject {:?}, issuer {:?}, serial {}",
                        c.subject, c.issuer, c.serial
                    );
                }
                None => out.push_str("    EK certificate: none (allow-listed EK)\n"),
            }
        }
    }
    out
}

/// The inventory as pretty JSON.
pub fn nodes_json(nodes: &[NodeRow]) -> String {
    serde_json::to_string_pretty(nodes).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::admission::{EkCertInfo, NodeStatus};

    #[test]
    fn pending_view_shows_the_ek_certificate() {
        let n = NodeRow {
            node_id: "n1".into(),
            store_id: "s1".into(),
            ek_sha256: "ab".repeat(32),
            status: NodeStatus::Pending,
            release: "store-node 1".into(),
            updated_at: 0,
            revision: None,
            report: None,
            ek_cert: Some(EkCertInfo {
                subject: "".into(),
                issuer: "CN=Vendor EK CA".into(),
                serial: "01ab".into(),
            }),
        };
        let t = nodes_table(std::slice::from_ref(&n), true);
        assert!(t.contains("issuer \"CN=Vendor EK CA\", serial 01ab"), "{t}");
        assert!(!nodes_table(std::slice::from_ref(&n), false).contains("EK certificate"));
        let j: serde_json::Value = serde_json::from_str(&nodes_json(&[n])).unwrap();
        assert_eq!(j[0]["ek-cert"]["serial"], "01ab");
    }
}
