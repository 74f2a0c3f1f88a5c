//! The kernel log library, `/dev/kmsg`: records, a reader, and the kernel's
//! OOM report assembled into one structured value. Used by the `kmsg` and
//! `oom` receivers (`crate::receivers::kmsg`, `crate::receivers::oom`).
//!
//! - [`kmsg_record`]: one `/dev/kmsg` record (`prio,seq,usec,flags;message` plus
//!   ` KEY=value` continuation lines), parsed without panicking on anything.
//! - [`reader`]: an async reader (non-blocking fd + tokio `AsyncFd`) that
//!   starts at the end, at the beginning, or after a saved sequence number,
//!   and reports overwritten records (EPIPE) as a gap.
//! - [`oom_report`]: groups "invoked oom-killer" ... "Killed process" into an
//!   [`oom_report::OomReport`], emitted as soon as the "Killed process" line
//!   arrives; every report format from 2.6.32 on.
//! - [`text`]: a log line's prefix (dmesg, syslog, journalctl, RFC 5424, ...)
//!   taken off; [`text_reports`]: reports assembled from any log text (files,
//!   `oomscope analyze`).
//! - [`report_record`]: a report as an OTLP LogRecord, the same from every
//!   source.

pub mod kmsg_record;
pub mod oom_report;
pub mod reader;
pub mod report_record;
pub mod text;
pub mod text_reports;

pub use kmsg_record::{KmsgRecord, RecordError};
pub use oom_report::{
    parse_constraint, parse_killed_process, parse_reaped, parse_selected, KilledProcess,
    OomConstraint, OomReport, OomReportAssembler, OomTask, Reaped, SelectedTask, Unfinished,
};
pub use reader::{KmsgEvent, KmsgReader, StartAt};
