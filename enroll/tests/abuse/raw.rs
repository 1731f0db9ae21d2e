//! Misbehaving clients for tests/abuse.rs: raw TCP and TLS connections from a
//! chosen loopback source address (Linux routes all of 127.0.0.0/8 to `lo`,
//! so each address is a distinct client to the per-address limits), and a
//! plain HTTPS client bound to one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_enroll_bench::harness::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// The service as a raw TLS target.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Target {
    pub fn new(h: &Harness) -> Target {
        let addr = h.running.as_ref().unwrap().addr;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut h.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Target {
            addr,
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        }
    }

    /// A TCP connection from `src`.
    pub async fn tcp(&self, src: IpAddr) -> std::io::Result<TcpStream> {
        let s = TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(src, 0))?;
        bounded(s.connect(self.addr)).await
    }

    /// A TLS connection from `src` (handshake done).
    pub async fn tls(&self, src: IpAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp(src).await?;
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        bounded(self.tls.connect(name, tcp)).await
    }

    /// An HTTPS client whose connections come from `src`.
    pub fn http(&self, h: &Harness, src: IpAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap())
            .local_address(src)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }
}

/// How a misbehaving connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The server closed it; `answer` is the first line it sent, if any.
    Closed { answer: Option<String> },
    /// Still open when the test gave up (`cap`): the server did not close it.
    StillOpen,
}

/// Sends `head` and then one byte of `drip` every `every`, until the server
/// closes the connection or `cap` passed.
pub async fn dribble<S>(s: S, head: &[u8], drip: u8, every: Duration, cap: Duration) -> End
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut r, mut w) = tokio::io::split(s);
    let give_up = Instant::now() + cap;
    let mut got = Vec::new();
    if w.write_all(head).await.is_err() || w.flush().await.is_err() {
        return End::Closed { answer: None };
    }
    let mut buf = [0u8; 4096];
    loop {
        if Instant::now() > give_up {
            return End::StillOpen;
        }
        // The cap holds even while a read is pending (a silent connection
        // drips nothing, so only the server closing it or the cap ends it).
        tokio::select! {
            _ = tokio::time::sleep_until(give_up.into()) => return End::StillOpen,
            n = r.read(&mut buf) => match n {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => {
                    let answer = (!got.is_empty()).then(|| {
                        String::from_utf8_lossy(&got).lines().next().unwrap_or("").to_string()
                    });
                    return End::Closed { answer };
                }
            },
            _ = tokio::time::sleep(every) => {
                // A failed write means the server is gone; the read above
                // then reports it.
                let _ = w.write_all(&[drip]).await;
                let _ = w.flush().await;
            }
        }
    }
}

/// Gives up on a connect or handshake after 30 s (a hung attacker must not
/// hang the test: it then counts as refused).
async fn bounded<T>(
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 30 s"))?
}

/// A start request's header that never ends (slowloris).
pub const SLOW_HEAD: &[u8] =
    b"POST /v1/enroll/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: ";

/// A complete header announcing a body that then trickles in.
pub const SLOW_BODY_HEAD: &[u8] = b"POST /v1/enroll/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"x\":\"";

/// Status and reject code of an answer (`code` empty when the body is not a
/// rejection).
pub async fn status_code(r: reqwest::Response) -> (u16, String, Option<String>) {
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    let code = v
        .pointer("/reason/code")
        .or_else(|| v.pointer("/decision/reason/code"))
        .or_else(|| v.pointer("/code"))
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .to_string();
    (status, code, retry)
}

/// Whether this host lets a socket use `src` as source address.
pub fn can_bind(src: IpAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(src, 0)).is_ok()
}
