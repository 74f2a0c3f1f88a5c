//! placeholder: async /dev/kmsg reader.

use std::path::Path;

use super::record::KmsgRecord;

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only records written after opening (SEEK_END).
    End,
    /// Everything still in the ring buffer (SEEK_SET).
    Beginning,
    /// The first record after this sequence number still in the buffer
    /// (from a checkpoint); a gap is reported if it was overwritten.
    After(u64),
}

/// What the reader yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsgEvent {
    Record(KmsgRecord),
    /// Records were overwritten in the ring buffer before they were read
    /// (EPIPE, or a jump in sequence numbers); `missed` of them, when known.
    Gap {
        missed: Option<u64>,
    },
}

pub struct KmsgReader {
    _private: (),
}

impl KmsgReader {
    /// Opens `path` (normally `/dev/kmsg`) non-blocking; needs a tokio runtime.
    pub fn open(_path: &Path, _start: StartAt) -> std::io::Result<KmsgReader> {
        Err(std::io::Error::other("placeholder"))
    }

    /// The next record or gap; waits (without polling) until there is one.
    pub async fn next(&mut self) -> std::io::Result<KmsgEvent> {
        Err(std::io::Error::other("placeholder"))
    }
}
