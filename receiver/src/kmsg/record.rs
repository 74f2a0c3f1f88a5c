//! placeholder: one /dev/kmsg record.

/// One `/dev/kmsg` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsgRecord {
    /// Syslog level, 0 (emerg) ..= 7 (debug).
    pub level: u8,
    /// Syslog facility (0 = kernel).
    pub facility: u8,
    /// The kernel's 64-bit sequence number.
    pub seq: u64,
    /// CLOCK_MONOTONIC of the record, in microseconds.
    pub monotonic_us: u64,
    /// `c` (continuation of a previous record's line) or `-`; kept as given.
    pub continuation: bool,
    /// The message (escapes like `\x0a` decoded, invalid UTF-8 replaced).
    pub message: String,
    /// ` KEY=value` dictionary lines (SUBSYSTEM=, DEVICE=).
    pub dict: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed /dev/kmsg record: {0}")]
pub struct RecordError(pub String);

impl KmsgRecord {
    /// Parses one record as read from `/dev/kmsg` (one `read(2)`).
    pub fn parse(_bytes: &[u8]) -> Result<KmsgRecord, RecordError> {
        Err(RecordError("placeholder".into()))
    }
}
