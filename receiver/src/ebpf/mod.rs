//! Kernel side of the `oom` receiver: loads oomscope's eBPF programs and
//! streams their events.
//!
//! - [`format`]: parses a tracepoint's `format` file into the record layout the
//!   program reads (offsets differ between kernels).
//! - [`loader`]: mounts tracefs when needed, loads and attaches the
//!   `oom/mark_victim` program, and yields [`OomVictimEvent`]s asynchronously.
//! - [`exec_args`]: the exec hook's layouts and the victim's argv from its
//!   recorded entry (the command line when /proc no longer has it).
//! - [`access`]: says whether missing capabilities or a seccomp filter keep
//!   eBPF from this process.
//! - [`tracefs`]: mounting tracefs, why a mount fails and the fix.

pub mod access;
pub mod exec_args;
pub mod format;
pub mod loader;
pub mod tracefs;

pub use format::{parse_mark_victim_format, FormatError};
pub use loader::{
    exec_layout, load_mark_victim, load_mark_victim_with_layout, tracepoint_format_path,
    ExecHookStatus, LoadError, MarkVictimProbe,
};
pub use receiver_common::oom::{flags, MarkVictimLayout, OomVictimEvent, FIELD_ABSENT};
