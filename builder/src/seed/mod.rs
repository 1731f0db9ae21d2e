//! `keel seed`: a node's first-boot seed, a cloud-init NoCloud volume
//! labelled `cidata` holding `meta-data`, `user-data` (with the `keel:`
//! section: enrollment URL and CA, store, one-time token) and optionally
//! `network-config`, as `cloud-localds` makes it: an ISO 9660 image
//! (`xorriso -as genisoimage -volid cidata -joliet -rock`) or a FAT image
//! (`mkfs.vfat -n cidata` + `mcopy`). keel-bootstrap reads it on first boot;
//! `keel-bootstrap seed check SEED` shows what it would do.
//!
//! The token comes from a file or stdin, never the command line (argv is
//! visible to every user of the machine); the seed is written mode 0600.

pub mod render;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use keel_cmd::Task;

use render::SeedValues;

/// The seed's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeedFormat {
    /// ISO 9660 with Rock Ridge and Joliet (cloud-localds' default).
    Iso,
    /// FAT, for a USB stick or an image written to one.
    Vfat,
}

/// Options of `keel seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The seed image to write (seed.iso; NAME.img or NAME.vfat make a FAT image).
    #[arg(long)]
    pub out: PathBuf,
    /// iso or vfat (default: from --out's extension, .iso when unsure).
    #[arg(long, value_enum)]
    pub format: Option<SeedFormat>,
    /// The store the node belongs to (as in keel-enroll's configuration).
    #[arg(long)]
    pub store_id: String,
    /// keel-enroll's URL, e.g. https://enroll.example.com:8443.
    #[arg(long)]
    pub enroll_url: String,
    /// PEM file of the CA that signed keel-enroll's TLS certificate.
    #[arg(long)]
    pub enroll_ca: PathBuf,
    /// File holding the one-time token printed by `keel-enroll token create`
    /// (`-`: read it from stdin). Leave out only for a TPM on the allow-list.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The node's host name (also meta-data local-hostname).
    #[arg(long)]
    pub hostname: Option<String>,
    /// The node's fully qualified name (for /etc/hosts).
    #[arg(long)]
    pub fqdn: Option<String>,
    /// Time zone, e.g. Europe/Berlin.
    #[arg(long)]
    pub timezone: Option<String>,
    /// An OpenSSH public key file for root's authorized_keys (repeatable).
    #[arg(long = "ssh-key")]
    pub ssh_keys: Vec<PathBuf>,
    /// A disk Ceph may use (path or glob, repeatable; default: every empty non-boot disk).
    #[arg(long = "disk")]
    pub disks: Vec<String>,
    /// Let Ceph wipe the listed disks even when they hold data.
    #[arg(long, requires = "disks")]
    pub allow_wipe: bool,
    /// A file-backed Ceph OSD of this many GiB (test hosts without a spare disk).
    #[arg(long, hide = true)]
    pub file_backed_gib: Option<u64>,
    /// A cloud-init network-config (version 2) to include.
    #[arg(long)]
    pub network_config: Option<PathBuf>,
    /// meta-data instance-id (default: iid-STORE-HOSTNAME-UNIXTIME, new for each seed).
    #[arg(long)]
    pub instance_id: Option<String>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// The token from `path` (`-`: stdin), trimmed.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the token from stdin")?;
        s
    } else {
        read(path, "token file")?
    };
    Ok(text.trim().to_string())
}

/// The values of the seed, read and checked.
fn values(a: &SeedArgs) -> anyhow::Result<SeedValues> {
    let mut ssh_keys = Vec::new();
    for f in &a.ssh_keys {
        let text = read(f, "SSH public key")?;
        let before = ssh_keys.len();
        ssh_keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
        if ssh_keys.len() == before {
            bail!("{} holds no SSH public key", f.display());
        }
    }
    let instance_id = match &a.instance_id {
        Some(i) => i.clone(),
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let host = a.hostname.as_deref().unwrap_or("node");
            format!("iid-{}-{host}-{now}", a.store_id)
        }
    };
    let v = SeedValues {
        instance_id,
        hostname: a.hostname.clone(),
        fqdn: a.fqdn.clone(),
        timezone: a.timezone.clone(),
        ssh_keys,
        enroll_url: a.enroll_url.clone(),
        enroll_ca: read(&a.enroll_ca, "CA certificate")?,
        store_id: a.store_id.clone(),
        token: a.token_file.as_deref().map(read_token).transpose()?,
        disks: a.disks.clone(),
        allow_wipe: a.allow_wipe,
        file_backed_gib: a.file_backed_gib,
    };
    render::check(&v)?;
    Ok(v)
}

/// The format asked for, else the one `out`'s extension suggests.
pub fn format_for(out: &Path, asked: Option<SeedFormat>) -> SeedFormat {
    asked.unwrap_or_else(|| match out.extension().and_then(|e| e.to_str()) {
        Some("img" | "vfat" | "fat") => SeedFormat::Vfat,
        _ => SeedFormat::Iso,
    })
}

/// Packs the files of `dir` (`names`) into the image `out`.
fn pack(format: SeedFormat, dir: &Path, names: &[&str], out: &Path) -> anyhow::Result<()> {
    let files: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    match format {
        SeedFormat::Iso => Task::new("Making the seed ISO (cidata)", "xorriso")
            .args(["-as", "genisoimage", "-output"])
            .args([out])
            .args(["-volid", "cidata", "-joliet", "-rock"])
            .args(&files)
            .run()
            .context("making the seed ISO with xorriso")?,
        SeedFormat::Vfat => {
            let bytes: u64 = files
                .iter()
                .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
                .sum();
            // Room to spare (cloud-localds uses 128 KiB), in 64 KiB steps.
            let size = (bytes * 2 + (1 << 20)).div_ceil(1 << 16) << 16;
            std::fs::File::create(out)
                .and_then(|f| f.set_len(size))
                .with_context(|| format!("creating {}", out.display()))?;
            Task::new("Making the seed FAT image (cidata)", "mkfs.vfat")
                .args(["-n", "cidata"])
                .args([out])
                .run()
                .context("formatting the seed image with mkfs.vfat")?;
            let mut copy = Task::new("Copying the seed files", "mcopy")
                .args(["-o", "-i"])
                .args([out])
                .args(&files)
                .args(["::"]);
            copy.cmd().env("MTOOLS_SKIP_CHECK", "1");
            copy.run().context("copying the seed files with mcopy")?;
        }
    }
    Ok(())
}

/// Runs `keel seed`.
pub fn run(a: SeedArgs) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let v = values(&a)?;
    let network = a
        .network_config
        .as_deref()
        .map(|p| read(p, "network-config"))
        .transpose()?;
    let format = format_for(&a.out, a.format);
    let parent = match a.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let work = tempfile::Builder::new()
        .prefix(".keel-seed-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work directory in {}", parent.display()))?;
    let stage = work.path().join("files");
    std::fs::create_dir(&stage)?;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o700))?;
    std::fs::write(stage.join("meta-data"), render::meta_data(&v))?;
    std::fs::write(stage.join("user-data"), render::user_data(&v))?;
    let mut names = vec!["user-data", "meta-data"];
    if let Some(n) = &network {
        std::fs::write(stage.join("network-config"), n)?;
        names.push("network-config");
    }
    let tmp = work.path().join("seed");
    pack(format, &stage, &names, &tmp)?;
    keel_cmd::fs::persist(&tmp, &a.out, 0o600)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} ({}, label cidata, mode 0600{})",
        a.out.display(),
        match format {
            SeedFormat::Iso => "ISO 9660",
            SeedFormat::Vfat => "FAT",
        },
        if v.token.is_some() {
            ": it holds a one-time enrollment token, keep it private until the node has enrolled"
        } else {
            ""
        }
    );
    println!("  instance   {}", v.instance_id);
    if let Some(h) = &v.hostname {
        println!("  hostname   {h}");
    }
    println!(
        "  enroll     {} store {} token {}",
        v.enroll_url,
        v.store_id,
        if v.token.is_some() {
            "given"
        } else {
            "none (the node's TPM must be on the allow-list)"
        }
    );
    println!(
        "check it with: keel-bootstrap seed check {}",
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_extension_unless_given() {
        assert_eq!(format_for(Path::new("s.iso"), None), SeedFormat::Iso);
        assert_eq!(format_for(Path::new("s.img"), None), SeedFormat::Vfat);
        assert_eq!(format_for(Path::new("seed"), None), SeedFormat::Iso);
        assert_eq!(
            format_for(Path::new("s.iso"), Some(SeedFormat::Vfat)),
            SeedFormat::Vfat
        );
    }
}
