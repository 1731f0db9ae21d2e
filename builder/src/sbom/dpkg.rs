//! Reading an image's own Debian package database: `var/lib/dpkg/status`,
//! the apt archive indexes (`*_Packages`, for each `.deb`'s SHA-256) and the
//! machine-readable `debian/copyright` files (DEP-5) for licenses.
//!
//! Parsing is pure (`parse_*` take `&str`); [`load_packages`] does the I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// One stanza of a deb822 file (control fields, in file order).
pub type Stanza = Vec<(String, String)>;

/// Splits deb822 text (dpkg status, apt `Packages`, DEP-5 copyright) into
/// stanzas of `(field, value)`; continuation lines are joined with `\n`.
pub fn parse_deb822(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur: Stanza = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if line.starts_with('#') {
            continue;
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(s: &'a Stanza, name: &str) -> Option<&'a str> {
    s.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An installed package as dpkg records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Source package name (the binary's own name when dpkg records none).
    pub source: String,
    /// Source version, when it differs from the binary version.
    pub source_version: Option<String>,
    /// The `Maintainer` field.
    pub maintainer: Option<String>,
    pub homepage: Option<String>,
    /// Names of packages this one depends on (`Depends` and `Pre-Depends`;
    /// alternatives resolved to the first one that is installed, in [`resolve_depends`]).
    pub depends: Vec<Vec<String>>,
    /// SHA-256 of the `.deb`, from an apt archive index.
    pub deb_sha256: Option<String>,
    /// SPDX license IDs from the machine-readable copyright file.
    pub licenses: Vec<String>,
}

/// Parses a `Depends` value into groups of alternatives (names only).
pub fn parse_depends(value: &str) -> Vec<Vec<String>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.split(['(', '[', '<']).next()?.trim();
                    let name = name.split(':').next()?.trim();
                    (!name.is_empty()).then(|| name.to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// Parses `var/lib/dpkg/status`: every package whose status is `installed`.
pub fn parse_status(text: &str) -> Vec<Package> {
    let mut pkgs: Vec<Package> = parse_deb822(text)
        .iter()
        .filter(|s| field(s, "Status").is_some_and(|st| st.ends_with(" installed")))
        .filter_map(|s| {
            let name = field(s, "Package")?.to_string();
            let version = field(s, "Version")?.to_string();
            let (source, source_version) = match field(s, "Source") {
                Some(src) => match src.split_once(' ') {
                    Some((n, v)) => (
                        n.to_string(),
                        Some(v.trim_matches(['(', ')', ' ']).to_string()),
                    ),
                    None => (src.to_string(), None),
                },
                None => (name.clone(), None),
            };
            let mut depends = Vec::new();
            for f in ["Pre-Depends", "Depends"] {
                if let Some(v) = field(s, f) {
                    depends.extend(parse_depends(v));
                }
            }
            Some(Package {
                name,
                version,
                architecture: field(s, "Architecture").unwrap_or("all").to_string(),
                source,
                source_version,
                maintainer: field(s, "Maintainer").map(str::to_string),
                homepage: field(s, "Homepage").map(str::to_string),
                depends,
                deb_sha256: None,
                licenses: Vec::new(),
            })
        })
        .collect();
    pkgs.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    pkgs
}

/// Key of an archive index entry: (package, version, architecture).
pub type IndexKey = (String, String, String);

/// Parses an apt `Packages` index into `(name, version, arch) -> SHA256`.
pub fn parse_packages_index(text: &str) -> HashMap<IndexKey, String> {
    parse_deb822(text)
        .iter()
        .filter_map(|s| {
            Some((
                (
                    field(s, "Package")?.to_string(),
                    field(s, "Version")?.to_string(),
                    field(s, "Architecture")?.to_string(),
                ),
                field(s, "SHA256")?.to_ascii_lowercase(),
            ))
        })
        .collect()
}

/// Licenses named in a DEP-5 copyright file, mapped to SPDX IDs (or
/// `LicenseRef-…`); `None` when the file is not machine-readable.
pub fn parse_copyright(text: &str) -> Option<Vec<String>> {
    let stanzas = parse_deb822(text);
    let header = stanzas.first()?;
    if !field(header, "Format").is_some_and(|f| f.contains("copyright-format")) {
        return None;
    }
    let mut ids = BTreeSet::new();
    for s in &stanzas {
        if field(s, "Files").is_none() {
            continue;
        }
        if let Some(lic) = field(s, "License") {
            let first = lic.lines().next().unwrap_or_default();
            for name in first.split([',', '|']).flat_map(|p| p.split(" or ")) {
                for name in name.split(" and ") {
                    let name = name.trim();
                    if !name.is_empty() {
                        ids.insert(spdx_license_id(name));
                    }
                }
            }
        }
    }
    Some(ids.into_iter().collect())
}

/// Maps a Debian short license name to an SPDX license ID, or to a
/// `LicenseRef-` for names SPDX does not list.
pub fn spdx_license_id(debian: &str) -> String {
    let n = debian.trim().trim_end_matches('.');
    // "GPL-2 with Linux-syscall-note exception" -> "GPL-2.0-only WITH Linux-syscall-note"
    let lower = n.to_ascii_lowercase();
    if let (Some(i), true) = (lower.find(" with "), lower.ends_with(" exception")) {
        let exc = n[i + 6..n.len() - " exception".len()].trim();
        let known = [
            "Linux-syscall-note",
            "GCC-exception-3.1",
            "GCC-exception-2.0",
            "Autoconf-exception-3.0",
            "Bison-exception-2.2",
            "Classpath-exception-2.0",
            "OpenSSL-exception",
        ];
        let base = spdx_license_id(&n[..i]);
        if let Some(e) = known.iter().find(|k| k.eq_ignore_ascii_case(exc)) {
            if !base.starts_with("LicenseRef-") {
                return format!("{base} WITH {e}");
            }
        }
    }
    let lower = n.to_ascii_lowercase();
    let (base, plus) = match lower.strip_suffix('+') {
        Some(b) => (b.to_string(), true),
        None => (lower.clone(), false),
    };
    let gnu = |family: &str, ver: &str| {
        format!("{family}-{ver}-{}", if plus { "or-later" } else { "only" })
    };
    let known = match base.as_str() {
        "gpl-1" => Some(gnu("GPL", "1.0")),
        "gpl-2" | "gpl-2.0" => Some(gnu("GPL", "2.0")),
        "gpl-3" | "gpl-3.0" => Some(gnu("GPL", "3.0")),
        "lgpl-2" | "lgpl-2.0" => Some(gnu("LGPL", "2.0")),
        "lgpl-2.1" => Some(gnu("LGPL", "2.1")),
        "lgpl-3" | "lgpl-3.0" => Some(gnu("LGPL", "3.0")),
        "agpl-3" | "agpl-3.0" => Some(gnu("AGPL", "3.0")),
        "gfdl-1.2" => Some(gnu("GFDL", "1.2")),
        "gfdl-1.3" => Some(gnu("GFDL", "1.3")),
        "expat" | "mit" => Some("MIT".into()),
        "bsd-2-clause" => Some("BSD-2-Clause".into()),
        "bsd-3-clause" => Some("BSD-3-Clause".into()),
        "bsd-4-clause" => Some("BSD-4-Clause".into()),
        "isc" => Some("ISC".into()),
        "zlib" => Some("Zlib".into()),
        "apache-2.0" | "apache-2" => Some("Apache-2.0".into()),
        "mpl-1.1" => Some("MPL-1.1".into()),
        "mpl-2.0" => Some("MPL-2.0".into()),
        "artistic" | "artistic-1.0" => Some("Artistic-1.0".into()),
        "artistic-2.0" => Some("Artistic-2.0".into()),
        "cc0-1.0" | "cc0" => Some("CC0-1.0".into()),
        "openssl" => Some("OpenSSL".into()),
        "curl" => Some("curl".into()),
        "x11" => Some("X11".into()),
        "0bsd" => Some("0BSD".into()),
        "unicode-dfs-2016" => Some("Unicode-DFS-2016".into()),
        _ => None,
    };
    known.unwrap_or_else(|| format!("LicenseRef-{}", super::spdx_idstring(n)))
}

/// Reads the package database of the tree at `root` and fills in `.deb`
/// checksums and licenses. Archive indexes are searched in each of
/// `index_dirs` (files whose name contains `Packages`, uncompressed).
pub fn load_packages(root: &Path, index_dirs: &[&Path]) -> anyhow::Result<Vec<Package>> {
    use anyhow::Context as _;
    let status_path = root.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&status_path)
        .with_context(|| format!("reading {}", status_path.display()))?;
    let mut pkgs = parse_status(&text);
    let mut index = HashMap::new();
    for dir in index_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.ends_with("Packages")) {
                let t = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                for (k, v) in parse_packages_index(&t) {
                    index.entry(k).or_insert(v);
                }
            }
        }
    }
    for p in &mut pkgs {
        p.deb_sha256 = index
            .get(&(p.name.clone(), p.version.clone(), p.architecture.clone()))
            .cloned();
        let cr = root.join("usr/share/doc").join(&p.name).join("copyright");
        if let Ok(t) = std::fs::read_to_string(&cr) {
            p.licenses = parse_copyright(&t).unwrap_or_default();
        }
    }
    Ok(pkgs)
}

/// Resolves each package's dependency groups to installed package names
/// (the first installed alternative, or a package that `Provides` it is not
/// tracked: unresolved groups are dropped). Returns `name -> sorted deps`.
pub fn resolve_depends(pkgs: &[Package]) -> BTreeMap<String, Vec<String>> {
    let installed: BTreeSet<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
    pkgs.iter()
        .map(|p| {
            let deps: BTreeSet<String> = p
                .depends
                .iter()
                .filter_map(|g| g.iter().find(|n| installed.contains(n.as_str())).cloned())
                .filter(|n| n != &p.name)
                .collect();
            (p.name.clone(), deps.into_iter().collect())
        })
        .collect()
}
