//! `users:` in every form cloud-init 22.4 accepts (`normalize_users` in
//! cloudinit/distros/ug_util.py), turned into a checked list of accounts:
//!
//! - a list whose items are a name (`- alice`), a comma-separated string of
//!   names (`- "alice, bob"`), a list of names, or a mapping with `name:`;
//! - a comma-separated string (`users: "default, alice"`);
//! - a mapping from name to settings (`alice: {groups: adm}`) or to a
//!   boolean-ish value (`bob: true`; false, "no" and the like skip the user).
//!
//! `default` (cloud-init's distribution user) is accepted and ignored: Keel
//! images have none. A name listed twice is one user; settings given twice
//! are merged key by key, the later entry winning, as in cloud-init. Keys
//! may be written with `-` or `_` (`lock-passwd` = `lock_passwd`).
//!
//! Every field is checked here, so that creating the accounts cannot fail
//! on the seed's content.

use serde::{Deserialize, Deserializer};
use serde_yaml_ng::{Mapping, Value};

use super::yaml;

/// One account.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct User {
    /// Login name (required).
    pub name: String,
    /// Full name / comment.
    pub gecos: Option<String>,
    /// Supplementary groups (list, comma-separated string, or the deprecated
    /// mapping of group names); created if missing.
    #[serde(deserialize_with = "groups")]
    pub groups: Vec<String>,
    /// sudoers rules, e.g. `ALL=(ALL) NOPASSWD:ALL`; `false` means none.
    #[serde(deserialize_with = "sudo")]
    pub sudo: Vec<String>,
    /// Login shell.
    pub shell: Option<String>,
    /// Home directory (default /home/NAME).
    pub homedir: Option<String>,
    /// Public keys for this user's authorized_keys.
    pub ssh_authorized_keys: Vec<String>,
    /// Lock the password (default true, as in cloud-init).
    pub lock_passwd: Option<bool>,
    /// A crypt(3) password hash.
    pub passwd: Option<String>,
    /// Create as a system account.
    pub system: bool,
}

/// Turns `users:` into accounts. Returns the users and warnings; errors are
/// one line, prefixed with where the entry is (`users[2]`).
pub(super) fn normalize(file: &str, v: Value) -> Result<(Vec<User>, Vec<String>), String> {
    let mut entries = Entries::default();
    match v {
        Value::Null => {}
        Value::String(s) => {
            for n in split_names(&s) {
                entries.add(n, Mapping::new(), "users".into());
            }
        }
        Value::Mapping(m) => {
            for (k, v) in m {
                entries.add_keyed(k, v)?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.into_iter().enumerate() {
                entries.add_item(format!("users[{i}]"), item)?;
            }
        }
        other => {
            return Err(format!(
                "users: {} is not a list, a mapping or a comma-separated string of names",
                kind(&other)
            ))
        }
    }
    accounts(file, entries.0)
}

/// (name, settings, where) in first-seen order; a name seen again adds its
/// settings to the first entry.
#[derive(Default)]
struct Entries(Vec<(String, Mapping, String)>);

impl Entries {
    fn add(&mut self, name: String, settings: Mapping, at: String) {
        match self.0.iter_mut().find(|e| e.0 == name) {
            Some(e) => e.1.extend(settings),
            None => self.0.push((name, settings, at)),
        }
    }

    /// `users: {NAME: {settings} | true}`.
    fn add_keyed(&mut self, k: Value, v: Value) -> Result<(), String> {
        let name = scalar_text(&k).ok_or_else(|| format!("users: key {k:?} is not a user name"))?;
        let at = format!("users.{name}");
        match v {
            Value::Mapping(settings) => self.add(name, keys_underscored(settings), at),
            Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                if is_true(&v) {
                    self.add(name, Mapping::new(), at);
                }
            }
            _ => {
                return Err(format!(
                    "{at}: give settings (a mapping) or true, not {}",
                    kind(&v)
                ))
            }
        }
        Ok(())
    }

    /// One item of `users: [...]`: names, a list of names, or a user.
    fn add_item(&mut self, at: String, item: Value) -> Result<(), String> {
        match item {
            Value::String(s) => {
                for n in split_names(&s) {
                    self.add(n, Mapping::new(), at.clone());
                }
            }
            Value::Sequence(names) => {
                for n in names {
                    let Value::String(n) = n else {
                        return Err(format!(
                            "{at}: a list of names holds {}, not a name",
                            kind(&n)
                        ));
                    };
                    self.add(n.trim().to_string(), Mapping::new(), at.clone());
                }
            }
            Value::Mapping(m) => {
                let mut m = keys_underscored(m);
                let name = match m.remove("name") {
                    Some(Value::String(n)) => n,
                    None => return Err(format!("{at}: a user needs `name:`")),
                    Some(other) => return Err(format!("{at}: name {other:?} is not a string")),
                };
                self.add(name, m, at);
            }
            other => {
                return Err(format!(
                    "{at}: {} is not a user (write a name or name: ...)",
                    kind(&other)
                ))
            }
        }
        Ok(())
    }
}

/// The accounts the entries describe, checked; cloud-init's `default` user
/// is skipped (with a warning when it has settings).
fn accounts(
    file: &str,
    entries: Vec<(String, Mapping, String)>,
) -> Result<(Vec<User>, Vec<String>), String> {
    let mut users = Vec::new();
    let mut warnings = Vec::new();
    for (name, settings, at) in entries {
        if name == "default" {
            if !settings.is_empty() {
                warnings.push(format!(
                    "{file}: {at}: settings for cloud-init's `default` user ignored \
                     (Keel images have no default user; name the user instead)"
                ));
            }
            continue;
        }
        let mut settings = settings;
        settings.insert("name".into(), Value::String(name.clone()));
        let (user, w): (User, _) =
            yaml::from_value(file, &at, Value::Mapping(settings)).map_err(|e| match e {
                super::SeedError::Invalid { message, .. } => message,
                other => other.to_string(),
            })?;
        check(&user).map_err(|e| format!("{at}: {e}"))?;
        warnings.extend(w);
        users.push(user);
    }
    Ok((users, warnings))
}

/// cloud-init's `util.is_true`.
fn is_true(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => scalar_text(other).is_some_and(|s| {
            ["true", "1", "on", "yes"].contains(&s.trim().to_lowercase().as_str())
        }),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// cloud-init's `util.uniq_merge` of a string: split at commas, trim, drop empties.
fn split_names(s: &str) -> Vec<String> {
    s.split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// cloud-init reads `lock-passwd` as `lock_passwd`.
fn keys_underscored(m: Mapping) -> Mapping {
    m.into_iter()
        .map(|(k, v)| match k {
            Value::String(s) => (Value::String(s.trim().replace('-', "_")), v),
            k => (k, v),
        })
        .collect()
}

/// A user or group name Keel accepts: 1 to 32 of `A-Z a-z 0-9 . _ -`, not
/// starting with `-`, not only digits (it would read as an id), not `.`/`..`;
/// a trailing `$` (machine accounts) is allowed. Debian's useradd allows
/// more, but such names break sudoers or `owner: user:group` lines.
pub fn valid_name(n: &str) -> bool {
    let body = n.strip_suffix('$').unwrap_or(n);
    !body.is_empty()
        && n.len() <= 32
        && !body.starts_with('-')
        && body != "."
        && body != ".."
        && !body.bytes().all(|b| b.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A line that goes into a system file as one field: no newline, no `:`
/// where the file separates fields with it.
fn one_field(what: &str, s: &str, colon: bool) -> Result<(), String> {
    if s.contains(['\n', '\r', '\0']) || (colon && s.contains(':')) {
        let extra = if colon { " or ':'" } else { "" };
        return Err(format!("{what} {s:?} must not contain a line break{extra}"));
    }
    Ok(())
}

fn check(u: &User) -> Result<(), String> {
    if !valid_name(&u.name) {
        return Err(format!(
            "{:?} is not a valid user name (letters, digits, '.', '_', '-', at most 32, \
             not starting with '-', not only digits)",
            u.name
        ));
    }
    for g in &u.groups {
        if !valid_name(g) {
            return Err(format!("{g:?} is not a valid group name"));
        }
    }
    if let Some(g) = &u.gecos {
        one_field("gecos", g, true)?;
    }
    if let Some(p) = &u.passwd {
        one_field("passwd", p, true)?;
    }
    for rule in &u.sudo {
        one_field("sudo rule", rule, false)?;
    }
    for (what, path) in [("shell", &u.shell), ("homedir", &u.homedir)] {
        if let Some(p) = path {
            one_field(what, p, true)?;
            if crate::fsutil::in_root(std::path::Path::new("/"), p).is_none() {
                return Err(format!(
                    "{what} {p:?} must be an absolute path without '..'"
                ));
            }
        }
    }
    check_keys(&u.ssh_authorized_keys)
}

/// SSH keys are one line each.
pub(super) fn check_keys(keys: &[String]) -> Result<(), String> {
    for k in keys {
        let k = k.trim();
        if k.is_empty() || k.contains(['\n', '\r']) {
            return Err(format!(
                "ssh key {k:?} is empty or spans lines (one key per list item)"
            ));
        }
    }
    Ok(())
}

fn groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Groups {
        One(String),
        Many(Vec<String>),
        // Deprecated in cloud-init: `groups: {adm: null}`.
        Map(std::collections::BTreeMap<String, serde::de::IgnoredAny>),
    }
    Ok(match Option::<Groups>::deserialize(d)? {
        None => Vec::new(),
        Some(Groups::One(s)) => split_names(&s),
        Some(Groups::Many(v)) => v.into_iter().map(|g| g.trim().to_string()).collect(),
        Some(Groups::Map(m)) => m.into_keys().collect(),
    })
}

fn sudo<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sudo {
        Off(bool),
        One(String),
        Many(Vec<String>),
    }
    match Option::<Sudo>::deserialize(d)? {
        None | Some(Sudo::Off(false)) => Ok(Vec::new()),
        Some(Sudo::Off(true)) => Err(serde::de::Error::custom(
            "sudo: true is not a rule; write e.g. \"ALL=(ALL) NOPASSWD:ALL\"",
        )),
        Some(Sudo::One(s)) => Ok(vec![s]),
        Some(Sudo::Many(v)) => Ok(v),
    }
}

#[cfg(test)]
mod tests;
