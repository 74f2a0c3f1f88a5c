#!/usr/bin/env bash
# CPU per scrape of the memory receiver against `ps -eo pid,rss,vsz,comm`, over
# the same processes in the same run: for each N in COUNTS (default 1000 and
# 10000), N sleeping processes are started, then examples/memory_scrape runs
# the receiver's full scrape (default config: system, pressure, top 20
# processes, every memory cgroup) ITERATIONS times (CPU from its own rusage)
# and ps ITERATIONS times (CPU from its children's rusage), and prints both
# per scrape and their ratio.
#
# The sleepers run in their own process group inside a memory cgroup limited
# to 4 GiB (when root and a memory controller are there), and are killed on
# exit, whatever the exit. kernel.pid_max is raised only when N does not fit,
# and restored on exit.
set -euo pipefail

COUNTS=${COUNTS:-"1000 10000"}
ITERATIONS=${ITERATIONS:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/env.sh
cargo build --release -q -p oomscope --example memory_scrape
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/memory_scrape"

PID_MAX_ORIG=$(cat /proc/sys/kernel/pid_max)
WORK=$(mktemp -d)
CG=""
SPAWNER=""

stop_sleepers() {
    if [ -n "$SPAWNER" ]; then
        kill -TERM -- "-$SPAWNER" 2>/dev/null || kill -TERM "$SPAWNER" 2>/dev/null || true
        wait "$SPAWNER" 2>/dev/null || true
        SPAWNER=""
    fi
}
cleanup() {
    stop_sleepers
    if [ -n "$CG" ]; then
        for _ in $(seq 100); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
    fi
    if [ "$(cat /proc/sys/kernel/pid_max)" != "$PID_MAX_ORIG" ]; then
        echo "$PID_MAX_ORIG" >/proc/sys/kernel/pid_max
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A memory cgroup for the sleepers (a safety net: they allocate almost nothing).
if [ "$(id -u)" = 0 ]; then
    if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        CG=/sys/fs/cgroup/oomscope-bench-$$
        mkdir "$CG" && echo $((4 << 30)) >"$CG/memory.max"
    elif [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
        CG=/sys/fs/cgroup/memory/oomscope-bench-$$
        mkdir "$CG" && echo $((4 << 30)) >"$CG/memory.limit_in_bytes"
    fi
fi

# Starts N `sleep` processes (posix_spawn: no fork of a big parent) in a new
# process group whose leader waits for SIGTERM, then kills and reaps them.
SPAWN_PY='
import os, signal, sys
os.setsid()
n = int(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
kids = [os.posix_spawnp("sleep", ["sleep", "100000"], os.environ) for _ in range(n)]
open(sys.argv[2], "w").write("ready\n")
signal.sigwait({signal.SIGTERM})
for k in kids:
    try: os.kill(k, signal.SIGKILL)
    except ProcessLookupError: pass
for k in kids:
    os.waitpid(k, 0)
'

printf '%-8s %-10s %-12s %-12s %-10s %s\n' N processes ours_cpu_ms ps_cpu_ms ours/ps ours_us_per_process
for N in $COUNTS; do
    running=$(ls -d /proc/[0-9]* | wc -l)
    need=$((running + N + 2000))
    if [ "$need" -gt "$(cat /proc/sys/kernel/pid_max)" ]; then
        echo "raising kernel.pid_max to $need for $N processes (restored on exit)" >&2
        echo "$need" >/proc/sys/kernel/pid_max
    fi
    if [ "$(id -u)" != 0 ] && [ "$(ulimit -u)" != unlimited ] && [ "$(ulimit -u)" -lt "$need" ]; then
        echo "ulimit -u ($(ulimit -u)) is below $need: raise it or run as root" >&2
        exit 1
    fi
    rm -f "$WORK/ready"
    if [ -n "$CG" ]; then
        sh -c 'echo $$ >"$1/cgroup.procs" && exec python3 -c "$2" "$3" "$4"' sh "$CG" "$SPAWN_PY" "$N" "$WORK/ready" &
    else
        python3 -c "$SPAWN_PY" "$N" "$WORK/ready" &
    fi
    SPAWNER=$!
    for _ in $(seq 1200); do [ -f "$WORK/ready" ] && break; sleep 0.1; done
    [ -f "$WORK/ready" ] || { echo "the $N sleepers did not start" >&2; exit 1; }
    line=$("$BIN" --iterations "$ITERATIONS" --ps)
    echo "$line" >&2
    get() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    printf '%-8s %-10s %-12s %-12s %-10s %s\n' "$N" "$(get processes)" "$(get ours_cpu_ms)" \
        "$(get ps_cpu_ms)" "$(get ours_over_ps)" "$(get ours_cpu_us_per_process)"
    stop_sleepers
done
