//! `keel build --check-reproducible`: build twice from clean (no work dir,
//! no previous outputs; the package cache is kept, it holds only verified
//! .debs) and compare the outputs, then partition by partition
//! (`sfdisk --json` + sha256 of each partition's bytes).

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use keel_cmd::CommandRunExt;

use crate::cli::BuildArgs;

#[derive(serde::Deserialize)]
struct Sfdisk {
    partitiontable: Table,
}
#[derive(serde::Deserialize)]
struct Table {
    sectorsize: Option<u64>,
    partitions: Vec<Part>,
}
#[derive(serde::Deserialize)]
struct Part {
    start: u64,
    size: u64,
    name: Option<String>,
}

/// (label, sha256) of every partition of a raw GPT image.
pub fn partition_hashes(raw: &Path) -> anyhow::Result<Vec<(String, String)>> {
    use sha2::Digest as _;
    use std::io::{Read, Seek, SeekFrom};
    let t: Sfdisk = Command::new("sfdisk")
        .arg("--json")
        .arg(raw)
        .run_get_json()?;
    let ss = t.partitiontable.sectorsize.unwrap_or(512);
    let mut f = std::fs::File::open(raw)?;
    let mut v = Vec::new();
    for (i, p) in t.partitiontable.partitions.iter().enumerate() {
        f.seek(SeekFrom::Start(p.start * ss))?;
        let mut left = p.size * ss;
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

/// Runs the two builds and prints the comparison.
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
        };
        let s = super::build(&a).with_context(|| format!("reproducibility build {round}"))?;
        results.push(s);
    }
    let (a, b) = (&results[0], &results[1]);
    let mut same = true;
    let mut report = serde_json::Map::new();
    for (name, ha) in &a.artifacts {
        let hb = b.artifacts.get(name).cloned().unwrap_or_default();
        let eq = *ha == hb;
        same &= eq;
        println!("{} {name}", if eq { "identical" } else { "DIFFERS  " });
        report.insert(name.clone(), serde_json::Value::Bool(eq));
        if !eq && name.ends_with(".raw") {
            let pa = partition_hashes(&a.out_dir.join(name))?;
            let pb = partition_hashes(&b.out_dir.join(name))?;
            for ((la, xa), (_, xb)) in pa.iter().zip(&pb) {
                println!(
                    "    partition {la}: {}",
                    if xa == xb { "identical" } else { "differs" }
                );
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"identical": same, "artifacts": report})
        );
    }
    if same {
        println!("reproducible: both builds produced bit-identical outputs");
        Ok(())
    } else {
        let keep = base.keep();
        anyhow::bail!(
            "not reproducible: outputs differ (kept in {})",
            keep.display()
        )
    }
}
