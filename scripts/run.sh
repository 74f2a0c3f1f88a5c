#!/usr/bin/env bash
# Quickstart 1: install what is missing (no test peers), build and run
# oomscope with the default configuration (needs root for the eBPF probes).
# Extra arguments go to oomscope.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh
scripts/setup.sh
exec cargo run --release -p oomscope -- --config config/default.yaml "$@"
