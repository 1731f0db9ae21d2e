//! A complete service in a temporary directory: dev certificates, EK trust
//! roots, a PCR policy, a configuration file, the store and the HTTPS listener
//! on 127.0.0.1 (free port), in this process. Used by `keel-enroll-bench` (which
//! then runs the service as its own process), the tests and demos.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use keel_enroll::audit_sign::AuditKey;
use keel_enroll::config::{Config, Loaded};
use keel_enroll::server::{self, App, Running};
use keel_enroll::store::{self, Store};

/// What to set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Database URL; `None`: SQLite in the temp dir.
    pub database: Option<String>,
    /// PEM texts of trusted TPM vendor roots/intermediates.
    pub ek_roots: Vec<String>,
    /// PCR policy (keel-attest TOML format).
    pub policy: String,
    /// Extra TOML appended to the configuration (e.g. `[stores.x...]`, or
    /// `[limits]` with tighter abuse limits).
    pub extra_config: String,
    /// Largest request body (default: the protocol's limit).
    pub max_body: Option<usize>,
    /// Session lifetime in seconds (default 60).
    pub session_ttl: Option<i64>,
    /// Listen address (default: a free port on 127.0.0.1).
    pub listen: Option<String>,
}

/// The service's files, written and loaded but not yet serving.
pub struct Prepared {
    /// Temp dir holding every file (removed on drop).
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The loaded configuration.
    pub loaded: Loaded,
    /// CA bundle that verifies the server certificate.
    pub ca_pem: String,
}

/// A running service.
pub struct Harness {
    /// Temp dir holding every file (removed on drop).
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The loaded configuration.
    pub loaded: Loaded,
    /// Shared state.
    pub app: Arc<App>,
    /// The listener.
    pub running: Option<Running>,
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    /// CA bundle that verifies the server certificate.
    pub ca_pem: String,
    /// The audit signing key.
    pub audit_key: Arc<AuditKey>,
    /// The periodic chain-head signer.
    pub signer: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.signer.abort();
    }
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl Harness {
    /// Sets up and starts the service.
    pub async fn start(o: Options) -> anyhow::Result<Harness> {
        let p = prepare(&o)?;
        keel_enroll::secfile::check_startup(&p.config_path, &p.loaded)?;
        let audit_key = Arc::new(AuditKey::load(&p.loaded.config.audit_key)?);
        let store = store::open(&p.loaded.config.database).await?;
        keel_enroll::audit_heads::sign_tip(&*store, &audit_key).await?;
        let signer = keel_enroll::audit_heads::spawn_signer(
            store.clone(),
            audit_key.clone(),
            std::time::Duration::from_secs(p.loaded.config.audit_sign_secs.max(1)),
        );
        let app = Arc::new(App::new(&p.loaded, store)?);
        let tls = server::tls_config(&p.loaded.config.tls_cert, &p.loaded.config.tls_key)?;
        let running = server::spawn(
            app.clone(),
            &p.loaded.config.listen,
            tls,
            p.loaded.config.max_body_bytes,
            &p.loaded.config.limits,
        )
        .await?;
        // The address it listens on (a namespace's bridge address in the
        // end-to-end test), which the server certificate names.
        let base_url = format!("https://{}", running.addr);
        Ok(Harness {
            dir: p.dir,
            config_path: p.config_path,
            loaded: p.loaded,
            app,
            running: Some(running),
            base_url,
            ca_pem: p.ca_pem,
            audit_key,
            signer,
        })
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.app.store.clone()
    }

    /// An admin context on this service's store.
    pub fn admin(&self) -> keel_enroll::admin::Admin {
        keel_enroll::admin::Admin {
            store: self.store(),
            config_sha256: self.loaded.sha256.clone(),
            actor: "admin:test".into(),
            audit_key: self.audit_key.clone(),
            issuers: self.app.issuers.clone(),
        }
    }

    /// Stops the listener.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Writes dev certificates, EK roots, the policy and a configuration file into
/// a fresh temp dir and loads them (what `keel-enroll serve --config` reads).
pub fn prepare(o: &Options) -> anyhow::Result<Prepared> {
    let dir = tempfile::Builder::new().prefix("keel-enroll-").tempdir()?;
    let d = dir.path();
    let listen_host: Vec<String> = o
        .listen
        .as_deref()
        .and_then(|l| l.parse::<std::net::SocketAddr>().ok())
        .map(|a| vec![a.ip().to_string()])
        .unwrap_or_default();
    keel_enroll::devcerts::write(d, &listen_host).context("dev certs")?;
    let roots = d.join("ek-roots");
    std::fs::create_dir_all(&roots)?;
    for (i, pem) in o.ek_roots.iter().enumerate() {
        std::fs::write(roots.join(format!("root-{i}.pem")), pem)?;
    }
    std::fs::write(d.join("policy.toml"), &o.policy)?;
    let database = o
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", d.join("enroll.db").display()));
    // A concrete port, so that public-url (handed to nodes) names it.
    let listen = match &o.listen {
        Some(l) => l.clone(),
        None => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
            l.local_addr()?.to_string()
        }
    };
    let text = format!(
        "listen = \"{listen}\"\npublic-url = \"https://{listen}\"\ntls-cert = \"server.pem\"\ntls-key = \"server.key\"\n\
         node-ca-cert = \"node-ca.pem\"\nnode-ca-key = \"node-ca.key\"\naudit-key = \"audit.key\"\ndatabase = \"{database}\"\n\
         ek-roots = \"ek-roots\"\npcr-policy = \"policy.toml\"\nsession-ttl-secs = {}\nmax-body-bytes = {}\n{}\n",
        o.session_ttl.unwrap_or(60),
        o.max_body.unwrap_or(keel_attest::protocol::MAX_REQUEST_BYTES),
        o.extra_config
    );
    let config_path = d.join("keel-enroll.toml");
    keel_enroll::secfile::write_private(&config_path, text.as_bytes())?;
    let loaded = Config::load(&config_path)?;
    let ca_pem = std::fs::read_to_string(d.join("ca.pem"))?;
    Ok(Prepared {
        dir,
        config_path,
        loaded,
        ca_pem,
    })
}
