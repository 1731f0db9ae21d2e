//! YAML decoding shared by the seed files: errors carry `file:line:column`,
//! and keys the target type does not know come back as warnings (with their
//! path, e.g. `keel.enrol-url`) instead of failing the parse.
//!
//! serde_yaml_ng drops the standard `!!binary` tag and hands over the base64
//! text, so a `write_files` content written as `!!binary` would be written
//! undecoded. Before parsing, `!!binary` is therefore renamed to the local tag
//! `!keelbin` (same length: error positions stay right), which reaches the
//! deserializer as a tag; see [`BINARY_TAG`].

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::SeedError;

/// The tag name `!!binary` arrives as (the deserializer sees an enum variant).
pub const BINARY_TAG: &str = "keelbin";
const BINARY_SRC: &str = "!!binary";
const BINARY_LOCAL: &str = "!keelbin";

/// Decodes `text` into `T`; returns `T` and one warning per unknown key.
pub fn from_str<T: DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<(T, Vec<String>), SeedError> {
    let mut unknown = Vec::new();
    let text = tag_binary(file, text)?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let value: T = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
        .map_err(|e| located(file, &e))?;
    Ok((value, warnings(file, "", unknown)))
}

/// Decodes an already parsed YAML value found at `at` (e.g. `users[1]`).
pub fn from_value<T: DeserializeOwned>(
    file: &str,
    at: &str,
    value: serde_yaml_ng::Value,
) -> Result<(T, Vec<String>), SeedError> {
    let mut unknown = Vec::new();
    let value: T = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))
        .map_err(|e| SeedError::Invalid {
            file: file.to_string(),
            message: format!("{at}: {e}"),
        })?;
    Ok((value, warnings(file, at, unknown)))
}

/// Renames the `!!binary` tag (see the module docs). If "!!binary" also
/// occurs inside a string, renaming would change that string: refused.
fn tag_binary<'a>(file: &str, text: &'a str) -> Result<Cow<'a, str>, SeedError> {
    if !text.contains(BINARY_SRC) {
        return Ok(Cow::Borrowed(text));
    }
    let renamed = text.replace(BINARY_SRC, BINARY_LOCAL);
    let (Ok(before), Ok(after)) = (
        serde_yaml_ng::from_str::<Value>(text),
        serde_yaml_ng::from_str::<Value>(&renamed),
    ) else {
        // A syntax error: the real parse reports it with its position.
        return Ok(Cow::Borrowed(text));
    };
    if !has_binary_tag(&after) {
        // "!!binary" only occurs inside text.
        return Ok(Cow::Borrowed(text));
    }
    if only_tags_differ(&before, &after) {
        Ok(Cow::Owned(renamed))
    } else {
        Err(SeedError::Invalid {
            file: file.to_string(),
            message: "\"!!binary\" appears inside text as well as as a YAML tag; \
                      write the binary content with `encoding: b64` instead of !!binary"
                .into(),
        })
    }
}

fn has_binary_tag(v: &Value) -> bool {
    match v {
        Value::Tagged(t) => t.tag == BINARY_TAG || has_binary_tag(&t.value),
        Value::Sequence(s) => s.iter().any(has_binary_tag),
        Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| has_binary_tag(k) || has_binary_tag(v)),
        _ => false,
    }
}

/// `before` parsed with `!!binary` (dropped by the parser), `after` with
/// the local tag: equal except where `after` has the tag.
fn only_tags_differ(before: &Value, after: &Value) -> bool {
    match (before, after) {
        (b, Value::Tagged(t)) if t.tag == BINARY_TAG => b == &t.value,
        (Value::Sequence(b), Value::Sequence(a)) => {
            b.len() == a.len() && b.iter().zip(a).all(|(b, a)| only_tags_differ(b, a))
        }
        (Value::Mapping(b), Value::Mapping(a)) => {
            b.len() == a.len()
                && b.iter()
                    .zip(a)
                    .all(|((bk, bv), (ak, av))| bk == ak && only_tags_differ(bv, av))
        }
        (Value::Tagged(b), Value::Tagged(a)) => {
            b.tag == a.tag && only_tags_differ(&b.value, &a.value)
        }
        (b, a) => b == a,
    }
}

fn warnings(file: &str, at: &str, unknown: Vec<String>) -> Vec<String> {
    unknown
        .into_iter()
        .map(|p| {
            // serde_ignored marks Option layers with `?`: not useful to a reader.
            let p = p.replace(".?", "");
            let p = if at.is_empty() {
                p
            } else {
                format!("{at}.{p}")
            };
            format!("{file}: unknown key `{p}` ignored (not supported by Keel)")
        })
        .collect()
}

/// Turns a YAML error into `file:line:column: message`.
fn located(file: &str, e: &serde_yaml_ng::Error) -> SeedError {
    let text = e.to_string();
    match e.location() {
        Some(loc) => {
            // The crate appends " at line L column C"; the prefix says it already.
            let message = match text.rfind(" at line ") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            SeedError::Syntax {
                file: file.to_string(),
                line: loc.line(),
                column: loc.column(),
                message,
            }
        }
        None => SeedError::Invalid {
            file: file.to_string(),
            message: text,
        },
    }
}
