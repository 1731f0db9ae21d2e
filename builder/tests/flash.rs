//! `keel flash` on real loop devices (root and losetup needed, else a skip):
//! a small release signed with a test key the way `keel build --sign-key`
//! signs (not an mkosi build: the image is random bytes, which is all flash
//! looks at), written and read back; and every refusal, each checked to
//! leave the device untouched and to exit with its code (5 refused by a
//! safety check, 3 failed verification): a mounted disk, a disk another program holds
//! exclusively, a too-small disk, a
//! corrupted image, a manifest signed by another key or with a wrong
//! signature, no confirmation (no terminal, or the wrong name typed), a
//! partition, a regular file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use keel_builder::release::{after_build_with_password, sign, ReleaseContext};
use keel_cmd::CommandRunExt as _;

const PW: &[u8] = b"flash test";
const ROOTHASH: &str = "2bd44117cf7bf7545d4fbc2d76118c6215eab59f2b597f5f8393cf52c903622b";
/// Not a multiple of the 512-byte block: the last write is padded.
const IMAGE_SIZE: usize = (3 << 20) + 100;

/// Key pairs shared by the tests (scrypt makes generation slow).
fn keys() -> &'static (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    static KEYS: std::sync::OnceLock<(tempfile::TempDir, PathBuf, PathBuf, PathBuf)> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (key, public) =
            sign::generate_key_pair(&tmp.path().join("release"), PW).expect("keygen");
        let (_, other) = sign::generate_key_pair(&tmp.path().join("other"), PW).expect("keygen");
        (tmp, key, public, other)
    })
}

/// Deterministic bytes that differ everywhere (a zero image would hide offsets).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A signed release directory holding `test-flash.raw` and its manifest.
fn release(dir: &Path) -> PathBuf {
    let out = dir.join("release");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("test-flash.raw"), pattern(IMAGE_SIZE, 7)).expect("image");
    after_build_with_password(
        &ReleaseContext {
            out_dir: out.clone(),
            image_name: "test-flash".into(),
            image_version: "1.0".into(),
            definition_sha256: "ab".repeat(32),
            lock_sha256: None,
            source_date_epoch: 1_700_000_000,
            mkosi_version: "24.3".into(),
            artifacts: vec![out.join("test-flash.raw")],
            uki: None,
            verity_roothash: Some(ROOTHASH.into()),
            sign_key: Some(keys().1.clone()),
        },
        PW,
    )
    .expect("signed release");
    out
}

/// A loop device over a file of `size` bytes of `fill`, detached on drop.
struct Loop {
    dev: PathBuf,
    file: PathBuf,
}

impl Loop {
    fn new(dir: &Path, name: &str, size: usize, fill: u8) -> Option<Loop> {
        let test = std::thread::current().name().unwrap_or("flash").to_string();
        if !nix::unistd::Uid::effective().is_root() {
            keel_testbed::report_skip(format_args!("{test}: not root (loop devices need root)"));
            return None;
        }
        let file = dir.join(name);
        std::fs::write(&file, vec![fill; size]).expect("backing file");
        match Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(&file)
            .run_get_string()
        {
            Ok(dev) => Some(Loop {
                dev: PathBuf::from(dev.trim()),
                file,
            }),
            Err(e) => {
                keel_testbed::report_skip(format_args!("{test}: no loop device: {e}"));
                None
            }
        }
    }

    fn content(&self) -> Vec<u8> {
        std::fs::read(&self.file).expect("backing file")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).run();
    }
}

fn flash(release: &Path, dev: &Path, key: &Path, extra: &[&str]) -> (Output, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("flash")
        .arg(release)
        .arg(dev)
        .arg("--key")
        .arg(key)
        .args(extra)
        .env("CI", "true")
        .stdin(Stdio::null())
        .output()
        .expect("run keel flash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, text)
}

/// `keel flash`'s exit code for a safety refusal (docs/building-images.md#exit-codes).
const REFUSED: i32 = 5;
/// ... and for a release that failed verification.
const VERIFICATION: i32 = 3;

/// Runs a flash that must fail with exit code `code`, checks its message
/// and that the device was not written.
fn refused(release: &Path, lo: &Loop, key: &Path, extra: &[&str], code: i32, want: &str) {
    let before = lo.content();
    let (o, text) = flash(release, &lo.dev, key, extra);
    assert_eq!(
        o.status.code(),
        Some(code),
        "flash must be refused:\n{text}"
    );
    assert!(text.contains(want), "missing {want:?} in:\n{text}");
    assert!(lo.content() == before, "the device was written:\n{text}");
}

#[test]
fn flash_writes_reads_back_and_summarises() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(lo) = Loop::new(tmp.path(), "disk", 8 << 20, 0xAA) else {
        return;
    };
    let rel = release(tmp.path());
    let public = &keys().2;

    refused(
        &rel,
        &lo,
        public,
        &[],
        REFUSED,
        "without confirmation: stdin is not a terminal; run it from a terminal, or pass --yes",
    );

    let (o, text) = flash(&rel, &lo.dev, public, &["--yes"]);
    assert!(o.status.success(), "{text}");
    keel_testbed::report!("keel flash on {}:\n{text}", lo.dev.display());
    let stdout = String::from_utf8_lossy(&o.stdout);
    for want in [
        format!("flashed test-flash 1.0 to {}\n", lo.dev.display()),
        format!("  verity root  {ROOTHASH}\n"),
        "read back: identical to the signed manifest".to_string(),
        "test-flash.raw, 3.00 MiB".to_string(),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(
        text.contains(&format!(
            "writing test-flash.raw to {}: 100%",
            lo.dev.display()
        )),
        "progress lines in CI mode:\n{text}"
    );
    let disk = lo.content();
    assert!(
        disk[..IMAGE_SIZE] == pattern(IMAGE_SIZE, 7)[..],
        "the disk holds the image"
    );
    let padded = IMAGE_SIZE.div_ceil(512) * 512;
    assert!(
        disk[IMAGE_SIZE..padded].iter().all(|b| *b == 0),
        "padding is zeros"
    );
    assert!(
        disk[padded..].iter().all(|b| *b == 0xAA),
        "nothing past the image"
    );
}

/// `keel flash` without --yes on a terminal (a pty from util-linux
/// `script`), answering `answer` to the prompt.
fn flash_on_a_terminal(release: &Path, dev: &Path, key: &Path, answer: &str) -> (Output, String) {
    use std::io::Write as _;
    let cmd = format!(
        "{} flash {} {} --key {}",
        env!("CARGO_BIN_EXE_keel"),
        release.display(),
        dev.display(),
        key.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("CI", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{answer}\n").as_bytes())
        .expect("answer");
    let o = child.wait_with_output().expect("keel flash under script");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    (o, text)
}

#[test]
fn flash_asks_for_the_disk_name_on_a_terminal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    if keel_cmd::which("script").is_none() {
        keel_testbed::report_skip(format_args!(
            "flash_asks_for_the_disk_name_on_a_terminal: script (util-linux) is not installed"
        ));
        return;
    }
    let Some(lo) = Loop::new(tmp.path(), "disk", 8 << 20, 0x11) else {
        return;
    };
    let rel = release(tmp.path());
    let name = lo
        .dev
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let before = lo.content();
    let (o, text) = flash_on_a_terminal(&rel, &lo.dev, &keys().2, "sda");
    assert_eq!(o.status.code(), Some(REFUSED), "{text}");
    for want in [
        format!("This ERASES everything on {}", lo.dev.display()),
        format!("Type the disk's name ({name}) to continue:"),
        format!("not confirmed (typed \"sda\", expected {name}); nothing was written"),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(lo.content() == before, "the device was written:\n{text}");

    let (o, text) = flash_on_a_terminal(&rel, &lo.dev, &keys().2, &name);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("read back: identical to the signed manifest"),
        "{text}"
    );
    assert!(lo.content()[..IMAGE_SIZE] == pattern(IMAGE_SIZE, 7)[..]);
}

#[test]
fn flash_refuses_a_mounted_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(lo) = Loop::new(tmp.path(), "disk", 8 << 20, 0) else {
        return;
    };
    let rel = release(tmp.path());
    Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&lo.dev)
        .run()
        .expect("mkfs.ext4 on the loop device");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mount point");
    Command::new("mount")
        .arg(&lo.dev)
        .arg(&mnt)
        .run()
        .expect("mount");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).run();
        }
    }
    let _guard = Unmount(&mnt);
    refused(
        &rel,
        &lo,
        &keys().2,
        &["--yes"],
        REFUSED,
        &format!(
            "{dev} is mounted ({dev} on {}); refusing to overwrite a disk in use: unmount it first",
            mnt.display(),
            dev = lo.dev.display()
        ),
    );
}

#[test]
fn flash_refuses_a_disk_another_program_holds() {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(lo) = Loop::new(tmp.path(), "disk", 8 << 20, 0x33) else {
        return;
    };
    let rel = release(tmp.path());
    // An exclusive holder that no mount table shows (as a RAID or
    // device-mapper member would be): the kernel refuses the O_EXCL open.
    let _held = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(&lo.dev)
        .expect("hold the loop device exclusively");
    refused(
        &rel,
        &lo,
        &keys().2,
        &["--yes"],
        REFUSED,
        &format!(
            "{} is busy (the kernel refused exclusive access",
            lo.dev.display()
        ),
    );
}

#[test]
fn flash_refuses_a_too_small_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(lo) = Loop::new(tmp.path(), "disk", 2 << 20, 0x55) else {
        return;
    };
    let rel = release(tmp.path());
    refused(
        &rel,
        &lo,
        &keys().2,
        &["--yes"],
        REFUSED,
        &format!(
            "{} is too small: 2.00 MiB (2097152 bytes), the image needs 3.00 MiB ({IMAGE_SIZE} bytes)",
            lo.dev.display()
        ),
    );
}

#[test]
fn flash_refuses_a_corrupted_image_before_writing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(lo) = Loop::new(tmp.path(), "disk", 8 << 20, 0x55) else {
        return;
    };
    let rel = release(tmp.path());
    let raw = rel.join("test-flash.raw");
    let mut data = std::fs::read(&raw).expect("image");
    data[1 << 20] ^= 0x01;
    std::fs::write(&raw, data).expect("corrupt the image");
    refused(
        &rel,
        &lo,
        &keys().2,
        &["--yes"],
        VERIFICATION,
        "failed verification: test-flash.raw: sha256 is",
    );
}

#[test]
fn flash_refuses_a_release_with_a_bad_signature() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(lo) = Loop::new(tmp.path(), "disk", 8 << 20, 0x55) else {
        return;
    };
    let rel = release(tmp.path());
    // Signed by someone else: the technician's key does not match.
    refused(
        &rel,
        &lo,
        &keys().3,
        &["--yes"],
        VERIFICATION,
        "failed verification: manifest.json: signature does not match (manifest.json.sig, wrong key or file changed)",
    );
    // The manifest's signature replaced by a valid signature of another file.
    std::fs::copy(
        rel.join("test-flash.raw.sig"),
        rel.join("manifest.json.sig"),
    )
    .expect("swap sig");
    refused(
        &rel,
        &lo,
        &keys().2,
        &["--yes"],
        VERIFICATION,
        "failed verification: manifest.json",
    );
}

#[test]
fn flash_refuses_partitions_and_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rel = release(tmp.path());
    let file = tmp.path().join("not-a-disk");
    std::fs::write(&file, vec![0u8; 8 << 20]).expect("file");
    let (o, text) = flash(&rel, &file, &keys().2, &["--yes"]);
    assert_eq!(o.status.code(), Some(REFUSED), "{text}");
    assert!(
        text.contains("is not a block device; give the whole disk"),
        "{text}"
    );
    assert!(std::fs::read(&file).expect("file").iter().all(|b| *b == 0));

    let Some(lo) = Loop::new(tmp.path(), "disk", 8 << 20, 0) else {
        return;
    };
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'label: gpt\\nstart=2048, size=8192\\n' | sfdisk -q {}",
            lo.dev.display()
        ))
        .run()
        .expect("partition the loop device");
    // partx adds the partition itself (BLKPG): some kernels have no GPT
    // parser to find it on a rescan.
    if let Err(e) = Command::new("partx").arg("-a").arg(&lo.dev).run() {
        keel_testbed::report_skip(format_args!(
            "flash_refuses_partitions_and_files: partx cannot add a partition to {}: {e}",
            lo.dev.display()
        ));
        return;
    }
    // The partition's node (devtmpfs makes it; made here if /dev is static).
    let name = lo
        .dev
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let mut part = PathBuf::from(format!("{}p1", lo.dev.display()));
    if !part.exists() {
        let dev = std::fs::read_to_string(format!("/sys/class/block/{name}p1/dev"))
            .expect("the kernel sees partition 1 of the loop device");
        let (major, minor) = dev.trim().split_once(':').expect("MAJ:MIN");
        part = tmp.path().join(format!("{name}p1"));
        nix::sys::stat::mknod(
            &part,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(major.parse().expect("major"), minor.parse().expect("minor")),
        )
        .expect("mknod");
    }
    let (o, text) = flash(&rel, &part, &keys().2, &["--yes"]);
    assert_eq!(o.status.code(), Some(REFUSED), "{text}");
    assert!(
        text.contains(&format!(
            "is a partition ({name}p1); give the whole disk instead, e.g. /dev/{name}"
        )),
        "{text}"
    );
}
