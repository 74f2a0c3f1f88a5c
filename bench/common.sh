# Sourced by the benchmark scripts that run peers: the peers' venv and rotel,
# a work directory, processes killed on exit, free ports and waiting for them.
# KEEP=1 keeps the work directory (for a look at the peers' logs).

PY="${OOMSCOPE_TOOLS_DIR:-$HOME/.cache/oomscope}/venv/bin/python"
ROTEL="$("$PY" -c 'import rotel, os; print(os.path.dirname(rotel.__file__))')/rotel-agent"
WORK=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir: $WORK" >&2
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        "$PY" -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    return 1
}
CLK_TCK=$(getconf CLK_TCK)
# CPU time of a process so far, in clock ticks (utime + stime, all threads).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The sum of a Prometheus counter's series: metrics port, metric name.
counter() {
    { curl -s "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } |
        awk -v name="$2" 'index($0, name) == 1 { s += $NF } END { printf "%d", s }'
}
