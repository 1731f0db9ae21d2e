//! A throw-away PostgreSQL server on a free port, with a database created.
//!
//! PostgreSQL refuses to run as root. CI runs as root, so the server runs as the
//! `postgres` system user from the Debian package, in a temp dir that user owns;
//! as a normal user it simply runs as that user. Host connections need the
//! password (scram-sha-256), the unix socket in the temp dir trusts local users.
//!
//! [`Postgres::start_tls`] runs it with `ssl=on`, a server certificate from a
//! [`crate::TestCa`], and a pg_hba.conf that accepts TCP only over TLS
//! (`hostssl`): a plain-text connection is refused by the server itself.

use crate::{Daemon, Error, Result};
use keel_cmd::CommandRunExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The database created at start.
pub const DATABASE: &str = "keel";
/// The superuser name.
pub const USER: &str = "postgres";

/// A running PostgreSQL; stopped (fast shutdown) and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    daemon: Daemon,
    port: u16,
    password: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// The directory holding initdb/postgres (Debian: /usr/lib/postgresql/<ver>/bin).
pub fn bin_dir() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, b)) = found.pop() {
        return Ok(b);
    }
    crate::which("postgres")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| Error::Missing {
            program: "postgres".into(),
            hint: "apt-get install postgresql (./setup.sh)".into(),
        })
}

/// pg_hba.conf of a TLS server: local socket trusted, TCP only over TLS.
const HBA_TLS_ONLY: &str = "local all all trust\n\
hostssl all all 127.0.0.1/32 scram-sha-256\n\
hostssl all all ::1/128 scram-sha-256\n";

impl Postgres {
    /// Runs initdb, starts the server and creates [`DATABASE`].
    pub fn start() -> Result<Postgres> {
        Self::start_inner(None)
    }

    /// Like [`Postgres::start`], with TLS: `ssl=on` with `server` (a
    /// certificate for `localhost`/`127.0.0.1`, e.g. from
    /// [`crate::TestCa::server_cert`]) and TCP connections accepted only
    /// over TLS (`hostssl` lines alone in pg_hba.conf).
    pub fn start_tls(server: &crate::tls::CertPair) -> Result<Postgres> {
        Self::start_inner(Some(server))
    }

    fn start_inner(tls: Option<&crate::tls::CertPair>) -> Result<Postgres> {
        let bin = bin_dir()?;
        crate::require(&["psql"])?;
        let dir = tempfile::Builder::new()
            .prefix("keel-pg-")
            .tempdir()
            .map_err(Error::io("creating postgres temp dir"))?;
        let run_as = if crate::is_root() {
            let u = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or_else(|| Error::NeedsRoot("no `postgres` system user to run as".into()))?;
            nix::unistd::chown(dir.path(), Some(u.uid), Some(u.gid))
                .map_err(|e| Error::Other(format!("chown postgres temp dir: {e}")))?;
            Some((u.uid.as_raw(), u.gid.as_raw()))
        } else {
            None
        };
        let as_user = |program: PathBuf| {
            let mut c = Command::new(program);
            if let Some((uid, gid)) = run_as {
                c.uid(uid).gid(gid).env("HOME", dir.path());
            }
            c
        };
        let password = random_hex(16);
        let pwfile = dir.path().join("pw");
        crate::swtpm::write(&pwfile, &password)?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(
                &pwfile,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| Error::Other(format!("chown pwfile: {e}")))?;
        }
        let data = dir.path().join("data");
        as_user(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
            ])
            .arg(&pwfile)
            .run()?;
        let mut ssl_args: Vec<String> = Vec::new();
        if let Some(pair) = tls {
            let (cert, key) = pair.write(dir.path(), "server")?;
            if let Some((uid, gid)) = run_as {
                for f in [&cert, &key] {
                    nix::unistd::chown(
                        f,
                        Some(nix::unistd::Uid::from_raw(uid)),
                        Some(nix::unistd::Gid::from_raw(gid)),
                    )
                    .map_err(|e| Error::Other(format!("chown {}: {e}", f.display())))?;
                }
            }
            // Overwriting keeps the owner initdb gave the file.
            crate::swtpm::write(&data.join("pg_hba.conf"), HBA_TLS_ONLY)?;
            ssl_args = vec![
                "-c".into(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".into(),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        let mut last = None;
        for _ in 0..3 {
            let port = crate::free_port()?;
            let mut cmd = as_user(bin.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"])
                .args(["-c", "max_connections=200"])
                .args(&ssl_args);
            let mut daemon = Daemon::spawn("postgres", cmd, &dir.path().join("postgres.log"))?;
            let isready = bin.join("pg_isready");
            let sock = dir.path().to_path_buf();
            let r = daemon.wait_ready(Duration::from_secs(30), || {
                Command::new(&isready)
                    .arg("-h")
                    .arg(&sock)
                    .args(["-p", &port.to_string(), "-U", USER, "-q"])
                    .run()
                    .is_ok()
            });
            match r {
                Ok(()) => {
                    let pg = Postgres {
                        daemon,
                        port,
                        password,
                        bin,
                        dir,
                    };
                    pg.psql("postgres", &format!("CREATE DATABASE {DATABASE}"))?;
                    return Ok(pg);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::start("postgres", "no attempt made")))
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/keel`
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The URL of another database on this server.
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory holding the unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Runs one SQL command with psql over TCP (password auth) and returns
    /// its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let psql = if self.bin.join("psql").is_file() {
            self.bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        Ok(Command::new(psql)
            .arg(self.url_for(db))
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
            .run_get_string()?)
    }
}

/// `n` random bytes as hex (from /dev/urandom).
pub(crate) fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        // Fall back to time-derived bytes: test-only secrets, never production ones.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
