//! Everything a build starts from, hashed: the definition, its lock, its
//! extra trees and files, the Keel agent (when included), the rendered mkosi
//! configuration, and the versions of the tools that do the work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use keel_cmd::CommandRunExt;

use crate::fsutil::{sha256, sha256_file, sha256_tree};
use crate::lock::Lock;
use crate::render::{self, RenderInputs, Rendered, KEEL_EXE_NAME};
use crate::spec::mirror::{self, Mirrors};
use crate::spec::{self, ImageSpec};

/// Directory (beside the keel binary's workspace) holding the agent's units.
const AGENT_UNITS_DIR: &str = "bootstrap/systemd";

/// A loaded, rendered, hashed build input.
#[derive(Debug)]
pub struct Prepared {
    pub spec: ImageSpec,
    pub lock: Option<Lock>,
    /// The archives packages come from.
    pub mirrors: Mirrors,
    pub image_dir: PathBuf,
    pub source_date_epoch: i64,
    /// The seed UUID (mkosi's `Seed=`; also derives the verity salt).
    pub seed: String,
    pub rendered: Rendered,
    /// (name under trees/, source directory)
    pub trees: Vec<(String, PathBuf)>,
    /// keel-bootstrap binary and its unit files, when `[keel] agent`.
    pub agent: Option<(PathBuf, Vec<PathBuf>)>,
    pub inputs: BTreeMap<String, String>,
}

/// A seed UUID derived from the image name, when the definition has none.
pub fn default_seed(name: &str) -> String {
    let h = sha256(format!("keel-seed:{name}").as_bytes());
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Loads and renders the definition in `image_dir` and hashes every input.
pub fn prepare(image_dir: &Path) -> anyhow::Result<Prepared> {
    prepare_with(image_dir, None)
}

/// [`prepare`] with another lock than the definition's own (a lock
/// re-resolved by `keel build --relock`).
pub fn prepare_with(image_dir: &Path, relocked: Option<Lock>) -> anyhow::Result<Prepared> {
    let image_dir = std::fs::canonicalize(image_dir)
        .with_context(|| format!("image definition directory {}", image_dir.display()))?;
    let spec = spec::load(&image_dir)?;
    let mirrors = mirror::for_host(&spec.distribution)?;
    let lock_hash = relocked.as_ref().map(|l| sha256(l.to_text().as_bytes()));
    let lock = match relocked {
        Some(l) => Some(l),
        None => Lock::load(&image_dir)?,
    };
    let source_date_epoch = source_date_epoch(&spec, lock.as_ref(), &image_dir)?;
    let seed = spec
        .image
        .seed
        .clone()
        .unwrap_or_else(|| default_seed(&spec.image.name));

    let mut inputs = BTreeMap::new();
    inputs.insert(
        "definition".to_string(),
        sha256_file(&image_dir.join(spec::FILE_NAME))?,
    );
    if lock.is_some() {
        let h = match lock_hash {
            Some(h) => h,
            None => sha256_file(&image_dir.join(crate::lock::FILE_NAME))?,
        };
        inputs.insert("lock".to_string(), h);
    }
    let mut trees = hash_files(&spec, &image_dir, &mut inputs)?;
    let agent = if spec.keel.agent {
        Some(find_agent()?)
    } else {
        None
    };
    let mut agent_units = Vec::new();
    if let Some((bin, units)) = &agent {
        agent_units = hash_agent(bin, units, &mut inputs)?;
        trees.push(("zz-keel-agent".to_string(), PathBuf::new()));
    }
    let rendered = render::render(
        &spec,
        &RenderInputs {
            lock: lock.as_ref(),
            mirrors: mirrors.clone(),
            source_date_epoch,
            seed: seed.clone(),
            trees: trees.iter().map(|(n, _)| n.clone()).collect(),
            agent_units,
        },
    );
    inputs.insert("rendered-config".to_string(), rendered_hash(&rendered));
    for (k, v) in super::tools::tool_identities() {
        inputs.insert(format!("tool:{k}"), v);
    }
    Ok(Prepared {
        spec,
        lock,
        mirrors,
        image_dir,
        source_date_epoch,
        seed,
        rendered,
        trees,
        agent,
        inputs,
    })
}

/// The definition's epoch, else the lock's archive date.
fn source_date_epoch(
    spec: &ImageSpec,
    lock: Option<&Lock>,
    image_dir: &Path,
) -> anyhow::Result<i64> {
    spec.image
        .source_date_epoch
        .or_else(|| lock.and_then(Lock::source_date_epoch))
        .with_context(|| {
            format!(
                "{}: set `image.source-date-epoch` or run `keel lock` (the lock's archive date is the default)",
                image_dir.join(spec::FILE_NAME).display()
            )
        })
}

/// Hashes the definition's extra trees and source files into `inputs`;
/// returns the trees as (name under trees/, source directory).
fn hash_files(
    spec: &ImageSpec,
    image_dir: &Path,
    inputs: &mut BTreeMap<String, String>,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut trees = Vec::new();
    for (i, t) in spec.files.trees.iter().enumerate() {
        let src = image_dir.join(t);
        if !src.is_dir() {
            anyhow::bail!(
                "{}: key `files.trees`: `{}` is not a directory",
                image_dir.join(spec::FILE_NAME).display(),
                t.display()
            );
        }
        let name = format!("{i:02}-{}", t.to_string_lossy().replace('/', "_"));
        inputs.insert(format!("tree:{}", t.display()), sha256_tree(&src)?);
        trees.push((name, src));
    }
    for f in &spec.files.files {
        if let Some(s) = &f.source {
            let p = image_dir.join(s);
            let h = sha256_file(&p).with_context(|| {
                format!(
                    "{}: key `files.file.source`: {}",
                    image_dir.join(spec::FILE_NAME).display(),
                    p.display()
                )
            })?;
            inputs.insert(format!("file:{}", f.path), h);
        }
    }
    Ok(trees)
}

/// Hashes keel-bootstrap and its units into `inputs`; returns the units to
/// enable (a timer rather than the service it starts).
fn hash_agent(
    bin: &Path,
    units: &[PathBuf],
    inputs: &mut BTreeMap<String, String>,
) -> anyhow::Result<Vec<String>> {
    let mut agent_units = Vec::new();
    inputs.insert("keel-bootstrap".to_string(), sha256_file(bin)?);
    for u in units {
        inputs.insert(format!("unit:{}", file_name(u)), sha256_file(u)?);
        if u.extension().is_some_and(|e| e == "timer")
            || !units.iter().any(|t| {
                t.extension().is_some_and(|e| e == "timer") && t.file_stem() == u.file_stem()
            })
        {
            agent_units.push(file_name(u));
        }
    }
    Ok(agent_units)
}

/// One hash over every rendered file's path, mode and content.
fn rendered_hash(rendered: &Rendered) -> String {
    let mut all = String::new();
    for (p, f) in rendered {
        all.push_str(&format!(
            "{} {:o} {}\n",
            p.display(),
            f.mode,
            sha256(f.content.as_bytes())
        ));
    }
    sha256(all.as_bytes())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `keel` binary mkosi's finalize hook calls back into: `KEEL_EXE`, the
/// running program when it is keel, else a `keel` beside it (a test binary
/// in target/*/deps calling the library), else on PATH.
fn keel_exe() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("KEEL_EXE") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the keel binary")?;
    if exe.file_name().is_some_and(|n| n == "keel") {
        return Ok(exe);
    }
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    [dir.join("keel"), dir.join("../keel")]
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| keel_cmd::which("keel"))
        .with_context(|| {
            format!(
                "the build calls back into the `keel` binary, which is neither running nor beside {}: build it (`cargo build -p keel-builder`) or set KEEL_EXE",
                exe.display()
            )
        })
}

/// keel-bootstrap from beside the running keel, and the units from the source tree.
fn find_agent() -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let exe = std::env::current_exe().context("locating the keel binary")?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // `cargo test` binaries live in target/<profile>/deps.
    let candidates = [dir.join("keel-bootstrap"), dir.join("../keel-bootstrap")];
    let bin = candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "`[keel] agent = true` needs the keel-bootstrap binary next to keel ({}): build it with `cargo build -p keel-bootstrap` using the same profile and target directory",
            dir.display()
        )
    })?;
    let units_dir = std::env::var_os("KEEL_AGENT_UNITS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(AGENT_UNITS_DIR)
        });
    let mut units: Vec<PathBuf> = std::fs::read_dir(&units_dir)
        .with_context(|| {
            format!(
                "reading the agent's systemd units in {}",
                units_dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "service" || e == "timer")
        })
        .collect();
    units.sort();
    Ok((bin, units))
}

impl Prepared {
    /// Writes the rendered configuration, the trees, the agent and the keel
    /// executable (for the finalize hook) into `work`.
    pub fn write_work_dir(&self, work: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(work.join(render::PACKAGE_DIR))?;
        for (rel, f) in &self.rendered {
            let p = work.join(rel);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&p, &f.content)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))?;
        }
        for f in &self.spec.files.files {
            if let Some(s) = &f.source {
                let dst = work
                    .join("mkosi.extra")
                    .join(f.path.trim_start_matches('/'));
                if let Some(d) = dst.parent() {
                    std::fs::create_dir_all(d)?;
                }
                std::fs::copy(self.image_dir.join(s), &dst)?;
            }
        }
        for (name, src) in &self.trees {
            let dst = work.join("trees").join(name);
            std::fs::create_dir_all(&dst)?;
            if name == "zz-keel-agent" {
                if let Some((bin, units)) = &self.agent {
                    std::fs::create_dir_all(dst.join("usr/bin"))?;
                    std::fs::copy(bin, dst.join("usr/bin/keel-bootstrap"))?;
                    let sd = dst.join("usr/lib/systemd/system");
                    std::fs::create_dir_all(&sd)?;
                    for u in units {
                        std::fs::copy(u, sd.join(file_name(u)))?;
                    }
                }
                continue;
            }
            Command::new("cp")
                .args(["-a", "--no-preserve=ownership"])
                .arg(format!("{}/.", src.display()))
                .arg(&dst)
                .run()
                .with_context(|| format!("copying {}", src.display()))?;
        }
        let exe = keel_exe()?;
        std::fs::copy(&exe, work.join(KEEL_EXE_NAME))
            .with_context(|| format!("copying {} into the work directory", exe.display()))?;
        Ok(())
    }
}
