#!/usr/bin/env bash
# Runs the whole test suite (scripts/test.sh) while the machine is busy, to
# prove that no test depends on the machine's speed or on what else runs.
#
#   scripts/stress-tests.sh [cpu|twin] [test.sh arguments...]
#
#   cpu   (default) stress-ng keeps every CPU busy (one CPU hog per core, so
#         each test thread gets about half the CPU it would get alone) for
#         the whole run.
#   twin  a second, independent suite runs at the same time from a fresh
#         clone of this checkout's HEAD (its own target directory, so commit
#         first); the two share
#         the machine's CPUs, kernel log, OOM killer and port space, which
#         the tests coordinate through flock (tests/common: free_port,
#         machine_lock).
#
# Installs stress-ng (Debian) when it is missing. Exits non-zero when any
# suite fails; prints each suite's `total:` line at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=cpu
case "${1:-}" in
    cpu|twin) mode=$1; shift ;;
esac

log() { printf '[stress] %s\n' "$*" >&2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/oomscope-stress.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Each background job runs in its own process group (set -m), so that
# cleanup can stop it with everything it started.
set -m

case "$mode" in
cpu)
    if ! command -v stress-ng >/dev/null 2>&1; then
        log "installing stress-ng"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng) >&2
        else
            echo "stress-tests: stress-ng is missing (apt-get install stress-ng)" >&2
            exit 1
        fi
    fi
    cpus=$(nproc)
    log "stress-ng --cpu $cpus for the whole run"
    stress-ng --cpu "$cpus" --timeout 0 --quiet &
    pids+=($!)
    ./scripts/test.sh "$@" 2>&1 | tee "$work/suite.log"
    status=${PIPESTATUS[0]}
    echo
    echo "==================== under CPU load (stress-ng --cpu $cpus) ===================="
    grep '^total:' "$work/suite.log" || true
    exit "$status"
    ;;
twin)
    log "cloning this checkout for the second suite"
    git clone --quiet . "$work/twin"
    (cd "$work/twin" && ./scripts/test.sh "$@" >"$work/twin.log" 2>&1) &
    pids+=($!)
    twin_pid=$!
    ./scripts/test.sh "$@" 2>&1 | tee "$work/suite.log"
    status=${PIPESTATUS[0]}
    twin_status=0
    wait "$twin_pid" || twin_status=$?
    echo
    echo "==================== two suites at once ===================="
    echo "this checkout: $(grep '^total:' "$work/suite.log" || echo 'no total')"
    echo "twin clone:    $(grep '^total:' "$work/twin.log" || echo 'no total')"
    if [ "$twin_status" -ne 0 ]; then
        echo "--- twin suite failures ---"
        grep -E 'FAILED|panicked|^failures:' "$work/twin.log" | head -50 || true
    fi
    [ "$status" -eq 0 ] && [ "$twin_status" -eq 0 ]
    ;;
esac
