//! `keel-bootstrap renew`: replace the certificate once the configured
//! fraction of its lifetime has passed, and keep trying (exponential backoff
//! with jitter) while the CA is unreachable. The live certificate is never
//! touched until a complete new one has been issued.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

use super::issue::{ensure_account, issue_certificate};
use super::store::{CertInfo, CertStore};
use super::{AcmeConfig, AcmeError};

/// What a renew run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// The live certificate is fine until `due_at` (seconds since the epoch).
    NotDue { serial: String, due_at: i64 },
    /// A new certificate is live; `attempts` counts tries including failed ones.
    Issued {
        info: CertInfo,
        previous: Option<String>,
        attempts: u32,
    },
}

/// When a certificate is due: notBefore + fraction × lifetime.
pub fn due_at(info: &CertInfo, fraction: f64) -> i64 {
    info.not_before + (info.lifetime_s() as f64 * fraction).floor() as i64
}

/// Whether `info` should be renewed at `now` (seconds since the epoch).
pub fn renewal_due(info: &CertInfo, now: i64, fraction: f64) -> bool {
    now >= due_at(info, fraction)
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One attempt: nothing if not due, otherwise account + order + install.
pub async fn renew_once(cfg: &AcmeConfig) -> Result<RenewOutcome, AcmeError> {
    let store = CertStore::open(&cfg.state_dir)?;
    let live = store.live_info()?;
    if let Some(info) = &live {
        if !renewal_due(info, now_s(), cfg.renew_fraction) {
            return Ok(RenewOutcome::NotDue {
                serial: info.serial.clone(),
                due_at: due_at(info, cfg.renew_fraction),
            });
        }
        tracing::info!(serial = %info.serial, not_after = info.not_after, "certificate due for renewal");
    }
    let account = ensure_account(cfg, &store).await?;
    let info = match issue_certificate(cfg, &store, &account).await {
        Err(e) if account_gone(&e) => {
            // The CA lost or deactivated the account (e.g. a test CA that
            // restarted): keep the old credentials aside and register again.
            let path = store.account_path();
            let aside = path.with_extension(format!("json.lost-{}", now_s()));
            tracing::warn!(account = account.id(), aside = %aside.display(), "the CA no longer knows this ACME account; creating a new one");
            std::fs::rename(&path, &aside).map_err(|e| AcmeError::io("moving aside", &path, e))?;
            let account = ensure_account(cfg, &store).await?;
            issue_certificate(cfg, &store, &account).await?
        }
        other => other?,
    };
    Ok(RenewOutcome::Issued {
        info,
        previous: live.map(|l| l.serial),
        attempts: 1,
    })
}

/// Whether the CA says our account does not exist (RFC 8555 §6.7).
fn account_gone(e: &AcmeError) -> bool {
    e.problem() == Some("accountDoesNotExist")
}

/// Renews if due, retrying with backoff until `cfg.retry.total_s` has passed.
/// Obtains the first certificate too (no live one means due).
pub async fn renew(cfg: &AcmeConfig) -> Result<RenewOutcome, AcmeError> {
    cfg.validate()?;
    let start = Instant::now();
    let budget = Duration::from_secs(cfg.retry.total_s);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match renew_once(cfg).await {
            Ok(RenewOutcome::Issued { info, previous, .. }) => {
                return Ok(RenewOutcome::Issued {
                    info,
                    previous,
                    attempts: attempt,
                })
            }
            Ok(not_due) => return Ok(not_due),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                let delay = cfg.retry.delay(attempt, rand::thread_rng().gen());
                if start.elapsed() + delay > budget {
                    return Err(AcmeError::GaveUp {
                        attempts: attempt,
                        elapsed_s: start.elapsed().as_secs(),
                        last: Box::new(e),
                    });
                }
                tracing::warn!(
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %e,
                    "waiting for the ACME CA; the current certificate stays in use"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(nb: i64, na: i64) -> CertInfo {
        CertInfo {
            not_before: nb,
            not_after: na,
            serial: "01".into(),
        }
    }

    #[test]
    fn renewal_due_table() {
        let two_thirds = 2.0 / 3.0;
        let day = info(0, 86_400);
        let cases = [
            (&day, 0, false),
            (&day, 57_599, false),
            (&day, 57_600, true),
            (&day, 90_000, true),
        ];
        for (i, now, want) in cases {
            assert_eq!(renewal_due(i, now, two_thirds), want, "now={now}");
        }
        assert!(renewal_due(&info(100, 130), 115, 0.5));
        assert!(!renewal_due(&info(100, 130), 114, 0.5));
    }
}
