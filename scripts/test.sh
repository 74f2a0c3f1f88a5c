#!/usr/bin/env bash
# Quickstart 2 (and CI): install what is missing (test peers included), build,
# run every test (ignored ones too; the eBPF tests need root and skip with a
# message otherwise), print the result lines. Exits non-zero if any test fails.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

start=$SECONDS
scripts/setup.sh --with-peers
echo "[test] setup took $((SECONDS - start))s" >&2

start=$SECONDS
cargo build --workspace --exclude receiver-ebpf --all-targets
echo "[test] build took $((SECONDS - start))s" >&2

log=$(mktemp "${TMPDIR:-/tmp}/oomscope-test.XXXXXX")
trap 'rm -f "$log"' EXIT
status=0
# The eBPF crate only builds for the bpf target (through receiver/build.rs).
cargo test --workspace --exclude receiver-ebpf --no-fail-fast "$@" -- --include-ignored 2>&1 \
    | tee "$log" || status=$?

echo
echo "==================== test results ===================="
grep -E '^\s*(Running|Doc-tests) |^test result:|^SKIPPED|FAILED|^error' "$log" || true
if [ "$status" -eq 0 ]; then
    echo "ALL TESTS PASSED"
else
    echo "TESTS FAILED (cargo test exit status $status)"
fi
# One closing line with the totals over every test binary, so that the last
# line is not a doc-test run of a crate that has no doc tests.
passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^passed;?$/) s += $(i - 1) } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^failed;?$/) s += $(i - 1) } END { print s + 0 }' "$log")
skipped=$(grep -c '^SKIPPED' "$log" || true)
echo "total: $passed passed, $failed failed, $skipped skipped"
exit "$status"
