#!/usr/bin/env bash
# Takes a fresh Debian 12 (bookworm) machine, as root, to one that builds, runs
# and tests all of Keel. Idempotent and non-interactive: run it as often as you like.
#
#   ./setup.sh            install host tools, then build the workspace (release)
#   ./setup.sh --deps     install host tools only
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=1
for arg in "$@"; do
  case "$arg" in
    --deps) build=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs packages with apt-get)" >&2
  exit 1
fi

# --- the host's own Debian mirror --------------------------------------------
# Keel never names a mirror host: it uses the URI this machine's apt already uses
# for the bookworm suite (deb822 .sources or one-line .list), or KEEL_DEBIAN_MIRROR.
host_mirror() {
  if [ -n "${KEEL_DEBIAN_MIRROR:-}" ]; then echo "$KEEL_DEBIAN_MIRROR"; return; fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk 'BEGIN{RS="";FS="\n"}
      { u=""; s=0
        for(i=1;i<=NF;i++){
          if($i ~ /^URIs:/){ sub(/^URIs:[ \t]*/,"",$i); split($i,a,/[ \t]+/); u=a[1] }
          if($i ~ /^Suites:/ && $i ~ /(^|[ \t])bookworm([ \t]|$)/) s=1 }
        if(u!="" && s){ print u; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                 if ($(i+1)=="bookworm") { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  echo "setup.sh: no apt source for the 'bookworm' suite found in /etc/apt; set KEEL_DEBIAN_MIRROR=URI" >&2
  return 1
}
mirror=$(host_mirror)

# --- apt packages -----------------------------------------------------------
backports=/etc/apt/sources.list.d/keel-bookworm-backports.list
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb $mirror bookworm-backports main" > "$backports"
fi

# Everything Keel uses on the host. Keep this list sorted by purpose.
pkgs=(
  # building and linking the workspace
  build-essential pkg-config libssl-dev libtss2-dev libostree-dev librados-dev
  # mkosi's host tools for disk images
  kmod cpio dosfstools mtools zstd e2fsprogs erofs-utils squashfs-tools bubblewrap
  cryptsetup-bin uidmap python3-pefile fdisk
  # mkosi's local repository for pooled packages (PackageDirectories=)
  reprepro
  # VMs with firmware and a software TPM; iproute2 (ip) for the tests' network namespace and tap
  ovmf swtpm swtpm-tools tpm2-tools iproute2
  # OSTree, seeds, services used by tests
  ostree cloud-image-utils xorriso git ceph pebble postgresql
  # keel-enroll's /metrics: scraped by a real Prometheus, linted by promtool
  prometheus
  # the end-to-end test's store network: DHCP for the guest, SSH into it
  dnsmasq-base openssh-client
  # misc (python3-venv: the SPDX validator used by the SBOM tests)
  ca-certificates curl jq python3-venv openssl util-linux time
)
stamp=/var/lib/keel-setup.stamp
want=$(printf '%s\n' "${pkgs[@]}" mkosi systemd-boot qemu-system-x86 | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! command -v mkosi >/dev/null; then
  log "installing apt packages"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  # mkosi 24 and systemd 254 (systemd-repart, bootctl, ukify) come from backports;
  # QEMU too, so that qemu-system and qemu-utils (which some images preinstall
  # from backports) stay at the same version.
  apt-get install -y -qq --no-install-recommends -t bookworm-backports \
    mkosi systemd systemd-boot systemd-boot-efi systemd-dev \
    qemu-system-x86 qemu-utils >/dev/null
  echo "$want" > "$stamp"
else
  log "apt packages already installed"
fi
# ceph, postgresql, pebble and prometheus are started by the test harness itself, never as
# system services: make sure the packaged ones are not running.
for svc in postgresql ceph.target prometheus; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || true
done

# --- cosign (Debian 13's static binary; not in bookworm) ----------------------
if ! command -v cosign >/dev/null || ! cosign verify-blob --help >/dev/null 2>&1; then
  log "installing cosign 2.x from Debian 13's archive (separate apt state)"
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  echo "deb $mirror trixie main" > "$tmp/sources.list"
  aptopts=(-o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o Dir::State::Lists="$tmp/lists" -o Dir::Cache::Archives="$tmp/archives"
           -o Dir::State::Status=/var/lib/dpkg/status -o APT::Get::List-Cleanup=0)
  apt-get "${aptopts[@]}" update -qq
  (cd "$tmp" && apt-get "${aptopts[@]}" download cosign >/dev/null)
  dpkg -x "$tmp"/cosign_*.deb "$tmp/root"
  install -m 0755 "$tmp/root/usr/bin/cosign" /usr/local/bin/cosign
  rm -rf "$tmp"
fi

# --- the official SPDX validator (pyspdxtools), in its own venv -----------------
if ! command -v pyspdxtools >/dev/null; then
  log "installing spdx-tools (pyspdxtools) into /opt/keel-tools/venv"
  /usr/bin/python3 -m venv /opt/keel-tools/venv
  /opt/keel-tools/venv/bin/pip install -q spdx-tools
  ln -sf /opt/keel-tools/venv/bin/pyspdxtools /usr/local/bin/pyspdxtools
fi

# --- Rust toolchain -----------------------------------------------------------
if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    log "installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if [ "$build" -eq 1 ]; then
  log "building the workspace (release)"
  cargo build --release --workspace --manifest-path "$here/Cargo.toml"
  log "done: binaries in $here/target/release (keel, keel-bootstrap, keel-enroll)"
fi
