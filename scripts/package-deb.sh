#!/usr/bin/env bash
# Builds dist/oomscope_<version>_amd64.deb: /usr/bin/oomscope, the systemd
# unit (deploy/systemd/oomscope.service), its sysusers.d entry, and
# config/default.yaml as /etc/oomscope/config.yaml (a conffile: local edits
# survive upgrades). postinst creates the oomscope user and /var/lib/oomscope
# and enables the service where systemd runs; prerm stops it; purge removes
# the state directory.
# Packaged with dpkg-deb directly rather than cargo-deb: dpkg-deb is on every
# Debian-family machine, while cargo-deb would be one more tool to build
# (cargo install) for a package this small.
# Usage: scripts/package-deb.sh [BINARY [OUTDIR]]
#   BINARY  default target/release/oomscope (built with `cargo build --release --locked -p oomscope` when missing)
#   OUTDIR  default dist/
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=${1:-$repo/target/release/oomscope}
outdir=${2:-$repo/dist}

command -v dpkg-deb >/dev/null || { echo "$0: dpkg-deb not found (Debian's dpkg)" >&2; exit 1; }
if [ "$#" -lt 1 ] && [ ! -x "$binary" ]; then
    (cd "$repo" && . scripts/env.sh && cargo build --release --locked -p oomscope)
fi
[ -x "$binary" ] || { echo "$0: $binary is not an executable file" >&2; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
[ -n "$version" ] || { echo "$0: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
arch=amd64
[ "$(uname -m)" = x86_64 ] || { echo "$0: only amd64 is packaged (this is $(uname -m))" >&2; exit 1; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/oomscope-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/oomscope_${version}_$arch
install -d "$root"/DEBIAN "$root"/usr/bin "$root"/lib/systemd/system "$root"/usr/lib/sysusers.d \
    "$root"/etc/oomscope "$root"/usr/share/doc/oomscope
# Stripped, as Debian packages are (the debug build is ~250 MB with its symbols).
strip --strip-debug -o "$root"/usr/bin/oomscope "$binary"
chmod 0755 "$root"/usr/bin/oomscope
install -m 0644 "$repo"/deploy/systemd/oomscope.service "$root"/lib/systemd/system/oomscope.service
install -m 0644 "$repo"/deploy/systemd/oomscope.sysusers "$root"/usr/lib/sysusers.d/oomscope.conf
install -m 0644 "$repo"/config/default.yaml "$root"/etc/oomscope/config.yaml
install -m 0644 "$repo"/README.md "$root"/usr/share/doc/oomscope/README.md

depends=$(dpkg-shlibdeps -O -e"$root"/usr/bin/oomscope 2>/dev/null | sed -n 's/^shlibs:Depends=//p' || true)
# dpkg-shlibdeps needs debian/control; without it, the libraries ldd lists come from libc6
# and libgcc-s1. The journald receiver loads libsystemd0's sd-journal when it starts
# (dlopen: not in ldd's list).
[ -n "$depends" ] || depends="libc6 (>= 2.34), libgcc-s1"
if grep -q 'libsystemd\.so\.0' "$binary" && ! grep -q 'libsystemd0' <<<"$depends"; then
    depends="$depends, libsystemd0"
fi
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root"/DEBIAN/control <<CONTROL
Package: oomscope
Version: $version
Architecture: $arch
Maintainer: oomscope developers <oomscope@localhost>
Installed-Size: $size
Depends: $depends
Section: admin
Priority: optional
Description: per-host agent that reports out-of-memory trouble as OpenTelemetry data
 oomscope catches kernel OOM kills (eBPF and the kernel log), runtime OOM
 messages in log files and memory pressure from /proc and cgroups, and
 ships them over OTLP. Runs as the systemd service oomscope.service with
 the configuration in /etc/oomscope/config.yaml.
CONTROL
printf '/etc/oomscope/config.yaml\n' >"$root"/DEBIAN/conffiles

cat >"$root"/DEBIAN/postinst <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers /usr/lib/sysusers.d/oomscope.conf
    elif ! getent passwd oomscope >/dev/null; then
        adduser --system --group --home /var/lib/oomscope --no-create-home \
            --shell /usr/sbin/nologin --gecos "oomscope agent" oomscope
    fi
    install -d -o oomscope -g oomscope -m 0700 /var/lib/oomscope
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable oomscope.service
        systemctl restart oomscope.service || true
    fi
fi
SCRIPT
cat >"$root"/DEBIAN/prerm <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl disable --now oomscope.service || true
fi
SCRIPT
cat >"$root"/DEBIAN/postrm <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
# The user stays (Debian keeps system users: files may still belong to it).
if [ "$1" = purge ]; then
    rm -rf /var/lib/oomscope
fi
SCRIPT
chmod 0755 "$root"/DEBIAN/postinst "$root"/DEBIAN/prerm "$root"/DEBIAN/postrm

mkdir -p "$outdir"
deb=$outdir/oomscope_${version}_$arch.deb
# gzip: every dpkg unpacks it (zstd needs dpkg >= 1.21.18).
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >&2
echo "$deb"
