//! Subcommands of the `oomscope` binary besides running the agent:
//! `events` (follow the live OOM stream), `doctor` (what this host allows),
//! `components` (what this build has) and `analyze` (OOM kills in log text).

pub mod analyze;
pub mod components;
pub mod doctor;
pub mod events;
