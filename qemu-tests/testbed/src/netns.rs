//! A private network for end-to-end tests: a fresh Linux network namespace
//! with a bridge, where the test services and a QEMU guest on a tap device
//! reach each other over real two-way IP.
//!
//! Why: QEMU's user-mode networking lets a guest open connections out (NAT)
//! and nothing else. A store node joining Ceph needs more: the monitor
//! advertises its address in the monmap, and the mon and the other OSDs must
//! connect *to* the OSD running in the guest. So the end-to-end test puts the
//! services on a bridge address and the guest on a tap device on that bridge.
//! Doing that on the host would change the machine's own network; inside a
//! namespace it changes nothing outside, needs no cleanup beyond deleting the
//! namespace, and never sends a packet off the machine.
//!
//! [`TestNet::create`] makes `keel-<pid>-<n>` with `lo` up and a bridge `br0`
//! holding [`TestNet::host_addr`] (`10.231.X.1/24`, X from the pid). A test
//! moves its thread in with [`TestNet::enter`] (or [`TestNet::run`]) and then
//! starts services bound to the host address and QEMU as usual: sockets,
//! threads and child processes made by a thread inside the namespace stay
//! there. [`TestNet::exec`] wraps a command in `ip netns exec` instead.
//! Dropping the [`TestNet`] deletes the namespace, also while unwinding from
//! a panic; namespaces left by a killed test process are removed by the next
//! [`TestNet::create`].

use crate::{Error, Result};
use keel_cmd::CommandRunExt;
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";
/// The bridge inside every test namespace.
pub const BRIDGE: &str = "br0";
/// Prefix length of the namespace's subnet.
pub const PREFIX_LEN: u8 = 24;
/// First host number handed to guests: `guest_addr(n)` is `.(GUEST_BASE + n)`.
const GUEST_BASE: u8 = 10;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a bridge; deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct TestNet {
    name: String,
    subnet: u8,
}

impl TestNet {
    /// Creates a fresh namespace `keel-<pid>-<n>`: `lo` up, bridge
    /// [`BRIDGE`] up with [`TestNet::host_addr`]/24. Needs root and `ip`
    /// (iproute2); otherwise a skip error ([`Error::is_skip`]).
    pub fn create() -> Result<TestNet> {
        if !crate::is_root() {
            return Err(Error::NeedsRoot("creating a network namespace".into()));
        }
        crate::require(&["ip"])?;
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let net = TestNet {
            name: format!("keel-{pid}-{n}"),
            subnet: subnet_for(pid),
        };
        Command::new("ip").args(["netns", "add", &net.name]).run()?;
        // From here on Drop deletes the namespace if a step fails.
        let host = format!("{}/{PREFIX_LEN}", net.host_addr());
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", BRIDGE, "type", "bridge"],
            &["addr", "add", &host, "dev", BRIDGE],
            &["link", "set", BRIDGE, "up"],
        ] {
            net.ip(args)?;
        }
        tracing::debug!(netns = %net.name, host = %net.host_addr(), "test network created");
        Ok(net)
    }

    /// The namespace's name (for `ip netns exec`, `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bridge guests' tap devices join.
    pub fn bridge(&self) -> &str {
        BRIDGE
    }

    /// The host side's address on the bridge, `10.231.X.1`: bind services here.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 1)
    }

    /// A static address for guest `n` (0 to 200): `10.231.X.(10 + n)`, for
    /// the seed's network-config (prefix [`PREFIX_LEN`], no gateway needed:
    /// every service is on the bridge's subnet).
    #[allow(clippy::panic)]
    pub fn guest_addr(&self, n: u8) -> Ipv4Addr {
        assert!(n <= 200, "guest number {n} out of range 0..=200");
        Ipv4Addr::new(10, 231, self.subnet, GUEST_BASE + n)
    }

    /// A fixed, locally administered MAC for guest `n` (QEMU's 52:54:00
    /// prefix), so a network-config can match the NIC by MAC.
    pub fn guest_mac(&self, n: u8) -> String {
        format!("52:54:00:e7:{:02x}:{:02x}", self.subnet, n)
    }

    /// Moves the calling thread into the namespace until the guard is
    /// dropped. Sockets it opens, threads it spawns and programs it starts
    /// meanwhile live in the namespace (and stay there afterwards).
    pub fn enter(&self) -> Result<NetnsGuard<'_>> {
        let back = File::open("/proc/thread-self/ns/net")
            .map_err(Error::io("opening this thread's network namespace"))?;
        let target = File::open(self.path()).map_err(Error::io(format!(
            "opening network namespace {}",
            self.name
        )))?;
        setns(&target, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::Other(format!("entering network namespace {}: {e}", self.name)))?;
        Ok(NetnsGuard {
            back,
            net: self,
            _not_send: PhantomData,
        })
    }

    /// Runs `f` on this thread inside the namespace, then moves back.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let _guard = self.enter()?;
        Ok(f())
    }

    /// `cmd` wrapped as `ip netns exec NAME PROGRAM ARGS...` (environment
    /// and working directory kept), for running a program in the namespace
    /// from a thread that is not.
    pub fn exec(&self, cmd: Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        c
    }

    /// Runs `ip -n NAME <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        Ok(Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .run_get_string()?)
    }

    /// TCP sockets listening inside the namespace.
    pub fn tcp_listeners(&self) -> Result<Vec<SocketAddrV4>> {
        self.run(tcp_listeners)?
    }

    fn path(&self) -> String {
        format!("{NETNS_DIR}/{}", self.name)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting the name frees the namespace as soon as no process is
        // left in it; its interfaces (bridge, taps) go with it.
        if let Err(e) = Command::new("ip").args(["netns", "del", &self.name]).run() {
            tracing::warn!("deleting network namespace {}: {e}", self.name);
        }
    }
}

/// Keeps the calling thread in a [`TestNet`]'s namespace; moves it back on
/// drop. Not `Send`: it belongs to the thread that entered.
#[derive(Debug)]
pub struct NetnsGuard<'a> {
    back: File,
    net: &'a TestNet,
    _not_send: PhantomData<*const ()>,
}

impl Drop for NetnsGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.back, CloneFlags::CLONE_NEWNET) {
            tracing::error!(
                "leaving network namespace {}: {e}; this thread stays in it",
                self.net.name
            );
        }
    }
}

/// True when a namespace named `name` exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new(NETNS_DIR).join(name).exists()
}

/// The third octet of the subnet for process `pid` (1..=250), so parallel
/// test processes differ in their addresses as well as in their namespaces.
fn subnet_for(pid: u32) -> u8 {
    u8::try_from(pid % 250).unwrap_or(0) + 1
}

/// Deletes `keel-<pid>-<n>` namespaces whose process is gone (a test that
/// was killed before its drop ran).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!("removing stale network namespace {name}");
            let _ = Command::new("ip").args(["netns", "del", &name]).run();
        }
    }
}

/// The pid in a `keel-<pid>-<n>` name.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("keel-")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// TCP sockets listening in the calling thread's namespace (IPv4).
pub fn tcp_listeners() -> Result<Vec<SocketAddrV4>> {
    let s = std::fs::read_to_string("/proc/thread-self/net/tcp")
        .map_err(Error::io("reading /proc/thread-self/net/tcp"))?;
    Ok(parse_tcp_listeners(&s))
}

/// Parses /proc/net/tcp: the local addresses of sockets in state LISTEN (0A).
pub fn parse_tcp_listeners(s: &str) -> Vec<SocketAddrV4> {
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(3) != Some(&"0A") {
                return None;
            }
            let (ip, port) = f.get(1)?.split_once(':')?;
            // The kernel prints the network-order in_addr as a native u32.
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_only_for_our_names() {
        assert_eq!(owner_pid("keel-1234-0"), Some(1234));
        assert_eq!(owner_pid("keel-1234-17"), Some(1234));
        assert_eq!(owner_pid("keel-1234"), None);
        assert_eq!(owner_pid("keel-x-1"), None);
        assert_eq!(owner_pid("other-1234-0"), None);
        assert_eq!(owner_pid("keel-1234-a"), None);
    }

    #[test]
    fn subnets_stay_in_range() {
        for pid in [0, 1, 249, 250, 251, 4_194_304] {
            let s = subnet_for(pid);
            assert!((1..=250).contains(&s), "{pid} -> {s}");
        }
    }

    #[test]
    fn proc_net_tcp_listeners() {
        // Lines 0 and 1 as this machine printed them (a LISTEN socket on
        // 0.0.0.0:2024, a TIME_WAIT one); line 2 is line 0 edited to
        // 10.231.7.1:6789.
        let sample = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1219 1 00000000f39f1193 100 0 0 10 0
   1: 0100007F:91AC 0100007F:9EF7 06 00000000:00000000 03:000003E5 00000000     0        0 0 3 00000000b6336495
   2: 0107E70A:1A85 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1219 1 00000000f39f1193 100 0 0 10 0
";
        assert_eq!(
            parse_tcp_listeners(sample),
            vec![
                "0.0.0.0:2024".parse::<SocketAddrV4>().expect("addr"),
                "10.231.7.1:6789".parse().expect("addr"),
            ]
        );
    }
}
