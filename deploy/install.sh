#!/usr/bin/env bash
# Install or upgrade the yimen gateway on Raspberry Pi OS (bookworm, arm64).
#
#   sudo deploy/install.sh            install; run it again to upgrade in place
#
# Re-running is safe: the version's venv is upgraded in place, the unit and udev rules are replaced,
# and nothing under /var/lib/yimen (the outbox, media) or an existing /etc/yimen/station.toml
# is ever touched.
#
# Options:
#   --root DIR      install into DIR instead of / (tests; implies --no-apt and --no-start;
#                   the user is added to DIR/etc/passwd). To build an SD card image, run the
#                   script inside the image's chroot instead: the venv's paths must be real.
#   --source PATH   what pip installs: a yimen source tree or wheel (default: this checkout)
#   --python PY     the interpreter for the venv (default: /usr/bin/python3, the OS's own,
#                   whose packages the venv sees: that is how it finds python3-picamera2)
#   --pip-opts STR  extra options for pip (e.g. "--no-index --find-links /media/usb/wheels")
#   --extras LIST   the optional features to install, comma-separated (default: pi,qr, every one a
#                   station's config can turn on: GPIO buttons, USB keypads and card readers, QR codes)
#   --release-key FILE   trust FILE (an Ed25519 public key, PEM) for signed over-the-air releases:
#                   installed as /etc/yimen/release-keys/<its name>; give it again to add more keys
#   --no-apt        install no Debian packages
#   --no-start      enable the service but neither start nor restart it
#   --print-packages  print the Debian packages this installs (one a line) and stop
#
# Layout: each version is a venv of its own, /opt/yimen/versions/<version>/, and the symlink
# /opt/yimen/current points at the one that runs (switched atomically by rename, so an update
# or a power cut leaves either the old or the new one). The unit and /usr/local/bin/yimen go
# through /opt/yimen/current. An older install's /opt/yimen/venv is replaced by this layout.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root=/
source_path="$(dirname "$here")"
python=/usr/bin/python3
pip_opts=""
extras="pi,qr"
release_keys=()
use_apt=1
start=1
print_packages=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; use_apt=0; start=0; shift 2 ;;
    --source) source_path="${2:?--source needs a path}"; shift 2 ;;
    --python) python="${2:?--python needs an interpreter}"; shift 2 ;;
    --pip-opts) pip_opts="${2-}"; shift 2 ;;
    --extras) extras="${2?--extras needs a list, e.g. pi,qr}"; shift 2 ;;
    --release-key) release_keys+=("${2:?--release-key needs a file}"); shift 2 ;;
    --no-apt) use_apt=0; shift ;;
    --no-start) start=0; shift ;;
    --print-packages) print_packages=1; shift ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown option $1" >&2; usage ;;
  esac
done

say() { echo "yimen install: $*"; }
die() { echo "yimen install: $*" >&2; exit 1; }

etc=/etc/yimen
data=/var/lib/yimen
config="$etc/station.toml"

# ----- Debian packages -------------------------------------------------------------------
# What Raspberry Pi OS Lite lacks for the features a config can turn on, installed always (the
# config is written after the installer ran, and may be changed from the county later):
# espeak-ng speaks the calls ([announce]); fonts-wqy-microhei (one 5 MB font with all of GB2312
# and GBK) draws Chinese wherever the gateway renders text to an image; gcc, python3-dev and
# linux-libc-dev compile evdev (USB keypads, card readers: PyPI has no wheel for it).
packages() {
  echo python3; echo python3-venv; echo espeak-ng; echo fonts-wqy-microhei
  case ",$extras," in *,pi,*) echo gcc; echo python3-dev; echo linux-libc-dev ;; esac
}
if [ "$print_packages" = 1 ]; then packages; exit 0; fi

[ "$(id -u)" = 0 ] || die "run it as root: sudo $0"
root="$(cd "$root" && pwd)" || die "--root $root: no such directory"
r="${root%/}"   # prefix for every path below ("" when installing into /)

# shellcheck disable=SC1091  # the target's os-release, read at run time
codename="$( . "$r/etc/os-release" 2>/dev/null && echo "${VERSION_CODENAME:-unknown}" || echo unknown)"
[ "$codename" = bookworm ] || say "warning: made for Raspberry Pi OS bookworm, this is '$codename'; going on"
on_pi=0
if [ -z "$r" ] && grep -qs "Raspberry Pi" /proc/device-tree/model; then on_pi=1; fi

# Checked before anything is changed (openssl comes with ca-certificates on every Debian).
for key in "${release_keys[@]}"; do
  openssl pkey -pubin -in "$key" -noout -text 2>/dev/null | grep -q '^ED25519 Public-Key' \
    || die "--release-key $key: not an Ed25519 public key in PEM; ask the county for its release key file"
done

if [ "$use_apt" = 1 ]; then
  mapfile -t wanted < <(packages)
  # picamera2 comes only from Raspberry Pi OS; the venv sees it through --system-site-packages.
  # Without recommends: on Lite those would pull in a desktop's worth of Qt and OpenGL.
  [ "$on_pi" = 1 ] && wanted+=(python3-picamera2)
  missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from the OS's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# ----- the system user --------------------------------------------------------------------
prefix=()
[ -n "$r" ] && prefix=(--prefix "$r")
if ! grep -q '^yimen:' "$r/etc/passwd"; then
  say "adding system user yimen"
  useradd "${prefix[@]}" --system --user-group --home-dir "$data" --no-create-home \
    --shell /usr/sbin/nologin --comment "yimen gateway" yimen
fi
# Serial ports (window units, printers), input devices (keypads), USB printers, the camera,
# GPIO buttons: each group only where this system has it (gpio exists on Raspberry Pi OS).
for group in dialout input lp video gpio; do
  if grep -q "^$group:" "$r/etc/group"; then
    usermod "${prefix[@]}" --append --groups "$group" yimen
  fi
done
uid="$(awk -F: '$1 == "yimen" {print $3}' "$r/etc/passwd")"
gid="$(awk -F: '$1 == "yimen" {print $3}' "$r/etc/group")"

# ----- directories: config readable by the service, data only by it ----------------------
install -d -m 0755 "$r/opt/yimen" "$r/etc/systemd/system" "$r/etc/udev/rules.d" "$r/usr/local/bin"
[ -d "$r$etc" ] || install -d -m 0750 -o 0 -g "$gid" "$r$etc"
[ -d "$r$data" ] || install -d -m 0750 -o "$uid" -g "$gid" "$r$data"

# ----- the version's venv, then the switch -----------------------------------------------
# The version comes from the source itself (a tree's edge/__init__.py or a wheel's name), so
# the venv is made at its final path: a venv cannot be moved once made.
if [ -d "$source_path" ]; then
  version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$source_path/edge/__init__.py")"
else
  version="$(basename "$source_path" | sed -n 's/^yimen-\([^-]*\)-.*\.whl$/\1/p')"
fi
[[ "$version" =~ ^[A-Za-z0-9.+_]+$ ]] || die "cannot tell the version of $source_path (a yimen tree or yimen-<version>-*.whl)"
versions=/opt/yimen/versions
venv="$versions/$version"
current=/opt/yimen/current
install -d -m 0755 "$r$versions"
# The same version again (a re-run, a fix rebuilt at the same number) upgrades its venv in place.
# Made afresh: a venv whose Python is gone (an OS upgrade), or one that an interrupted install
# left half made (no .complete, and not the version running).
if ! "$r$venv/bin/python" -c '' 2>/dev/null \
   || [ "$("$r$venv/bin/python" -c 'import sys; print(sys.version_info[:2])')" \
        != "$("$python" -c 'import sys; print(sys.version_info[:2])')" ] \
   || { [ ! -e "$r$venv/.complete" ] && [ "$(readlink "$r$current" 2>/dev/null)" != "versions/$version" ]; }; then
  say "creating the venv $venv (it sees the OS's packages, for picamera2)"
  rm -rf "$r$venv"
  "$python" -m venv --system-site-packages "$r$venv"
fi
spec="$source_path"
[ -n "$extras" ] && spec="$source_path[$extras]"
say "installing yimen $version${extras:+ with $extras} from $source_path into $venv"
# shellcheck disable=SC2086  # pip_opts is a list of options
"$r$venv/bin/python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --upgrade $pip_opts "$spec"
"$r$venv/bin/yimen" --version >/dev/null || die "$venv/bin/yimen does not run; nothing was switched"
touch "$r$venv/.complete"
previous="$(readlink "$r$current" 2>/dev/null || true)"
# Atomic: a new symlink renamed over the old one (rename(2)); never a moment without `current`.
ln -sfn "versions/$version" "$r$current.new"
mv -T "$r$current.new" "$r$current"
ln -sfn "$current/bin/yimen" "$r/usr/local/bin/yimen"
[ -f "$source_path/README.md" ] && install -m 0644 "$source_path/README.md" "$r/opt/yimen/README.md"
# Kept: the version now current and the one it replaced (to switch back to); older ones go.
for old in "$r$versions"/*; do
  name="versions/$(basename "$old")"
  [ "$name" = "versions/$version" ] || [ "$name" = "$previous" ] || rm -rf "$old"
done
if [ -d "$r/opt/yimen/venv" ] && [ ! -L "$r/opt/yimen/venv" ]; then
  say "removing the old layout's /opt/yimen/venv (now $current -> versions/$version)"
  rm -rf "$r/opt/yimen/venv"
fi

# ----- trusted keys for signed over-the-air releases ---------------------------------------
install -d -m 0755 -o 0 -g 0 "$r$etc/release-keys"
for key in "${release_keys[@]}"; do
  install -m 0644 -o 0 -g 0 "$key" "$r$etc/release-keys/$(basename "$key")"
  say "trusting release key $etc/release-keys/$(basename "$key")"
done

# ----- config: a template the first time, never overwritten -------------------------------
install -m 0640 -o 0 -g "$gid" "$here/station.toml.example" "$r$etc/station.toml.example"
fresh=0
if [ ! -e "$r$config" ]; then
  install -m 0640 -o 0 -g "$gid" "$here/station.toml.example" "$r$config"
  fresh=1
fi

# ----- systemd unit and udev rules: ours, replaced on every upgrade ------------------------
install -m 0644 "$here/yimen.service" "$r/etc/systemd/system/yimen.service"
install -m 0644 "$here/70-yimen.rules" "$r/etc/udev/rules.d/70-yimen.rules"
# --- over-the-air updates (ota/apply.py): the root-side updater, its unit and the path unit that
# starts it when the gateway has a checked release ready. Enabled, not started: it runs at boot.
install -m 0755 "$here/yimen-update" "$r/opt/yimen/yimen-update"
install -m 0644 "$here/yimen-update.service" "$here/yimen-update.path" "$r/etc/systemd/system/"
# --- end over-the-air updates

if [ -z "$r" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if command -v udevadm >/dev/null; then
    udevadm control --reload-rules
    udevadm trigger --action=change --subsystem-match=tty --subsystem-match=input --subsystem-match=usbmisc
  fi
  systemctl enable --quiet yimen.service yimen-update.service yimen-update.path  # ota: the two update units
  if [ "$fresh" = 1 ]; then
    say "installed; not started: fill in $config first"
  elif [ "$start" = 1 ]; then
    # An upgrade restarts a running gateway on the new code; a stopped one stays stopped.
    systemctl try-restart yimen.service
    say "upgraded; the gateway is $(systemctl is-active yimen.service || true)"
  fi
else
  # No running systemd (a chroot, an image, --root): enabling is only a symlink.
  systemctl --root="$root" enable --quiet yimen.service yimen-update.service yimen-update.path  # ota
  say "installed into $root; systemd is not running there, so nothing was started or reloaded"
fi

if [ "$fresh" = 1 ]; then
  cat <<EOF
Next:
  1. sudo nano $config        (station id, county, broker, user name, password)
  2. sudo yimen doctor --config $config
  3. sudo systemctl start yimen; journalctl -u yimen -f
EOF
fi
