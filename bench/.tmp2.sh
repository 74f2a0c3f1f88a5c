#!/usr/bin/env bash
# OTLP logs pass-through benchmark: oomscope against rotel, in the same run.
#
# One load generator (receiver/examples/otlp_loadgen.rs, gRPC, 8 streams, 1000
# records per request) sends RECORDS log records to each server in turn; each
# server forwards over OTLP/gRPC (gzip, both servers' default) to one rotel
# blackhole sink. Only the server's CPU time counts (utime+stime from
# /proc/PID/stat, all threads), from before the first request until it has
# forwarded everything (its CPU time stops growing).
#
# Output: records per CPU-second for both, and the ratio oomscope/rotel.
# RECORDS=N sets the volume; LIMITER=1 adds a memory_limiter to oomscope's
# pipeline, as in its default config (rotel has none).
set -euo pipefail

RECORDS=${RECORDS:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh" --with-peers >&2
. bench/common.sh
OOMSCOPE="$ROOT/target/release/oomscope"
LOADGEN="$ROOT/target/release/examples/otlp_loadgen"

# Waits until the process's CPU time has not grown for 1 s (it has forwarded everything).
wait_idle() {
    local last now stable=0
    last=$(ticks "$1")
    for _ in $(seq 120); do
        sleep 0.5
        now=$(ticks "$1")
        if [ "$now" = "$last" ]; then stable=$((stable + 1)); else stable=0; fi
        last=$now
        [ "$stable" -ge 2 ] && return 0
    done
}

SINK_GRPC=$(free_port); SINK_HTTP=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$SINK_GRPC" --otlp-http-endpoint "127.0.0.1:$SINK_HTTP" \
    --exporter blackhole >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
wait_port "$SINK_GRPC"

measure() { # name pid port -> prints records/CPU-second
    local name=$1 pid=$2 port=$3 before after out
    wait_port "$port"
    sleep 0.5
    before=$(ticks "$pid")
    out=$("$LOADGEN" --endpoint "http://127.0.0.1:$port" --records "$RECORDS")
    wait_idle "$pid"
    after=$(ticks "$pid")
    local cpu
    cpu=$(awk -v a="$after" -v b="$before" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (a - b) / t }')
    local rate
    rate=$(awk -v n="$RECORDS" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print "inf" }')
    local hwm
    hwm=$(awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$pid/status")
    echo "$name: $out cpu_seconds=$cpu records_per_cpu_second=$rate peak_rss=$hwm" >&2
    echo "$rate"
}

# oomscope: otlp receiver -> batch -> otlp exporter (gzip) -> sink.
# LIMITER=1 puts a memory_limiter before batch, as the default config does
# (with limits far above what the run uses, so it only costs, never refuses).
if [ "${LIMITER:-0}" = 1 ]; then
    LIMITER_CONFIG='  memory_limiter: { check_interval: 1s, limit_mib: 2048, spike_limit_mib: 256 }'
    CHAIN='[memory_limiter, batch]'
else
    LIMITER_CONFIG=''
    CHAIN='[batch]'
fi
OOM_GRPC=$(free_port); OOM_HTTP=$(free_port); OOM_METRICS=$(free_port)
cat >"$WORK/oomscope.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$OOM_GRPC" }
processors:
$LIMITER_CONFIG
  batch: {}
exporters:
  otlp:
    endpoint: "127.0.0.1:$SINK_GRPC"
    tls: { insecure: true }
service:
  telemetry:
    metrics: { address: "127.0.0.1:$OOM_METRICS" }
  oom_score_adj: null
  pipelines:
    logs: { receivers: [otlp], processors: $CHAIN, exporters: [otlp] }
YAML
"$OOMSCOPE" --config "$WORK/oomscope.yaml" >"$WORK/oomscope.log" 2>&1 &
OOM_PID=$!; PIDS+=($OOM_PID)
ours=$(measure oomscope "$OOM_PID" "$OOM_GRPC")

# rotel: otlp receiver -> (its batching) -> otlp exporter (gzip) -> sink
R_GRPC=$(free_port); R_HTTP=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$R_GRPC" --otlp-http-endpoint "127.0.0.1:$R_HTTP" \
    --exporter otlp --otlp-exporter-endpoint "http://127.0.0.1:$SINK_GRPC" --otlp-exporter-protocol grpc \
    >"$WORK/rotel.log" 2>&1 &
ROTEL_PID=$!; PIDS+=($ROTEL_PID)
theirs=$(measure rotel "$ROTEL_PID" "$R_GRPC")

ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
echo "records=$RECORDS limiter=${LIMITER:-0} oomscope_records_per_cpu_second=$ours rotel_records_per_cpu_second=$theirs ratio=$ratio"
