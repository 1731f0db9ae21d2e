//! Offline keyed signing in cosign's formats.
//!
//! Keys: an ECDSA P-256 key pair, the private half encrypted the way
//! `cosign generate-key-pair` does it (scrypt + secretbox, PEM label
//! `ENCRYPTED SIGSTORE PRIVATE KEY`), written and read with the sigstore crate.
//! Signatures: ECDSA over SHA-256 of the file, ASN.1 DER, base64: the same bytes
//! `cosign sign-blob --key K --output-signature F.sig` writes (RFC 6979, so
//! deterministic). The file is hashed in a stream, so multi-GB images are fine.
//! Bundles: a sigstore bundle v0.3 (`F.sigstore.json`) holding the message
//! digest, the signature and the public-key hint, without transparency-log
//! entries (offline); `cosign verify-blob --new-bundle-format --bundle` accepts
//! it with `--insecure-ignore-tlog` and an empty `--trusted-root`.
//!
//! Passwords come from `KEEL_KEY_PASSWORD` or a password file, never argv.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::SigningScheme;
use zeroize::Zeroizing;

/// Environment variable holding the private key's password.
pub const PASSWORD_ENV: &str = "KEEL_KEY_PASSWORD";

/// Reads the key password from `file` (first line) or [`PASSWORD_ENV`].
pub fn password(file: Option<&Path>) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading password file {}", f.display()))?,
        );
        let line = text.lines().next().unwrap_or_default();
        return Ok(Zeroizing::new(line.as_bytes().to_vec()));
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(p) => Ok(Zeroizing::new(p.into_bytes())),
        Err(_) => bail!("no key password: set {PASSWORD_ENV} or pass --password-file"),
    }
}

/// SHA-256 of a file, read in a stream; also returns its size.
pub fn sha256_file(path: &Path) -> anyhow::Result<([u8; 32], u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    sha256_reader(&mut f).with_context(|| format!("reading {}", path.display()))
}

/// SHA-256 of everything `r` yields, read in a stream; also returns the size.
pub fn sha256_reader(r: &mut impl Read) -> std::io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((h.finalize().into(), size))
}

/// Writes `PREFIX.key` (encrypted, mode 0600) and `PREFIX.pub`; returns both paths.
pub fn generate_key_pair(prefix: &Path, password: &[u8]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key_path = prefix.with_extension("key");
    let pub_path = prefix.with_extension("pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!(
                "{} exists already; refusing to overwrite a key",
                p.display()
            );
        }
    }
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .context("generating ECDSA P-256 key")?;
    let pair = signer.to_sigstore_keypair().context("exporting key pair")?;
    let enc = pair
        .private_key_to_encrypted_pem(password)
        .context("encrypting private key")?;
    let public = pair.public_key_to_pem().context("exporting public key")?;
    write_new(&key_path, enc.as_bytes(), 0o600)?;
    write_new(&pub_path, public.as_bytes(), 0o644)?;
    Ok((key_path, pub_path))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// Decrypts a cosign-format private key (P-256 only).
pub fn load_signing_key(path: &Path, password: &[u8]) -> anyhow::Result<SigningKey> {
    let pem = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("reading key {}", path.display()))?,
    );
    let pair = SigStoreKeyPair::from_encrypted_pem(&pem, password)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "decrypting {} (wrong password or not a cosign key)",
                path.display()
            )
        })?;
    let der = pair
        .private_key_to_der()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    SigningKey::from_pkcs8_der(&der)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{} is not an ECDSA P-256 key", path.display()))
}

/// Reads a PEM public key (`cosign.pub` style).
pub fn load_public_key(path: &Path) -> anyhow::Result<VerifyingKey> {
    Ok(keel_manifest::signature::load_public_key(path)?)
}

/// Signs a SHA-256 digest; returns the DER signature.
pub fn sign_digest(key: &SigningKey, digest: &[u8; 32]) -> anyhow::Result<Vec<u8>> {
    let sig: Signature = key
        .sign_prehash(digest)
        .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    Ok(sig.to_der().as_bytes().to_vec())
}

/// Checks a base64 DER signature over a SHA-256 digest.
pub fn verify_digest(key: &VerifyingKey, digest: &[u8; 32], sig_b64: &str) -> anyhow::Result<()> {
    Ok(keel_manifest::signature::verify_digest(
        key, digest, sig_b64,
    )?)
}

/// The sigstore bundle v0.3 for a keyed, offline signature.
pub fn bundle(
    key: &VerifyingKey,
    digest: &[u8; 32],
    sig_der: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let spki = key
        .to_public_key_der()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hint = B64.encode(Sha256::digest(spki.as_bytes()));
    Ok(serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": hint}},
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(digest)},
            "signature": B64.encode(sig_der),
        },
    }))
}

/// Signs `file`: writes `FILE.sig` (base64, cosign `--output-signature`) and
/// `FILE.sigstore.json` (bundle). Returns the file's digest.
pub fn sign_file(key: &SigningKey, file: &Path) -> anyhow::Result<[u8; 32]> {
    let (digest, _) = sha256_file(file)?;
    sign_file_digest(key, file, &digest)?;
    Ok(digest)
}

/// Writes `FILE.sig` and `FILE.sigstore.json` for `digest`, the digest of
/// `file`'s content the caller has already read and checked (so what is
/// signed is what was checked: the file is not read again).
pub fn sign_file_digest(key: &SigningKey, file: &Path, digest: &[u8; 32]) -> anyhow::Result<()> {
    let digest = *digest;
    let der = sign_digest(key, &digest)?;
    let sig_path = suffixed(file, ".sig");
    keel_cmd::fs::write_atomic(&sig_path, B64.encode(&der).as_bytes(), 0o644)
        .with_context(|| format!("writing {}", sig_path.display()))?;
    let b = bundle(key.verifying_key(), &digest, &der)?;
    let bundle_path = suffixed(file, ".sigstore.json");
    keel_cmd::fs::write_atomic(&bundle_path, format!("{b}\n").as_bytes(), 0o644)
        .with_context(|| format!("writing {}", bundle_path.display()))?;
    Ok(())
}

/// `path` with `suffix` appended to its file name.
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
