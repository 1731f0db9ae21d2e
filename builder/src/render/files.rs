//! The individual files of a rendered mkosi configuration: apt sources,
//! build-time partition definitions, files placed into the image, and the
//! post-installation and finalize scripts.

use std::fmt::Write as _;

use super::RenderInputs;
use crate::spec::mirror::Mirrors;
use crate::spec::ImageSpec;

/// Packages mkosi 24's default initrd installs on Debian (its
/// `mkosi-initrd` configuration); the lock resolves them too.
pub const MKOSI_INITRD_PACKAGES: &[&str] = &[
    "systemd",
    "udev",
    "bash",
    "less",
    "p11-kit",
    "lvm2",
    "kmod",
    "dmsetup",
    "libcryptsetup12",
    "e2fsprogs",
    "util-linux",
    "libfido2-1",
];

/// The partition label of the writable /var partition created on first boot.
pub const VAR_LABEL: &str = "keel-var";

/// deb822 sources: the release, its updates and its security archive.
pub fn apt_sources(spec: &ImageSpec, mirrors: &Mirrors) -> String {
    let d = &spec.distribution;
    let comps = d.components.join(" ");
    let key = "/usr/share/keyrings/debian-archive-keyring.gpg";
    format!(
        "Types: deb\nURIs: {m}\nSuites: {r} {r}-updates\nComponents: {comps}\nSigned-By: {key}\n\n\
         Types: deb\nURIs: {s}\nSuites: {r}-security\nComponents: {comps}\nSigned-By: {key}\n",
        m = mirrors.main,
        s = mirrors.security,
        r = d.release,
    )
}

/// systemd-repart definitions mkosi uses to build the disk: ESP, read-only
/// root, and the root's verity hash partition.
pub fn build_partitions(spec: &ImageSpec) -> Vec<(String, String)> {
    let p = &spec.partitions;
    let mut v = vec![(
        "00-esp.conf".to_string(),
        format!(
            "[Partition]\nType=esp\nLabel=ESP\nFormat=vfat\nCopyFiles=/boot:/\nCopyFiles=/efi:/\n\
             SizeMinBytes={s}\nSizeMaxBytes={s}\n",
            s = p.esp_size
        ),
    )];
    let mut root = format!(
        "[Partition]\nType=root\nLabel=root\nFormat={}\nCopyFiles=/\nExcludeFiles=/boot/\nExcludeFiles=/efi/\n\
         Minimize=best\nReadOnly=yes\n",
        p.root_filesystem.as_str()
    );
    if p.verity {
        root.push_str("Verity=data\nVerityMatchKey=root\n");
    }
    v.push(("10-root.conf".into(), root));
    if p.verity {
        v.push((
            "11-root-verity.conf".into(),
            "[Partition]\nType=root-verity\nLabel=root-verity\nVerity=hash\nVerityMatchKey=root\nMinimize=best\n"
                .into(),
        ));
    }
    v
}

/// Files rendered into the image (mkosi.extra/), by path relative to its root.
pub fn image_files(spec: &ImageSpec) -> Vec<(String, String)> {
    let mut v = Vec::new();
    // First boot: systemd-repart (in the initrd, else early in the main
    // system) adds the writable /var partition, seeded from the image's /var.
    v.push((
        "usr/lib/repart.d/50-var.conf".to_string(),
        format!(
            "# Keel: the writable state partition, created on first boot.\n[Partition]\nType=var\n\
             Label={VAR_LABEL}\nFormat=ext4\nCopyFiles=/var:/\nSizeMinBytes={}\n",
            spec.partitions.var_size
        ),
    ));
    v.push((
        "etc/fstab".to_string(),
        format!(
            "# Keel: the root file system is read-only (dm-verity); state lives in /var.\n\
             # The initrd checks and mounts it (keel-persistent-state.service) before /etc,\n\
             # which is an overlay kept in /var; this line names the mount for systemd.\n\
             PARTLABEL={VAR_LABEL} /var ext4 defaults,nodev,nosuid,x-systemd.growfs,x-systemd.device-timeout=5min 0 0\n\
             # /tmp is in memory: the root it sits on is read-only.\n\
             tmpfs /tmp tmpfs mode=1777,nosuid,nodev,size=25%,nr_inodes=1m 0 0\n"
        ),
    ));
    if spec.packages.install.iter().any(|p| p == "openssh-server") {
        v.push((
            "etc/ssh/sshd_config.d/50-keel.conf".to_string(),
            "# Keel: host keys are per node, generated on first boot into /var.\n\
             HostKey /var/lib/keel/ssh/ssh_host_ed25519_key\nHostKey /var/lib/keel/ssh/ssh_host_ecdsa_key\n\
             HostKey /var/lib/keel/ssh/ssh_host_rsa_key\n"
                .to_string(),
        ));
        v.push((
            "usr/lib/systemd/system/keel-ssh-hostkeys.service".to_string(),
            "[Unit]\nDescription=Generate this node's SSH host keys\nBefore=ssh.service\n\
             ConditionPathExists=!/var/lib/keel/ssh/ssh_host_ed25519_key\n\n[Service]\nType=oneshot\n\
             ExecStart=/bin/mkdir -p /var/lib/keel/ssh/etc/ssh\n\
             ExecStart=/usr/bin/ssh-keygen -A -f /var/lib/keel/ssh\n\
             ExecStart=/bin/sh -c 'mv /var/lib/keel/ssh/etc/ssh/ssh_host_* /var/lib/keel/ssh/ && rm -rf /var/lib/keel/ssh/etc'\n\n\
             [Install]\nWantedBy=ssh.service\n"
                .to_string(),
        ));
    }
    for f in &spec.files.files {
        if let Some(c) = &f.content {
            v.push((f.path.trim_start_matches('/').to_string(), c.clone()));
        }
    }
    for u in &spec.users {
        if !u.ssh_authorized_keys.is_empty() {
            let home = u
                .home
                .clone()
                .unwrap_or_else(|| format!("/home/{}", u.name));
            let mut keys = u.ssh_authorized_keys.join("\n");
            keys.push('\n');
            v.push((
                format!("{}/.ssh/authorized_keys", home.trim_start_matches('/')),
                keys,
            ));
        }
    }
    v
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs inside the image (chroot) after packages are installed: users,
/// groups, file modes, units.
pub fn postinst(spec: &ImageSpec, inp: &RenderInputs<'_>) -> String {
    let mut s = String::from("#!/bin/sh\n# Rendered by keel: runs inside the image after package installation.\nset -eu\n");
    for g in &spec.groups {
        let _ = writeln!(s, "groupadd --gid {} {}", g.gid, sh_quote(&g.name));
    }
    for u in &spec.users {
        let home = u
            .home
            .clone()
            .unwrap_or_else(|| format!("/home/{}", u.name));
        let primary = match &u.group {
            Some(g) => format!("--gid {}", sh_quote(g)),
            None => {
                let _ = writeln!(s, "groupadd --gid {} {}", u.uid, sh_quote(&u.name));
                format!("--gid {}", u.uid)
            }
        };
        let groups = if u.groups.is_empty() {
            String::new()
        } else {
            format!(" --groups {}", sh_quote(&u.groups.join(",")))
        };
        let _ = writeln!(
            s,
            "useradd --uid {} {primary}{groups} --shell {} --home-dir {h} --create-home {}",
            u.uid,
            sh_quote(&u.shell),
            sh_quote(&u.name),
            h = sh_quote(&home),
        );
        if !u.ssh_authorized_keys.is_empty() {
            let _ = writeln!(
                s,
                "chown -R {n}: {h}/.ssh && chmod 700 {h}/.ssh && chmod 600 {h}/.ssh/authorized_keys",
                n = sh_quote(&u.name),
                h = sh_quote(&home)
            );
        }
    }
    for f in &spec.files.files {
        let _ = writeln!(s, "chmod {} {}", f.mode, sh_quote(&f.path));
    }
    let mut enable: Vec<String> = spec.services.enable.clone();
    if spec.packages.install.iter().any(|p| p == "openssh-server") {
        enable.push("keel-ssh-hostkeys.service".into());
    }
    if spec.keel.agent {
        s.push_str("chmod 0755 /usr/bin/keel-bootstrap\n");
        enable.extend(inp.agent_units.iter().cloned());
    }
    if !enable.is_empty() {
        let _ = writeln!(s, "systemctl enable {}", enable.join(" "));
    }
    if !spec.services.disable.is_empty() {
        let _ = writeln!(s, "systemctl disable {}", spec.services.disable.join(" "));
    }
    s.push_str(&super::state::postinst());
    s
}

/// The keel executable's name inside the work directory (mkosi mounts the
/// work directory at `$SRCDIR` in its sandbox, where host paths may be hidden).
pub const KEEL_EXE_NAME: &str = "keel-exe";

/// Runs on the host after the image tree is complete, before it is sealed:
/// calls back into the running keel binary (SBOMs, private-key scan).
pub fn finalize(spec: &ImageSpec) -> String {
    format!(
        "#!/bin/sh\n# Rendered by keel: hands the finished image tree to keel before it is sealed.\nset -eu\n\
         exec \"$SRCDIR/{KEEL_EXE_NAME}\" internal finalize --root \"$BUILDROOT\" --publish-dir \"$OUTPUTDIR\" \\\n    \
         --image-name {} --image-version {} \\\n    \
         --distribution \"$DISTRIBUTION\" --release \"$RELEASE\" --architecture \"$DISTRIBUTION_ARCHITECTURE\"\n",
        sh_quote(&spec.image.name),
        sh_quote(&spec.image.version)
    )
}
