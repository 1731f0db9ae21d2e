//! Accounts: `users:` entries become local users (useradd/usermod/groupadd
//! with `--prefix` for a target root, through keel-cmd), sudoers rules go to
//! /etc/sudoers.d/90-keel-users, and SSH keys to `~/.ssh/authorized_keys`
//! (0600, directory 0700, owned by the user). Top-level
//! `ssh_authorized_keys` go to root (Keel images have no default user).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use keel_cmd::CommandRunExt;

use crate::fsutil::in_root;
use crate::seed::user_data::{CloudConfig, Owner, User};
use keel_cmd::fs::write_atomic;

/// A passwd entry.
#[derive(Debug, Clone)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// Reads `<root>/etc/passwd`.
pub fn passwd(root: &Path) -> Vec<PasswdEntry> {
    let text = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5)?.to_string(),
            })
        })
        .collect()
}

fn group_gid(root: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(root.join("etc/group")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Resolves an owner (names or numbers) against the root's databases: the
/// uid, and the gid when a group is named (none: the file keeps its group,
/// as in cloud-init).
pub fn resolve_owner(root: &Path, owner: &Owner) -> Result<(u32, Option<u32>)> {
    let uid = match owner.user.parse::<u32>() {
        Ok(n) => n,
        Err(_) if owner.user == "root" => 0,
        Err(_) => passwd(root)
            .iter()
            .find(|e| e.name == owner.user)
            .map(|e| e.uid)
            .with_context(|| {
                format!("no user {:?} in the image or the seed's users", owner.user)
            })?,
    };
    let gid = match owner.group.as_deref() {
        None => None,
        Some("root") => Some(0),
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_gid(root, g).with_context(|| format!("no group {g:?} in the image"))?,
        }),
    };
    Ok((uid, gid))
}

fn tool(root: &Path, program: &str) -> Command {
    let mut c = Command::new(program);
    if root != Path::new("/") {
        c.arg("--prefix").arg(root);
    }
    c
}

/// Creates/updates every user, sudo rules and authorized keys.
pub fn apply_users(root: &Path, cfg: &CloudConfig) -> Result<()> {
    let mut sudoers = String::new();
    for u in &cfg.users {
        ensure_user(root, u).with_context(|| format!("user {}", u.name))?;
        for rule in &u.sudo {
            sudoers += &format!("{} {rule}\n", u.name);
        }
    }
    if !sudoers.is_empty() {
        let s = format!("# Written by keel-bootstrap from the seed.\n{sudoers}");
        write_atomic(
            &root.join("etc/sudoers.d/90-keel-users"),
            s.as_bytes(),
            0o440,
        )?;
    }
    if !cfg.ssh_authorized_keys.is_empty() {
        authorized_keys(root, "root", &cfg.ssh_authorized_keys)?;
    }
    Ok(())
}

fn ensure_user(root: &Path, u: &User) -> Result<()> {
    if u.name.contains([':', '/', '\n']) || u.name.starts_with('-') {
        bail!("{:?} is not a valid user name", u.name);
    }
    for g in &u.groups {
        if group_gid(root, g).is_none() {
            tool(root, "groupadd").arg(g).run()?;
        }
    }
    let exists = passwd(root).iter().any(|e| e.name == u.name);
    if !exists {
        let mut c = tool(root, "useradd");
        c.arg("--create-home");
        if let Some(s) = &u.shell {
            c.args(["--shell", s]);
        }
        if let Some(g) = &u.gecos {
            c.args(["--comment", g]);
        }
        if let Some(h) = &u.homedir {
            c.args(["--home-dir", h]);
        }
        if u.system {
            c.arg("--system");
        }
        c.arg(&u.name).run()?;
    }
    let mut c = tool(root, "usermod");
    let mut changed = false;
    if !u.groups.is_empty() {
        c.args(["--append", "--groups", &u.groups.join(",")]);
        changed = true;
    }
    if let Some(p) = &u.passwd {
        c.args(["--password", p]);
        changed = true;
    }
    if changed {
        c.arg(&u.name).run()?;
    }
    if u.lock_passwd.unwrap_or(true) && u.passwd.is_none() {
        tool(root, "usermod").args(["--lock", &u.name]).run()?;
    }
    if !u.ssh_authorized_keys.is_empty() {
        authorized_keys(root, &u.name, &u.ssh_authorized_keys)?;
    }
    Ok(())
}

/// Writes `keys` (replacing Keel's earlier list) into the user's
/// authorized_keys with mode 0600 in a 0700 .ssh directory.
pub fn authorized_keys(root: &Path, user: &str, keys: &[String]) -> Result<()> {
    let entry = passwd(root).into_iter().find(|e| e.name == user);
    let (home, uid, gid) = match entry {
        Some(e) => (e.home, e.uid, e.gid),
        None if user == "root" => ("/root".to_string(), 0, 0),
        None => bail!("no user {user:?} for ssh keys"),
    };
    let dir = in_root(root, &format!("{home}/.ssh")).context("home directory must be absolute")?;
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let path = dir.join("authorized_keys");
    let mut text = String::new();
    for k in keys {
        let k = k.trim();
        if k.contains('\n') || k.is_empty() {
            bail!("an ssh key for {user} is empty or spans lines");
        }
        text += k;
        text.push('\n');
    }
    write_atomic(&path, text.as_bytes(), 0o600)?;
    for p in [&dir, &path] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).or_else(|e| {
            if super::files::skip_chown(uid, gid) {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    }
    Ok(())
}
