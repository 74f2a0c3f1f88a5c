#!/usr/bin/env bash
# File tailing + OOM pattern matching: oomscope's filelog receiver against
# otelcol-contrib's filelog receiver and `grep -E`, in the same run.
#
# One generated syslog file (LINES lines, about 95 bytes each, OOM_LINES of
# them OOM lines: kernel "Killed process", Go "fatal error: runtime: out of
# memory", Java "OutOfMemoryError"; the last line is one of them, so "all OOM
# records exported" means "the whole file was read"). The file is in the page
# cache for every contender (read once before).
#
# - otelcol-contrib: filelog (start_at beginning) with a filter operator
#   keeping `Killed process|out of memory|OutOfMemoryError`, batch, otlphttp to
#   a rotel blackhole.
# - oomscope: filelog (start_at beginning) with the whole built-in pattern
#   library (37 patterns), batch, otlphttp to the same rotel blackhole.
# - grep -c -E with the three-pattern expression.
#
# Both collectors count their whole process, from exec to the moment their
# exporter reports the last OOM record sent (CPU from /proc/PID/stat, read
# then). Output: lines per CPU-second for both collectors, MB per CPU-second
# and per wall-second for oomscope and grep, and the ratios.
set -euo pipefail

LINES=${LINES:-2000000}
OOM_LINES=${OOM_LINES:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/env.sh
scripts/setup.sh --with-peers >&2
cargo build --release -q -p oomscope --bin oomscope
. bench/common.sh
OTELCOL="$("$PY" -c 'import otel_collector, os; print(os.path.dirname(otel_collector.__file__))')/bin/otelcol-contrib_linux_amd64"
OOMSCOPE="$ROOT/target/release/oomscope"
cpu_seconds() { awk -v t="$CLK_TCK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$1/stat"; }
now() { date +%s.%N; }
# Sum of a Prometheus counter family on an endpoint (0 when absent).

LOG="$WORK/syslog.log"
"$PY" - "$LOG" "$LINES" "$OOM_LINES" <<'PY'
import random, sys
path, lines, oom_lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
hosts = ["web-01", "web-02", "db-01", "cache-03"]
apps = [("sshd", "Accepted publickey for deploy from 10.0.{a}.{b} port {p} ssh2: ED25519 SHA256:abcdef"),
        ("nginx", "10.1.{a}.{b} - - \"GET /api/v1/items/{p} HTTP/1.1\" 200 {a}{b} \"-\" \"curl/8.5\""),
        ("systemd", "Started session {p} of user deploy; unit session-{p}.scope ok"),
        ("kubelet", "I1127 07:14:55.{p} 1234 reconciler.go:{a}] operationExecutor.Verify ok"),
        ("app", "request id={p} user={a} took {b}ms status=200 path=/checkout/{a}")]
# The last OOM line (the file's last line) is the kernel's: a Go or Java line
# there would be held for force_flush_period (500 ms) by oomscope, waiting for
# the stack trace that follows such lines (otelcol does not group them).
oom = ["kernel: Out of memory: Killed process {p} (java) total-vm:8388608kB, anon-rss:4194304kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:8192kB oom_score_adj:0",
       "app[{p}]: fatal error: runtime: out of memory",
       "app[{p}]: Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space"]
step = lines // oom_lines
with open(path, "w") as f:
    for i in range(lines):
        ts = "Nov 27 07:%02d:%02d" % ((i // 60000) % 60, (i // 1000) % 60)
        host = hosts[i % 4]
        p, a, b = rng.randrange(1000, 99999), rng.randrange(256), rng.randrange(256)
        if (i + 1) % step == 0 and (i + 1) // step <= oom_lines:
            msg = oom[(oom_lines - (i + 1) // step) % 3].format(p=p)
            f.write(f"{ts} {host} {msg}\n")
        else:
            name, text = apps[i % 5]
            f.write(f"{ts} {host} {name}[{p}]: {text.format(p=p, a=a, b=b)}\n")
PY
BYTES=$(stat -c %s "$LOG")
cat "$LOG" >/dev/null
PATTERN='Killed process|out of memory|OutOfMemoryError'
echo "file: $LINES lines, $BYTES bytes, $(grep -c -E "$PATTERN" "$LOG") lines match the three-pattern filter" >&2

SINK_GRPC=$(free_port); SINK_HTTP=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$SINK_GRPC" --otlp-http-endpoint "127.0.0.1:$SINK_HTTP" \
    --exporter blackhole >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
wait_port "$SINK_HTTP"

# Runs a collector until its exporter has sent OOM_LINES records; sets CPU
# and WALL (seconds). Not in a subshell: the EXIT trap must stay this shell's.
run_collector() { # name metrics_port command...
    local name=$1 port=$2 start pid sent=0 cpu wall
    shift 2
    start=$(now)
    "$@" >"$WORK/$name.out" 2>&1 &
    pid=$!
    PIDS+=($pid)
    for _ in $(seq 12000); do
        sent=$(counter "$port" otelcol_exporter_sent_log_records)
        [ "$sent" -ge "$OOM_LINES" ] && break
        kill -0 "$pid" 2>/dev/null || { echo "$name exited:" >&2; cat "$WORK/$name.out" >&2; return 1; }
        sleep 0.01
    done
    cpu=$(cpu_seconds "$pid")
    wall=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
    kill "$pid"; wait "$pid" 2>/dev/null || true
    [ "$sent" -ge "$OOM_LINES" ] || { echo "$name sent only $sent records" >&2; return 1; }
    CPU=$cpu WALL=$wall
}

OTEL_METRICS=$(free_port)
cat >"$WORK/otelcol.yaml" <<YAML
receivers:
  filelog:
    include: ["$LOG"]
    start_at: beginning
    operators:
      - type: filter
        expr: 'not (body matches "$PATTERN")'
processors:
  batch: {}
exporters:
  otlphttp:
    endpoint: "http://127.0.0.1:$SINK_HTTP"
service:
  telemetry:
    metrics:
      readers:
        - pull: { exporter: { prometheus: { host: 127.0.0.1, port: $OTEL_METRICS } } }
  pipelines:
    logs: { receivers: [filelog], processors: [batch], exporters: [otlphttp] }
YAML
run_collector otelcol "$OTEL_METRICS" "$OTELCOL" --config "$WORK/otelcol.yaml"
OTEL_CPU=$CPU OTEL_WALL=$WALL

OURS_METRICS=$(free_port)
cat >"$WORK/oomscope.yaml" <<YAML
receivers:
  filelog:
    include: ["$LOG"]
    start_at: beginning
processors:
  batch: {}
exporters:
  otlphttp:
    endpoint: "http://127.0.0.1:$SINK_HTTP"
service:
  telemetry: { metrics: { address: "127.0.0.1:$OURS_METRICS" } }
  oom_score_adj: null
  pipelines:
    logs: { receivers: [filelog], processors: [batch], exporters: [otlphttp] }
YAML
run_collector oomscope "$OURS_METRICS" "$OOMSCOPE" --config "$WORK/oomscope.yaml"
OURS_CPU=$CPU OURS_WALL=$WALL

# grep: its own CPU time (user + sys, from its rusage) and wall time. Its
# output is a pipe: GNU grep stops at the first match when it writes to
# /dev/null.
GREP=$("$PY" - "$PATTERN" "$LOG" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
subprocess.run(["grep", "-c", "-E", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, check=True)
wall = time.monotonic() - start
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{ru.ru_utime + ru.ru_stime:.3f} {wall:.3f}")
PY
)
read -r GREP_CPU GREP_WALL <<<"$GREP"

awk -v lines="$LINES" -v bytes="$BYTES" \
    -v oc="$OTEL_CPU" -v ow="$OTEL_WALL" -v uc="$OURS_CPU" -v uw="$OURS_WALL" \
    -v gc="$GREP_CPU" -v gw="$GREP_WALL" 'BEGIN {
    mb = bytes / 1e6
    m = 0.001  # below the clock tick: count one millisecond
    printf "otelcol-contrib filelog: %.3f CPU-s, %.3f s wall, %.0f lines per CPU-second\n", oc, ow, lines / (oc > m ? oc : m)
    printf "oomscope filelog:        %.3f CPU-s, %.3f s wall, %.0f lines per CPU-second, %.0f MB per CPU-second, %.0f MB/s wall\n", uc, uw, lines / (uc > m ? uc : m), mb / (uc > m ? uc : m), mb / uw
    printf "grep -c -E:              %.3f CPU-s, %.3f s wall, %.0f MB per CPU-second, %.0f MB/s wall\n", gc, gw, mb / (gc > m ? gc : m), mb / gw
    printf "ratio lines per CPU-second, oomscope / otelcol-contrib: %.1f\n", (oc > m ? oc : m) / (uc > m ? uc : m)
    printf "ratio MB per CPU-second, oomscope / grep: %.2f\n", (gc > m ? gc : m) / (uc > m ? uc : m)
    printf "ratio MB/s wall, oomscope / grep: %.2f\n", gw / uw
}'
