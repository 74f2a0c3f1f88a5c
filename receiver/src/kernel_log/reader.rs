//! An async `/dev/kmsg` reader.
//!
//! `/dev/kmsg` hands out exactly one record per `read(2)` and never splits a
//! record across reads; the file position is a record sequence number kept
//! per open file. The fd is opened non-blocking and waited on with tokio's
//! [`AsyncFd`] (epoll), so an idle reader costs nothing.
//!
//! The kernel's errors on read (see `devkmsg_read` in kernel/printk/printk.c):
//! - `EAGAIN`: no new record; wait until readable.
//! - `EPIPE`: the record at our position was overwritten in the ring buffer;
//!   the kernel has already moved us to the oldest record still there, so
//!   this is reported as a [`KmsgEvent::Gap`] and reading goes on.
//! - `EINVAL`: the record does not fit the buffer. The kernel does not move
//!   the position past it, so the buffer is grown (bounded) and the read
//!   retried; 8 KiB holds any record the kernel formats (its own limit is
//!   `CONSOLE_EXT_LOG_MAX` = 8 KiB), so this is a safety net.
//!
//! Regular files (saved dumps, tests) go through the same record parsing and
//! gap logic: one line plus its ` KEY=value` continuation lines is one record,
//! and end of file is `Err(UnexpectedEof)`.

use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader, Interest};

use super::kmsg_record::{KmsgRecord, RecordError};

/// The read buffer for one record.
pub const RECORD_BUFFER_BYTES: usize = 8 * 1024;

/// The largest buffer tried after `EINVAL` before giving up.
const MAX_RECORD_BUFFER_BYTES: usize = 64 * 1024;

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only records written after opening (SEEK_END).
    End,
    /// Everything still in the ring buffer (SEEK_SET).
    Beginning,
    /// The first record after this sequence number still in the buffer
    /// (from a checkpoint); a gap is reported if it was overwritten.
    ///
    /// Sequence numbers restart at boot: if every record in the buffer is
    /// older than the checkpoint, the checkpoint is taken to be from an
    /// earlier boot and reading restarts from the beginning of the buffer.
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

enum Source {
    /// `/dev/kmsg` (or another character device with its semantics).
    Device {
        fd: AsyncFd<std::fs::File>,
        buffer: Vec<u8>,
    },
    /// A saved dump: one record per line, dictionary lines start with a space.
    File {
        reader: BufReader<tokio::fs::File>,
        record: Vec<u8>,
    },
}

/// The sequence number of the newest record the kernel log device holds now
/// (`None` when it holds none, or `path` is not a character device: a file
/// or a pipe is not scanned, since reading a pipe would consume it). Reads
/// the ring buffer once from its start through a separate descriptor;
/// blocking, but bounded by the kernel's buffer size.
///
/// A receiver that starts at the end stores this as its first checkpoint,
/// so that a restart before any new record resumes from here instead of
/// from the end again, which would skip what was logged in between.
pub fn newest_seq(path: &Path) -> io::Result<Option<u64>> {
    use std::io::Read as _;
    use std::os::unix::fs::FileTypeExt as _;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.file_type().is_char_device() {
        return Ok(None);
    }
    let mut buffer = vec![0u8; MAX_RECORD_BUFFER_BYTES];
    let mut newest = None;
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(newest),
            Ok(n) => {
                if let Ok(record) = KmsgRecord::parse(&buffer[..n]) {
                    newest = Some(record.seq);
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(newest),
            // Overwritten while we read: the next read goes on from the oldest.
            Err(err) if err.raw_os_error() == Some(libc::EPIPE) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

pub struct KmsgReader {
    path: PathBuf,
    source: Source,
    /// `StartAt::After`: records up to and including this seq are skipped.
    skip_through: Option<u64>,
    /// Highest seq seen while skipping (to recognise a checkpoint from an
    /// earlier boot).
    highest_skipped: Option<u64>,
    /// Seq of the last record returned, to detect jumps.
    last_seq: Option<u64>,
    /// A record held back while the gap before it is reported.
    pending: Option<KmsgRecord>,
}

impl std::fmt::Debug for KmsgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsgReader")
            .field("path", &self.path)
            .field("last_seq", &self.last_seq)
            .field("skip_through", &self.skip_through)
            .finish_non_exhaustive()
    }
}

impl KmsgReader {
    /// Opens `path` (normally `/dev/kmsg`) non-blocking; needs a tokio runtime.
    pub fn open(path: &Path, start: StartAt) -> io::Result<KmsgReader> {
        let with_path = |err: io::Error, what: &str| {
            io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
        };
        // std adds O_CLOEXEC itself.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|err| with_path(err, "cannot open"))?;
        let is_regular_file = file
            .metadata()
            .map_err(|err| with_path(err, "cannot stat"))?
            .is_file();
        let whence = match start {
            StartAt::End => libc::SEEK_END,
            StartAt::Beginning | StartAt::After(_) => libc::SEEK_SET,
        };
        match seek(&file, whence) {
            // A pipe has no position: it gives what is written from now on.
            Err(err) if err.raw_os_error() == Some(libc::ESPIPE) => {}
            result => result.map_err(|err| with_path(err, "cannot seek"))?,
        }

        let source = if is_regular_file {
            Source::File {
                reader: BufReader::new(tokio::fs::File::from_std(file)),
                record: Vec::with_capacity(RECORD_BUFFER_BYTES),
            }
        } else {
            Source::Device {
                // SAFETY: the `File` owns its fd, which stays open and the
                // same for as long as the `AsyncFd` holds the `File`.
                fd: unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }
                    .map_err(|err| with_path(io::Error::from(err), "cannot poll"))?,
                buffer: vec![0; RECORD_BUFFER_BYTES],
            }
        };
        Ok(KmsgReader {
            path: path.to_owned(),
            source,
            skip_through: match start {
                StartAt::After(seq) => Some(seq),
                _ => None,
            },
            highest_skipped: None,
            last_seq: None,
            pending: None,
        })
    }

    /// The next record or gap; waits (without polling) until there is one.
    ///
    /// Malformed records are skipped with a warning. On a regular file, the
    /// end of the file is `Err(ErrorKind::UnexpectedEof)`.
    pub async fn next(&mut self) -> io::Result<KmsgEvent> {
        if let Some(event) = self.take_pending() {
            return Ok(event);
        }
        loop {
            let read = self.read_raw().await.map(KmsgRecord::parse);
            if let Some(event) = self.accept(read)? {
                return Ok(event);
            }
        }
    }

    /// The next record or gap the kernel holds now, without waiting for
    /// `/dev/kmsg` to signal it: `None` when there is none yet, and always
    /// for a regular file.
    ///
    /// The kernel wakes `/dev/kmsg` readers only after it has printed a
    /// record on its consoles (a serial console takes milliseconds a line),
    /// but the record is readable as soon as it is stored. A caller that
    /// knows a record is due (the OOM killer's eBPF event came) reads it
    /// here without that wait. The wake-up still comes; [`Self::next`]
    /// then finds the records already read gone and waits again.
    pub fn try_next(&mut self) -> io::Result<Option<KmsgEvent>> {
        if let Some(event) = self.take_pending() {
            return Ok(Some(event));
        }
        loop {
            let read = match &mut self.source {
                Source::Device { fd, buffer } => {
                    match read_record(fd.get_ref(), buffer, &self.path) {
                        Ok(Some(n)) => Ok(KmsgRecord::parse(&buffer[..n])),
                        Ok(None) => {
                            drained(
                                &self.path,
                                fd.get_ref(),
                                &mut self.skip_through,
                                &mut self.highest_skipped,
                            )
                            .map_err(ReadError::into_io)?;
                            return Ok(None);
                        }
                        Err(e) => Err(e),
                    }
                }
                Source::File { .. } => return Ok(None),
            };
            if let Some(event) = self.accept(read)? {
                return Ok(Some(event));
            }
        }
    }

    fn take_pending(&mut self) -> Option<KmsgEvent> {
        let record = self.pending.take()?;
        self.last_seq = Some(record.seq);
        Some(KmsgEvent::Record(record))
    }

    /// What a read gives: a record or gap to hand out, or `None` to read on
    /// (a record skipped, malformed or before the checkpoint).
    fn accept(
        &mut self,
        read: Result<Result<KmsgRecord, RecordError>, ReadError>,
    ) -> io::Result<Option<KmsgEvent>> {
        let parsed = match read {
            Ok(parsed) => parsed,
            Err(ReadError::Overwritten) => {
                // The kernel moved us to the oldest record it still has;
                // how far that is, it does not say.
                self.last_seq = None;
                if self.skip_through.is_some() {
                    // We were still skipping: the records we skip to
                    // were overwritten, which the seq check reports.
                    return Ok(None);
                }
                return Ok(Some(KmsgEvent::Gap { missed: None }));
            }
            Err(ReadError::Io(err)) => return Err(err),
        };
        let record = match parsed {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "skipping a kernel log record");
                return Ok(None);
            }
        };

        if let Some(saved) = self.skip_through {
            if record.seq <= saved {
                self.highest_skipped = Some(record.seq);
                return Ok(None);
            }
            self.skip_through = None;
            self.highest_skipped = None;
            if record.seq > saved + 1 {
                let missed = record.seq - saved - 1;
                self.pending = Some(record);
                return Ok(Some(KmsgEvent::Gap {
                    missed: Some(missed),
                }));
            }
        } else if let Some(last) = self.last_seq {
            if record.seq > last.saturating_add(1) {
                let missed = record.seq - last - 1;
                self.pending = Some(record);
                return Ok(Some(KmsgEvent::Gap {
                    missed: Some(missed),
                }));
            }
        }
        self.last_seq = Some(record.seq);
        Ok(Some(KmsgEvent::Record(record)))
    }

    /// The raw bytes of the next record.
    async fn read_raw(&mut self) -> Result<&[u8], ReadError> {
        match &mut self.source {
            Source::Device { fd, buffer } => loop {
                let mut guard = fd.readable().await.map_err(ReadError::Io)?;
                if let Some(n) = read_record(fd.get_ref(), buffer, &self.path)? {
                    return Ok(&buffer[..n]);
                }
                // Not ready after all (EAGAIN): the readiness was stale.
                guard.clear_ready();
                drained(
                    &self.path,
                    fd.get_ref(),
                    &mut self.skip_through,
                    &mut self.highest_skipped,
                )?;
            },
            Source::File { reader, record } => {
                record.clear();
                loop {
                    let line_start = record.len();
                    let read = read_line_bounded(reader, record, RECORD_BUFFER_BYTES)
                        .await
                        .map_err(|err| {
                            ReadError::Io(io::Error::new(
                                err.kind(),
                                format!("cannot read {}: {err}", self.path.display()),
                            ))
                        })?;
                    if read == 0 {
                        if record.is_empty() {
                            return Err(ReadError::Io(io::Error::new(
                                ErrorKind::UnexpectedEof,
                                format!("end of {}", self.path.display()),
                            )));
                        }
                        return Ok(record);
                    }
                    if line_start == 0 && record.iter().all(|b| b.is_ascii_whitespace()) {
                        // Blank line between records.
                        record.clear();
                        continue;
                    }
                    // Dictionary lines belong to the record above them.
                    let next = reader.fill_buf().await.map_err(ReadError::Io)?;
                    if next.first() != Some(&b' ') {
                        return Ok(record);
                    }
                }
            }
        }
    }
}

enum ReadError {
    /// EPIPE: records were overwritten before we read them.
    Overwritten,
    Io(io::Error),
}

impl ReadError {
    fn into_io(self) -> io::Error {
        match self {
            ReadError::Io(err) => err,
            ReadError::Overwritten => io::Error::from_raw_os_error(libc::EPIPE),
        }
    }
}

/// The device has no record left to read now. If every record was older
/// than the checkpoint, the checkpoint is from another boot: reading starts
/// over from the oldest record.
fn drained(
    path: &Path,
    file: &std::fs::File,
    skip_through: &mut Option<u64>,
    highest_skipped: &mut Option<u64>,
) -> Result<(), ReadError> {
    let (Some(saved), Some(highest)) = (*skip_through, *highest_skipped) else {
        return Ok(());
    };
    if highest >= saved {
        return Ok(());
    }
    tracing::warn!(
        path = %path.display(),
        checkpoint_seq = saved,
        newest_seq = highest,
        "kernel log sequence numbers are behind the checkpoint (reboot?); reading from the beginning"
    );
    seek(file, libc::SEEK_SET).map_err(ReadError::Io)?;
    *skip_through = None;
    *highest_skipped = None;
    Ok(())
}

/// One `read(2)` of one record: its length, `None` when there is none now
/// (`EAGAIN`). Retries `EINTR`, and grows `buffer` (bounded) after `EINVAL`,
/// which the kernel returns for a record larger than the buffer without
/// moving past it.
fn read_record(
    file: &std::fs::File,
    buffer: &mut Vec<u8>,
    path: &Path,
) -> Result<Option<usize>, ReadError> {
    loop {
        // SAFETY: `buffer` is valid for writes of its length.
        let n = unsafe { libc::read(file.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        if n == 0 {
            return Err(ReadError::Io(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("end of {}", path.display()),
            )));
        }
        if n > 0 {
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EPIPE) => return Err(ReadError::Overwritten),
            Some(libc::EINTR) => {}
            Some(libc::EINVAL) if buffer.len() < MAX_RECORD_BUFFER_BYTES => {
                let grown = (buffer.len() * 2).min(MAX_RECORD_BUFFER_BYTES);
                tracing::warn!(
                    path = %path.display(),
                    buffer_bytes = grown,
                    "a kernel log record did not fit the read buffer; retrying with a larger one"
                );
                buffer.resize(grown, 0);
            }
            _ => {
                return Err(ReadError::Io(io::Error::new(
                    err.kind(),
                    format!("cannot read {}: {err}", path.display()),
                )));
            }
        }
    }
}

fn seek(file: &std::fs::File, whence: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::lseek(file.as_raw_fd(), 0, whence) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Appends one line (with its `\n`) to `out`, keeping at most `limit` bytes of
/// `out` and discarding the rest of an over-long line. Returns the number of
/// bytes consumed from `reader` (0 at end of file).
async fn read_line_bounded(
    reader: &mut BufReader<tokio::fs::File>,
    out: &mut Vec<u8>,
    limit: usize,
) -> io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (&available[..=newline], true),
            None => (available, false),
        };
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        consumed += used;
        if done {
            return Ok(consumed);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;

    use crate::test_support::WAIT;

    const SAMPLE: &str = include_str!("../../../tests/data/kmsg-memcg-oom.txt");

    fn write_temp(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents).unwrap();
        file.flush().unwrap();
        file
    }

    async fn read_all(reader: &mut KmsgReader) -> Vec<KmsgEvent> {
        let mut events = Vec::new();
        loop {
            match reader.next().await {
                Ok(event) => events.push(event),
                Err(err) => {
                    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
                    return events;
                }
            }
        }
    }

    fn seqs(events: &[KmsgEvent]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|event| match event {
                KmsgEvent::Record(record) => Some(record.seq),
                KmsgEvent::Gap { .. } => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn reads_the_sample_file_record_by_record() {
        let file = write_temp(SAMPLE.as_bytes());
        let mut reader = KmsgReader::open(file.path(), StartAt::Beginning).unwrap();
        let events = read_all(&mut reader).await;
        assert_eq!(events.len(), SAMPLE.lines().count());
        assert_eq!(seqs(&events), (341..=420).collect::<Vec<_>>());
        let KmsgEvent::Record(last) = &events[events.len() - 1] else {
            panic!("a gap in the sample");
        };
        assert_eq!(last.monotonic_us, 465071822);
        assert!(last
            .message
            .starts_with("CPU: 0 UID: 0 PID: 12574 Comm: python3"));
        // EOF stays EOF.
        let err = reader.next().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn file_records_keep_dictionary_lines_and_skip_garbage() {
        let file = write_temp(
            b"6,1,10,-;first\n SUBSYSTEM=net\n DEVICE=n2\n\ngarbage line\n6,2,20,-;second\n6,3,30,-;third without newline",
        );
        let mut reader = KmsgReader::open(file.path(), StartAt::Beginning).unwrap();
        let events = read_all(&mut reader).await;
        assert_eq!(seqs(&events), vec![1, 2, 3]);
        let KmsgEvent::Record(first) = &events[0] else {
            panic!()
        };
        assert_eq!(first.message, "first");
        assert_eq!(first.dict_value("DEVICE"), Some("n2"));
    }

    #[tokio::test]
    async fn reports_sequence_jumps_as_gaps() {
        let file = write_temp(b"6,10,1,-;a\n6,11,2,-;b\n6,15,3,-;c\n6,16,4,-;d\n");
        let mut reader = KmsgReader::open(file.path(), StartAt::Beginning).unwrap();
        let events = read_all(&mut reader).await;
        let kinds: Vec<String> = events
            .iter()
            .map(|event| match event {
                KmsgEvent::Record(record) => record.seq.to_string(),
                KmsgEvent::Gap { missed } => format!("gap {missed:?}"),
            })
            .collect();
        assert_eq!(kinds, ["10", "11", "gap Some(3)", "15", "16"]);
    }

    #[tokio::test]
    async fn resumes_after_a_saved_sequence_number() {
        let file = write_temp(SAMPLE.as_bytes());
        let mut reader = KmsgReader::open(file.path(), StartAt::After(400)).unwrap();
        let events = read_all(&mut reader).await;
        assert!(matches!(events[0], KmsgEvent::Record(_)), "{:?}", events[0]);
        assert_eq!(seqs(&events), (401..=420).collect::<Vec<_>>());

        // The saved record was overwritten: the first record read reports
        // how many were lost.
        let mut reader = KmsgReader::open(file.path(), StartAt::After(300)).unwrap();
        let events = read_all(&mut reader).await;
        assert_eq!(events[0], KmsgEvent::Gap { missed: Some(40) });
        assert_eq!(seqs(&events), (341..=420).collect::<Vec<_>>());
    }

    #[test]
    fn open_reports_the_path_on_failure() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let err = KmsgReader::open(Path::new("/nonexistent/kmsg"), StartAt::End).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("/nonexistent/kmsg"), "{err}");
    }

    /// Whether this test can use the real /dev/kmsg (root, readable).
    fn dev_kmsg_usable(test: &str) -> bool {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED {test}: not root (writing /dev/kmsg needs root)");
            return false;
        }
        if let Err(err) = std::fs::File::open("/dev/kmsg") {
            eprintln!("SKIPPED {test}: /dev/kmsg is not readable: {err}");
            return false;
        }
        true
    }

    fn inject(message: &str) {
        let mut kmsg = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .unwrap();
        kmsg.write_all(message.as_bytes()).unwrap();
    }

    fn unique_token(label: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{label}-{}-{nanos}", std::process::id())
    }

    /// Reads until a record containing `token`; every event read goes to
    /// `seen`. `None` when a gap came first: see [`DISTURBED`].
    async fn read_until(
        reader: &mut KmsgReader,
        token: &str,
        seen: &mut Vec<KmsgEvent>,
    ) -> Option<KmsgRecord> {
        tokio::time::timeout(WAIT, async {
            loop {
                let event = reader.next().await.unwrap();
                seen.push(event.clone());
                match event {
                    KmsgEvent::Record(record) if record.message.contains(token) => {
                        return Some(record);
                    }
                    KmsgEvent::Record(_) => {}
                    KmsgEvent::Gap { .. } => return None,
                }
            }
        })
        .await
        .expect("the injected record never arrived")
    }

    /// The kernel log is shared with everything else on the machine. Once
    /// its buffer is full (it soon is), every record written anywhere
    /// overwrites the oldest one, and a burst from another writer can
    /// overwrite records before a reader gets to them (maybe the token
    /// this test wrote). Such an attempt shows a gap; it is made again
    /// with fresh records until one is undisturbed, within a generous
    /// bound. What the tests assert holds for an undisturbed attempt.
    const DISTURBED: &str = "every attempt saw a gap: other writers of the kernel log overwrote records before they were read, or the reader reports gaps that are not there";

    /// Bound on the attempts of one test (see [`DISTURBED`]).
    fn attempts_until() -> std::time::Instant {
        std::time::Instant::now() + WAIT
    }

    #[tokio::test]
    async fn dev_kmsg_from_the_end_sees_an_injected_record() {
        if !dev_kmsg_usable("dev_kmsg_from_the_end_sees_an_injected_record") {
            return;
        }
        let deadline = attempts_until();
        let (before, token, record, seen) = loop {
            assert!(std::time::Instant::now() < deadline, "{DISTURBED}");
            let before = unique_token("before");
            inject(&format!("<6>oomscope-kmsg-test {before}\n"));
            let mut reader = KmsgReader::open(Path::new("/dev/kmsg"), StartAt::End).unwrap();
            let token = unique_token("end");
            // On this single-threaded runtime the writer task runs only
            // once the reader waits for the device to become readable, so
            // the wait-for-readable path is exercised without guessing how
            // long the reader takes to get there.
            let writer = {
                let token = token.clone();
                tokio::spawn(async move {
                    inject(&format!("<6>oomscope-kmsg-test {token}\n"));
                })
            };
            let mut seen = Vec::new();
            let record = read_until(&mut reader, &token, &mut seen).await;
            writer.await.unwrap();
            if let Some(record) = record {
                break (before, token, record, seen);
            }
        };
        assert_eq!(record.message, format!("oomscope-kmsg-test {token}"));
        assert_eq!(record.level, 6);
        // Written from user space: facility LOG_USER unless the prefix sets one.
        assert_eq!(record.facility, 1);
        for event in &seen {
            if let KmsgEvent::Record(record) = event {
                assert!(
                    !record.message.contains(&before),
                    "read a record from before opening"
                );
            }
        }
    }

    /// A record written is read at once by `try_next`, without waiting for
    /// the device's wake-up; after `None` (nothing more now), `next` goes on
    /// with what comes later, nothing read twice or skipped.
    #[tokio::test]
    async fn dev_kmsg_try_next_reads_a_stored_record_without_waiting() {
        if !dev_kmsg_usable("dev_kmsg_try_next_reads_a_stored_record_without_waiting") {
            return;
        }
        let deadline = attempts_until();
        let (first, second, seen, eager) = loop {
            assert!(std::time::Instant::now() < deadline, "{DISTURBED}");
            let mut reader = KmsgReader::open(Path::new("/dev/kmsg"), StartAt::End).unwrap();
            let first = unique_token("eager");
            // write(2) on /dev/kmsg returns once the record is stored.
            inject(&format!("<6>oomscope-kmsg-test {first}\n"));
            let mut seen = Vec::new();
            let mut disturbed = false;
            // Other writers may add records meanwhile: read until none is left.
            while let Some(event) = reader.try_next().unwrap() {
                disturbed |= matches!(event, KmsgEvent::Gap { .. });
                seen.push(event);
            }
            let eager = seen.len();
            let second = unique_token("later");
            inject(&format!("<6>oomscope-kmsg-test {second}\n"));
            let later = read_until(&mut reader, &second, &mut seen).await;
            if !disturbed && later.is_some() {
                break (first, second, seen, eager);
            }
        };
        let read_at_once = seen[..eager].iter().any(|event| {
            matches!(event, KmsgEvent::Record(r) if r.message == format!("oomscope-kmsg-test {first}"))
        });
        assert!(read_at_once, "try_next did not read the stored record");
        let messages: Vec<&str> = seen
            .iter()
            .filter_map(|event| match event {
                KmsgEvent::Record(record) => Some(record.message.as_str()),
                KmsgEvent::Gap { .. } => None,
            })
            .filter(|message| message.starts_with("oomscope-kmsg-test "))
            .collect();
        let count = |token: &str| messages.iter().filter(|m| m.ends_with(token)).count();
        assert_eq!((count(&first), count(&second)), (1, 1), "{messages:?}");
        let seqs: Vec<u64> = seqs(&seen);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "records skipped or read twice: {seqs:?}"
        );
    }

    /// A regular file has no records "now": `try_next` leaves it to `next`.
    #[tokio::test]
    async fn try_next_on_a_file_reads_nothing() {
        let file = write_temp(SAMPLE.as_bytes());
        let mut reader = KmsgReader::open(file.path(), StartAt::Beginning).unwrap();
        assert_eq!(reader.try_next().unwrap(), None);
        assert!(matches!(reader.next().await.unwrap(), KmsgEvent::Record(_)));
    }

    #[tokio::test]
    async fn dev_kmsg_checkpoint_from_another_boot_reads_from_the_beginning() {
        if !dev_kmsg_usable("dev_kmsg_checkpoint_from_another_boot_reads_from_the_beginning") {
            return;
        }
        let deadline = attempts_until();
        let seen = loop {
            assert!(std::time::Instant::now() < deadline, "{DISTURBED}");
            // A checkpoint far beyond anything this boot has written.
            let mut reader =
                KmsgReader::open(Path::new("/dev/kmsg"), StartAt::After(u64::MAX / 2)).unwrap();
            let token = unique_token("reboot");
            inject(&format!("<6>oomscope-kmsg-test {token}\n"));
            let mut seen = Vec::new();
            if read_until(&mut reader, &token, &mut seen).await.is_some() {
                break seen;
            }
        };
        assert!(matches!(seen[0], KmsgEvent::Record(_)), "{:?}", seen[0]);
        // Older records came first: the whole buffer was replayed.
        assert!(seqs(&seen).len() > 1, "{seen:?}");
    }

    #[tokio::test]
    async fn dev_kmsg_resumes_after_a_sequence_number() {
        if !dev_kmsg_usable("dev_kmsg_resumes_after_a_sequence_number") {
            return;
        }
        let deadline = attempts_until();
        let (first_record, second_record, again, resumed_seen) = loop {
            assert!(std::time::Instant::now() < deadline, "{DISTURBED}");
            let mut reader = KmsgReader::open(Path::new("/dev/kmsg"), StartAt::End).unwrap();
            let first = unique_token("first");
            let second = unique_token("second");
            inject(&format!("<6>oomscope-kmsg-test {first}\n"));
            inject(&format!("<6>oomscope-kmsg-test {second}\n"));
            let mut seen = Vec::new();
            let Some(first_record) = read_until(&mut reader, &first, &mut seen).await else {
                continue;
            };
            let Some(second_record) = read_until(&mut reader, &second, &mut seen).await else {
                continue;
            };

            // A new reader resuming after the first record starts right after it.
            let mut resumed =
                KmsgReader::open(Path::new("/dev/kmsg"), StartAt::After(first_record.seq)).unwrap();
            let mut resumed_seen = Vec::new();
            let Some(again) = read_until(&mut resumed, &second, &mut resumed_seen).await else {
                continue;
            };
            break (first_record, second_record, again, resumed_seen);
        };
        assert!(second_record.seq > first_record.seq);
        assert_eq!(again.seq, second_record.seq);
        let resumed_seqs = seqs(&resumed_seen);
        assert_eq!(resumed_seqs.first(), Some(&(first_record.seq + 1)));
        assert!(resumed_seqs.iter().all(|&seq| seq > first_record.seq));
        assert!(
            resumed_seen
                .iter()
                .all(|event| matches!(event, KmsgEvent::Record(_))),
            "{resumed_seen:?}"
        );
    }
}
