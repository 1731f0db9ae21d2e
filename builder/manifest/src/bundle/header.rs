//! The signed header of a bundle manifest (store, ref, serial) and the
//! parser of the whole manifest text.

use super::{render, BundleManifestError, Entry, HEADER, HEADER_V1};

/// What a bundle was signed for; the node compares it with its own store,
/// the ref it follows and the serial it applied last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The store id (as in keel-enroll's `[stores.<id>]`).
    pub store: String,
    /// The Git ref the bundle is published on (`main`, `refs/tags/v3`, ...),
    /// exactly as the nodes' sync config names it.
    pub reference: String,
    /// Monotonic serial, at least 1: a node applies only a serial above the
    /// one it applied last.
    pub serial: u64,
}

impl Header {
    /// A header, its values checked: store and ref non-empty, at most 255
    /// bytes, no whitespace or control characters; serial at least 1.
    pub fn new(
        store: impl Into<String>,
        reference: impl Into<String>,
        serial: u64,
    ) -> Result<Self, BundleManifestError> {
        let h = Header {
            store: store.into(),
            reference: reference.into(),
            serial,
        };
        h.check()?;
        Ok(h)
    }

    fn check(&self) -> Result<(), BundleManifestError> {
        for (what, v) in [("store", &self.store), ("ref", &self.reference)] {
            if v.is_empty()
                || v.len() > 255
                || v.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(BundleManifestError::BadHeader(format!(
                    "{what} {v:?} must be 1-255 bytes without spaces or control characters"
                )));
            }
        }
        if self.serial == 0 {
            return Err(BundleManifestError::BadHeader(
                "serial must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A parsed manifest: the signed header and the file entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    pub header: Header,
    pub entries: Vec<Entry>,
}

/// Parses a v2 manifest: header line, `store`, `ref`, `serial` lines, then
/// entries (sorted, unique, valid fields). The text must be canonical (what
/// [`render`] writes), so the node's byte comparison of signed and rebuilt
/// manifests cannot fail on a spelling difference.
pub fn parse(text: &str) -> Result<SignedManifest, BundleManifestError> {
    let mut lines = text.split_inclusive('\n');
    let header = parse_header(&mut lines)?;
    let mut entries: Vec<Entry> = Vec::new();
    for (i, line) in lines.enumerate() {
        let entry = parse_entry(i + 5, line, entries.last())?;
        entries.push(entry);
    }
    if render(&header, &entries) != text {
        return Err(BundleManifestError::Malformed(
            "not in canonical form (serial with leading zeros?)".into(),
        ));
    }
    Ok(SignedManifest { header, entries })
}

fn bad(line: usize, why: &str) -> BundleManifestError {
    BundleManifestError::Malformed(format!("line {line}: {why}"))
}

/// Lines 1-4: the format line, then `store`, `ref` and `serial`.
fn parse_header<'a>(
    lines: &mut impl Iterator<Item = &'a str>,
) -> Result<Header, BundleManifestError> {
    match lines.next() {
        Some(l) if l == format!("{HEADER}\n") => {}
        Some(l) if l.trim_end() == HEADER_V1 => {
            return Err(BundleManifestError::Malformed(
                "format v1 carries no store, ref and serial, so a replayed or another \
                 store's bundle could not be told apart; sign it again with \
                 `keel bundle sign --store <id>` (docs/gitops-bundles.md)"
                    .into(),
            ))
        }
        _ => return Err(bad(1, "missing `keel-bundle-manifest v2` header")),
    }
    let mut field = |n: usize, key: &str| -> Result<String, BundleManifestError> {
        let line = lines
            .next()
            .and_then(|l| l.strip_suffix('\n'))
            .ok_or_else(|| bad(n, &format!("expected `{key} <value>`")))?;
        line.strip_prefix(key)
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| bad(n, &format!("expected `{key} <value>`, found {line:?}")))
    };
    let store = field(2, "store")?;
    let reference = field(3, "ref")?;
    let serial_text = field(4, "serial")?;
    let serial: u64 = serial_text
        .parse()
        .ok()
        .filter(|_| serial_text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| bad(4, "serial is not a decimal number"))?;
    Header::new(store, reference, serial)
}

/// Entry line `n`: `<sha256> <mode> <path>`, its path after `prev`'s.
fn parse_entry(n: usize, line: &str, prev: Option<&Entry>) -> Result<Entry, BundleManifestError> {
    let line = line
        .strip_suffix('\n')
        .ok_or_else(|| bad(n, "no final newline"))?;
    let mut f = line.splitn(3, ' ');
    let (Some(hash), Some(mode), Some(path)) = (f.next(), f.next(), f.next()) else {
        return Err(bad(n, "expected `<sha256> <mode> <path>`"));
    };
    if hash.len() != 64
        || !hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad(n, "hash is not 64 lowercase hex digits"));
    }
    let mode = match mode {
        "100644" => "100644",
        "100755" => "100755",
        "120000" => "120000",
        _ => return Err(bad(n, "mode is not 100644, 100755 or 120000")),
    };
    if path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == ".." || c == ".")
    {
        return Err(bad(n, "path is not a clean relative path"));
    }
    if let Some(prev) = prev {
        if prev.path.as_bytes() >= path.as_bytes() {
            return Err(bad(n, "paths are not sorted and unique"));
        }
    }
    Ok(Entry {
        sha256: hash.to_string(),
        mode,
        path: path.to_string(),
    })
}
