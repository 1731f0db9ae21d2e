//! `write_files`: decode (text, base64, gzip, gzip+base64), write atomically
//! with the given mode, owner and append flag.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine;

use crate::fsutil::{atomic_write, in_root};
use crate::seed::user_data::WriteFile;

/// Decodes a write_files entry's content.
pub fn decode(f: &WriteFile) -> Result<Vec<u8>> {
    let b64 = |s: &str| {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean)
            .context("content is not valid base64")
    };
    let gunzip = |b: Vec<u8>| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&b[..])
            .read_to_end(&mut out)
            .context("content is not valid gzip")?;
        Ok(out)
    };
    Ok(match f.encoding.as_deref().unwrap_or("text/plain") {
        "text/plain" | "text" | "plain" => f.content.clone().into_bytes(),
        "b64" | "base64" => b64(&f.content)?,
        "gz" | "gzip" => gunzip(f.content.clone().into_bytes())?,
        "gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64" => gunzip(b64(&f.content)?)?,
        other => bail!("encoding {other:?} is not supported (b64, gzip, gz+b64, text/plain)"),
    })
}

/// Writes every entry under `root`.
pub fn write_files(root: &Path, files: &[WriteFile]) -> Result<()> {
    for f in files {
        let path = in_root(root, &f.path).with_context(|| {
            format!(
                "write_files path {:?} must be absolute, without '..'",
                f.path
            )
        })?;
        let mut data = decode(f).with_context(|| format!("write_files {}", f.path))?;
        let mode = f.permissions.unwrap_or(0o644);
        if f.append {
            let mut old = std::fs::read(&path).unwrap_or_default();
            old.append(&mut data);
            data = old;
        }
        atomic_write(&path, &data, mode).with_context(|| format!("writing {}", path.display()))?;
        let owner = f.owner.as_deref().unwrap_or("root:root");
        let (uid, gid) = super::users::resolve_owner(root, owner)
            .with_context(|| format!("write_files {}: owner {owner:?}", f.path))?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .or_else(|e| if skip_chown(uid, gid) { Ok(()) } else { Err(e) })
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// Without root privileges (unit tests as a user) chown to root is skipped.
pub(crate) fn skip_chown(uid: u32, gid: u32) -> bool {
    uid == 0 && gid == 0 && !is_root()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
