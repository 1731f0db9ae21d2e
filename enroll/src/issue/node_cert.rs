//! Node identity certificates: the service's node CA signs the node's CSR into a
//! short-lived certificate whose only name is the node id (SAN and CN). The node
//! uses it for mTLS to central services, including `POST /v1/nodes/report`.
//!
//! Every certificate signed here is recorded by the server (serial, node,
//! store, not-after; see [`crate::store::RevocationStore`]); revoked serials
//! are published in a CRL signed by the same CA ([`NodeCertIssuer::crl`]).

use std::path::Path;

use keel_attest::protocol::NodeIdentity;
use rcgen::{
    CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer as CaIssuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::{IssueError, IssueRequest, Issuer, Material};

/// A freshly signed node certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The certificate, PEM.
    pub pem: String,
    /// Its serial, lower-case hex of the DER INTEGER content (as recorded).
    pub serial: String,
    /// Its notAfter, unix seconds.
    pub not_after: i64,
}

/// Signs node CSRs with the node CA.
pub struct NodeCertIssuer {
    ca: CaIssuer<'static, KeyPair>,
    ca_pem: String,
    lifetime: Duration,
}

impl std::fmt::Debug for NodeCertIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCertIssuer")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl NodeCertIssuer {
    /// An issuer from the node CA's certificate and key (PEM strings).
    pub fn new(ca_pem: &str, key_pem: &str, lifetime: Duration) -> Result<Self, IssueError> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| IssueError::Config(format!("node CA key: {e}")))?;
        let ca = CaIssuer::from_ca_cert_pem(ca_pem, key)
            .map_err(|e| IssueError::Config(format!("node CA certificate: {e}")))?;
        Ok(Self {
            ca,
            ca_pem: ca_pem.to_owned(),
            lifetime,
        })
    }

    /// Reads the node CA from files.
    pub fn load(cert: &Path, key: &Path, lifetime: Duration) -> Result<Self, IssueError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| IssueError::Config(format!("reading {}: {e}", p.display())))
        };
        Self::new(&read(cert)?, &read(key)?, lifetime)
    }

    /// Signs a DER CSR for `node_id`; the CSR's own names and extensions are ignored,
    /// only its (self-signature-checked) public key is used.
    pub fn sign(&self, node_id: &str, csr_der: &[u8]) -> Result<Signed, IssueError> {
        self.sign_valid_for(node_id, csr_der, self.lifetime)
    }

    /// [`NodeCertIssuer::sign`] with another lifetime (tests make expired
    /// certificates with a negative one).
    pub fn sign_valid_for(
        &self,
        node_id: &str,
        csr_der: &[u8],
        lifetime: Duration,
    ) -> Result<Signed, IssueError> {
        check_csr_signature(csr_der)?;
        let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| IssueError::InvalidRequest(format!("CSR: {e}")))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        params.subject_alt_names =
            vec![SanType::DnsName(node_id.try_into().map_err(|e| {
                IssueError::InvalidRequest(format!("node id as DNS name: {e}"))
            })?)];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + lifetime;
        // 16 random bytes, the first in 0x01..=0x7f: a positive INTEGER whose DER
        // content is exactly these bytes (what is recorded and put in the CRL).
        let mut serial = rand::random::<[u8; 16]>();
        serial[0] = 0x01 | (serial[0] & 0x7f);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let csr = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = csr
            .signed_by(&self.ca)
            .map_err(|e| IssueError::InvalidRequest(format!("signing CSR: {e}")))?;
        Ok(Signed {
            pem: cert.pem(),
            serial: hex::encode(serial),
            not_after: (now + lifetime).unix_timestamp(),
        })
    }

    /// A CRL signed by the node CA listing `revoked` (serial hex, revoked-at
    /// unix seconds), valid `validity`; `number` must grow with every CRL.
    pub fn crl(
        &self,
        revoked: &[(String, i64)],
        number: u64,
        validity: Duration,
    ) -> Result<Vec<u8>, IssueError> {
        let now = OffsetDateTime::now_utc();
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for (serial, at) in revoked {
            let bytes = hex::decode(serial)
                .map_err(|e| IssueError::Config(format!("recorded serial {serial:?}: {e}")))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: OffsetDateTime::from_unix_timestamp(*at).unwrap_or(now),
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + validity,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca).map_err(|e| {
            IssueError::Config(format!(
                "signing the CRL with the node CA: {e} (the node CA certificate needs the cRLSign key usage)"
            ))
        })?;
        Ok(crl.der().to_vec())
    }

    /// The node CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// Proof of possession: the CSR must be signed by the key it carries.
fn check_csr_signature(csr_der: &[u8]) -> Result<(), IssueError> {
    use x509_parser::prelude::FromDer;
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
            .map_err(|e| IssueError::InvalidRequest(format!("CSR does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(IssueError::InvalidRequest(
            "trailing bytes after CSR".into(),
        ));
    }
    csr.verify_signature()
        .map_err(|e| IssueError::InvalidRequest(format!("CSR self-signature: {e}")))
}

impl Issuer for NodeCertIssuer {
    fn kind(&self) -> &'static str {
        "node-cert"
    }

    fn issue(&self, req: &IssueRequest<'_>) -> Result<Option<Material>, IssueError> {
        let signed = self.sign(req.node_id, req.csr_der)?;
        Ok(Some(Material::Identity(NodeIdentity {
            cert_chain_pem: signed.pem,
            ca_pem: Some(self.ca_pem.clone()),
        })))
    }
}
