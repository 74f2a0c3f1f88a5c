#!/usr/bin/env bash
# OOM kill latency: kernel timestamp -> rotel's acknowledgement of the export.
#
# rotel (a real OTLP backend) <- oom_latency proxy (notes rotel's ack time per
# record) <- oomscope (oom receiver -> batch 5s -> otlp exporter). The proxy
# also causes KILLS contained OOM kills (memory cgroups, 32 MiB limit). The
# batch processor's 5 s timeout is there on purpose: OOM records must bypass it.
# Needs root. Prints kills, p50, p99 and max in milliseconds (KEEP=1 keeps
# the work directory: kills has one line per kill record, as kill_storm.sh's).
set -euo pipefail

KILLS=${KILLS:-50}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/env.sh
scripts/setup.sh --with-peers >&2
cargo build --release -q -p oomscope --bin oomscope --example oom_latency
. bench/common.sh

R_GRPC=$(free_port); R_HTTP=$(free_port); PROXY=$(free_port); HEALTH=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$R_GRPC" --otlp-http-endpoint "127.0.0.1:$R_HTTP" \
    --exporter blackhole >"$WORK/rotel.log" 2>&1 &
PIDS+=($!)
wait_port "$R_GRPC"

mkfifo "$WORK/go"
"$ROOT/target/release/examples/oom_latency" --listen "127.0.0.1:$PROXY" \
    --rotel "http://127.0.0.1:$R_GRPC" --kills "$KILLS" --dump "$WORK/kills" <"$WORK/go" >"$WORK/result" &
PIDS+=($!)
exec 3>"$WORK/go"
wait_port "$PROXY"

cat >"$WORK/oomscope.yaml" <<YAML
receivers:
  oom: {}
processors:
  batch: { timeout: 5s }
exporters:
  otlp:
    endpoint: "127.0.0.1:$PROXY"
    tls: { insecure: true }
extensions:
  health_check: { endpoint: "127.0.0.1:$HEALTH" }
service:
  extensions: [health_check]
  telemetry: { metrics: { address: "" } }
  pipelines:
    logs: { receivers: [oom], processors: [batch], exporters: [otlp] }
YAML
"$ROOT/target/release/oomscope" --config "$WORK/oomscope.yaml" >"$WORK/oomscope.log" 2>&1 &
PIDS+=($!)
wait_port "$HEALTH"
echo go >&3
exec 3>&-
wait "${PIDS[1]}"
cat "$WORK/result" | grep -v '^ready$'
