//! Writable, persistent state on an immutable OS.
//!
//! The root file system (with /usr) is read-only and dm-verity protected.
//! What a node changes lives on the `/var` partition that systemd-repart
//! creates on first boot:
//!
//! * **/etc** is an overlay: the image's /etc is the read-only lower layer,
//!   the node's changes (hostname, users, network files, /etc/ceph, seed
//!   `write_files`) are the upper layer in `/var/lib/keel/etc`. It is
//!   mounted in the initrd, before systemd reads /etc after switching root,
//!   so PID 1 sees the node's own machine-id, hostname and enabled units
//!   from the very start of every boot. An OS update replaces the lower
//!   layer; files the node changed keep its version (as with any overlay).
//! * **/root** and **/home** are symlinks to `/var/roothome` and `/var/home`
//!   (as on Fedora CoreOS / bootc); the build moves their content there.
//!
//! Why the initrd and not an `etc.mount` unit in the main system: PID 1
//! reads /etc (machine-id, unit enablement, hostname) before any unit runs;
//! an overlay mounted later would leave the first minutes of every boot on
//! the image's defaults and a fresh machine-id on each boot.
//!
//! The initrd part reaches mkosi's default initrd through `InitrdInclude=`:
//! a unit pulled in by `initrd-root-fs.target` that runs after /sysroot is
//! mounted and before `initrd-parse-etc.service` reads /sysroot/etc/fstab.

use super::files::VAR_LABEL;

/// The directory (in the work dir) holding the initrd's extra configuration.
pub const INITRD_DIR: &str = "initrd";

/// Where the node's /etc changes live (upper and work dirs beneath).
pub const ETC_STATE: &str = "/var/lib/keel/etc";

/// The initrd's extra files besides its `mkosi.conf` (which the renderer
/// writes): path relative to the work dir → (content, mode).
pub fn initrd_files() -> Vec<(String, String, u32)> {
    let unit = "[Unit]\n\
        Description=Keel: /var partition and persistent /etc overlay\n\
        Documentation=file:/usr/share/doc/keel/building-images.md\n\
        DefaultDependencies=no\n\
        ConditionPathExists=/etc/initrd-release\n\
        Requires=sysroot.mount\n\
        After=sysroot.mount systemd-udev-settle.service\n\
        Before=initrd-root-fs.target initrd-parse-etc.service\n\
        OnFailure=emergency.target\n\
        OnFailureJobMode=isolate\n\n\
        [Service]\n\
        Type=oneshot\n\
        RemainAfterExit=yes\n\
        StandardOutput=journal+console\n\
        ExecStart=/usr/lib/keel/persistent-state\n"
        .to_string();
    let dropin = "[Unit]\nWants=keel-persistent-state.service\n".to_string();
    let sd = format!("{INITRD_DIR}/mkosi.extra/usr/lib/systemd/system");
    vec![
        (format!("{sd}/keel-persistent-state.service"), unit, 0o644),
        (
            format!("{sd}/initrd-root-fs.target.d/50-keel.conf"),
            dropin,
            0o644,
        ),
        (
            format!("{INITRD_DIR}/mkosi.extra/usr/lib/keel/persistent-state"),
            script(),
            0o755,
        ),
    ]
}

/// The initrd script: create /var on first boot, check and mount it, overlay /etc.
fn script() -> String {
    format!(
        r#"#!/bin/sh
# Rendered by keel. Runs in the initrd with /sysroot mounted read-only:
# 1. on first boot, systemd-repart adds the /var partition (repart.d of the image);
# 2. /var is checked and mounted at /sysroot/var;
# 3. /sysroot/etc becomes an overlay: the image's /etc + the node's changes in /var.
set -eu
say() {{ echo "keel-persistent-state: $*"; }}
var=/dev/disk/by-partlabel/{label}
if [ ! -e "$var" ]; then
    src=$(findmnt -nro SOURCE /sysroot)
    part=$(lsblk -nrpso NAME,TYPE "$src" | awk '$2 == "part" {{ print $1; exit }}')
    disk=/dev/$(lsblk -ndro PKNAME "$part")
    say "first boot: adding the /var partition to $disk"
    systemd-repart --dry-run=no --root=/sysroot --definitions=/sysroot/usr/lib/repart.d "$disk"
    udevadm trigger --settle "$disk" 2>/dev/null || udevadm settle
    i=0
    while [ ! -e "$var" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e "$var" ] || {{ say "no $var after systemd-repart"; exit 1; }}
fi
e2fsck -p "$var" || [ $? -le 1 ]
mount -o nodev,nosuid "$var" /sysroot/var
mkdir -p /sysroot{state}/upper /sysroot{state}/work
chmod 0700 /sysroot{state}
modprobe -q overlay 2>/dev/null || true
mount -t overlay keel-etc -o lowerdir=/sysroot/etc,upperdir=/sysroot{state}/upper,workdir=/sysroot{state}/work /sysroot/etc
say "/var mounted from $var, /etc is persistent"
"#,
        label = VAR_LABEL,
        state = ETC_STATE,
    )
}

/// Lines for the post-installation script (inside the image): move /root
/// and /home into /var and leave symlinks.
pub fn postinst() -> String {
    let mut s =
        String::from("# Keel: /root and /home live in /var (the root file system is read-only).\n");
    for (dir, target) in [("root", "roothome"), ("home", "home")] {
        s.push_str(&format!(
            "if [ -d /{dir} ] && [ ! -L /{dir} ]; then\n    \
             mkdir -p /var/{target}\n    \
             cp -a /{dir}/. /var/{target}/\n    \
             rm -rf /{dir}\n    \
             ln -s var/{target} /{dir}\n\
             fi\n"
        ));
    }
    s.push_str("chmod 0700 /var/roothome\n");
    s
}
