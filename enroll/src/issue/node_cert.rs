//! Node identity certificates: the service's node CA signs the node's CSR into a
//! short-lived certificate whose only name is the node id (SAN and CN). The node
//! uses it for mTLS to central services, including `POST /v1/nodes/report`.

use std::path::Path;

use keel_attest::protocol::NodeIdentity;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer as CaIssuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::{IssueError, IssueRequest, Issuer, Material};

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

    /// Signs a DER CSR for `node_id` of `store` (CN = node id, OU = store:
    /// node ids are unique only within a store); the CSR's own names and
    /// extensions are ignored, only its (self-signature-checked) public key
    /// is used.
    pub fn sign(
        &self,
        store: &str,
        node_id: &str,
        csr_der: &[u8],
    ) -> Result<(String, String), IssueError> {
        check_csr_signature(csr_der)?;
        let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| IssueError::InvalidRequest(format!("CSR: {e}")))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationalUnitName, store);
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        params.subject_alt_names =
            vec![SanType::DnsName(node_id.try_into().map_err(|e| {
                IssueError::InvalidRequest(format!("node id as DNS name: {e}"))
            })?)];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + self.lifetime;
        params.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
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
        let not_after = params_not_after(now + self.lifetime);
        Ok((cert.pem(), not_after))
    }

    /// The node CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

fn params_not_after(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
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
        let (cert_pem, _not_after) = self.sign(req.store, req.node_id, req.csr_der)?;
        Ok(Some(Material::Identity(NodeIdentity {
            cert_chain_pem: cert_pem,
            ca_pem: Some(self.ca_pem.clone()),
        })))
    }
}
