//! Subcommands of the `oomscope` binary besides running the agent:
//! `events` (follow the live OOM stream), `top` (a terminal view of the
//! host's memory and incidents), `doctor` (what this host allows),
//! `components` (what this build has) and `analyze` (OOM kills in log text).

pub mod analyze;
pub mod components;
pub mod doctor;
pub mod events;
pub mod top;
