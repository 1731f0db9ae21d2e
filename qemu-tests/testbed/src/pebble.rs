//! Pebble, Let's Encrypt's ACME test server, with its own listener certificate
//! and external account binding (EAB) required.
//!
//! Pebble ships no usable listener certificate: a [`TestCa`] issues one for
//! 127.0.0.1/localhost (and [`PebbleOptions::listen_addr`] when that is another
//! address), and ACME clients trust [`Pebble::listener_ca_pem`]. The
//! certificates pebble *issues* chain to its own random root, served at
//! [`Pebble::issuing_root_url`] on the management port.

use crate::tls::TestCa;
use crate::{Daemon, Error, Result};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How to configure pebble.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// `certificateValidityPeriod`, seconds (pebble's default is 5 years).
    pub validity_secs: u64,
    /// EAB key id -> base64url HMAC key; EAB is required when non-empty.
    pub eab_keys: BTreeMap<String, String>,
    /// `PEBBLE_VA_ALWAYS_VALID=1`: every challenge passes without a listener.
    pub always_valid: bool,
    /// The address the ACME and management listeners bind (127.0.0.1 by
    /// default; a [`crate::TestNet::host_addr`] from inside that namespace).
    pub listen_addr: IpAddr,
}

impl Default for PebbleOptions {
    fn default() -> Self {
        let mut eab_keys = BTreeMap::new();
        // 32 random bytes, base64url without padding, like pebble's examples.
        eab_keys.insert("keel-store-1".to_string(), random_b64url(32));
        PebbleOptions {
            validity_secs: 24 * 3600,
            eab_keys,
            always_valid: true,
            listen_addr: Ipv4Addr::LOCALHOST.into(),
        }
    }
}

/// A running pebble; stop()/start_again() keep its ports for "ACME down" tests.
#[derive(Debug)]
pub struct Pebble {
    daemon: Option<Daemon>,
    opts: PebbleOptions,
    acme_port: u16,
    mgmt_port: u16,
    ca_pem: String,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts pebble with default options (24 h certs, one EAB key, always-valid).
    pub fn start() -> Result<Pebble> {
        Pebble::start_with(PebbleOptions::default())
    }

    /// Starts pebble with `opts`.
    pub fn start_with(opts: PebbleOptions) -> Result<Pebble> {
        crate::require(&["pebble"])?;
        let dir = tempfile::Builder::new()
            .prefix("keel-pebble-")
            .tempdir()
            .map_err(Error::io("creating pebble temp dir"))?;
        let ca = TestCa::new("keel test pebble listener CA")?;
        let addr = opts.listen_addr;
        let (cert, key) = ca
            .server_cert_for(&["pebble"], &[addr])?
            .write(dir.path(), "listener")?;
        let mut last = None;
        for _ in 0..3 {
            let acme_port = crate::free_port_on(addr)?;
            let mgmt_port = crate::free_port_on(addr)?;
            let http_port = crate::free_port()?;
            let tls_port = crate::free_port()?;
            let config = dir.path().join("pebble-config.json");
            let cfg = serde_json::json!({
                "pebble": {
                    "listenAddress": SocketAddr::new(addr, acme_port).to_string(),
                    "managementListenAddress": SocketAddr::new(addr, mgmt_port).to_string(),
                    "certificate": cert,
                    "privateKey": key,
                    "httpPort": http_port,
                    "tlsPort": tls_port,
                    "ocspResponderURL": "",
                    "certificateValidityPeriod": opts.validity_secs,
                    "externalAccountBindingRequired": !opts.eab_keys.is_empty(),
                    "externalAccountMACKeys": opts.eab_keys,
                }
            });
            crate::swtpm::write(&config, &cfg.to_string())?;
            match launch(&opts, &config, dir.path(), acme_port, mgmt_port) {
                Ok(daemon) => {
                    return Ok(Pebble {
                        daemon: Some(daemon),
                        opts,
                        acme_port,
                        mgmt_port,
                        ca_pem: ca.cert_pem().to_string(),
                        config,
                        dir,
                    })
                }
                Err(e) => last = Some(e), // most likely a port race: new ports
            }
        }
        Err(last.unwrap_or_else(|| Error::start("pebble", "no attempt made")))
    }

    /// Stops pebble (its ACME and management ports stop answering).
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
    }

    /// Starts pebble again on the same ports (after [`Pebble::stop`]). Note
    /// that pebble keeps no state: accounts and its issuing root are new.
    pub fn start_again(&mut self) -> Result<()> {
        self.stop();
        self.daemon = Some(launch(
            &self.opts,
            &self.config,
            self.dir.path(),
            self.acme_port,
            self.mgmt_port,
        )?);
        Ok(())
    }

    /// The ACME directory URL, `https://<listen addr>:<port>/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.acme_addr())
    }

    /// The address pebble listens on ([`PebbleOptions::listen_addr`]).
    pub fn listen_addr(&self) -> IpAddr {
        self.opts.listen_addr
    }

    /// The ACME listener's socket address.
    pub fn acme_addr(&self) -> SocketAddr {
        SocketAddr::new(self.opts.listen_addr, self.acme_port)
    }

    /// The CA that signed pebble's listener certificate: ACME clients trust it.
    pub fn listener_ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The listener CA written to a file (for curl/openssl/config files).
    pub fn listener_ca_path(&self) -> PathBuf {
        let p = self.dir.path().join("listener-ca.pem");
        let _ = std::fs::write(&p, &self.ca_pem);
        p
    }

    /// The URL of the root that signs issued certificates (management port).
    pub fn issuing_root_url(&self) -> String {
        let m = SocketAddr::new(self.opts.listen_addr, self.mgmt_port);
        format!("https://{m}/roots/0")
    }

    /// Fetches the issuing root (PEM) with curl, trusting the listener CA.
    pub fn issuing_root_pem(&self) -> Result<String> {
        crate::require(&["curl"])?;
        Ok(keel_cmd::CommandRunExt::run_get_string(
            Command::new("curl")
                .args(["-sSf", "--cacert"])
                .arg(self.listener_ca_path())
                .arg(self.issuing_root_url()),
        )?)
    }

    /// The EAB keys (key id -> base64url HMAC key).
    pub fn eab_keys(&self) -> &BTreeMap<String, String> {
        &self.opts.eab_keys
    }

    /// The first EAB key (key id, base64url HMAC key), if any.
    pub fn eab(&self) -> Option<(&str, &str)> {
        self.opts
            .eab_keys
            .iter()
            .next()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// ACME port (directory and API).
    pub fn acme_port(&self) -> u16 {
        self.acme_port
    }

    /// Management port (roots, intermediates).
    pub fn mgmt_port(&self) -> u16 {
        self.mgmt_port
    }

    /// True while pebble runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::is_running)
    }
}

fn launch(
    opts: &PebbleOptions,
    config: &Path,
    dir: &Path,
    acme_port: u16,
    mgmt_port: u16,
) -> Result<Daemon> {
    let mut cmd = Command::new("pebble");
    cmd.arg("-config").arg(config);
    cmd.env("PEBBLE_VA_NOSLEEP", "1");
    if opts.always_valid {
        cmd.env("PEBBLE_VA_ALWAYS_VALID", "1");
    }
    // Pebble otherwise rejects some nonces on purpose (clients must retry).
    cmd.env("PEBBLE_WFE_NONCEREJECT", "0");
    let mut d = Daemon::spawn("pebble", cmd, &dir.join("pebble.log"))?;
    let a = SocketAddr::new(opts.listen_addr, acme_port).to_string();
    let m = SocketAddr::new(opts.listen_addr, mgmt_port).to_string();
    d.wait_ready(Duration::from_secs(15), || {
        crate::wait_for_tcp(&a, Duration::from_millis(50))
            && crate::wait_for_tcp(&m, Duration::from_millis(50))
    })?;
    Ok(d)
}

/// `n` random bytes, base64url without padding.
pub fn random_b64url(n: usize) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let hex = crate::postgres::random_hex(n);
    let bytes: Vec<u8> = (0..n)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(A[((v >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
