#!/usr/bin/env bash
# Kill storm: many contained OOM kills at once while OTLP traffic passes
# through the same agent.
#
# rotel (a real OTLP backend, blackhole) <- oom_latency proxy (notes rotel's
# ack per record, counts the OTLP records rotel acknowledged) <- oomscope, one
# release-built process: receivers [oom (eBPF), otlp] -> batch -> otlp
# exporter. otlp_loadgen offers RATE log records/s to the agent's OTLP
# receiver (1,000 per request, at most 8 in flight, a request whose turn
# finds all 8 busy is not sent) for the whole run.
#
# After BASELINE seconds of OTLP traffic alone, the proxy causes KILLS
# contained OOM kills (memory cgroups with a 32 MiB limit, never an unbounded
# allocation) in waves of AT_ONCE simultaneous kills, each in another of
# CGROUPS cgroups, the waves spread over SPREAD seconds. Then it checks every
# kill record by pid against the kills it caused (missed, duplicated) and the
# kernel's count (/proc/vmstat oom_kill), and compares the OTLP records the
# agent delivered per second (acknowledged by rotel) during the storm with the
# baseline. The load generator's per-request latency (its export call to the
# agent) is split into the same two windows.
# Needs root. Prints one summary line (KEEP=1 keeps the work directory:
# kills has one line per kill record, "pid kernel_ns observed_ns received_ns
# acked_ns", unix time: the kernel's timestamp, the agent built the record,
# the proxy got it, rotel acknowledged). built_*, delivery_* and backend_*
# split the latency into those three stages; reached_* is the first two
# together: the kernel's timestamp until the record reached the proxy.
# backend_slow counts rotel's answers over 5 ms; backend_slow_amid_kills_pct
# is the share of them given while another kill was under way (its kernel
# timestamp from 4 ms before the proxy got the record until the answer),
# backend_fast_amid_kills_pct the same share of the faster answers.
# probe_*: rotel's answers to small exports the proxy sends it directly every
# 10 ms (not through the agent), sent in the baseline and in the storm: the
# backend's own time while the kills take the CPUs (PROBE_MS=0: none);
# probe_*_after_kills: those sent within 10 ms after a kill's kernel
# timestamp, when the kills' own records reach rotel.
set -euo pipefail

KILLS=${KILLS:-200}
AT_ONCE=${AT_ONCE:-4}
CGROUPS=${CGROUPS:-8}
SPREAD=${SPREAD:-9}
BASELINE=${BASELINE:-10}
RATE=${RATE:-50000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/env.sh
scripts/setup.sh --with-peers >&2
. bench/common.sh

R_GRPC=$(free_port); R_HTTP=$(free_port); PROXY=$(free_port); HEALTH=$(free_port); OTLP=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$R_GRPC" --otlp-http-endpoint "127.0.0.1:$R_HTTP" \
    --exporter blackhole >"$WORK/rotel.log" 2>&1 &
PIDS+=($!)
wait_port "$R_GRPC"

cat >"$WORK/oomscope.yaml" <<YAML
receivers:
  oom: {}
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$OTLP" }
processors:
  batch: {}
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
    logs: { receivers: [oom, otlp], processors: [batch], exporters: [otlp] }
YAML
"${OOMSCOPE:-$ROOT/target/release/oomscope}" --config "$WORK/oomscope.yaml" >"$WORK/oomscope.log" 2>&1 &
AGENT=$!; PIDS+=($AGENT)

mkfifo "$WORK/go"
"$ROOT/target/release/examples/oom_latency" --listen "127.0.0.1:$PROXY" \
    --rotel "http://127.0.0.1:$R_GRPC" --kills "$KILLS" --storm "$SPREAD" --at-once "$AT_ONCE" \
    --cgroups "$CGROUPS" --baseline "$BASELINE" --probe-ms "${PROBE_MS:-10}" --watch-pid "$AGENT" --dump "$WORK/kills" <"$WORK/go" >"$WORK/result" &
PROXY_PID=$!; PIDS+=($PROXY_PID)
exec 3>"$WORK/go"
wait_port "$PROXY"
wait_port "$HEALTH"
wait_port "$OTLP"

"$ROOT/target/release/examples/otlp_loadgen" --endpoint "http://127.0.0.1:$OTLP" \
    --rate "$RATE" --batch 1000 --concurrency 8 --log "$WORK/requests" >"$WORK/loadgen" &
LOADGEN=$!; PIDS+=($LOADGEN)
echo go >&3
exec 3>&-
wait "$PROXY_PID"
kill -TERM "$LOADGEN"
wait "$LOADGEN" || true

result=$(grep -v '^ready$' "$WORK/result")
echo "proxy: $result" >&2
echo "loadgen: $(cat "$WORK/loadgen")" >&2
phases=$(sed -n 's/.*phases=\([0-9,]*\).*/\1/p' <<<"$result")
# The load generator's requests sent within each window: p99 latency, and
# the records per second it got accepted.
requests=$("$PY" - "$WORK/requests" "$phases" <<'PY'
import sys
b0, b1, s0, s1 = map(int, sys.argv[2].split(","))
win = {"baseline": (b0, b1), "storm": (s0, s1)}
lat = {k: [] for k in win}
ok = {k: 0 for k in win}
for line in open(sys.argv[1]):
    at, ns, good = map(int, line.split())
    for k, (a, b) in win.items():
        if a <= at < b:
            lat[k].append(ns)
            ok[k] += good
def p99(v):
    v = sorted(v)
    return v[max(0, -(-99 * len(v) // 100) - 1)] / 1e6 if v else 0.0
out = []
for k, (a, b) in win.items():
    out.append(f"loadgen_rate_{k}={ok[k] * 1000 / ((b - a) / 1e9):.0f}")
    out.append(f"request_p99_ms_{k}={p99(lat[k]):.2f}")
print(" ".join(out))
PY
)
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$result"; }
echo "kills_kernel=$(field kills_kernel) kills_reported=$(field kills_reported)" \
    "duplicates=$(field duplicates) missed=$(field missed) p50_ms=$(field p50_ms)" \
    "p99_ms=$(field p99_ms) max_ms=$(field max_ms) otlp_rate_baseline=$(field otlp_rate_baseline)" \
    "otlp_rate_storm=$(field otlp_rate_storm) slowdown_pct=$(field slowdown_pct)" \
    "kills_caused=$(field kills_caused) foreign=$(field foreign) foreign_outside=$(field foreign_outside)" \
    "storm_seconds=$(field storm_seconds)" \
    "built_p50_ms=$(field built_p50_ms) built_p99_ms=$(field built_p99_ms)" \
    "delivery_p50_ms=$(field delivery_p50_ms) delivery_p99_ms=$(field delivery_p99_ms)" \
    "backend_p50_ms=$(field backend_p50_ms) backend_p99_ms=$(field backend_p99_ms)" \
    "reached_p50_ms=$(field reached_p50_ms) reached_p99_ms=$(field reached_p99_ms)" \
    "backend_slow=$(field backend_slow) backend_slow_amid_kills_pct=$(field backend_slow_amid_kills_pct)" \
    "backend_fast_amid_kills_pct=$(field backend_fast_amid_kills_pct)" \
    "probe_p50_ms_baseline=$(field probe_p50_ms_baseline) probe_p99_ms_baseline=$(field probe_p99_ms_baseline)" \
    "probe_p50_ms_storm=$(field probe_p50_ms_storm) probe_p99_ms_storm=$(field probe_p99_ms_storm)" \
    "probe_p50_ms_after_kills=$(field probe_p50_ms_after_kills) probe_p99_ms_after_kills=$(field probe_p99_ms_after_kills)" \
    "probes_storm=$(field probes_storm) probes_after_kills=$(field probes_after_kills) probes_failed=$(field probes_failed)" \
    "agent_cpu_pct_baseline=$(field agent_cpu_pct_baseline) agent_cpu_pct_storm=$(field agent_cpu_pct_storm)" \
    "$requests"
