//! The `journald` receiver: runtime and service OOM messages from the
//! systemd journal, read from the journal files through libsystemd
//! (sd-journal, loaded when the receiver starts: [`sd_journal`]).
//!
//! One blocking thread owns the journal (`sd_journal` is not thread-safe),
//! follows new entries (inotify through `sd_journal_wait`; `files` are
//! polled) across rotation and vacuuming, and hands records on in batches.
//! Per entry only `MESSAGE` is read and searched for the pattern library's
//! literals; the other fields are read for the few entries that become
//! records (or while a stack trace is being grouped, see [`group`]).
//!
//! Delivery is at-least-once across restarts: with `storage`, the cursor of
//! the last entry whose batch was acknowledged is stored (see
//! [`checkpoint`]), and a restart resumes after it; when that entry was
//! vacuumed meanwhile, a warning record tells what is known of the gap.
//!
//! Bad input: a journal file libsystemd cannot read is left out by it (and
//! reported here from its header, see [`files`]); a file truncated while
//! mapped would raise SIGBUS, which [`sigbus`] turns into zeros, after
//! which the journal is opened again; a message is cut at `max_log_size`.

pub mod checkpoint;
pub mod config;
pub mod files;
#[cfg(feature = "journald")]
pub mod group;
#[cfg(feature = "journald")]
pub mod journal;
pub mod metrics;
#[cfg(feature = "journald")]
mod reader;
#[cfg(feature = "journald")]
pub mod records;
#[cfg(feature = "journald")]
pub mod sd_journal;
pub mod sigbus;

pub use config::{JournaldReceiverConfig, KernelTransport, PriorityRange, StartAt};
#[cfg(feature = "journald")]
pub use reader::{start, JournaldReceiverFactory};

/// The instrumentation scope of the receiver's records and metrics.
pub const SCOPE_NAME: &str = "oomscope/journald";

/// Receivers that read the kernel's lines from /dev/kmsg.
const KERNEL_LOG_RECEIVERS: &[&str] = &["oom", "kmsg"];

/// Whether kernel-transport entries are passed over.
pub fn skips_kernel_entries(setting: KernelTransport, receiver_types: &[String]) -> bool {
    match setting {
        KernelTransport::Skip => true,
        KernelTransport::Read => false,
        KernelTransport::Auto => receiver_types
            .iter()
            .any(|t| KERNEL_LOG_RECEIVERS.contains(&t.as_str())),
    }
}

#[cfg(all(test, feature = "journald"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
