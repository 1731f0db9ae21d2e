//! `meta-data`: the instance identity (`instance-id`, `local-hostname`).
//! A new instance-id means a new seed; Keel records which one it applied.

use serde::Deserialize;

use super::{yaml, SeedError};

/// The parsed meta-data file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct MetaData {
    /// Identifies this seed; cloud-localds writes `iid-local01` if none is given.
    pub instance_id: String,
    /// Host name, unless user-data sets `hostname:`.
    pub local_hostname: Option<String>,
    /// Accepted for compatibility (NoCloud mode switch); Keel ignores it.
    pub dsmode: Option<String>,
}

/// Parses meta-data (YAML; JSON is YAML too).
pub fn parse(file: &str, text: &str) -> Result<(MetaData, Vec<String>), SeedError> {
    if text.trim().is_empty() {
        return Err(SeedError::Invalid {
            file: file.to_string(),
            message: "meta-data is empty; it needs at least `instance-id:`".into(),
        });
    }
    let (meta, w): (MetaData, _) = yaml::from_str(file, text)?;
    if meta.instance_id.trim().is_empty() {
        return Err(SeedError::Invalid {
            file: file.to_string(),
            message: "meta-data has no `instance-id:`".into(),
        });
    }
    Ok((meta, w))
}
