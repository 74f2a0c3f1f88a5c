//! Kernel side of the `oom` receiver: loads oomscope's eBPF programs and
//! streams their events.
//!
//! - [`format`]: parses a tracepoint's `format` file into the record layout the
//!   program reads (offsets differ between kernels).
//! - [`loader`]: mounts tracefs when needed, loads and attaches the
//!   `oom/mark_victim` program, and yields [`OomVictimEvent`]s asynchronously.
//! - [`exec_args`]: the exec hook's layouts and the victim's argv, exec'd
//!   path, parent and start from its recorded entry (for when /proc no
//!   longer has the victim).
//! - [`btf`]: `task_struct` member offsets from the kernel's BTF, for the
//!   exec hook's reads of the parent and the start time.
//! - [`scope_hook`]: the `oom_kill_process` hook (fentry or kprobe): its
//!   offsets from BTF and the memcg's path from its kernfs id.
//! - [`access`]: says whether missing capabilities or a seccomp filter keep
//!   eBPF from this process.
//! - [`tracefs`]: mounting tracefs, why a mount fails and the fix.

pub mod access;
pub mod btf;
pub mod exec_args;
pub mod format;
pub mod loader;
pub mod scope_hook;
pub mod tracefs;

pub use format::{parse_mark_victim_format, FormatError};
pub use loader::{
    exec_layout, load_mark_victim, load_mark_victim_with, load_mark_victim_with_layout,
    tracepoint_format_path, ExecFacts, ExecHookStatus, LoadError, LoadOptions, MarkVictimProbe,
};
pub use receiver_common::oom::{flags, MarkVictimLayout, OomVictimEvent, FIELD_ABSENT};
