//! Making one OSD, step by step, each step skipped when the state file says
//! it already finished: plan (uuid + secret) → wipe (if allowed) → `ceph osd
//! new` → `ceph-osd --mkfs` → start → wait until up and in.

use super::state::{OsdPhase, OsdRecord};
use super::{ceph, CephError, CephMaterial, CephPaths, CephState, Launch, OsdInfo, Target};
use keel_cmd::child::{SpawnOptions, Supervised};
use keel_cmd::CommandRunExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

type Result<T> = std::result::Result<T, CephError>;

fn set_phase(state: &mut CephState, dev: &Path, phase: OsdPhase, id: Option<u32>) -> Result<()> {
    if let Some(r) = state.record_mut(dev) {
        r.phase = phase;
        if id.is_some() {
            r.id = id;
        }
    }
    state.save()
}

/// Runs the missing steps for `t` and returns the OSD.
pub(crate) fn ensure(
    m: &CephMaterial,
    paths: &CephPaths,
    state: &mut CephState,
    t: &Target,
) -> Result<OsdInfo> {
    let rec = plan(state, t)?;
    let dev = t.device.as_path();
    if t.wipe && rec.phase < OsdPhase::Wiped {
        tracing::warn!("wiping {} (allowed by the disk policy)", dev.display());
        wipe(dev)?;
        set_phase(state, dev, OsdPhase::Wiped, None)?;
    }
    let id = match rec.id {
        Some(id) => id,
        None => {
            let id = register(m, paths, &rec)?;
            set_phase(state, dev, OsdPhase::Registered, Some(id))?;
            id
        }
    };
    let data = paths.osd_dir(id);
    if rec.phase < OsdPhase::Formatted {
        format(paths, &rec, t, id, &data)?;
        set_phase(state, dev, OsdPhase::Formatted, None)?;
    }
    if !running(paths, id) {
        start(paths, id, &data)?;
        set_phase(state, dev, OsdPhase::Started, None)?;
    }
    wait_up_in(m, paths, id, &rec.uuid)?;
    set_phase(state, dev, OsdPhase::UpIn, None)?;
    Ok(OsdInfo {
        id,
        uuid: rec.uuid,
        device: t.device.clone(),
    })
}

/// The record for `t`, made (uuid and secret chosen, saved) if there is none.
fn plan(state: &mut CephState, t: &Target) -> Result<OsdRecord> {
    if state.record(&t.device).is_none() {
        let uuid_src = Path::new("/proc/sys/kernel/random/uuid");
        let uuid = std::fs::read_to_string(uuid_src)
            .map_err(CephError::io("making an OSD uuid from", uuid_src))?
            .trim()
            .to_string();
        let secret = Command::new("ceph-authtool")
            .arg("--gen-print-key")
            .run_get_string()
            .map_err(CephError::tool("making an OSD secret"))?
            .trim()
            .to_string();
        state.osds.push(OsdRecord {
            device: t.device.clone(),
            uuid,
            secret,
            id: None,
            phase: OsdPhase::Planned,
        });
        state.save()?;
    }
    state
        .record(&t.device)
        .cloned()
        .ok_or_else(|| CephError::Inconsistent("the OSD's state record vanished".into()))
}

fn wipe(dev: &Path) -> Result<()> {
    Command::new("wipefs")
        .arg("-a")
        .arg(dev)
        .run()
        .map_err(CephError::tool(format!("wiping {}", dev.display())))
}

/// `ceph osd new` with the planned uuid; returns the id the monitors gave.
/// The same uuid returns the same id: safe to repeat after a kill.
fn register(m: &CephMaterial, paths: &CephPaths, rec: &OsdRecord) -> Result<u32> {
    let secret_json = paths.file_dir().join(format!("osd-{}.json", rec.uuid));
    keel_cmd::fs::write_atomic(
        &secret_json,
        serde_json::json!({ "cephx_secret": rec.secret })
            .to_string()
            .as_bytes(),
        0o600,
    )
    .map_err(CephError::io("writing", &secret_json))?;
    let out = ceph(m, paths, &["osd", "new", &rec.uuid, "-i"])
        .arg(&secret_json)
        .run_get_string();
    let _ = std::fs::remove_file(&secret_json);
    let out = out.map_err(CephError::monitors("registering the OSD with the monitors"))?;
    let id: u32 = out
        .trim()
        .parse()
        .map_err(|_| CephError::Inconsistent(format!("`ceph osd new` printed {out:?}")))?;
    tracing::info!(id, uuid = %rec.uuid, "OSD registered");
    Ok(id)
}

/// `ceph-osd --mkfs`, unless an earlier run finished it (its fsid file
/// names our uuid and it is marked ready).
fn format(paths: &CephPaths, rec: &OsdRecord, t: &Target, id: u32, data: &Path) -> Result<()> {
    let done_before = std::fs::read_to_string(data.join("fsid"))
        .is_ok_and(|f| f.trim() == rec.uuid)
        && data.join("ready").exists();
    if done_before {
        return Ok(());
    }
    if running(paths, id) {
        return Err(CephError::Inconsistent(format!(
            "osd.{id} runs but was never recorded as formatted; refusing to touch it"
        )));
    }
    if let Err(e) = mkfs(paths, rec, t, id, data) {
        // A kill during an earlier mkfs leaves a half-made OSD that is
        // ours (recorded): clear it and try once more.
        tracing::warn!(
            "mkfs of osd.{id} failed ({:#}); clearing and retrying once",
            anyhow::Error::new(e)
        );
        clear_partial(t, data)?;
        mkfs(paths, rec, t, id, data)?;
    }
    Ok(())
}

fn mkfs(paths: &CephPaths, rec: &OsdRecord, t: &Target, id: u32, data: &Path) -> Result<()> {
    std::fs::create_dir_all(data).map_err(CephError::io("creating", data))?;
    let keyring = data.join("keyring");
    keel_cmd::fs::write_atomic(
        &keyring,
        format!("[osd.{id}]\n\tkey = {}\n", rec.secret).as_bytes(),
        0o600,
    )
    .map_err(CephError::io("writing", &keyring))?;
    if let Some(size) = t.file_size {
        if let Some(dir) = t.device.parent() {
            std::fs::create_dir_all(dir).map_err(CephError::io("creating", dir))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&t.device)
            .and_then(|f| f.set_len(size))
            .map_err(CephError::io("creating", &t.device))?;
    }
    let block = data.join("block");
    if block.symlink_metadata().is_err() {
        std::os::unix::fs::symlink(&t.device, &block)
            .map_err(CephError::io("linking the OSD block", &block))?;
    }
    osd_cmd(paths, id, data)
        .args(["--mkfs", "--osd-uuid", &rec.uuid, "--no-mon-config"])
        .run()
        .map_err(CephError::tool(format!("ceph-osd --mkfs for osd.{id}")))?;
    if paths.launch == Launch::Systemd {
        give_to_ceph(&["-R"], data)?;
        give_to_ceph(&[], &t.device)?;
    }
    Ok(())
}

/// `chown [flags] ceph:ceph path`: the OSD daemon runs as `ceph`.
fn give_to_ceph(flags: &[&str], path: &Path) -> Result<()> {
    Command::new("chown")
        .args(flags)
        .arg("ceph:ceph")
        .arg(path)
        .run()
        .map_err(CephError::tool(format!(
            "giving {} to ceph",
            path.display()
        )))
}

fn clear_partial(t: &Target, data: &Path) -> Result<()> {
    if t.file_size.is_some() {
        let _ = std::fs::remove_file(&t.device);
    } else {
        wipe(&t.device)?;
    }
    for f in [
        "fsid",
        "whoami",
        "ready",
        "type",
        "magic",
        "ceph_fsid",
        "osd_key",
    ] {
        let _ = std::fs::remove_file(data.join(f));
    }
    Ok(())
}

fn osd_cmd(paths: &CephPaths, id: u32, data: &Path) -> Command {
    let mut c = Command::new("ceph-osd");
    c.arg("-c")
        .arg(paths.conf())
        .args(["-i", &id.to_string(), "--osd-data"])
        .arg(data)
        .arg("--keyring")
        .arg(data.join("keyring"));
    c
}

fn pid_file(paths: &CephPaths, id: u32) -> PathBuf {
    paths.run_dir().join(format!("ceph-osd.{id}.pid"))
}

fn log_file(paths: &CephPaths, id: u32) -> PathBuf {
    paths.run_dir().join(format!("ceph-osd.{id}.out"))
}

fn running(paths: &CephPaths, id: u32) -> bool {
    match paths.launch {
        Launch::Systemd => Command::new("systemctl")
            .args(["is-active", "--quiet", &format!("ceph-osd@{id}")])
            .run()
            .is_ok(),
        Launch::Spawn => std::fs::read_to_string(pid_file(paths, id))
            .ok()
            .and_then(|p| std::fs::read(format!("/proc/{}/cmdline", p.trim())).ok())
            .is_some_and(|cmd| String::from_utf8_lossy(&cmd).contains("ceph-osd")),
    }
}

fn start(paths: &CephPaths, id: u32, data: &Path) -> Result<()> {
    match paths.launch {
        Launch::Systemd => Command::new("systemctl")
            .args(["enable", "--now", &format!("ceph-osd@{id}")])
            .run()
            .map_err(CephError::tool(format!("starting ceph-osd@{id}")))?,
        Launch::Spawn => {
            let run_dir = paths.run_dir();
            std::fs::create_dir_all(&run_dir).map_err(CephError::io("creating", &run_dir))?;
            let opts = SpawnOptions::default()
                .log_to(&log_file(paths, id))
                .fresh_log();
            let osd = Supervised::spawn_with("ceph-osd", osd_cmd(paths, id, data).arg("-f"), &opts)
                .map_err(CephError::tool("starting ceph-osd"))?;
            // The OSD outlives the agent: it is found again by its PID file.
            let pid = osd.detach();
            let pid_path = pid_file(paths, id);
            keel_cmd::fs::write_atomic(&pid_path, pid.to_string().as_bytes(), 0o644)
                .map_err(CephError::io("writing", &pid_path))?;
            tracing::info!(id, pid, "ceph-osd started");
        }
    }
    Ok(())
}

/// Polls `ceph osd dump` (as the node key) until osd.`id` with `uuid` is up and in.
fn wait_up_in(m: &CephMaterial, paths: &CephPaths, id: u32, uuid: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let dump: serde_json::Value = ceph(m, paths, &["osd", "dump", "--format", "json"])
            .run_get_json()
            .map_err(CephError::monitors("reading the OSD map"))?;
        let me = dump["osds"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["osd"].as_u64() == Some(u64::from(id))));
        if let Some(o) = me {
            if o["uuid"].as_str().is_some_and(|u| u != uuid) {
                return Err(CephError::Inconsistent(format!(
                    "osd.{id} in the map has uuid {} but ours is {uuid}",
                    o["uuid"]
                )));
            }
            if o["up"] == 1 && o["in"] == 1 {
                tracing::info!(id, elapsed = ?t0.elapsed(), "OSD up and in");
                return Ok(());
            }
        }
        if paths.launch == Launch::Spawn && !running(paths, id) {
            return Err(CephError::OsdExited {
                id,
                log_tail: keel_cmd::child::log_tail(&log_file(paths, id), 15),
            });
        }
        if t0.elapsed() > paths.up_timeout {
            return Err(CephError::NotUpIn {
                id,
                after: paths.up_timeout,
            });
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
