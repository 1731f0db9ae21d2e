//! The HTTPS service: router, shared state, TLS listener.
//!
//! Endpoints: `POST /v1/enroll/start`, `POST /v1/enroll/finish`,
//! `POST /v1/nodes/report` and `POST /v1/nodes/renew` (signed by the node
//! identity key), `GET /v1/crl` (revoked node certificates), `GET /healthz`.
//! Bodies above the configured limit are refused with 413 before parsing.
//! Abuse limits (`[limits]`: timeouts, per-address connections and request
//! rate) are in [`limits`], applied by [`conn`] per connection and by
//! [`guard`] per request.

mod conn;
mod enroll;
pub use enroll::valid_id;
mod guard;
pub mod limits;
mod nodeauth;
pub mod ratelimit;
mod renew;
mod report;
pub use nodeauth::{check_signature, Signer};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use keel_attest::protocol::paths;
use keel_attest::protocol::{CRL_PATH, RENEW_PATH, REPORT_PATH};
use keel_attest::verify::ekcert::TrustStore;
use keel_attest::verify::policy::PcrPolicy;
use keel_attest::verify::Verifier;

use crate::config::Loaded;
use crate::issue::node_cert::NodeCertIssuer;
use crate::issue::Issuer;
use crate::metrics::{Counted, Endpoint};
use crate::store::Store;
use axum::extract::State;
use limits::Limits;

/// Everything a request handler needs.
pub struct App {
    /// The five-check verifier.
    pub verifier: Verifier,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The node identity issuer (always present).
    pub node_cert: Arc<NodeCertIssuer>,
    /// Other issuers (ACME EAB, GitOps, Ceph).
    pub issuers: Vec<Arc<dyn Issuer>>,
    /// SHA-256 of the configuration in force.
    pub config_sha256: String,
    /// Challenge lifetime, seconds.
    pub session_ttl: i64,
    /// Report URL handed to nodes.
    pub report_url: Option<String>,
    /// Node CA certificate (DER), to check report signers.
    pub node_ca_der: Vec<u8>,
    /// Minimum releases and the deny-list.
    pub gate: crate::release_gate::ReleaseGate,
    /// Stores whose new nodes wait for an admin's approval.
    pub approval_stores: std::collections::BTreeSet<String>,
    /// Counters and latency histograms (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The last CRL built (`GET /v1/crl`).
    pub crl: std::sync::Mutex<renew::CrlCache>,
}

impl App {
    /// True when `store` requires an admin's approval of new nodes.
    pub fn requires_approval(&self, store: &str) -> bool {
        self.approval_stores.contains(store)
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

/// Builds the verifier's reference values: the policy file, then every
/// release manifest (`*.json`) in the manifests directory whose cosign
/// signature (`NAME.json.sig`) verifies against `manifest_key`. A manifest
/// without a valid signature stops the service with the file and the reason:
/// reference values nobody signed must not admit nodes, and a silently
/// skipped release would refuse its nodes with no hint why.
pub fn load_policy(
    policy: Option<&Path>,
    manifests: Option<&Path>,
    manifest_key: Option<&Path>,
) -> anyhow::Result<PcrPolicy> {
    let mut p = match policy {
        Some(path) => PcrPolicy::load(path).context("loading PCR policy")?,
        None => PcrPolicy::default(),
    };
    if let Some(dir) = manifests {
        let key_path = manifest_key.with_context(|| {
            format!(
                "manifests-dir = {} needs manifest-key = PATH (the release signing public key): \
                 only signed manifests are loaded",
                dir.display()
            )
        })?;
        let key =
            keel_manifest::signature::load_public_key(key_path).context("loading manifest-key")?;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let m = keel_manifest::signature::load_verified(&f, &key)
                .context("loading a trusted release manifest (sign it with `keel sign`)")?;
            p.add_manifest(&m)
                .with_context(|| format!("reference values of {}", f.display()))?;
            tracing::info!(
                "release {} {} trusted ({})",
                m.image.name,
                m.image.version,
                f.display()
            );
        }
    }
    Ok(p)
}

impl App {
    /// Builds the state from a loaded configuration and an open store.
    pub fn new(loaded: &Loaded, store: Arc<dyn Store>) -> anyhow::Result<App> {
        let c = &loaded.config;
        let trust = TrustStore::load_dir(&c.ek_roots).context("loading EK trust roots")?;
        let policy = load_policy(
            c.pcr_policy.as_deref(),
            c.manifests_dir.as_deref(),
            c.manifest_key.as_deref(),
        )?;
        let node_cert = NodeCertIssuer::load(
            &c.node_ca_cert,
            &c.node_ca_key,
            time::Duration::hours(c.node_cert_hours),
        )
        .context("loading node CA")?;
        let node_ca_der = pem_first_der(node_cert.ca_pem()).context("node CA certificate")?;
        let gate = crate::release_gate::ReleaseGate::from_config(c).map_err(anyhow::Error::msg)?;
        for r in policy.releases() {
            if let Err(why) = gate.check("", r) {
                tracing::info!("reference values loaded but not admitted: {why}");
            }
        }
        let issuers =
            crate::issue::from_config(c, store.clone()).context("loading join-material issuers")?;
        Ok(App {
            verifier: Verifier {
                trust,
                policy,
                require_event_log: c.require_event_log,
            },
            store,
            node_cert: Arc::new(node_cert),
            issuers,
            config_sha256: loaded.sha256.clone(),
            session_ttl: c.session_ttl_secs,
            report_url: c
                .public_url
                .as_ref()
                .map(|u| format!("{}{REPORT_PATH}", u.trim_end_matches('/'))),
            node_ca_der,
            gate,
            metrics: crate::metrics::Metrics::default(),
            approval_stores: c
                .stores
                .iter()
                .filter(|(_, s)| s.require_approval)
                .map(|(k, _)| k.clone())
                .collect(),
            crl: Default::default(),
        })
    }
}

/// The first certificate of a PEM text, DER.
pub fn pem_first_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let mut rd = std::io::BufReader::new(pem.as_bytes());
    let cert = rustls_pemfile::certs(&mut rd)
        .next()
        .context("no certificate in PEM")??;
    Ok(cert.to_vec())
}

/// The router with all endpoints, each behind the per-request guard (rate
/// limit, request timeout).
pub fn router(app: Arc<App>, max_body: usize, guard: guard::Guard) -> Router {
    Router::new()
        .route(paths::START, post(enroll::start))
        .route(paths::FINISH, post(enroll::finish))
        .route(REPORT_PATH, post(report::report))
        .route(RENEW_PATH, post(renew::renew))
        .route(CRL_PATH, get(renew::crl))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
        // Outermost: requests the guard refuses are counted too.
        .layer(axum::middleware::from_fn_with_state(app.clone(), measure))
        .with_state(app)
}

/// Counts each protocol request's outcome (a [`Counted`] the handler put on
/// its response, else what its status says) and latency.
async fn measure(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let endpoint = Endpoint::for_path(req.uri().path());
    let t0 = std::time::Instant::now();
    let resp = next.run(req).await;
    if let Some(e) = endpoint {
        let outcome = resp.extensions().get::<Counted>().copied().or_else(|| {
            let s = resp.status();
            (s.is_client_error() || s.is_server_error()).then_some(Counted::Rejected(
                if s == axum::http::StatusCode::TOO_MANY_REQUESTS {
                    keel_attest::protocol::RejectCode::RateLimited
                } else if s.is_server_error() {
                    keel_attest::protocol::RejectCode::Internal
                } else {
                    keel_attest::protocol::RejectCode::MalformedRequest
                },
            ))
        });
        app.metrics.record(e, outcome, t0.elapsed());
    }
    resp
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(app): State<Arc<App>>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match app.store.nodes(None).await {
        Ok(nodes) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            app.metrics.render(&nodes),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("metrics: reading the inventory: {e}");
            axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Loads the server certificate chain and key into a rustls config (TLS 1.2+,
/// ring provider, HTTP/1.1 only: see [`conn`] for why not h2).
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .context("reading server certificate")?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .context("reading server key")?
    .context("no private key in server key file")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("server certificate and key")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    purge: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting and waits for the server task.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        self.purge.abort();
        let _ = self.task.await;
    }
}

/// Connections the kernel queues for `accept` (std's default is 128). A
/// burst of connections beyond the queue leaves half-open connections the
/// service never sees, which then neither the handshake nor the header
/// timeout can close; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `listen` (address reuse, [`LISTEN_BACKLOG`]), non-blocking.
fn bind(listen: &str) -> anyhow::Result<std::net::TcpListener> {
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(listen)
        .with_context(|| format!("resolving listen address {listen}"))?
        .next()
        .with_context(|| format!("listen address {listen} resolves to nothing"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .context("creating the listening socket")?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {listen}"))?;
    let listener = socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("listening on {listen}"))?
        .into_std()?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Binds `listen` and serves HTTPS in a background task, within `limits`.
pub async fn spawn(
    app: Arc<App>,
    listen: &str,
    tls: rustls::ServerConfig,
    max_body: usize,
    limits: &Limits,
) -> anyhow::Result<Running> {
    limits.check()?;
    let listener = bind(listen)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let rustls_cfg = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    let conns = ratelimit::ConnLimiter::new(limits.max_connections_per_address);
    let mut server = axum_server::from_tcp(listener)
        .acceptor(conn::acceptor(rustls_cfg, limits, conns))
        .handle(handle.clone());
    conn::configure(server.http_builder(), limits);
    let rate = Arc::new(ratelimit::RateLimiter::new(limits));
    let g = guard::Guard {
        rate: rate.clone(),
        request_timeout: limits.request_timeout(),
    };
    let svc = router(app.clone(), max_body, g).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move { server.serve(svc).await });
    // Expired sessions are purged in the background (a replayed finish for a
    // purged session is refused as unknown), and so are the rate limiter's
    // idle addresses.
    let store = app.store.clone();
    let ttl = app.session_ttl;
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            rate.sweep(std::time::Instant::now());
            let cut = time::OffsetDateTime::now_utc().unix_timestamp() - ttl.max(60) * 10;
            if let Err(e) = store.purge_sessions(cut).await {
                tracing::warn!("purging sessions: {e}");
            }
        }
    });
    tracing::info!(%addr, backend = app.store.backend(), "keel-enroll listening (https)");
    Ok(Running {
        addr,
        handle,
        task,
        purge,
    })
}
