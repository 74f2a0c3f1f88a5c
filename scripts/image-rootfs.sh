#!/usr/bin/env bash
# Assembles the container image's root filesystem from a built oomscope binary:
# the binary, exactly the shared libraries `ldd` lists (and the dynamic
# loader) and libsystemd with its own (loaded by the journald receiver), the container config (config/container.yaml) as
# /etc/oomscope/config.yaml, the system's CA bundle (the OTLP exporters'
# TLS uses the native store), a root-only /etc/passwd and /etc/group, and the
# state volume's mount point /var/lib/oomscope. Nothing else: no shell.
# Used by the Containerfile's build stage and on a host (the test builds the
# image from its result: FROM scratch, no registry needed).
# Usage: scripts/image-rootfs.sh BINARY OUTDIR   (OUTDIR must not exist or be empty)
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 BINARY OUTDIR" >&2
    exit 2
fi
binary=$1
out=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

[ -x "$binary" ] || { echo "$0: $binary is not an executable file" >&2; exit 1; }
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
    echo "$0: $out is not empty" >&2
    exit 1
fi
mkdir -p "$out"/usr/bin "$out"/etc/oomscope "$out"/etc/ssl/certs "$out"/var/lib/oomscope "$out"/tmp
chmod 1777 "$out"/tmp

install -m 0755 "$binary" "$out"/usr/bin/oomscope

# Every library ldd resolves ("name => /path (addr)") and the loader ("/path (addr)");
# the vDSO has no file. A library that does not resolve is an error, not a broken image.
ldd_out=$(ldd "$binary")
# The journald receiver loads libsystemd.so.0 when it starts (dlopen, so ldd
# does not list it): it and its libraries go in too, when the binary has the
# receiver.
if grep -q 'libsystemd\.so\.0' "$binary"; then
    # awk reads to the end: an early exit would end ldconfig with SIGPIPE,
    # which pipefail makes this script's exit status.
    libsystemd=$(ldconfig -p | awk '$1 == "libsystemd.so.0" && $NF ~ /^\// && !found { print $NF; found = 1 }')
    if [ -z "$libsystemd" ]; then
        echo "$0: the binary has the journald receiver but this host has no libsystemd.so.0 to put in the image" >&2
        exit 1
    fi
    ldd_out=$(printf '%s\n\tlibsystemd.so.0 => %s (0)\n%s\n' "$ldd_out" "$libsystemd" "$(ldd "$libsystemd")")
fi
if grep -q 'not found' <<<"$ldd_out"; then
    echo "$0: unresolved libraries:" >&2
    grep 'not found' <<<"$ldd_out" >&2
    exit 1
fi
awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u |
    while read -r lib; do
        mkdir -p "$out$(dirname "$lib")"
        # -L: the file itself, under the name the binary asks for.
        cp -L "$lib" "$out$lib"
    done

install -m 0644 "$repo/config/container.yaml" "$out"/etc/oomscope/config.yaml

for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$bundle" ]; then
        install -m 0644 "$bundle" "$out"/etc/ssl/certs/ca-certificates.crt
        break
    fi
done
[ -f "$out"/etc/ssl/certs/ca-certificates.crt ] ||
    echo "$0: warning: no CA bundle on this host; TLS exporters will need tls.ca_file" >&2

# The agent runs as root (uid 0) with a few capabilities: the host's /proc,
# tracefs and pod logs are root's. No login shell exists in the image.
printf 'root:x:0:0:root:/var/lib/oomscope:/nonexistent\n' >"$out"/etc/passwd
printf 'root:x:0:\n' >"$out"/etc/group
printf 'hosts: files dns\n' >"$out"/etc/nsswitch.conf
chmod 0644 "$out"/etc/passwd "$out"/etc/group "$out"/etc/nsswitch.conf
