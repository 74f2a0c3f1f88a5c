//! Subcommands of the `oomscope` binary besides running the agent:
//! `events` (follow the live OOM stream), `doctor` (what this host allows)
//! and `components` (what this build has).

pub mod components;
pub mod doctor;
pub mod events;
