# Sourced by the other scripts: where the tools live and the PATH to use.
# bpf-linker (installed by setup.sh) must be on PATH for the eBPF build.
OOMSCOPE_TOOLS_DIR="${OOMSCOPE_TOOLS_DIR:-$HOME/.cache/oomscope}"
export OOMSCOPE_TOOLS_DIR
export PATH="$OOMSCOPE_TOOLS_DIR/bin:$PATH"
