#!/usr/bin/env bash
# Many files: oomscope's filelog receiver against otelcol-contrib's filelog
# receiver on the same files, at the same time, in the same run.
#
# Part 1 (busy): FILES (1,000) files, each growing by RATE (10) lines/s for
# DURATION (300) s, 1 line in OOM_EVERY (100) an OOM line (kernel "Killed
# process", Go "fatal error: runtime: out of memory", Java
# "java.lang.OutOfMemoryError"), the others syslog-style lines; the writer is
# receiver/examples/many_files_writer.rs (one write(2) per line, its CPU not
# counted). Each file starts with one line before the agents start.
# Part 2 (idle): IDLE_FILES (10,000) files of 5 lines each (the last an OOM
# line), read once; then nothing is written for IDLE_WINDOW (60) s. Three
# agents: otelcol-contrib, oomscope as configured by default (idle, its
# tailer waits on inotify, with a poll every 5 s) and oomscope with
# `inotify: false` (it polls like the collector). What each poll costs is
# the window's CPU over the polls it holds at the poll interval (200 ms, the
# collector's default), for the two that poll; for all three the share of a
# core.
#
# Both agents: filelog with the same include glob, start_at beginning,
# poll_interval 200ms, max_concurrent_files 1024 (both defaults), batch,
# otlphttp to one rotel blackhole. otelcol-contrib keeps the OOM lines with a
# filter operator on `Killed process|out of memory|OutOfMemoryError`;
# oomscope uses its built-in pattern library. Each agent's exported record
# count (its own otelcol_exporter_sent_log_records) must reach the number of
# OOM lines written. CPU: utime+stime from /proc/PID/stat over the window;
# RSS: VmRSS at the end of the window and VmHWM (peak).
#
# PARTS="busy idle" selects the parts; KEEP=1 keeps the work directory.
set -euo pipefail

DURATION=${DURATION:-300}
FILES=${FILES:-1000}
RATE=${RATE:-10}
OOM_EVERY=${OOM_EVERY:-100}
IDLE_FILES=${IDLE_FILES:-10000}
IDLE_WINDOW=${IDLE_WINDOW:-60}
PARTS=${PARTS:-busy idle}
POLL_MS=200
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/env.sh
scripts/setup.sh --with-peers >&2
nice cargo build --release -q -p oomscope --bin oomscope --example many_files_writer
. bench/common.sh
OTELCOL="$("$PY" -c 'import otel_collector, os; print(os.path.dirname(otel_collector.__file__))')/bin/otelcol-contrib_linux_amd64"
OOMSCOPE="$ROOT/target/release/oomscope"
WRITER="$ROOT/target/release/examples/many_files_writer"
PATTERN='Killed process|out of memory|OutOfMemoryError'

# VmRSS or VmHWM of a process, in MiB.
mib() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# Sum of a Prometheus counter family on an endpoint (0 when absent).
field() { sed -n "s/.*\\b$1=\\([0-9.]*\\).*/\\1/p" <<<"$2"; }

SINK_GRPC=$(free_port); SINK_HTTP=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$SINK_GRPC" --otlp-http-endpoint "127.0.0.1:$SINK_HTTP" \
    --exporter blackhole >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
wait_port "$SINK_HTTP"

# Starts both agents on the files matching $1; sets OTEL_PID, OURS_PID,
# OTEL_METRICS, OURS_METRICS. With a third argument, also oomscope with the
# filelog key `inotify` set to it: POLLING_PID, POLLING_METRICS.
start_agents() { # name glob [inotify]
    local name=$1 glob=$2
    OTEL_METRICS=$(free_port)
    cat >"$WORK/otelcol-$name.yaml" <<YAML
receivers:
  filelog:
    include: ["$glob"]
    start_at: beginning
    poll_interval: ${POLL_MS}ms
    max_concurrent_files: 1024
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
    OURS_METRICS=$(free_port)
    cat >"$WORK/oomscope-$name.yaml" <<YAML
receivers:
  filelog:
    include: ["$glob"]
    start_at: beginning
    poll_interval: ${POLL_MS}ms
    max_concurrent_files: 1024
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
    "$OTELCOL" --config "$WORK/otelcol-$name.yaml" >"$WORK/otelcol-$name.out" 2>&1 &
    OTEL_PID=$!
    PIDS+=($OTEL_PID)
    "$OOMSCOPE" --config "$WORK/oomscope-$name.yaml" >"$WORK/oomscope-$name.out" 2>&1 &
    OURS_PID=$!
    PIDS+=($OURS_PID)
    wait_port "$OTEL_METRICS"
    wait_port "$OURS_METRICS"
    POLLING_PID=
    if [ -n "${3:-}" ]; then
        POLLING_METRICS=$(free_port)
        sed -e "s/^    max_concurrent_files: 1024$/    max_concurrent_files: 1024\n    inotify: $3/" \
            -e "s/127.0.0.1:$OURS_METRICS/127.0.0.1:$POLLING_METRICS/" \
            "$WORK/oomscope-$name.yaml" >"$WORK/oomscope-$name-inotify-$3.yaml"
        "$OOMSCOPE" --config "$WORK/oomscope-$name-inotify-$3.yaml" >"$WORK/oomscope-$name-inotify-$3.out" 2>&1 &
        POLLING_PID=$!
        PIDS+=($POLLING_PID)
        wait_port "$POLLING_METRICS"
    fi
}

stop_agents() {
    kill "$OTEL_PID" "$OURS_PID" $POLLING_PID 2>/dev/null || true
    wait "$OTEL_PID" "$OURS_PID" $POLLING_PID 2>/dev/null || true
}

# Waits until both agents have exported $1 records (at most $2 s); sets
# OTEL_SENT and OURS_SENT.
wait_sent() { # expected timeout_s
    local deadline=$(($(date +%s) + $2))
    while :; do
        OTEL_SENT=$(counter "$OTEL_METRICS" otelcol_exporter_sent_log_records)
        OURS_SENT=$(counter "$OURS_METRICS" otelcol_exporter_sent_log_records)
        POLLING_SENT=$1
        [ -z "$POLLING_PID" ] || POLLING_SENT=$(counter "$POLLING_METRICS" otelcol_exporter_sent_log_records)
        [ "$OTEL_SENT" -ge "$1" ] && [ "$OURS_SENT" -ge "$1" ] && [ "$POLLING_SENT" -ge "$1" ] && return 0
        for p in "$OTEL_PID" "$OURS_PID" $POLLING_PID; do
            kill -0 "$p" 2>/dev/null || { echo "an agent exited; see $WORK (KEEP=1)" >&2; return 1; }
        done
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "after $2 s: otelcol-contrib sent $OTEL_SENT, oomscope $OURS_SENT of $1 records" >&2
            return 1
        fi
        sleep 0.1
    done
}

if [[ " $PARTS " == *" busy "* ]]; then
    DIR="$WORK/busy"
    mkdir -p "$DIR"
    "$WRITER" create "$DIR" "$FILES" 1 >/dev/null
    start_agents busy "$DIR/*.log"
    OTEL_T0=$(ticks "$OTEL_PID"); OURS_T0=$(ticks "$OURS_PID")
    "$WRITER" write "$DIR" "$FILES" "$RATE" "$DURATION" "$OOM_EVERY" >"$WORK/writer.out" &
    WRITER_PID=$!
    PIDS+=($WRITER_PID)
    wait "$WRITER_PID"
    OTEL_T1=$(ticks "$OTEL_PID"); OURS_T1=$(ticks "$OURS_PID")
    OTEL_RSS=$(mib "$OTEL_PID" VmRSS); OURS_RSS=$(mib "$OURS_PID" VmRSS)
    OUT=$(cat "$WORK/writer.out")
    LINES=$(field lines "$OUT"); OOM=$(field oom_lines "$OUT"); SECS=$(field seconds "$OUT")
    echo "writer: $OUT" >&2
    wait_sent "$OOM" 60
    OTEL_HWM=$(mib "$OTEL_PID" VmHWM); OURS_HWM=$(mib "$OURS_PID" VmHWM)
    stop_agents
    awk -v t="$CLK_TCK" -v s="$SECS" -v files="$FILES" -v lines="$LINES" -v oom="$OOM" \
        -v oa="$OTEL_T0" -v ob="$OTEL_T1" -v ua="$OURS_T0" -v ub="$OURS_T1" \
        -v orss="$OTEL_RSS" -v ohwm="$OTEL_HWM" -v urss="$OURS_RSS" -v uhwm="$OURS_HWM" \
        -v osent="$OTEL_SENT" -v usent="$OURS_SENT" 'BEGIN {
        oc = (ob - oa) / t; uc = (ub - ua) / t
        printf "busy: %d files, %d lines in %.1f s (%.0f lines/s), %d OOM lines\n", files, lines, s, lines / s, oom
        printf "otelcol-contrib filelog: %.2f CPU-s (%.2f%% of a core), RSS %.1f MiB at the end, peak %.1f MiB, %d records exported\n", oc, 100 * oc / s, orss, ohwm, osent
        printf "oomscope filelog:        %.2f CPU-s (%.2f%% of a core), RSS %.1f MiB at the end, peak %.1f MiB, %d records exported\n", uc, 100 * uc / s, urss, uhwm, usent
        printf "busy ratio oomscope / otelcol-contrib: CPU %.3f (aim <= 0.1), RSS %.2f, peak RSS %.2f (aim <= 1)\n", (oc > 0 ? uc / oc : 0), urss / orss, uhwm / ohwm
    }'
fi

if [[ " $PARTS " == *" idle "* ]]; then
    DIR="$WORK/idle"
    mkdir -p "$DIR"
    OUT=$("$WRITER" create "$DIR" "$IDLE_FILES" 5 1)
    OOM=$(field oom_lines "$OUT")
    start_agents idle "$DIR/*.log" false
    # Every file was found and read once each agent exported its OOM line.
    wait_sent "$OOM" 600
    OTEL_T0=$(ticks "$OTEL_PID"); OURS_T0=$(ticks "$OURS_PID"); POLLING_T0=$(ticks "$POLLING_PID")
    sleep "$IDLE_WINDOW"
    OTEL_T1=$(ticks "$OTEL_PID"); OURS_T1=$(ticks "$OURS_PID"); POLLING_T1=$(ticks "$POLLING_PID")
    OTEL_RSS=$(mib "$OTEL_PID" VmRSS); OURS_RSS=$(mib "$OURS_PID" VmRSS); POLLING_RSS=$(mib "$POLLING_PID" VmRSS)
    OTEL_HWM=$(mib "$OTEL_PID" VmHWM); OURS_HWM=$(mib "$OURS_PID" VmHWM); POLLING_HWM=$(mib "$POLLING_PID" VmHWM)
    stop_agents
    awk -v t="$CLK_TCK" -v w="$IDLE_WINDOW" -v files="$IDLE_FILES" -v poll="$POLL_MS" \
        -v oa="$OTEL_T0" -v ob="$OTEL_T1" -v ua="$OURS_T0" -v ub="$OURS_T1" -v pa="$POLLING_T0" -v pb="$POLLING_T1" \
        -v orss="$OTEL_RSS" -v ohwm="$OTEL_HWM" -v urss="$OURS_RSS" -v uhwm="$OURS_HWM" -v prss="$POLLING_RSS" -v phwm="$POLLING_HWM" 'BEGIN {
        polls = w * 1000 / poll
        oc = (ob - oa) / t; uc = (ub - ua) / t; pc = (pb - pa) / t
        printf "idle: %d files, none written for %d s; poll_interval %d ms: %d polls for the two that poll\n", files, w, poll, polls
        printf "otelcol-contrib filelog:            %.2f CPU-s, %.2f ms per poll (%.2f us per file), %.3f%% of a core, RSS %.1f MiB, peak %.1f MiB\n", oc, 1000 * oc / polls, 1e6 * oc / polls / files, 100 * oc / w, orss, ohwm
        printf "oomscope filelog, inotify: false:   %.2f CPU-s, %.2f ms per poll (%.2f us per file), %.3f%% of a core, RSS %.1f MiB, peak %.1f MiB\n", pc, 1000 * pc / polls, 1e6 * pc / polls / files, 100 * pc / w, prss, phwm
        printf "oomscope filelog, default (inotify): %.2f CPU-s, %.3f%% of a core, RSS %.1f MiB, peak %.1f MiB\n", uc, 100 * uc / w, urss, uhwm
        printf "idle ratio oomscope / otelcol-contrib: CPU per poll %.3f (inotify: false), CPU %.3f (default), RSS %.2f, peak RSS %.2f\n", (oc > 0 ? pc / oc : 0), (oc > 0 ? uc / oc : 0), urss / orss, uhwm / ohwm
    }'
fi
