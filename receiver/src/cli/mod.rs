//! Subcommands of the `oomscope` binary besides running the agent:
//! `events` (follow the live OOM stream) and `doctor` (what this host allows).

pub mod doctor;
pub mod events;
