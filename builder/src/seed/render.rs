//! The NoCloud documents of a node seed, rendered from checked values
//! (pure: no I/O). Strings are written as YAML double-quoted scalars (JSON
//! string syntax, which YAML accepts), so no value can change the document's
//! structure; the CA is a literal block (`|`), readable as PEM.

use anyhow::bail;
use base64::Engine as _;

/// What goes into a node's seed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeedValues {
    /// meta-data `instance-id` (a new one makes the node apply the seed again).
    pub instance_id: String,
    /// Short host name.
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub timezone: Option<String>,
    /// Public keys for root's authorized_keys.
    pub ssh_keys: Vec<String>,
    /// keel-enroll's https URL.
    pub enroll_url: String,
    /// PEM of the CA keel-enroll's certificate chains to.
    pub enroll_ca: String,
    pub store_id: String,
    /// One-time token from `keel-enroll token create` (None: allow-listed TPM).
    pub token: Option<String>,
    /// Disks Ceph may use (empty: every empty non-boot disk).
    pub disks: Vec<String>,
    pub allow_wipe: bool,
    /// A file-backed OSD of this size (test hosts without a spare disk).
    pub file_backed_gib: Option<u64>,
}

/// `s` as a YAML double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks every value; the error says which one and what to do.
pub fn check(v: &SeedValues) -> anyhow::Result<()> {
    let plain = |what: &str, s: &str| -> anyhow::Result<()> {
        if s.trim().is_empty() || s.trim() != s || has_control(s) {
            bail!("{what} {s:?} must be one line without surrounding spaces");
        }
        Ok(())
    };
    plain("the instance id", &v.instance_id)?;
    plain("--store-id", &v.store_id)?;
    let rest = v.enroll_url.strip_prefix("https://").unwrap_or_default();
    let host = rest.split(['/', ':', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || has_control(&v.enroll_url) || v.enroll_url.contains(' ') {
        bail!(
            "--enroll-url {:?} is not an https:// URL with a host (e.g. https://enroll.example.com:8443)",
            v.enroll_url
        );
    }
    check_ca(&v.enroll_ca)?;
    if let Some(t) = &v.token {
        if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("the token is empty or holds spaces or several lines: give the file holding exactly the token `keel-enroll token create` printed");
        }
    }
    if let Some(h) = &v.hostname {
        let ok = !h.is_empty()
            && h.len() <= 63
            && !h.starts_with('-')
            && !h.ends_with('-')
            && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            bail!("--hostname {h:?} is not a host name (letters, digits and '-', at most 63, not starting or ending with '-')");
        }
    }
    for (what, o) in [("--fqdn", &v.fqdn), ("--timezone", &v.timezone)] {
        if let Some(s) = o {
            plain(what, s)?;
        }
    }
    for k in &v.ssh_keys {
        let known = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"];
        if has_control(k) || !known.iter().any(|p| k.starts_with(p)) {
            bail!("{k:?} is not an OpenSSH public key line (ssh-ed25519 AAAA... comment)");
        }
    }
    for d in &v.disks {
        if !d.starts_with("/dev/") || has_control(d) {
            bail!("--disk {d:?} is not a device path or glob under /dev/");
        }
    }
    Ok(())
}

/// Fails unless `pem` holds at least one well-formed PEM certificate and
/// nothing but certificates.
pub fn check_ca(pem: &str) -> anyhow::Result<()> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut count = 0;
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        match (&mut body, line) {
            (None, BEGIN) => body = Some(String::new()),
            (None, "") => {}
            (None, other) => bail!(
                "--enroll-ca holds {other:?} outside a certificate; give the PEM file of the CA that signed keel-enroll's certificate"
            ),
            (Some(b), END) => {
                if base64::engine::general_purpose::STANDARD.decode(&*b).is_err() || b.is_empty() {
                    bail!("--enroll-ca: certificate {} is not valid base64", count + 1);
                }
                count += 1;
                body = None;
            }
            (Some(b), l) => b.push_str(l),
        }
    }
    if body.is_some() || count == 0 {
        bail!("--enroll-ca holds no complete PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)");
    }
    Ok(())
}

/// The meta-data document.
pub fn meta_data(v: &SeedValues) -> String {
    let mut s = format!("instance-id: {}\n", q(&v.instance_id));
    if let Some(h) = &v.hostname {
        s += &format!("local-hostname: {}\n", q(h));
    }
    s
}

/// The user-data document (`#cloud-config` with the `keel:` section).
pub fn user_data(v: &SeedValues) -> String {
    let mut s = String::from("#cloud-config\n");
    s += &format!(
        "# made by keel seed {}{}\n",
        env!("CARGO_PKG_VERSION"),
        if v.token.is_some() {
            "; holds a one-time enrollment token: keep it private until the node has enrolled"
        } else {
            ""
        }
    );
    for (k, o) in [
        ("hostname", &v.hostname),
        ("fqdn", &v.fqdn),
        ("timezone", &v.timezone),
    ] {
        if let Some(x) = o {
            s += &format!("{k}: {}\n", q(x));
        }
    }
    if !v.ssh_keys.is_empty() {
        s += "ssh_authorized_keys:\n";
        for k in &v.ssh_keys {
            s += &format!("  - {}\n", q(k));
        }
    }
    s += "keel:\n";
    s += &format!("  enroll-url: {}\n", q(&v.enroll_url));
    s += &format!("  store-id: {}\n", q(&v.store_id));
    if let Some(t) = &v.token {
        s += &format!("  token: {}\n", q(t));
    }
    s += "  enroll-ca: |\n";
    for l in v.enroll_ca.lines().map(str::trim).filter(|l| !l.is_empty()) {
        s += &format!("    {l}\n");
    }
    if !v.disks.is_empty() || v.allow_wipe || v.file_backed_gib.is_some() {
        s += "  disks:\n";
        if !v.disks.is_empty() {
            let d: Vec<String> = v.disks.iter().map(|d| q(d)).collect();
            s += &format!("    devices: [{}]\n", d.join(", "));
        }
        if v.allow_wipe {
            s += "    allow-wipe: true\n";
        }
        if let Some(g) = v.file_backed_gib {
            s += &format!("    file-backed-gib: {g}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n";

    fn values() -> SeedValues {
        SeedValues {
            instance_id: "iid-store-7-n1".into(),
            hostname: Some("n1".into()),
            enroll_url: "https://enroll.test:8443".into(),
            enroll_ca: CA.into(),
            store_id: "store-7".into(),
            token: Some("tok-1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn documents_quote_every_value() {
        let mut v = values();
        v.store_id = "store: \"7\" # not a comment".into();
        v.disks = vec!["/dev/sd[b-z]".into()];
        check(&v).expect("valid");
        let ud = user_data(&v);
        assert!(
            ud.contains("  store-id: \"store: \\\"7\\\" # not a comment\"\n"),
            "{ud}"
        );
        assert!(
            ud.contains("  enroll-ca: |\n    -----BEGIN CERTIFICATE-----\n    TUlJQg==\n"),
            "{ud}"
        );
        assert!(ud.contains("    devices: [\"/dev/sd[b-z]\"]\n"), "{ud}");
        assert!(ud.starts_with("#cloud-config\n"));
        assert_eq!(
            meta_data(&v),
            "instance-id: \"iid-store-7-n1\"\nlocal-hostname: \"n1\"\n"
        );
    }

    /// A change that makes the values invalid.
    type Break = fn(&mut SeedValues);

    #[test]
    fn bad_values_are_refused_with_the_option_named() {
        let cases: [(&str, Break); 8] = [
            ("--enroll-url", |v| {
                v.enroll_url = "http://enroll.test".into()
            }),
            ("--enroll-url", |v| v.enroll_url = "https://".into()),
            ("--enroll-ca holds \"hello\"", |v| {
                v.enroll_ca = "hello".into()
            }),
            ("no complete PEM", |v| {
                v.enroll_ca = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n".into()
            }),
            ("--store-id", |v| v.store_id = " ".into()),
            ("the token", |v| v.token = Some("a b\n".into())),
            ("--hostname", |v| v.hostname = Some("node_1".into())),
            ("OpenSSH public key", |v| {
                v.ssh_keys = vec!["-----BEGIN OPENSSH PRIVATE KEY-----".into()]
            }),
        ];
        for (want, change) in cases {
            let mut v = values();
            change(&mut v);
            let e = check(&v).expect_err(want).to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
