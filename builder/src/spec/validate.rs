//! Semantic checks of an image definition, after it parsed: allowed values,
//! name syntax, references between users and groups. Each failure names the
//! key (dotted, like in the file) and says what is allowed.

use std::collections::BTreeSet;

use super::{
    Distribution, Files, Group, ImageMeta, ImageSpec, Kernel, Output, Packages, Partitions,
    Services, User,
};

/// Distributions and their releases Keel can build today. Adding one means a
/// sources renderer in [`crate::render`] and an entry here.
pub const DISTRIBUTIONS: &[(&str, &[&str])] = &[("debian", &["bookworm"])];

/// Architectures Keel can build today (mkosi spelling).
pub const ARCHITECTURES: &[&str] = &["x86-64"];

type Failure = (String, String);

fn fail(key: impl Into<String>, msg: impl Into<String>) -> Result<(), Failure> {
    Err((key.into(), msg.into()))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn is_package(s: &str) -> bool {
    // Debian package names: lowercase letters, digits, + - . ; at least two chars.
    s.len() >= 2
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn is_size(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T']);
    !digits.is_empty() && digits.len() + 1 >= s.len() && digits.chars().all(|c| c.is_ascii_digit())
}

/// Checks everything serde cannot; returns `(key, message)` on the first
/// failure, checking the sections in file order.
pub fn validate(spec: &ImageSpec) -> Result<(), Failure> {
    image(&spec.image)?;
    distribution(&spec.distribution)?;
    packages(&spec.packages)?;
    files(&spec.files)?;
    accounts(&spec.groups, &spec.users)?;
    kernel_and_services(&spec.kernel, &spec.services)?;
    output_and_partitions(&spec.output, &spec.partitions)
}

/// `[image]`: name, version, epoch, seed, hostname.
fn image(img: &ImageMeta) -> Result<(), Failure> {
    if !is_name(&img.name) || img.name.contains(['_', '.']) {
        fail(
            "image.name",
            format!("`{}` is not allowed: use letters, digits and `-`", img.name),
        )?;
    }
    if img.version.is_empty() || img.version.chars().any(|c| c.is_whitespace() || c == '/') {
        fail(
            "image.version",
            "must be non-empty, without spaces or `/` (e.g. \"1.4.0\")",
        )?;
    }
    if let Some(t) = img.source_date_epoch {
        if t < 0 {
            fail(
                "image.source-date-epoch",
                "must be seconds since 1970 (>= 0)",
            )?;
        }
    }
    if let Some(seed) = &img.seed {
        if !is_uuid(seed) {
            fail(
                "image.seed",
                format!("`{seed}` is not a UUID (8-4-4-4-12 hex digits)"),
            )?;
        }
    }
    if let Some(h) = &img.hostname {
        if !is_name(h) || h.contains(['_', '.']) {
            fail("image.hostname", "use letters, digits and `-`")?;
        }
    }
    Ok(())
}

/// `[distribution]`: a supported name, release and architecture, mirror URLs, components.
fn distribution(d: &Distribution) -> Result<(), Failure> {
    let Some((_, releases)) = DISTRIBUTIONS.iter().find(|(n, _)| *n == d.name) else {
        let names: Vec<_> = DISTRIBUTIONS.iter().map(|(n, _)| *n).collect();
        return fail(
            "distribution.name",
            format!(
                "`{}` is not supported; allowed: {}",
                d.name,
                names.join(", ")
            ),
        );
    };
    if !releases.contains(&d.release.as_str()) {
        fail(
            "distribution.release",
            format!(
                "`{}` is not supported for {}; allowed: {}",
                d.release,
                d.name,
                releases.join(", ")
            ),
        )?;
    }
    if !ARCHITECTURES.contains(&d.architecture.as_str()) {
        fail(
            "distribution.architecture",
            format!(
                "`{}` is not supported; allowed: {}",
                d.architecture,
                ARCHITECTURES.join(", ")
            ),
        )?;
    }
    for (key, url) in [
        ("distribution.mirror", &d.mirror),
        ("distribution.security-mirror", &d.security_mirror),
    ]
    .into_iter()
    .filter_map(|(k, u)| Some((k, u.as_ref()?)))
    {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(' ') {
            fail(key, format!("`{url}` is not an http(s) URL"))?;
        }
    }
    if d.components.is_empty() || d.components.iter().any(|c| !is_name(c)) {
        fail(
            "distribution.components",
            "a non-empty list like [\"main\"]",
        )?;
    }
    Ok(())
}

/// `[packages]`: Debian package names, each listed once.
fn packages(p: &Packages) -> Result<(), Failure> {
    for (list, key) in [
        (&p.install, "packages.install"),
        (&p.initrd, "packages.initrd"),
    ] {
        let mut seen = BTreeSet::new();
        for p in list {
            if !is_package(p) {
                fail(
                    key,
                    format!("`{p}` is not a package name (lowercase letters, digits, + - .; versions come from packages.lock)"),
                )?;
            }
            if !seen.insert(p) {
                fail(key, format!("`{p}` is listed twice"))?;
            }
        }
    }
    Ok(())
}

/// `[files]`: relative trees, absolute target paths, one source each, octal modes.
fn files(files: &Files) -> Result<(), Failure> {
    for t in &files.trees {
        if t.is_absolute() || t.components().any(|c| c.as_os_str() == "..") {
            fail(
                "files.trees",
                format!(
                    "`{}` must be relative to the definition directory, without `..`",
                    t.display()
                ),
            )?;
        }
    }
    for f in &files.files {
        if !f.path.starts_with('/') || f.path.contains("..") {
            fail(
                "files.file.path",
                format!("`{}` must be an absolute path without `..`", f.path),
            )?;
        }
        if f.content.is_some() == f.source.is_some() {
            fail(
                "files.file",
                format!("`{}`: give exactly one of `content` or `source`", f.path),
            )?;
        }
        if let Some(s) = &f.source {
            if s.is_absolute() || s.components().any(|c| c.as_os_str() == "..") {
                fail(
                    "files.file.source",
                    "must be relative to the definition directory, without `..`",
                )?;
            }
        }
        if u32::from_str_radix(&f.mode, 8).map_or(true, |m| m > 0o7777) {
            fail(
                "files.file.mode",
                format!("`{}` is not an octal mode like \"0644\"", f.mode),
            )?;
        }
    }
    Ok(())
}

/// `[[group]]` and `[[user]]`: unique names, ids outside the system range,
/// groups that exist.
fn accounts(groups_spec: &[Group], users_spec: &[User]) -> Result<(), Failure> {
    let mut groups = BTreeSet::new();
    for g in groups_spec {
        if !is_name(&g.name) || !groups.insert(g.name.as_str()) {
            fail(
                "group.name",
                format!("`{}` is not a valid, unique group name", g.name),
            )?;
        }
        if g.gid < 1000 || g.gid >= 60000 {
            fail(
                "group.gid",
                format!(
                    "{} is outside 1000..59999 (system ids belong to packages)",
                    g.gid
                ),
            )?;
        }
    }
    let mut users = BTreeSet::new();
    for u in users_spec {
        if !is_name(&u.name) || !users.insert(u.name.as_str()) {
            fail(
                "user.name",
                format!("`{}` is not a valid, unique user name", u.name),
            )?;
        }
        if u.uid < 1000 || u.uid >= 60000 {
            fail(
                "user.uid",
                format!(
                    "{} is outside 1000..59999 (system ids belong to packages)",
                    u.uid
                ),
            )?;
        }
        for g in u.group.iter().chain(&u.groups) {
            if !groups.contains(g.as_str()) && !SYSTEM_GROUPS.contains(&g.as_str()) {
                fail(
                    "user.groups",
                    format!(
                        "user `{}`: group `{g}` is not defined in a [[group]] nor one of: {}",
                        u.name,
                        SYSTEM_GROUPS.join(", ")
                    ),
                )?;
            }
        }
        if !u.shell.starts_with('/') {
            fail("user.shell", "must be an absolute path")?;
        }
    }
    Ok(())
}

/// `[kernel]` arguments and module regexes, `[services]` unit names.
fn kernel_and_services(kernel: &Kernel, services: &Services) -> Result<(), Failure> {
    for a in &kernel.command_line {
        if a.is_empty() || a.contains(char::is_whitespace) {
            fail(
                "kernel.command-line",
                format!("`{a}`: one argument per list item, no spaces"),
            )?;
        }
        if a.starts_with("roothash=") || a.starts_with("usrhash=") {
            fail(
                "kernel.command-line",
                "roothash=/usrhash= are added by the build from the verity partition",
            )?;
        }
    }
    for m in &kernel.initrd_modules {
        if m.is_empty() || m.contains(char::is_whitespace) {
            fail(
                "kernel.initrd-modules",
                format!("`{m}` is not a module regex"),
            )?;
        }
    }
    for u in services.enable.iter().chain(&services.disable) {
        if !is_unit(u) {
            fail(
                "services",
                format!("`{u}` is not a unit name (e.g. \"chrony.service\")"),
            )?;
        }
    }
    Ok(())
}

/// `[output]` formats and `[partitions]` sizes.
fn output_and_partitions(output: &Output, p: &Partitions) -> Result<(), Failure> {
    if output.formats.is_empty() {
        fail("output.formats", "list at least one of: raw, qcow2")?;
    }
    if !is_size(&p.esp_size) {
        fail(
            "partitions.esp-size",
            format!("`{}` is not a size like \"256M\" or \"1G\"", p.esp_size),
        )?;
    }
    if !is_size(&p.var_size) {
        fail(
            "partitions.var-size",
            format!("`{}` is not a size like \"512M\" or \"1G\"", p.var_size),
        )?;
    }
    Ok(())
}

/// Groups Debian's base system always has, usable in `user.groups`.
pub const SYSTEM_GROUPS: &[&str] = &[
    "adm",
    "sudo",
    "systemd-journal",
    "disk",
    "video",
    "audio",
    "dialout",
    "users",
    "ceph",
];

fn is_unit(u: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        ".service", ".socket", ".timer", ".target", ".path", ".mount",
    ];
    SUFFIXES.iter().any(|s| u.ends_with(s))
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:\\".contains(c))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<_> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}
