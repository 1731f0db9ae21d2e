//! A minimal HTTP-01 challenge responder (RFC 8555 §8.3), alive only while
//! an order is open. It answers `GET /.well-known/acme-challenge/<token>`
//! with the key authorization and 404 for anything else; it serves no files.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::AcmeError;

const PREFIX: &str = "/.well-known/acme-challenge/";

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// A running responder; stops when dropped.
#[derive(Debug)]
pub struct Http01Responder {
    addr: SocketAddr,
    tokens: Tokens,
    task: JoinHandle<()>,
}

impl Http01Responder {
    /// Binds `addr` and starts answering.
    pub async fn start(addr: SocketAddr) -> Result<Self, AcmeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AcmeError::Responder { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| AcmeError::Responder { addr, source })?;
        let tokens: Tokens = Arc::default();
        let served = tokens.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let tokens = served.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &tokens).await {
                        tracing::debug!(%peer, error = %e, "HTTP-01 request failed");
                    }
                });
            }
        });
        tracing::debug!(%addr, "HTTP-01 responder listening");
        Ok(Http01Responder { addr, tokens, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes the key authorization for a token.
    pub fn add(&self, token: &str, key_authorization: &str) {
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(token.to_string(), key_authorization.to_string());
        }
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, tokens: &Tokens) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 8192 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&buf);
    let body = lookup(&request, tokens);
    let response = match body {
        Some(b) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The key authorization for a request's token, if the request is a GET for one we hold.
fn lookup(request: &str, tokens: &Tokens) -> Option<String> {
    let token = parse_token(request)?;
    tokens.lock().ok()?.get(token).cloned()
}

/// The token of `GET /.well-known/acme-challenge/<token> HTTP/1.x`.
fn parse_token(request: &str) -> Option<&str> {
    let line = request.lines().next()?;
    let mut parts = line.split(' ');
    if parts.next()? != "GET" {
        return None;
    }
    let token = parts.next()?.strip_prefix(PREFIX)?;
    let ok = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_token_table() {
        let cases = [
            (
                "GET /.well-known/acme-challenge/abc_-1 HTTP/1.1\r\nHost: x\r\n",
                Some("abc_-1"),
            ),
            ("POST /.well-known/acme-challenge/abc HTTP/1.1\r\n", None),
            ("GET /.well-known/acme-challenge/ HTTP/1.1\r\n", None),
            ("GET /.well-known/acme-challenge/../etc HTTP/1.1\r\n", None),
            ("GET /index.html HTTP/1.1\r\n", None),
            ("", None),
        ];
        for (req, want) in cases {
            assert_eq!(parse_token(req), want, "{req:?}");
        }
    }
}
