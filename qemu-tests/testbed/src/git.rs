//! A Git server over HTTPS for tests: `git http-backend` (the real smart-HTTP
//! server, run as CGI per request) behind a tiny threaded TLS front end.
//!
//! The front end speaks just enough HTTP/1.1 for git's client: one request per
//! connection, `Content-Length` or chunked request bodies, CGI headers turned
//! into a status line. TLS uses a [`TestCa`]; with `require_client_cert` the
//! server refuses clients without a certificate from that CA (mTLS). It binds
//! 127.0.0.1 unless [`GitServerOptions::bind_addr`] says otherwise (a
//! [`crate::TestNet`] address, started from inside that namespace).

use crate::tls::{CertPair, TestCa};
use crate::{Error, Result};
use keel_cmd::CommandRunExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Git server options.
#[derive(Debug, Clone)]
pub struct GitServerOptions {
    /// Require a client certificate issued by the server's CA.
    pub require_client_cert: bool,
    /// The address to listen on; it is also in [`GitServer::repo_url`] and
    /// in the server certificate's IP SANs.
    pub bind_addr: IpAddr,
}

impl Default for GitServerOptions {
    fn default() -> Self {
        GitServerOptions {
            require_client_cert: false,
            bind_addr: Ipv4Addr::LOCALHOST.into(),
        }
    }
}

/// A running HTTPS Git server; [`GitServer::stop`] / [`GitServer::start_again`]
/// for "server down" tests (same port).
pub struct GitServer {
    ca: TestCa,
    client: CertPair,
    tls: Arc<rustls::ServerConfig>,
    addr: IpAddr,
    port: u16,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for GitServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitServer")
            .field("addr", &self.addr)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("tls setup: {e}"))
}

impl GitServer {
    /// Starts a server with no repositories.
    pub fn start(opts: GitServerOptions) -> Result<GitServer> {
        crate::require(&["git"])?;
        let exec = Command::new("git").arg("--exec-path").run_get_string()?;
        if !Path::new(exec.trim()).join("git-http-backend").is_file() {
            return Err(Error::Missing {
                program: "git-http-backend".into(),
                hint: "part of git".into(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("keel-git-")
            .tempdir()
            .map_err(Error::io("creating git temp dir"))?;
        for d in ["repos", "work"] {
            std::fs::create_dir_all(dir.path().join(d)).map_err(Error::io("creating dirs"))?;
        }
        let ca = TestCa::new("keel test git CA")?;
        let server = ca.server_cert_for(&[], &[opts.bind_addr])?;
        let client = ca.client_cert("keel-test-pusher")?;
        client.write(dir.path(), "client")?;
        crate::swtpm::write(&dir.path().join("ca.pem"), ca.cert_pem())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let builder = if opts.require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            let der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).map_err(tls_err)?;
            roots.add(der).map_err(tls_err)?;
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(tls_err)?;
            builder.with_client_cert_verifier(v)
        } else {
            builder.with_no_client_auth()
        };
        let chain =
            vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).map_err(tls_err)?];
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).map_err(tls_err)?;
        let tls = Arc::new(builder.with_single_cert(chain, key).map_err(tls_err)?);
        let listener = TcpListener::bind((opts.bind_addr, 0)).map_err(Error::io(format!(
            "binding git server on {} (an address of this thread's network namespace?)",
            opts.bind_addr
        )))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("git server address"))?
            .port();
        let mut s = GitServer {
            ca,
            client,
            tls,
            addr: opts.bind_addr,
            port,
            running: None,
            dir,
        };
        s.serve(listener)?;
        Ok(s)
    }

    /// Accepts connections on a thread until [`GitServer::stop`]. The
    /// listener is non-blocking and polled, so stopping needs no wake-up
    /// connection (which, for a namespace address, could only be made from
    /// inside that namespace).
    fn serve(&mut self, listener: TcpListener) -> Result<()> {
        listener
            .set_nonblocking(true)
            .map_err(Error::io("making the git listener non-blocking"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let tls = self.tls.clone();
        let root = self.dir.path().join("repos");
        let h = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let conn = match listener.accept() {
                    Ok((conn, _)) => conn,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        continue;
                    }
                    Err(_) => continue,
                };
                let tls = tls.clone();
                let root = root.clone();
                std::thread::spawn(move || {
                    if let Err(e) = handle(conn, tls, &root) {
                        tracing::debug!("git server connection: {e}");
                    }
                });
            }
        });
        self.running = Some((stop, h));
        Ok(())
    }

    /// Stops accepting connections (clients get "connection refused").
    pub fn stop(&mut self) {
        if let Some((stop, h)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
    }

    /// Serves again on the same address and port after [`GitServer::stop`]
    /// (from the same network namespace it was started in).
    pub fn start_again(&mut self) -> Result<()> {
        self.stop();
        let l = TcpListener::bind((self.addr, self.port))
            .map_err(Error::io("binding git server again"))?;
        self.serve(l)
    }

    /// The address it listens on.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA clients must trust (PEM) and, with mTLS, that issues client certs.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The CA written to a file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The test client certificate [`GitServer::git`] presents (PEM pair).
    pub fn client_identity(&self) -> &CertPair {
        &self.client
    }

    /// Paths of the test client certificate and key.
    pub fn client_identity_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("client.pem"),
            self.dir.path().join("client.key"),
        )
    }

    /// Issues a client certificate (for mTLS) with common name `cn`.
    pub fn client_cert(&self, cn: &str) -> Result<CertPair> {
        self.ca.client_cert(cn)
    }

    /// `https://<addr>:<port>/<name>.git` (127.0.0.1 by default).
    pub fn repo_url(&self, name: &str) -> String {
        let a = SocketAddr::new(self.addr, self.port);
        format!("https://{a}/{name}.git")
    }

    /// The bare repository on disk.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("repos").join(format!("{name}.git"))
    }

    /// Creates an empty bare repository (default branch `main`) that accepts pushes.
    pub fn create_repo(&self, name: &str) -> Result<PathBuf> {
        let p = self.repo_path(name);
        Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&p)
            .run()?;
        Command::new("git")
            .arg("-C")
            .arg(&p)
            .args(["config", "http.receivepack", "true"])
            .run()?;
        Ok(p)
    }

    /// A `git` command set up to talk to this server: trusts its CA and
    /// presents the test client certificate; fixed author and committer.
    pub fn git(&self) -> Command {
        let mut c = Command::new("git");
        let d = self.dir.path();
        c.env("GIT_SSL_CAINFO", d.join("ca.pem"))
            .env("GIT_SSL_CERT", d.join("client.pem"))
            .env("GIT_SSL_KEY", d.join("client.key"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", d)
            .env("GIT_AUTHOR_NAME", "Keel Test")
            .env("GIT_AUTHOR_EMAIL", "test@keel.invalid")
            .env("GIT_COMMITTER_NAME", "Keel Test")
            .env("GIT_COMMITTER_EMAIL", "test@keel.invalid");
        c
    }

    /// A work tree of repo `name`, cloned over HTTPS on first use.
    pub fn work_dir(&self, name: &str) -> Result<PathBuf> {
        let w = self.dir.path().join("work").join(name);
        if !w.exists() {
            self.git()
                .args(["clone", "-q", &self.repo_url(name)])
                .arg(&w)
                .run()?;
        }
        Ok(w)
    }

    /// Writes `files` (path, content) into the work tree of `name`, commits
    /// them and pushes to `branch` over HTTPS. Returns the commit id.
    pub fn commit_and_push(
        &self,
        name: &str,
        branch: &str,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> Result<String> {
        let w = self.work_dir(name)?;
        for (path, content) in files {
            let p = w.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(Error::io("creating work dirs"))?;
            }
            std::fs::write(&p, content).map_err(Error::io(format!("writing {path}")))?;
        }
        self.git().arg("-C").arg(&w).args(["add", "-A"]).run()?;
        self.git()
            .arg("-C")
            .arg(&w)
            .args(["commit", "-q", "--allow-empty", "-m", message])
            .run()?;
        self.git()
            .arg("-C")
            .arg(&w)
            .args(["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")])
            .run()?;
        let id = self
            .git()
            .arg("-C")
            .arg(&w)
            .args(["rev-parse", "HEAD"])
            .run_get_string()?;
        Ok(id.trim().to_string())
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves one HTTPS request on `conn` through `git http-backend`.
fn handle(conn: TcpStream, tls: Arc<rustls::ServerConfig>, root: &Path) -> std::io::Result<()> {
    let peer: SocketAddr = conn.peer_addr()?;
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let sc = rustls::ServerConnection::new(tls).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(sc, conn);
    let mut r = BufReader::new(&mut stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => return Ok(()),
    };
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            if size == 0 {
                line.clear();
                r.read_line(&mut line)?;
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    drop(r);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let user = stream
        .conn
        .peer_certificates()
        .map(|_| "mtls-client")
        .unwrap_or("anonymous");
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", peer.ip().to_string())
        .env("REMOTE_USER", user)
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1");
    if let Some(ct) = header("content-type") {
        cgi.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = header("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(gp) = header("git-protocol") {
        cgi.env("GIT_PROTOCOL", gp);
    }
    let mut child = cgi
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&body);
        }
    });
    let mut out = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut out)?;
    }
    let _ = writer.join();
    child.wait()?;
    // CGI response: headers, blank line, body.
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, body) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&out[..i]).to_string(),
            &out[i + n..],
        ),
        None => (String::new(), &out[..]),
    };
    let mut status = "200 OK".to_string();
    let mut resp = String::new();
    for l in head.lines() {
        if let Some(s) = l.strip_prefix("Status:") {
            status = s.trim().to_string();
        } else if !l.trim().is_empty() {
            resp.push_str(l.trim_end());
            resp.push_str("\r\n");
        }
    }
    write!(
        stream,
        "HTTP/1.1 {status}\r\n{resp}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()?;
    stream.conn.send_close_notify();
    let _ = stream.flush();
    Ok(())
}
