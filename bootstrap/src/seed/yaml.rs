//! YAML decoding shared by the seed files: errors carry `file:line:column`,
//! and keys the target type does not know come back as warnings (with their
//! path, e.g. `keel.enrol-url`) instead of failing the parse.

use serde::de::DeserializeOwned;

use super::SeedError;

/// Decodes `text` into `T`; returns `T` and one warning per unknown key.
pub fn from_str<T: DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<(T, Vec<String>), SeedError> {
    let mut unknown = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(text);
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
