//! `write_files:` entries, accepted in every form cloud-init 22.4 accepts and
//! checked completely while parsing: the path, the permissions, the encoding
//! and the content (base64 and gzip are decoded here). Applying a seed then
//! only does I/O, and `keel-bootstrap seed check` finds every content error
//! that applying would.
//!
//! Where cloud-init guesses (an unknown encoding is written as text, an
//! undecodable mode becomes 0644, base64 drops stray characters), Keel
//! refuses with a message instead: a store node must not end up with a file
//! that nobody asked for.

use std::io::Read;

use base64::Engine;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::yaml::BINARY_TAG;

/// One checked `write_files:` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteFile {
    /// Absolute path on the node (no `..`).
    pub path: String,
    /// The decoded bytes to write.
    pub data: Vec<u8>,
    /// Permission bits (default 0644).
    pub mode: u32,
    /// Owner; default `root:root`.
    pub owner: Owner,
    /// Append instead of replacing.
    pub append: bool,
    /// Accepted for compatibility; Keel writes every file in one stage.
    pub defer: bool,
}

/// `owner: user[:group]`, split as cloud-init splits it. A missing group
/// leaves the file's group as created (root), as cloud-init does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User name or uid.
    pub user: String,
    /// Group name or gid; `None` keeps the group.
    pub group: Option<String>,
}

impl Default for Owner {
    fn default() -> Self {
        Owner {
            user: "root".into(),
            group: Some("root".into()),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{g}", self.user),
            None => f.write_str(&self.user),
        }
    }
}

/// A `write_files:` entry as written in user-data.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(super) struct RawWriteFile {
    path: Option<String>,
    #[serde(deserialize_with = "content")]
    content: Content,
    encoding: Option<String>,
    #[serde(deserialize_with = "permissions")]
    permissions: Option<u32>,
    owner: Option<String>,
    append: bool,
    defer: bool,
}

/// `content:` as written: text, or bytes from a YAML `!!binary` scalar.
#[derive(Clone, Debug, PartialEq)]
enum Content {
    Text(String),
    Binary(Vec<u8>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

/// The `encoding:` names cloud-init knows (case and surrounding blanks do not
/// matter), in the order it applies the steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Text,
    Base64,
    Gzip,
    GzipBase64,
}

impl Encoding {
    fn parse(s: Option<&str>) -> Result<Encoding, String> {
        let s = s.unwrap_or_default().trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            // "text" and "plain" were accepted by earlier Keel releases.
            "" | "text/plain" | "text" | "plain" => Encoding::Text,
            "b64" | "base64" => Encoding::Base64,
            "gz" | "gzip" => Encoding::Gzip,
            "gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64" => Encoding::GzipBase64,
            _ => {
                return Err(format!(
                    "encoding {s:?} is not one cloud-init knows: text/plain, b64, base64, \
                     gz, gzip, gz+b64, gz+base64, gzip+b64, gzip+base64"
                ))
            }
        })
    }
}

impl RawWriteFile {
    /// Checks and decodes the entry; errors are one line without the
    /// `write_files[i]` prefix, which the caller adds.
    pub(super) fn check(self) -> Result<WriteFile, String> {
        let path = self.path.unwrap_or_default();
        if path.is_empty() {
            return Err("a file needs `path:`".into());
        }
        if crate::fsutil::in_root(std::path::Path::new("/"), &path).is_none() || path.contains('\0')
        {
            return Err(format!(
                "path {path:?} must be absolute, without '..' components"
            ));
        }
        let encoding = Encoding::parse(self.encoding.as_deref())?;
        let bytes = match self.content {
            Content::Text(s) => s.into_bytes(),
            Content::Binary(b) => b,
        };
        let data = decode(encoding, bytes).map_err(|e| format!("{path}: {e}"))?;
        let owner = match self.owner.as_deref().map(str::trim) {
            None => Owner::default(),
            Some(o) => parse_owner(o).map_err(|e| format!("{path}: {e}"))?,
        };
        Ok(WriteFile {
            path,
            data,
            mode: self.permissions.unwrap_or(0o644),
            owner,
            append: self.append,
            defer: self.defer,
        })
    }
}

fn parse_owner(o: &str) -> Result<Owner, String> {
    let (u, g) = match o.split_once(':') {
        Some((u, g)) => (u.trim(), Some(g.trim())),
        None => (o, None),
    };
    let ok = |n: &str| !n.is_empty() && !n.contains(|c: char| c == ':' || c.is_whitespace());
    if !ok(u) || g.is_some_and(|g| !ok(g)) {
        return Err(format!(
            "owner {o:?} is not `user` or `user:group` (names or numbers)"
        ));
    }
    Ok(Owner {
        user: u.to_string(),
        group: g.map(str::to_string),
    })
}

/// Applies the encoding's steps: base64 first, then gzip (as cloud-init).
fn decode(enc: Encoding, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let b64 = |b: Vec<u8>| {
        let clean: Vec<u8> = b.into_iter().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|e| format!("content is not valid base64 ({e})"))
    };
    let gunzip = |b: Vec<u8>| {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&b[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("content is not valid gzip ({e})"))?;
        Ok::<_, String>(out)
    };
    match enc {
        Encoding::Text => Ok(bytes),
        Encoding::Base64 => b64(bytes),
        Encoding::Gzip => gunzip(bytes),
        Encoding::GzipBase64 => gunzip(b64(bytes)?),
    }
}

/// Parses a permissions string as cloud-init does (`int(s, 8)`): octal
/// digits, optionally with a `0o` prefix.
fn octal(s: &str) -> Option<u32> {
    let t = s.trim();
    let t = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix("0O"))
        .unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(t, 8).ok().filter(|m| *m <= 0o7777)
}

/// `permissions:` as a string (`'0644'`, `'644'`, `'0o644'`) or a YAML
/// integer. An integer is the mode's value, as in cloud-init: YAML 1.1
/// `0644` and `0o644` are 420 = 0o644, and so is a plain `420`. A plain
/// integer above 0o777 such as `644` is refused: cloud-init would set mode
/// 0o1204, which nobody means.
fn permissions<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an octal mode like '0644'")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            octal(s).map(Some).ok_or_else(|| {
                E::custom(format!(
                    "permissions {s:?} is not an octal mode like '0644' (at most '7777')"
                ))
            })
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            if n <= 0o777 {
                // Lossless: n <= 511.
                return Ok(Some(n as u32));
            }
            Err(E::custom(format!(
                "permissions {n} is a plain integer above 0o777, which cloud-init takes as \
                 mode {n:#o}; write the octal mode quoted, e.g. '0644'"
            )))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!(
                    "permissions {n} is not an octal mode like '0644'"
                ))),
            }
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "permissions {n} is not an octal mode like '0644'"
            )))
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "permissions {b} is not an octal mode like '0644'"
            )))
        }
    }
    d.deserialize_option(V)
}

/// `content:` as text, or a `!!binary` scalar (base64 that YAML decodes).
fn content<'de, D: Deserializer<'de>>(d: D) -> Result<Content, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Content;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("file content: a string, or base64 tagged !!binary")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
            Ok(Content::default())
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Content, E> {
            Ok(Content::Text(s.to_string()))
        }
        fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<Content, A::Error> {
            use de::VariantAccess;
            let (tag, v): (String, _) = a.variant()?;
            let text: String = v.newtype_variant()?;
            if tag != BINARY_TAG {
                return Err(de::Error::custom(format!(
                    "content has YAML tag !{tag}; only !!binary is understood"
                )));
            }
            let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map(Content::Binary)
                .map_err(|e| de::Error::custom(format!("!!binary content is not base64 ({e})")))
        }
    }
    // Numbers and booleans are refused rather than re-printed (YAML would
    // turn `1.50` into "1.5"); cloud-init fails on them too.
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests;
