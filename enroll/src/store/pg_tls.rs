//! tokio-postgres over rustls: a `MakeTlsConnect` that verifies the server
//! certificate as [`TlsSettings`] asks (full, CA only, or not at all) and
//! offers SCRAM channel binding (`tls-server-end-point`), which ties the
//! password exchange to this TLS session even when the certificate is not
//! verified.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use super::pg_url::{Roots, SslMode, TlsSettings};
use super::StoreError;

/// The connector handed to the pool.
#[derive(Clone)]
pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    settings: Arc<TlsSettings>,
}

impl std::fmt::Debug for RustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustlsConnect")
            .field("settings", &self.settings)
            .finish()
    }
}

impl RustlsConnect {
    /// Builds the rustls client configuration (loads `sslrootcert`).
    pub fn new(settings: TlsSettings) -> Result<Self, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match &settings.roots {
            None => Arc::new(Unverified(provider.clone())),
            Some(roots) => {
                let store = Arc::new(load_roots(roots, settings.mode)?);
                let inner = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                    .build()
                    .map_err(|e| StoreError::Tls(format!("trust roots from {roots}: {e}")))?;
                if settings.check_name {
                    inner
                } else {
                    Arc::new(CaOnly(inner))
                }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            settings: Arc::new(settings),
        })
    }
}

fn load_roots(roots: &Roots, mode: SslMode) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
        Roots::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                StoreError::Tls(format!(
                    "sslrootcert {}: {e}; give the PEM file of the CA that signed the \
                     PostgreSQL server certificate",
                    path.display()
                ))
            })?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert
                    .map_err(|e| StoreError::Tls(format!("sslrootcert {}: {e}", path.display())))?;
                store
                    .add(cert)
                    .map_err(|e| StoreError::Tls(format!("sslrootcert {}: {e}", path.display())))?;
            }
        }
    }
    if store.is_empty() {
        return Err(StoreError::Tls(format!(
            "sslmode={} but {roots} holds no CA certificate; set sslrootcert=/path/to/ca.pem",
            mode.as_str()
        )));
    }
    Ok(store)
}

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = TlsStream;
    type TlsConnect = RustlsConnectOne;
    type Error = TlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectOne, TlsError> {
        let domain = domain.trim_matches(|c| c == '[' || c == ']');
        let name = match ServerName::try_from(domain.to_owned()) {
            Ok(n) => n,
            // A unix socket has no name; only acceptable when nothing is verified.
            Err(_) if self.settings.roots.is_none() => ServerName::try_from("localhost")
                .map_err(|e| TlsError(e.to_string()))?
                .to_owned(),
            Err(e) => {
                return Err(TlsError(format!(
                    "sslmode={} needs a host name or IP address to verify, not {domain:?}: {e}",
                    self.settings.mode.as_str()
                )))
            }
        };
        Ok(RustlsConnectOne {
            config: self.config.clone(),
            settings: self.settings.clone(),
            name,
        })
    }
}

/// One connection attempt.
pub struct RustlsConnectOne {
    config: Arc<rustls::ClientConfig>,
    settings: Arc<TlsSettings>,
    name: ServerName<'static>,
}

/// A handshake failure, with what to do about it.
#[derive(Debug)]
pub struct TlsError(String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn explain(e: &io::Error, s: &TlsSettings) -> TlsError {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let roots = s
        .roots
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let what = match tls {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => format!(
            "the PostgreSQL server certificate does not name {}; connect with a host name \
             the certificate names, or use sslmode=verify-ca to check the CA only",
            s.target
                .rsplit_once(':')
                .map_or(s.target.as_str(), |(h, _)| h)
        ),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => format!(
            "the PostgreSQL server certificate of {} is not signed by a CA in {roots}; set \
             sslrootcert=/path/to/ca.pem to the CA that signed it",
            s.target
        ),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => format!(
            "the PostgreSQL server certificate of {} has expired; renew it",
            s.target
        ),
        _ => format!("TLS with {} failed", s.target),
    };
    TlsError(format!("{what} (sslmode={}: {e})", s.mode.as_str()))
}

impl TlsConnect<Socket> for RustlsConnectOne {
    type Stream = TlsStream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream, TlsError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let c = tokio_rustls::TlsConnector::from(self.config);
            c.connect(self.name, stream)
                .await
                .map(TlsStream)
                .map_err(|e| explain(&e, &self.settings))
        })
    }
}

/// The encrypted stream.
pub struct TlsStream(tokio_rustls::client::TlsStream<Socket>);

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl tokio_postgres::tls::TlsStream for TlsStream {
    /// RFC 5929 `tls-server-end-point`: the server certificate hashed with its
    /// signature's hash (SHA-256 for MD5/SHA-1/SHA-256); none for other algorithms.
    fn channel_binding(&self) -> ChannelBinding {
        let Some(cert) = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        else {
            return ChannelBinding::none();
        };
        let Ok((_, x)) = x509_parser::parse_x509_certificate(cert) else {
            return ChannelBinding::none();
        };
        let digest = match x.signature_algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.4.3.2"
            | "1.2.840.113549.1.1.11"
            | "1.2.840.113549.1.1.5"
            | "1.2.840.113549.1.1.4"
            | "1.2.840.10045.4.1" => sha2::Sha256::digest(cert).to_vec(),
            "1.2.840.10045.4.3.3" | "1.2.840.113549.1.1.12" => sha2::Sha384::digest(cert).to_vec(),
            "1.2.840.10045.4.3.4" | "1.2.840.113549.1.1.13" => sha2::Sha512::digest(cert).to_vec(),
            _ => return ChannelBinding::none(),
        };
        ChannelBinding::tls_server_end_point(digest)
    }
}

/// `sslmode=prefer`/`require` without roots: any certificate; the handshake
/// signatures are still checked (so channel binding means something).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must verify; the name is not checked.
#[derive(Debug)]
struct CaOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        im: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(ee, im, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
