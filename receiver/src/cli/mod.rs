//! Subcommands of the `oomscope` binary that are not the agent itself.
