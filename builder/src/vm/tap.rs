//! A tap device for a VM's NIC, made with `ip` (iproute2) and attached to a
//! bridge, and deleted again when the VM is done.
//!
//! QEMU opens the tap with `script=no`, so it runs no helper scripts; Keel
//! wires the device up itself. The tap is made in the network namespace of
//! the calling thread (a test's private namespace, or whatever namespace
//! `keel vm` runs in); that namespace is remembered, so the tap is deleted
//! there even when the [`TapDevice`] is dropped on another thread or after
//! the caller left the namespace: never a same-named interface elsewhere.

use std::fs::File;
use std::process::Command;

use anyhow::Context;
use keel_cmd::CommandRunExt;
use nix::sched::{setns, CloneFlags};

/// A tap device this VM created; deleted on drop.
#[derive(Debug)]
pub struct TapDevice {
    name: String,
    /// The network namespace the tap was made in.
    netns: File,
}

impl TapDevice {
    /// Creates tap `name` (`ip tuntap add dev NAME mode tap`), enslaves it to
    /// `bridge` and sets it up.
    pub fn create(name: &str, bridge: &str) -> anyhow::Result<TapDevice> {
        let netns = File::open("/proc/thread-self/ns/net")
            .context("opening this thread's network namespace")?;
        Command::new("ip")
            .args(["tuntap", "add", "dev", name, "mode", "tap"])
            .run()
            .with_context(|| format!("creating tap device {name}"))?;
        let tap = TapDevice {
            name: name.to_string(),
            netns,
        };
        // From here on, dropping `tap` deletes the device if a step fails.
        Command::new("ip")
            .args(["link", "set", "dev", name, "master", bridge, "up"])
            .run()
            .with_context(|| format!("attaching tap {name} to bridge {bridge}"))?;
        tracing::debug!(tap = name, bridge, "tap device ready");
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the device, from a short-lived thread moved into the
    /// namespace it was made in.
    fn delete(&self) -> anyhow::Result<()> {
        std::thread::scope(|s| {
            s.spawn(|| -> anyhow::Result<()> {
                setns(&self.netns, CloneFlags::CLONE_NEWNET)
                    .context("entering the tap's network namespace")?;
                Command::new("ip")
                    .args(["link", "del", "dev", &self.name])
                    .run()?;
                Ok(())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread deleting the tap panicked"))?
        })
    }
}

impl Drop for TapDevice {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            tracing::warn!("deleting tap device {}: {e:#}", self.name);
        }
    }
}
