//! The connection layer: every accepted TCP connection takes a per-address
//! slot (over the limit it is closed before the TLS handshake), then has
//! `tls-handshake-timeout-secs` for its handshake and, on HTTP/1.1,
//! `header-read-timeout-secs` for each request header. HTTP/2 is not offered:
//! the nodes speak HTTP/1.1, and hyper's header-read timeout (the slowloris
//! defence) covers HTTP/1 only; without HTTP/2 the server need not sniff
//! for a connection preface either, a wait no timeout would bound.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::limits::Limits;
use super::ratelimit::{ConnLimiter, ConnSlot};

/// A connection holding its per-address slot until it is dropped.
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    _slot: ConnSlot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Takes a per-address connection slot or refuses the connection.
#[derive(Debug, Clone)]
pub struct SlotAcceptor {
    conns: Arc<ConnLimiter>,
}

impl<S: Send + 'static> Accept<TcpStream, S> for SlotAcceptor {
    type Stream = Limited<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = match stream.peer_addr() {
            Ok(a) => a,
            Err(e) => return std::future::ready(Err(e)),
        };
        match self.conns.acquire(peer.ip()) {
            Some(slot) => std::future::ready(Ok((
                Limited {
                    inner: stream,
                    _slot: slot,
                },
                service,
            ))),
            None => {
                tracing::debug!(%peer, "connection refused: max-connections-per-address reached");
                // Dropping the stream closes the connection.
                std::future::ready(Err(io::Error::other(format!(
                    "{peer}: too many open connections from this address"
                ))))
            }
        }
    }
}

/// The TLS acceptor behind the per-address connection slots.
pub fn acceptor(
    tls: RustlsConfig,
    limits: &Limits,
    conns: Arc<ConnLimiter>,
) -> RustlsAcceptor<SlotAcceptor> {
    RustlsAcceptor::new(tls)
        .handshake_timeout(limits.tls_handshake_timeout())
        .acceptor(SlotAcceptor { conns })
}

/// Sets up the HTTP side: HTTP/1.1 only, header-read timeout.
pub fn configure(builder: &mut Builder<TokioExecutor>, limits: &Limits) {
    let b = std::mem::replace(builder, Builder::new(TokioExecutor::new()));
    *builder = b.http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout());
}
