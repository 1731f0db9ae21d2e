//! A static file server over HTTPS for tests: serves a directory (an OSTree
//! archive repository, a release directory) the way a plain web server
//! would, and records every request path, so a test can see what a client
//! fetched (static delta parts or loose objects).
//!
//! HTTP/1.1 GET and HEAD only, keep-alive, no ranges; TLS from a [`TestCa`]
//! whose certificate [`StaticServer::ca_path`] names for the client.

use crate::tls::TestCa;
use crate::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One request the server answered: path, status, body bytes sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub status: u16,
    pub bytes: u64,
}

/// A running HTTPS static file server on 127.0.0.1; stops on drop.
pub struct StaticServer {
    port: u16,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for StaticServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("tls setup: {e}"))
}

impl StaticServer {
    /// Serves `root` with a certificate from a new test CA.
    pub fn start(root: &Path) -> Result<StaticServer> {
        let dir = tempfile::Builder::new()
            .prefix("keel-static-")
            .tempdir()
            .map_err(Error::io("creating server temp dir"))?;
        let ca = TestCa::new("keel test static server CA")?;
        let server = ca.server_cert(&[])?;
        crate::swtpm::write(&dir.path().join("ca.pem"), ca.cert_pem())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain =
            vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).map_err(tls_err)?];
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).map_err(tls_err)?;
        let tls = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(tls_err)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(tls_err)?,
        );
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(Error::io("binding static server"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("static server address"))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(Error::io("making the listener non-blocking"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, lg, root) = (stop.clone(), log.clone(), root.to_path_buf());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (tls, root, lg) = (tls.clone(), root.clone(), lg.clone());
                        std::thread::spawn(move || {
                            if let Err(e) = serve(conn, tls, &root, &lg) {
                                tracing::debug!("static server connection: {e}");
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(StaticServer {
            port,
            dir,
            log,
            stop,
        })
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    /// The CA certificate (PEM file) that signed the server's certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Forgets the requests answered so far.
    pub fn clear_requests(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Answers requests on one connection until the client closes it.
fn serve(
    conn: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    root: &Path,
    log: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let sc = rustls::ServerConnection::new(tls).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(sc, conn);
    loop {
        let mut r = BufReader::new(&mut stream);
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = match (parts.next(), parts.next()) {
            (Some(m), Some(t)) => (m.to_string(), t.to_string()),
            _ => return Ok(()),
        };
        let mut close = false;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 || h.trim_end().is_empty() {
                break;
            }
            let l = h.to_ascii_lowercase();
            if l.starts_with("connection:") && l.contains("close") {
                close = true;
            }
        }
        drop(r);
        let path = target.split('?').next().unwrap_or("/").to_string();
        let file = resolve(root, &path);
        let body = file.as_ref().and_then(|f| std::fs::read(f).ok());
        let status = if body.is_some() { 200 } else { 404 };
        if let Ok(mut l) = log.lock() {
            l.push(Request {
                path: path.clone(),
                status,
                bytes: if method == "HEAD" {
                    0
                } else {
                    body.as_ref().map_or(0, |b| b.len() as u64)
                },
            });
        }
        let body = body.unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n{}\r\n",
            if status == 200 { "OK" } else { "Not Found" },
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        stream.write_all(head.as_bytes())?;
        if method != "HEAD" {
            stream.write_all(&body)?;
        }
        stream.flush()?;
        if close {
            stream.conn.send_close_notify();
            let _ = stream.flush();
            return Ok(());
        }
    }
}

/// The regular file `path` names under `root`; nothing outside it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    let p = root.join(rel);
    p.is_file().then_some(p)
}
