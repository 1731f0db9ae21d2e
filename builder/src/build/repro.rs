//! `keel build --check-reproducible`: build twice from clean (no work dir,
//! no previous outputs; the package cache is kept, it holds only verified
//! .debs) and compare every file both builds left in their output
//! directories (artifacts, release manifest, signatures), then, for a disk
//! image that differs, partition by partition (`sfdisk --json` + sha256 of
//! each partition's bytes). The build record is left out: it holds the
//! build's durations and finishing time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context as _;

use super::sfdisk::Table;
use crate::cli::BuildArgs;
use crate::fsutil::sha256_file;

/// Files that differ between two good builds by design.
const NOT_COMPARED: &[&str] = &[crate::record::FILE_NAME];

/// How one file (or partition) compares between the two builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Identical,
    Different,
    /// Only one build produced it.
    Missing,
}

impl Status {
    fn of(a: Option<&String>, b: Option<&String>) -> Status {
        match (a, b) {
            (Some(a), Some(b)) if a == b => Status::Identical,
            (Some(_), Some(_)) => Status::Different,
            _ => Status::Missing,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Status::Identical => "identical",
            Status::Different => "DIFFERENT",
            Status::Missing => "MISSING  ",
        }
    }
}

/// One compared file.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Compared {
    pub name: String,
    pub status: Status,
    pub sha256_a: Option<String>,
    pub sha256_b: Option<String>,
    /// For a disk image that differs: each partition.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionCompared>,
}

/// One partition of a disk image that differs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionCompared {
    pub label: String,
    pub status: Status,
}

/// The outcome of `--check-reproducible`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub identical: bool,
    pub artifacts: Vec<Compared>,
    pub not_compared: Vec<String>,
    /// Seconds each build took.
    pub seconds: [f64; 2],
}

/// (label, sha256) of every partition of a raw GPT image.
pub fn partition_hashes(raw: &Path) -> anyhow::Result<Vec<(String, String)>> {
    use sha2::Digest as _;
    use std::io::{Read, Seek, SeekFrom};
    let t = Table::load(raw)?;
    let mut f = std::fs::File::open(raw)?;
    let mut v = Vec::new();
    for (i, p) in t.partitions.iter().enumerate() {
        let (start, mut left) = t.byte_range(p);
        f.seek(SeekFrom::Start(start))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = f.read(&mut buf[..left.min(1 << 20) as usize])?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            left -= n as u64;
        }
        v.push((
            p.name.clone().unwrap_or_else(|| format!("#{}", i + 1)),
            hex::encode(h.finalize()),
        ));
    }
    Ok(v)
}

/// sha256 of every regular file in `dir` except [`NOT_COMPARED`].
fn hash_dir(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type()?.is_file() || name.starts_with('.') || NOT_COMPARED.contains(&&*name) {
            continue;
        }
        m.insert(name, sha256_file(&e.path())?);
    }
    Ok(m)
}

/// Compares the two output directories.
pub fn compare(a: &Path, b: &Path) -> anyhow::Result<Vec<Compared>> {
    let (ha, hb) = (hash_dir(a)?, hash_dir(b)?);
    let names: BTreeSet<&String> = ha.keys().chain(hb.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let status = Status::of(ha.get(name), hb.get(name));
        let mut partitions = Vec::new();
        if status == Status::Different && name.ends_with(".raw") {
            let pa = partition_hashes(&a.join(name))?;
            let pb: BTreeMap<String, String> =
                partition_hashes(&b.join(name))?.into_iter().collect();
            for (label, x) in &pa {
                partitions.push(PartitionCompared {
                    label: label.clone(),
                    status: Status::of(Some(x), pb.get(label)),
                });
            }
        }
        out.push(Compared {
            name: name.clone(),
            status,
            sha256_a: ha.get(name).cloned(),
            sha256_b: hb.get(name).cloned(),
            partitions,
        });
    }
    Ok(out)
}

/// Runs the two builds and prints the comparison (as JSON with `--json`).
pub fn check(args: &BuildArgs) -> anyhow::Result<()> {
    let parent = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let base = tempfile::Builder::new()
        .prefix("keel-repro-")
        .tempdir_in(parent)
        .or_else(|_| tempfile::tempdir())?;
    let mut results = Vec::new();
    for round in ["a", "b"] {
        let out = base.path().join(round);
        let a = BuildArgs {
            image_dir: args.image_dir.clone(),
            out: out.clone(),
            cache_dir: args.cache_dir.clone(),
            force: true,
            check_reproducible: false,
            json: false,
            sign_key: None,
            sign_key_password_file: None,
            keep_work: false,
            pool: args.pool.clone(),
            relock: args.relock,
            ostree_repo: None,
        };
        let s = super::build(&a).with_context(|| format!("reproducibility build {round}"))?;
        results.push(s);
    }
    let (a, b) = (&results[0], &results[1]);
    let artifacts = compare(&a.out_dir, &b.out_dir)?;
    let report = Report {
        identical: artifacts.iter().all(|c| c.status == Status::Identical),
        artifacts,
        not_compared: NOT_COMPARED.iter().map(|s| s.to_string()).collect(),
        seconds: [a.seconds, b.seconds],
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.artifacts {
            println!("{} {}", c.status.word(), c.name);
            for p in &c.partitions {
                println!("    partition {}: {}", p.label, p.status.word().trim_end());
            }
        }
        println!(
            "(not compared: {}; builds took {:.0} s and {:.0} s)",
            report.not_compared.join(", "),
            a.seconds,
            b.seconds
        );
    }
    if report.identical {
        if !args.json {
            println!("reproducible: both builds produced bit-identical outputs");
        }
        Ok(())
    } else {
        let keep = base.keep();
        anyhow::bail!(
            "not reproducible: outputs differ (kept in {})",
            keep.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_compared_except_the_build_record() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        for (d, extra) in [(&a, "x"), (&b, "y")] {
            std::fs::write(d.path().join("same.json"), "1").expect("write");
            std::fs::write(d.path().join("manifest.json"), extra).expect("write");
            std::fs::write(d.path().join(crate::record::FILE_NAME), extra).expect("write");
            std::fs::create_dir(d.path().join(".keel-work-x")).expect("mkdir");
        }
        std::fs::write(a.path().join("only-a.sig"), "s").expect("write");
        let c = compare(a.path(), b.path()).expect("compares");
        let got: Vec<(&str, Status)> = c.iter().map(|c| (c.name.as_str(), c.status)).collect();
        assert_eq!(
            got,
            [
                ("manifest.json", Status::Different),
                ("only-a.sig", Status::Missing),
                ("same.json", Status::Identical),
            ]
        );
        let json = serde_json::to_value(&c[0]).expect("json");
        assert_eq!(json["status"], "different");
        assert!(json.get("partitions").is_none());
    }
}
