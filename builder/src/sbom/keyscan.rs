//! Refuses to seal an image that contains private key material.
//!
//! A signing key, host key or TLS key baked into an image is a key shared by
//! every node and every copy of the image: the build must fail instead. The scan
//! looks for PEM blocks whose label names a private key (PKCS#1/#8, SEC1,
//! OpenSSH, PGP, encrypted cosign/sigstore keys) with a real base64 body, and
//! for DER-encoded PKCS#8 and PKCS#1 RSA private keys. Labels that merely occur
//! as strings inside programs (ssh-keygen carries them) are not flagged,
//! because the body between the markers must be base64 key data.
//!
//! Files that a Debian package shipped, unmodified (their MD5 matches the
//! package's `md5sums` list in the image's dpkg database), are archive content
//! that anyone can download: libgnutls, for one, carries its FIPS self-test
//! keys. Those are reported as exempt, not as findings. Anything a package's
//! maintainer script generated (SSH host keys), an overlay added or a build
//! step changed is not in those lists, so it is still refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Files larger than this are not scanned (keys are small; images carry big blobs).
pub const MAX_SCAN_BYTES: u64 = 16 << 20;

/// What was found where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Path inside the image (absolute, e.g. `/etc/ssh/ssh_host_ed25519_key`).
    pub path: PathBuf,
    pub kind: &'static str,
}

/// Returns the kind of private key material in `data`, if any.
pub fn scan_bytes(data: &[u8]) -> Option<&'static str> {
    scan_pem(data).or_else(|| scan_der(data))
}

fn scan_pem(data: &[u8]) -> Option<&'static str> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut from = 0;
    while let Some(i) = find(&data[from..], BEGIN) {
        let start = from + i + BEGIN.len();
        from = start;
        let Some(end_label) = find(&data[start..(start + 80).min(data.len())], b"-----") else {
            continue;
        };
        let label = &data[start..start + end_label];
        if !contains(label, b"PRIVATE KEY") {
            continue;
        }
        let body_start = start + end_label + 5;
        let mut end_marker = b"-----END ".to_vec();
        end_marker.extend_from_slice(label);
        let window = &data[body_start..(body_start + 64 * 1024).min(data.len())];
        let Some(body_len) = find(window, &end_marker) else {
            continue;
        };
        let body = &window[..body_len];
        let mut b64 = 0usize;
        let mut ok = true;
        for line in body.split(|&b| b == b'\n') {
            if contains(line, b":") {
                continue; // "Proc-Type: 4,ENCRYPTED" style headers
            }
            for &c in line {
                if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=' {
                    b64 += 1;
                } else if !c.is_ascii_whitespace() {
                    ok = false;
                }
            }
        }
        if ok && b64 >= 64 {
            return Some(pem_kind(label));
        }
    }
    None
}

fn pem_kind(label: &[u8]) -> &'static str {
    let l = String::from_utf8_lossy(label);
    match l.as_ref() {
        "RSA PRIVATE KEY" => "PEM RSA private key (PKCS#1)",
        "EC PRIVATE KEY" => "PEM EC private key (SEC1)",
        "PRIVATE KEY" => "PEM private key (PKCS#8)",
        "ENCRYPTED PRIVATE KEY" => "PEM encrypted private key (PKCS#8)",
        "OPENSSH PRIVATE KEY" => "OpenSSH private key",
        "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
            "cosign/sigstore encrypted private key"
        }
        "PGP PRIVATE KEY BLOCK" => "PGP private key block",
        _ => "PEM private key",
    }
}

/// DER private keys: PKCS#8 `SEQUENCE { INTEGER 0|1, SEQUENCE { OID key-type ...` and
/// PKCS#1 RSA `SEQUENCE { INTEGER 0, INTEGER modulus ...`, at the start of the file.
fn scan_der(data: &[u8]) -> Option<&'static str> {
    let body = der_seq_body(data)?;
    // SEC1 ECPrivateKey: version 1, then the private key as an OCTET STRING of 32-66 bytes.
    if matches!(body, [0x02, 0x01, 0x01, 0x04, 32..=66, ..]) {
        return Some("DER EC private key (SEC1)");
    }
    let rest = match body {
        [0x02, 0x01, 0x00 | 0x01, r @ ..] => r,
        _ => return None,
    };
    const OIDS: [&[u8]; 5] = [
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ], // rsaEncryption
        &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], // id-ecPublicKey
        &[0x06, 0x03, 0x2b, 0x65, 0x70],                         // Ed25519
        &[0x06, 0x03, 0x2b, 0x65, 0x6e],                         // X25519
        &[0x06, 0x03, 0x2b, 0x65, 0x71],                         // Ed448
    ];
    if let Some(alg) = der_seq_body(rest) {
        if OIDS.iter().any(|o| alg.starts_with(o)) {
            return Some("DER private key (PKCS#8)");
        }
    }
    if rest.first() == Some(&0x02) && rest.len() > 64 && rest.get(1).is_some_and(|&l| l >= 0x81) {
        return Some("DER RSA private key (PKCS#1)");
    }
    None
}

/// The contents of a DER SEQUENCE at the start of `d`, with the length checked.
fn der_seq_body(d: &[u8]) -> Option<&[u8]> {
    if d.first() != Some(&0x30) {
        return None;
    }
    let (len, hdr) = match *d.get(1)? {
        l if l < 0x80 => (usize::from(l), 2),
        0x81 => (usize::from(*d.get(2)?), 3),
        0x82 => ((usize::from(*d.get(2)?) << 8) | usize::from(*d.get(3)?), 4),
        _ => return None,
    };
    if len < 3 || d.len() < hdr + len {
        return None;
    }
    Some(&d[hdr..])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Parses one dpkg `md5sums` list (`<md5>  <path without leading slash>`)
/// into `/path -> md5`.
pub fn parse_md5sums(text: &str, into: &mut HashMap<PathBuf, String>) {
    for line in text.lines() {
        if let Some((sum, path)) = line.split_once("  ") {
            if sum.len() == 32 && sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                into.insert(Path::new("/").join(path), sum.to_ascii_lowercase());
            }
        }
    }
}

/// Every file the image's packages shipped, with its MD5, from
/// ROOT/var/lib/dpkg/info/*.md5sums (empty when there is no dpkg database).
pub fn package_files(root: &Path) -> anyhow::Result<HashMap<PathBuf, String>> {
    use anyhow::Context as _;
    let mut map = HashMap::new();
    let info = root.join("var/lib/dpkg/info");
    let Ok(rd) = std::fs::read_dir(&info) else {
        return Ok(map);
    };
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "md5sums") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_md5sums(&text, &mut map);
        }
    }
    Ok(map)
}

/// The result of [`scan_tree`].
#[derive(Debug, Default)]
pub struct Scan {
    /// Private key material that must not be in the image.
    pub findings: Vec<Finding>,
    /// Key-like data in files a package shipped unmodified (public archive content).
    pub exempt: Vec<Finding>,
}

/// Walks the tree at `root` (symlinks are not followed) and returns every
/// regular file holding private key material, split into findings and
/// unmodified package files (see the module docs).
pub fn scan_tree(root: &Path) -> anyhow::Result<Scan> {
    use anyhow::Context as _;
    use md5::Digest as _;
    let shipped = package_files(root)?;
    let mut scan = Scan::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let ft = e
                .file_type()
                .with_context(|| format!("stat {}", e.path().display()))?;
            let path = e.path();
            if ft.is_dir() {
                if dir == root && ["proc", "sys", "dev"].iter().any(|d| e.file_name() == *d) {
                    continue;
                }
                stack.push(path);
            } else if ft.is_file() {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                if len == 0 || len > MAX_SCAN_BYTES {
                    continue;
                }
                let data =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                if let Some(kind) = scan_bytes(&data) {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    let finding = Finding {
                        path: Path::new("/").join(rel),
                        kind,
                    };
                    let md5 = hex::encode(md5::Md5::digest(&data));
                    if shipped.get(&finding.path) == Some(&md5) {
                        scan.exempt.push(finding);
                    } else {
                        scan.findings.push(finding);
                    }
                }
            }
        }
    }
    scan.findings.sort_by(|a, b| a.path.cmp(&b.path));
    scan.exempt.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}
