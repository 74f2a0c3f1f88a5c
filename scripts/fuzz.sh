#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/fuzz_targets/ (cargo-fuzz, nightly,
# AddressSanitizer) for SECONDS each, one after the other, and prints each
# target's closing `Done N runs` line. On a crash, timeout or OOM it prints
# the target, the input that did it and the command that reproduces it, goes
# on with the other targets, and exits non-zero at the end.
#
# Usage: scripts/fuzz.sh SECONDS [TARGET...]
#
# Installs cargo-fuzz (into ~/.cache/oomscope/bin, like setup.sh's tools) and
# the nightly rust-src when missing. Corpora grow in fuzz/work/corpus/<target>
# (not committed) from the committed seeds in fuzz/seeds/<target>; crash
# inputs go to fuzz/work/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

CARGO_FUZZ_VERSION=0.13.2
# libFuzzer options: inputs up to 32 KiB (the OOM report bound of 4096
# records is reachable), 30 s per input at most, 2 GiB of RSS at most.
FUZZ_OPTIONS=(-max_len=32768 -timeout=30 -rss_limit_mb=2048 -print_final_stats=1)
# A memory cgroup around each run as well (root only): libFuzzer's RSS check
# runs once a second, the cgroup stops a runaway allocation at once.
CGROUP_LIMIT_BYTES=$((3 * 1024 * 1024 * 1024))

log() { printf '[fuzz] %s\n' "$*" >&2; }

seconds=${1:-}
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh SECONDS [TARGET...]" >&2
    exit 2
fi
shift

rustup run nightly rustc --version >/dev/null 2>&1 || {
    echo "fuzz: the rustup toolchain 'nightly' is not installed" >&2
    exit 1
}
# cargo-fuzz builds the standard library with the sanitizer when it can.
nightly_sysroot=$(rustup run nightly rustc --print sysroot)
if [ ! -d "$nightly_sysroot/lib/rustlib/src/rust/library/core" ]; then
    log "installing rust-src for the nightly toolchain"
    rustup component add rust-src --toolchain nightly
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "^cargo-fuzz $CARGO_FUZZ_VERSION\$"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $OOMSCOPE_TOOLS_DIR/bin"
    cargo +stable install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
        --root "$OOMSCOPE_TOOLS_DIR"
fi

# A quicker cold build for short runs (CI): opt-level 1 and no
# AddressSanitizer (the code is safe Rust: panics, overflow checks and the
# targets' assertions are what finds bugs); run without it for real fuzzing.
build_flags=()
if [ "${OOMSCOPE_FUZZ_QUICK_BUILD:-0}" = 1 ]; then
    export CARGO_PROFILE_RELEASE_OPT_LEVEL=1
    build_flags=(--sanitizer none)
fi

# The eBPF object is not built for the fuzz targets: its nested nightly build
# must not get the sanitizer flags, and the targets never load it.
export AYA_BUILD_SKIP=1

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$SECONDS
log "building ${#targets[@]} targets (the first build with sanitizers takes a while)"
cargo +nightly fuzz build "${build_flags[@]}"
log "build took $((SECONDS - start))s"

work=fuzz/work
mkdir -p "$work/logs"
# Scratch files of the targets (queue and checkpoint directories) on tmpfs.
scratch=$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/oomscope-fuzz.XXXXXX")
cgroup=""
cleanup() {
    rm -rf "$scratch"
    if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
        rmdir "$cgroup" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# A memory cgroup (v1 or v2) when this user may make one; else none.
if [ "$(id -u)" = 0 ]; then
    if [ -w /sys/fs/cgroup/memory ]; then
        cgroup=/sys/fs/cgroup/memory/oomscope-fuzz-$$
        mkdir "$cgroup" && echo "$CGROUP_LIMIT_BYTES" >"$cgroup/memory.limit_in_bytes" || cgroup=""
    elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        cgroup=/sys/fs/cgroup/oomscope-fuzz-$$
        mkdir "$cgroup" && echo "$CGROUP_LIMIT_BYTES" >"$cgroup/memory.max" || cgroup=""
    fi
fi
[ -n "$cgroup" ] || log "no memory cgroup (not root or no memory controller): libFuzzer's -rss_limit_mb only"

# Runs "$@" inside the cgroup, when there is one.
limited() {
    if [ -n "$cgroup" ]; then
        sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cgroup" "$@"
    else
        "$@"
    fi
}

failed=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target"
    target_log="$work/logs/$target.log"
    mkdir -p "$corpus" "$artifacts" "fuzz/seeds/$target"
    status=0
    # New inputs go to the first directory only: the seeds stay as committed.
    TMPDIR="$scratch" limited cargo +nightly fuzz run "${build_flags[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -artifact_prefix="$artifacts/" "${FUZZ_OPTIONS[@]}" \
        >"$target_log" 2>&1 || status=$?
    done_line=$(grep -E '^Done [0-9]+ runs' "$target_log" | tail -n1 || true)
    if [ "$status" -eq 0 ] && [ -n "$done_line" ]; then
        echo "$target: $done_line"
        continue
    fi
    failed+=("$target")
    artifact=$(grep -oE "(Test unit written to|written to) [^ ]+" "$target_log" | tail -n1 | awk '{print $NF}' || true)
    echo "$target: FAILED (exit status $status)${done_line:+; $done_line}"
    echo "  log:       $target_log"
    if [ -n "$artifact" ]; then
        echo "  input:     $artifact"
        echo "  reproduce: AYA_BUILD_SKIP=1 cargo +nightly fuzz run $target $artifact"
    fi
    # The failure itself: libFuzzer's summary and the panic message above it.
    grep -E "panicked at|^==[0-9]+==ERROR|SUMMARY:|^thread '" "$target_log" | head -n 8 | sed 's/^/  /' || true
done

echo "fuzz: ${#targets[@]} targets for ${seconds}s each, $((SECONDS - start))s in all"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
