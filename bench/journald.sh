#!/usr/bin/env bash
# Reading the systemd journal: oomscope's journald receiver (libsystemd's
# sd-journal, in process) against `journalctl -o json` (what the collector's
# journald receiver runs as a child process), over the same journal.
#
# The journal: ENTRIES entries (default 1,000,000) written into journal
# files by systemd's own systemd-journal-remote from a generated export
# stream (zstd-compressed, keyed hash, compact: what journald 252 writes):
# 17 fields per entry as journald writes a service's stdout line (unit,
# pid, uid, comm, exe, cmdline, cgroup, boot id, ...), 50 units, a unique
# MESSAGE each, and every 1000th entry a Java OutOfMemoryError followed by
# two stack frames from the same unit and pid (three entries). The files
# are in the page cache for every contender (read once before).
#
# - journalctl -D DIR -o json (and with --all, which the collector needs
#   to keep fields over 4096 bytes), output to /dev/null: its CPU time
#   (user + sys, from its rusage) and peak RSS.
# - oomscope: journald (directory DIR, start_at beginning, the default
#   filters: priority info) -> batch -> file exporter, the whole process from
#   exec until it has taken every OOM record (its own
#   otelcol_receiver_accepted_log_records), CPU from /proc/PID/stat, and
#   its peak and anonymous RSS from /proc/PID/status.
#
# Output: CPU-seconds of each and the ratio journalctl / oomscope.
# OOMSCOPE_BIN=path uses a built binary instead of building one;
# PRIORITY=debug reads without the default priority filter (no sd-journal
# match: every entry is visited in file order).
set -euo pipefail

ENTRIES=${ENTRIES:-1000000}
PRIORITY=${PRIORITY:-info}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/env.sh
REMOTE=""
for p in /lib/systemd/systemd-journal-remote /usr/lib/systemd/systemd-journal-remote; do
    [ -x "$p" ] && REMOTE=$p && break
done
[ -n "$REMOTE" ] || { echo "systemd-journal-remote is missing: scripts/setup.sh installs it" >&2; exit 1; }
command -v journalctl >/dev/null || { echo "journalctl is missing" >&2; exit 1; }
if [ -z "${OOMSCOPE_BIN:-}" ]; then
    scripts/setup.sh >&2
    cargo build --release -q -p oomscope --bin oomscope
    OOMSCOPE_BIN="$ROOT/target/release/oomscope"
fi
WORK=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir: $WORK" >&2
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
CLK_TCK=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
counter() {
    { curl -s "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } |
        awk -v name="$2" 'index($0, name) == 1 { s += $NF } END { printf "%d", s }'
}

JOURNAL="$WORK/journal"
mkdir -p "$JOURNAL"
echo "writing $ENTRIES entries with systemd-journal-remote..." >&2
python3 - "$ENTRIES" <<'PY' | "$REMOTE" -o "$JOURNAL/bench.journal" - 2>"$WORK/remote.log"
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
boot = "6c7c6013a8894ec7a7bd0ba48ae3a0ba"
machine = "3d1219c7c4c5404aaa1f6d2a48adfda4"
units = [f"svc{u:02d}.service" for u in range(50)]
t0 = 1_700_000_000_000_000
oom = ["Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
       "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3512)",
       "\tat com.example.Cache.grow(Cache.java:42)"]
buf = []
i = 0
while i < n:
    lines = oom if i % 1000 == 0 else [None]
    u = (i * 7) % 50
    for line in lines:
        if i >= n:
            break
        unit = units[u]
        pid = 1000 + u
        msg = line if line is not None else f"request id={i} unit={unit} took {i % 997}ms status=200 path=/api/v1/items/{i * 31 % 100003}"
        buf.append(
            f"__REALTIME_TIMESTAMP={t0 + i}\n__MONOTONIC_TIMESTAMP={1_000_000 + i}\n"
            f"_BOOT_ID={boot}\n_MACHINE_ID={machine}\n_HOSTNAME=bench-host\n"
            f"_TRANSPORT=stdout\nPRIORITY=6\nSYSLOG_FACILITY=3\nSYSLOG_IDENTIFIER=svc{u:02d}\n"
            f"_PID={pid}\n_UID=1000\n_GID=1000\n_COMM=svc{u:02d}\n_EXE=/usr/bin/svc{u:02d}\n"
            f"_CMDLINE=/usr/bin/svc{u:02d} --port {8000 + u}\n_SYSTEMD_CGROUP=/system.slice/{unit}\n"
            f"_SYSTEMD_UNIT={unit}\n_SYSTEMD_SLICE=system.slice\n"
            f"MESSAGE={msg}\n\n")
        i += 1
    if len(buf) >= 10000:
        out.write("".join(buf).encode())
        buf = []
out.write("".join(buf).encode())
PY
FILES=$(ls "$JOURNAL" | wc -l)
BYTES=$(du -sb "$JOURNAL" | cut -f1)
cat "$JOURNAL"/* >/dev/null
COUNT=$(journalctl -D "$JOURNAL" --no-pager -o cat | wc -l)
OOMS=$(journalctl -D "$JOURNAL" --no-pager -o cat | grep -c OutOfMemoryError || true)
echo "journal: $COUNT entries, $OOMS Java OOMs, $FILES files, $BYTES bytes" >&2
[ "$COUNT" -ge "$ENTRIES" ] || { echo "journal-remote wrote only $COUNT entries" >&2; exit 1; }

# journalctl: CPU (user + sys) and peak RSS of the child.
measure_journalctl() {
    python3 - "$JOURNAL" "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(["journalctl", "-D", sys.argv[1], "--no-pager", *sys.argv[2:]], stdout=subprocess.DEVNULL, check=True)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{ru.ru_utime + ru.ru_stime:.3f} {ru.ru_maxrss / 1024:.0f}")
PY
}
# Peak RSS is each run's own: one Python process per measurement.
read -r JSON_CPU JSON_RSS <<<"$(measure_journalctl -o json)"
read -r JSON_ALL_CPU JSON_ALL_RSS <<<"$(measure_journalctl -o json --all)"
read -r EXPORT_CPU EXPORT_RSS <<<"$(measure_journalctl -o export)"

METRICS=$(free_port)
cat >"$WORK/oomscope.yaml" <<YAML
receivers:
  journald:
    directory: "$JOURNAL"
    start_at: beginning
    priority: $PRIORITY
processors:
  batch: {}
exporters:
  file:
    path: "$WORK/out.jsonl"
service:
  telemetry: { metrics: { address: "127.0.0.1:$METRICS" } }
  oom_score_adj: null
  pipelines:
    logs: { receivers: [journald], processors: [batch], exporters: [file] }
YAML
"$OOMSCOPE_BIN" --config "$WORK/oomscope.yaml" >"$WORK/oomscope.out" 2>&1 &
PID=$!
taken=0
for _ in $(seq 60000); do
    taken=$(counter "$METRICS" otelcol_receiver_accepted_log_records)
    [ "$taken" -ge "$OOMS" ] && break
    kill -0 "$PID" 2>/dev/null || { echo "oomscope exited:" >&2; cat "$WORK/oomscope.out" >&2; exit 1; }
    sleep 0.01
done
[ "$taken" -ge "$OOMS" ] || { echo "oomscope took only $taken records" >&2; exit 1; }
OURS_CPU=$(awk -v t="$CLK_TCK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$PID/stat")
OURS_HWM=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")
OURS_ANON=$(awk '/^RssAnon:/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")
OURS_FILE=$(awk '/^RssFile:/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")
kill "$PID"; wait "$PID" 2>/dev/null || true
PID=""

awk -v jc="$JSON_CPU" -v jr="$JSON_RSS" -v ac="$JSON_ALL_CPU" -v ar="$JSON_ALL_RSS" \
    -v ec="$EXPORT_CPU" -v er="$EXPORT_RSS" -v uc="$OURS_CPU" -v uh="$OURS_HWM" \
    -v ua="$OURS_ANON" -v uf="$OURS_FILE" -v n="$COUNT" -v r="$taken" -v p="$PRIORITY" 'BEGIN {
    m = 0.001
    u = uc > m ? uc : m
    printf "journalctl -o json:        %7.3f CPU-s, peak RSS %s MB\n", jc, jr
    printf "journalctl -o json --all:  %7.3f CPU-s, peak RSS %s MB\n", ac, ar
    printf "journalctl -o export:      %7.3f CPU-s, peak RSS %s MB\n", ec, er
    printf "oomscope journald (priority %s): %7.3f CPU-s for %d entries and %d records (whole agent), peak RSS %s MB (anonymous %s MB, mapped journal files %s MB)\n", p, uc, n, r, uh, ua, uf
    printf "ratio CPU-seconds, journalctl -o json / oomscope: %.1f\n", jc / u
    printf "ratio CPU-seconds, journalctl -o json --all / oomscope: %.1f\n", ac / u
    printf "ratio CPU-seconds, journalctl -o export / oomscope: %.1f\n", ec / u
}'
