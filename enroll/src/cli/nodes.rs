//! `nodes ...`: the inventory: list, approve, revoke, delete, reenroll.

use std::path::Path;

use super::context::{admin, with_issuers};
use super::NodesCmd;
use crate::admin::Withdrawn;
use crate::admission::{NodeRow, NodeStatus};

/// Runs a `nodes` command.
pub async fn run(config: &Path, cmd: &NodesCmd) -> anyhow::Result<()> {
    let a = admin(config).await?;
    match cmd {
        NodesCmd::List { status, json } => {
            print_nodes(&a.nodes(status.map(Into::into)).await?, *json, false)
        }
        NodesCmd::Pending { json } => {
            print_nodes(&a.nodes(Some(NodeStatus::Pending)).await?, *json, true)
        }
        NodesCmd::Approve { node } => {
            a.approve(node).await?;
            println!("approved {node}");
        }
        NodesCmd::Revoke { node } => {
            let w = with_issuers(config, a)?.revoke(node).await?;
            println!("revoked {node}");
            print_withdrawn(node, "revoke", &w)?;
        }
        NodesCmd::Delete { node } => {
            a.delete(node).await?;
            println!("deleted {node}");
        }
        NodesCmd::Reenroll { node, ek } => {
            let w = with_issuers(config, a)?
                .reenroll(node, ek.as_deref())
                .await?;
            println!("{node} may enroll again");
            print_withdrawn(node, "reenroll", &w)?;
        }
    }
    Ok(())
}

/// Prints what was taken back; fails (non-zero exit) when an issuer could
/// not withdraw its material, saying what to do.
fn print_withdrawn(node: &str, cmd: &str, w: &Withdrawn) -> anyhow::Result<()> {
    if !w.cert_serials.is_empty() {
        println!(
            "node certificates revoked (published in GET /v1/crl): {}",
            w.cert_serials.join(", ")
        );
    }
    for (kind, note) in &w.notes {
        println!("{kind}: {note}");
    }
    for (kind, err) in &w.failures {
        eprintln!("error: {kind}: could not take back {node}'s material: {err}");
    }
    anyhow::ensure!(
        w.failures.is_empty(),
        "{node}'s status changed, but {} issuer(s) failed to withdraw its material ({}), which may \
         still work: fix the cause shown above and run `keel-enroll nodes revoke {node}` again{}",
        w.failures.len(),
        w.failures
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if cmd == "reenroll" {
            format!(", then `keel-enroll nodes reenroll {node}`")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn print_nodes(nodes: &[NodeRow], json: bool, ek_cert: bool) {
    if json {
        println!("{}", crate::show::nodes_json(nodes));
    } else {
        print!("{}", crate::show::nodes_table(nodes, ek_cert));
    }
}
