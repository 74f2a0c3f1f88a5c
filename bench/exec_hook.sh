#!/usr/bin/env bash
# What the exec-time command-line hook costs: fork+exec of /bin/true, N at a
# time, timed without an agent and with one (`oom` receiver, eBPF with the
# exec hook), in alternating rounds so both see the same machine; plus the
# agent's own CPU per exec while the execs run (its user space does no work
# per exec: the hook's cost is in the kernel, charged to the exec'ing task).
# With TRACKING=netlink the agent runs without eBPF (`mode: kmsg`) and keeps
# its process table from the netlink process connector instead: that one
# reads /proc at each exec, in the agent.
# Usage: [TRACKING=ebpf|netlink] bench/exec_hook.sh [BINARY] [EXECS_PER_ROUND] [ROUNDS]  (as root)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${1:-target/release/oomscope}
N=${2:-5000}
ROUNDS=${3:-3}
TRACKING=${TRACKING:-ebpf}
case "$TRACKING" in
    ebpf) OOM='{ events: null }'; STARTED="ebpf=true" ;;
    netlink) OOM='{ events: null, mode: kmsg, process_tracking: netlink }'; STARTED="process_events=true" ;;
    *) echo "TRACKING is ebpf or netlink" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "needs root (eBPF)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release -p oomscope" >&2; exit 1; }
WORK=$(mktemp -d)
AGENT=""
cleanup() { [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
CLK_TCK=$(getconf CLK_TCK)

cat >"$WORK/spawn.c" <<'C'
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
extern char **environ;
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    char *args[] = {"/bin/true", "--an-argument", "--another=one", NULL};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        pid_t pid;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, environ) != 0) return 1;
        waitpid(pid, NULL, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n);
    return 0;
}
C
gcc -O2 -o "$WORK/spawn" "$WORK/spawn.c"

cat >"$WORK/agent.yaml" <<YAML
receivers:
  oom: $OOM
exporters:
  debug: { verbosity: basic }
service:
  telemetry: { metrics: { address: "" } }
  pipelines:
    logs: { receivers: [oom], exporters: [debug] }
YAML

agent_ticks() { awk '{ print $14 + $15 }' "/proc/$AGENT/stat"; }
without=() with=() agent_us=()
for round in $(seq "$ROUNDS"); do
    without+=("$("$WORK/spawn" "$N")")
    "$BIN" --config "$WORK/agent.yaml" >"$WORK/agent.log" 2>&1 &
    AGENT=$!
    for _ in $(seq 300); do
        grep -q "watching for OOM kills" "$WORK/agent.log" && break
        sleep 0.1
    done
    grep -q "$STARTED" "$WORK/agent.log" || { cat "$WORK/agent.log" >&2; exit 1; }
    if grep -q "exec hook is off" "$WORK/agent.log"; then
        grep "exec hook is off" "$WORK/agent.log" >&2
        exit 1
    fi
    before=$(agent_ticks)
    with+=("$("$WORK/spawn" "$N")")
    after=$(agent_ticks)
    agent_us+=("$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$N" 'BEGIN { printf "%.3f", t / hz * 1e6 / n }')")
    kill "$AGENT"; wait "$AGENT" 2>/dev/null || true; AGENT=""
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
mw=$(median "${without[@]}"); mh=$(median "${with[@]}"); ma=$(median "${agent_us[@]}")
echo "fork+exec of /bin/true, $N per round, $ROUNDS rounds (median), process tracking: $TRACKING:"
echo "  without the agent: ${mw} us per exec   (rounds: ${without[*]})"
echo "  with the agent:    ${mh} us per exec   (rounds: ${with[*]})"
echo "  ratio with/without: $(awk -v a="$mh" -v b="$mw" 'BEGIN { printf "%.3f", a / b }')"
echo "  agent CPU per exec: ${ma} us   (rounds: ${agent_us[*]}; one clock tick, $((1000000 / CLK_TCK)) us, per $N execs is the resolution)"
