#!/usr/bin/env bash
# Footprint: oomscope's shipped default pipeline (no --config) against rotel
# idle (its OTLP gRPC and HTTP receivers on loopback, blackhole exporter), in
# the same run, started together and measured over the same window.
#
# Phases, for both processes at once:
# 1. start-up: both start; the peak is VmHWM once both are up;
# 2. idle: after SETTLE seconds (the default pipeline's memory receiver has
#    scraped by then), WINDOW seconds of nothing: CPU over the window (utime +
#    stime from /proc/PID/stat) and RSS at its end (with anonymous and file
#    parts from /proc/PID/status);
# 3. burst (BURST records, 0 to skip): the OTLP load generator sends BURST log
#    records to each (gRPC, 8 streams) and the RSS is read again RETURN
#    seconds after: memory the burst took and gave back.
# Needs root for the default pipeline's oom receiver (eBPF); the ports of the
# default pipeline (4317, 4318, 8888, 13133) must be free.
# Output: one line per process and one line of ratios (oomscope / rotel).
set -euo pipefail

SETTLE=${SETTLE:-30}
WINDOW=${WINDOW:-120}
BURST=${BURST:-200000}
RETURN=${RETURN:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/env.sh
scripts/setup.sh --with-peers >&2
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p oomscope --bin oomscope --example otlp_loadgen
. bench/common.sh
OOMSCOPE="$ROOT/target/release/oomscope"
LOADGEN="$ROOT/target/release/examples/otlp_loadgen"

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

for port in 4317 4318 8888 13133; do
    if "$PY" -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
        echo "port $port is in use: the default pipeline needs it" >&2
        exit 1
    fi
done

# oomscope: the default pipeline exactly as shipped, its state and output
# files in the work directory.
mkdir -p "$WORK/data"
OOMSCOPE_DATA_DIR="$WORK/data" "$OOMSCOPE" >"$WORK/oomscope.log" 2>&1 &
OOM_PID=$!; PIDS+=($OOM_PID)
R_GRPC=$(free_port); R_HTTP=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$R_GRPC" --otlp-http-endpoint "127.0.0.1:$R_HTTP" \
    --exporter blackhole >"$WORK/rotel.log" 2>&1 &
ROTEL_PID=$!; PIDS+=($ROTEL_PID)
wait_port 13133 # health_check: every pipeline has started
wait_port 4317
wait_port "$R_GRPC"
sleep "$SETTLE"

report() { # name pid ticks_before ticks_after
    local cpu pct
    cpu=$(awk -v a="$4" -v b="$3" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (a - b) / t }')
    pct=$(awk -v c="$cpu" -v w="$WINDOW" 'BEGIN { printf "%.3f", 100 * c / w }')
    echo "$1: startup_peak_mib=$(mib "$(status_kib "$2" VmHWM)") idle_rss_mib=$(mib "$(status_kib "$2" VmRSS)") anon_mib=$(mib "$(status_kib "$2" RssAnon)") file_mib=$(mib "$(status_kib "$2" RssFile)") idle_cpu_seconds=$cpu idle_cpu_pct_of_core=$pct threads=$(status_kib "$2" Threads)"
}
o0=$(ticks "$OOM_PID"); r0=$(ticks "$ROTEL_PID")
sleep "$WINDOW"
o1=$(ticks "$OOM_PID"); r1=$(ticks "$ROTEL_PID")
ours=$(report oomscope "$OOM_PID" "$o0" "$o1")
theirs=$(report rotel "$ROTEL_PID" "$r0" "$r1")
echo "$ours"
echo "$theirs"
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

if [ "$BURST" -gt 0 ]; then
    for target in "oomscope $OOM_PID 4317" "rotel $ROTEL_PID $R_GRPC"; do
        set -- $target
        "$LOADGEN" --endpoint "http://127.0.0.1:$3" --records "$BURST" >/dev/null
        peak=$(status_kib "$2" VmHWM)
        sleep "$RETURN"
        echo "$1: burst_records=$BURST peak_mib=$(mib "$peak") rss_${RETURN}s_after_mib=$(mib "$(status_kib "$2" VmRSS)")"
    done
fi

awk -v a="$(field "$ours" idle_rss_mib)" -v b="$(field "$theirs" idle_rss_mib)" \
    -v c="$(field "$ours" startup_peak_mib)" -v d="$(field "$theirs" startup_peak_mib)" \
    'BEGIN { printf "idle_rss_ratio=%.2f startup_peak_ratio=%.2f\n", a / b, c / d }'
