//! The ACME account (created once, bound by EAB, reused forever) and one
//! certificate order answered over HTTP-01.

use std::time::Duration;

use base64::Engine;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};

use super::http01::Http01Responder;
use super::store::{CertInfo, CertStore};
use super::{AcmeConfig, AcmeError};
use keel_cmd::fs::write_atomic;

/// How long to wait for the CA to validate and to issue.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

/// Loads the persisted account, or creates it (with the EAB binding) and
/// persists its credentials (0600) before anything else happens.
///
/// Known window: instant-acme 0.8.5 only accepts an EAB binding when it
/// generates the account key itself, so a power cut between the CA's reply
/// and the credentials reaching disk (a few milliseconds) leaves an orphan
/// account on the CA; the rerun then creates a second one.
pub async fn ensure_account(cfg: &AcmeConfig, store: &CertStore) -> Result<Account, AcmeError> {
    let path = store.account_path();
    let builder = || Account::builder_with_root(&cfg.ca_bundle);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let creds: AccountCredentials = serde_json::from_slice(&bytes)?;
            let account = builder()?.from_credentials(creds).await?;
            tracing::debug!(account = account.id(), "reusing ACME account");
            return Ok(account);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AcmeError::io("reading", &path, e)),
    }
    let eab = cfg
        .eab
        .as_ref()
        .map(|eab| {
            let key = decode_hmac(&eab.hmac_key)?;
            Ok::<_, AcmeError>(ExternalAccountKey::new(eab.kid.clone(), &key))
        })
        .transpose()?;
    let new = NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) = builder()?
        .create(&new, cfg.directory_url.clone(), eab.as_ref())
        .await?;
    let json = serde_json::to_vec_pretty(&creds)?;
    write_atomic(&path, &json, 0o600).map_err(|e| AcmeError::io("writing", &path, e))?;
    tracing::info!(account = account.id(), "created ACME account");
    Ok(account)
}

/// EAB HMAC keys are printed base64url (unpadded); accept padded and standard too.
fn decode_hmac(text: &str) -> Result<Vec<u8>, AcmeError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let trimmed = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD.decode(text.trim()))
        .map_err(|e| AcmeError::Config(format!("EAB HMAC key is not base64: {e}")))
}

/// Orders a certificate for `cfg.domains`, proves control over HTTP-01,
/// and installs key + chain as the new live generation.
pub async fn issue_certificate(
    cfg: &AcmeConfig,
    store: &CertStore,
    account: &Account,
) -> Result<CertInfo, AcmeError> {
    let ids: Vec<Identifier> = cfg.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let responder = Http01Responder::start(cfg.http01_listen).await?;
    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Order {
                        names: cfg.domains.clone(),
                        status: format!("authorization {other:?}"),
                    })
                }
            }
            let mut challenge =
                authz
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| AcmeError::Order {
                        names: cfg.domains.clone(),
                        status: "without an http-01 challenge".into(),
                    })?;
            responder.add(&challenge.token, challenge.key_authorization().as_str());
            challenge.set_ready().await?;
        }
    }
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(200))
        .timeout(ORDER_TIMEOUT);
    let status = order.poll_ready(&policy).await?;
    drop(responder);
    if status != OrderStatus::Ready {
        return Err(AcmeError::Order {
            names: cfg.domains.clone(),
            status: format!("{status:?}"),
        });
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(cfg.domains.clone())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&policy).await?;
    let info = store.install(&key.serialize_pem(), &chain)?;
    tracing::info!(
        serial = %info.serial,
        lifetime_s = info.lifetime_s(),
        "installed new certificate"
    );
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_hmac_table() {
        // pebble's example key (base64url, unpadded)
        let k = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
        assert_eq!(decode_hmac(k).expect("url-safe").len(), 48);
        assert_eq!(decode_hmac("AAEC").expect("plain"), vec![0, 1, 2]);
        assert_eq!(decode_hmac("AAE=").expect("padded"), vec![0, 1]);
        assert!(decode_hmac("not base64 !").is_err());
    }
}
