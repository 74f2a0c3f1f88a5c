//! The kernel's process events through the netlink process connector
//! (`CONFIG_PROC_EVENTS`): fork, exec, comm change and exit of every
//! process, as they happen. Needs CAP_NET_ADMIN in the initial user
//! namespace and a socket in the initial network namespace (a container
//! with the host's network).
//!
//! Three syscalls on a raw netlink socket through `libc`: a netlink crate
//! would add a dependency for no less code here.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{ProcReader, ProcessTable};
use crate::clock::Clock;

/// `CN_IDX_PROC` / `CN_VAL_PROC` (linux/connector.h).
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `enum proc_cn_mcast_op` (linux/cn_proc.h).
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;
/// `enum what` (linux/cn_proc.h).
const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_COMM: u32 = 0x200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// `struct nlmsghdr` and `struct cn_msg` sizes: the event starts after them.
const NLMSG_HDR_LEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// `struct proc_event`: `what`, `cpu`, `timestamp_ns`, then `event_data`.
const EVENT_DATA: usize = 16;
/// At most this many execs a second are read from /proc (the reader's CPU
/// is bounded on a host that execs faster: a build server, a CI runner);
/// the others are not recorded, and a warning says so once.
const MAX_READS_PER_SECOND: u32 = 1000;
/// How long an exec waits before its /proc files are read: a process that
/// exits sooner (most execs on a busy host: `/bin/true`, shell helpers) is
/// never read. An OOM victim lives longer than this: it has to fill its
/// memory first.
const READ_DELAY: Duration = Duration::from_millis(5);
/// Pause after a batch of events, so that the next wake-up finds several.
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// Datagrams read per batch at most, before the queue's reads are due.
const MAX_DATAGRAMS_PER_BATCH: usize = 4096;
/// Execs waiting for their read, at most; beyond, the oldest is read now.
const MAX_WAITING: usize = 4096;
/// Receive buffer asked of the kernel: room for bursts of thousands of
/// events while the reader thread reads /proc.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// One process event, as the table needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcEvent {
    /// The kernel's answer to the subscription: 0 or an errno.
    Ack {
        err: u32,
    },
    /// A new process (not a thread).
    Fork {
        parent_tgid: i32,
        child_tgid: i32,
        timestamp_ns: u64,
    },
    Exec {
        tgid: i32,
    },
    /// The process (its leader) changed its comm.
    Comm {
        tgid: i32,
        comm: String,
    },
    /// The process (its leader) exited.
    Exit {
        tgid: i32,
    },
    /// Something the table does not use (threads, uid changes, ...).
    Other,
}

/// Decodes the netlink messages in one datagram.
pub fn parse_datagram(mut buf: &[u8]) -> Vec<ProcEvent> {
    let mut events = Vec::new();
    while buf.len() >= NLMSG_HDR_LEN {
        let len = u32_at(buf, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDR_LEN || len > buf.len() {
            break;
        }
        if let Some(event) = parse_event(&buf[NLMSG_HDR_LEN..len]) {
            events.push(event);
        }
        // Messages are 4-byte aligned.
        let next = (len + 3) & !3;
        buf = buf.get(next..).unwrap_or_default();
    }
    events
}

/// One `cn_msg` carrying a `proc_event`.
fn parse_event(msg: &[u8]) -> Option<ProcEvent> {
    if u32_at(msg, 0)? != CN_IDX_PROC || u32_at(msg, 4)? != CN_VAL_PROC {
        return None;
    }
    let ev = msg.get(CN_MSG_LEN..)?;
    let what = u32_at(ev, 0)?;
    let data = ev.get(EVENT_DATA..)?;
    let pid_at = |off: usize| u32_at(data, off).and_then(|v| i32::try_from(v).ok());
    Some(match what {
        PROC_EVENT_NONE => ProcEvent::Ack {
            err: u32_at(data, 0)?,
        },
        PROC_EVENT_FORK => {
            // parent_pid, parent_tgid, child_pid, child_tgid
            let (child_pid, child_tgid) = (pid_at(8)?, pid_at(12)?);
            if child_pid != child_tgid {
                return Some(ProcEvent::Other); // a new thread
            }
            ProcEvent::Fork {
                parent_tgid: pid_at(4)?,
                child_tgid,
                timestamp_ns: u64_at(ev, 8)?,
            }
        }
        PROC_EVENT_EXEC => ProcEvent::Exec { tgid: pid_at(4)? },
        PROC_EVENT_COMM => {
            let (pid, tgid) = (pid_at(0)?, pid_at(4)?);
            if pid != tgid {
                return Some(ProcEvent::Other);
            }
            let raw = data.get(8..24)?;
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            ProcEvent::Comm {
                tgid,
                comm: String::from_utf8_lossy(&raw[..end]).into_owned(),
            }
        }
        PROC_EVENT_EXIT => {
            let (pid, tgid) = (pid_at(0)?, pid_at(4)?);
            if pid != tgid {
                return Some(ProcEvent::Other);
            }
            ProcEvent::Exit { tgid }
        }
        _ => ProcEvent::Other,
    })
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(buf.get(off..off + 8)?.try_into().ok()?))
}

/// A subscribed process-connector socket.
pub struct Connector {
    fd: OwnedFd,
}

impl Connector {
    /// Opens, binds and subscribes; errors say what is missing.
    pub fn open() -> io::Result<Connector> {
        // SAFETY: plain syscall; the fd is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(with_context(
                io::Error::last_os_error(),
                "netlink connector socket (CONFIG_PROC_EVENTS, initial network namespace)",
            ));
        }
        // SAFETY: `raw` is a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Best effort: SO_RCVBUFFORCE (CAP_NET_ADMIN) passes the rmem_max cap.
        for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: the option value is a c_int on the stack.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&SOCKET_BUFFER as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
        // A receive timeout, so the reader notices shutdown.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 500_000,
        };
        // SAFETY: the option value is a timeval on the stack.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        // SAFETY: zeroed sockaddr_nl is valid; fields set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: addr is a sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(with_context(
                io::Error::last_os_error(),
                "binding to the process connector's group (needs CAP_NET_ADMIN)",
            ));
        }
        let connector = Connector { fd };
        connector.control(PROC_CN_MCAST_LISTEN)?;
        Ok(connector)
    }

    fn control(&self, op: u32) -> io::Result<()> {
        let mut msg = Vec::with_capacity(NLMSG_HDR_LEN + CN_MSG_LEN + 4);
        let total = (NLMSG_HDR_LEN + CN_MSG_LEN + 4) as u32;
        msg.extend_from_slice(&total.to_ne_bytes()); // nlmsg_len
        msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes()); // nlmsg_type
        msg.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
        msg.extend_from_slice(&std::process::id().to_ne_bytes()); // nlmsg_pid
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&4u16.to_ne_bytes()); // len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&op.to_ne_bytes());
        // SAFETY: sends from a live buffer of the given length.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(with_context(
                io::Error::last_os_error(),
                "subscribing to process events",
            ));
        }
        Ok(())
    }

    /// One datagram into `buf`: its length, `Ok(None)` on the receive
    /// timeout. `wait`: `None` blocks (up to the socket's receive timeout);
    /// `Some(d)` waits at most `d` (zero: only what is queued).
    pub fn recv(&self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>> {
        let mut flags = 0;
        if let Some(wait) = wait {
            let mut fds = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // Rounded up: a wait rounded down to 0 ms would spin.
            let ms =
                libc::c_int::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one pollfd on the stack.
            let ready = unsafe { libc::poll(&mut fds, 1, ms) };
            if ready <= 0 {
                return Ok(None);
            }
            flags = libc::MSG_DONTWAIT;
        }
        // SAFETY: receives into a live buffer of the given length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        // The kernel counts listeners and builds events while any is left.
        let _ = self.control(PROC_CN_MCAST_IGNORE);
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Counters of the reader, for the agent's own telemetry and tests.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub execs: std::sync::atomic::AtomicU64,
    /// Execs not read from /proc: over [`MAX_READS_PER_SECOND`].
    pub skipped: std::sync::atomic::AtomicU64,
    /// Times the socket's buffer overflowed and events were lost.
    pub overruns: std::sync::atomic::AtomicU64,
}

/// Keeps `table` up to date from the connector on a thread of its own
/// (reading /proc can block on a process under reclaim; the async workers
/// must not), until `shutdown`. The table is seeded by one /proc scan after
/// the subscription, so no process starting in between is missed.
pub fn spawn_reader(
    connector: Connector,
    reader: ProcReader,
    table: Arc<Mutex<ProcessTable>>,
    stats: Arc<ReaderStats>,
    shutdown: CancellationToken,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("oom-proc-events".into())
        .spawn(move || run(connector, reader, table, stats, shutdown))
}

fn run(
    connector: Connector,
    reader: ProcReader,
    table: Arc<Mutex<ProcessTable>>,
    stats: Arc<ReaderStats>,
    shutdown: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let seeded = {
        let mut seed = ProcessTable::new();
        let n = reader.seed(&mut seed);
        let mut t = lock(&table);
        // Events read meanwhile (none yet: this thread reads them) cannot
        // be newer than the scan; the scan simply fills the table.
        *t = seed;
        n
    };
    tracing::debug!(seeded, "process table seeded from /proc");
    let mut buf = vec![0u8; 64 * 1024];
    let mut overrun_warned = false;
    let mut reads = ReadBudget::default();
    // Execs waiting for READ_DELAY, in order; `waiting` has the live ones
    // (an exit or a later exec of the pid takes it out or replaces it).
    let mut queue: VecDeque<(i32, Instant)> = VecDeque::new();
    let mut waiting: HashMap<i32, Instant> = HashMap::new();
    while !shutdown.is_cancelled() {
        // Blocks in recvfrom only with nothing waiting: then every event
        // read so far has been handled (tests watch for it).
        let wait = queue
            .front()
            .map(|(_, at)| (*at + READ_DELAY).saturating_duration_since(Instant::now()));
        let mut received = connector.recv(&mut buf, wait);
        let mut got_any = false;
        // What else is queued is read at once: one wake-up per batch.
        for _ in 0..MAX_DATAGRAMS_PER_BATCH {
            let n = match received {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    stats.overruns.fetch_add(1, Relaxed);
                    if !overrun_warned {
                        overrun_warned = true;
                        tracing::warn!("process events came faster than they were read; some were lost (a victim started meanwhile may lack its command line; reported once)");
                    }
                    received = connector.recv(&mut buf, Some(Duration::ZERO));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading process events failed; victims that exit before /proc is read lack their command line from now on");
                    return;
                }
            };
            got_any = true;
            for event in parse_datagram(&buf[..n]) {
                let handled = handle(
                    event,
                    &mut queue,
                    &mut waiting,
                    &reader,
                    &table,
                    &mut reads,
                    &stats,
                );
                if !handled {
                    return;
                }
            }
            received = connector.recv(&mut buf, Some(Duration::ZERO));
        }
        let now = Instant::now();
        while let Some(&(pid, at)) = queue.front() {
            if at + READ_DELAY > now {
                break;
            }
            queue.pop_front();
            read_if_waiting(pid, at, &mut waiting, &reader, &table, &mut reads, &stats);
        }
        if got_any {
            // Let events gather: on a host that execs a lot the reader
            // wakes once per batch, not once per event.
            std::thread::sleep(BATCH_PAUSE);
        }
    }
}

/// One event into the table or the read queue; `false` when the reader
/// must stop (the kernel refused the subscription).
fn handle(
    event: ProcEvent,
    queue: &mut VecDeque<(i32, Instant)>,
    waiting: &mut HashMap<i32, Instant>,
    reader: &ProcReader,
    table: &Mutex<ProcessTable>,
    reads: &mut ReadBudget,
    stats: &ReaderStats,
) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match event {
        ProcEvent::Exec { tgid } => {
            stats.execs.fetch_add(1, Relaxed);
            let now = Instant::now();
            waiting.insert(tgid, now);
            queue.push_back((tgid, now));
            if queue.len() > MAX_WAITING {
                if let Some((pid, at)) = queue.pop_front() {
                    read_if_waiting(pid, at, waiting, reader, table, reads, stats);
                }
            }
        }
        ProcEvent::Fork {
            parent_tgid,
            child_tgid,
            timestamp_ns,
        } => {
            let start = Clock::now().unix_nano_from_ns(timestamp_ns);
            lock(table).fork(parent_tgid, child_tgid, Some(start));
        }
        ProcEvent::Comm { tgid, comm } => lock(table).rename(tgid, &comm),
        ProcEvent::Exit { tgid } => {
            // Gone before its read: never read.
            waiting.remove(&tgid);
            lock(table).exit(tgid);
        }
        ProcEvent::Ack { err } if err != 0 => {
            tracing::error!(
                errno = err,
                error = %io::Error::from_raw_os_error(err as i32),
                "the kernel refused the process-events subscription (needs CAP_NET_ADMIN in the initial user namespace)"
            );
            return false;
        }
        ProcEvent::Ack { .. } | ProcEvent::Other => {}
    }
    true
}

/// At most [`MAX_READS_PER_SECOND`] reads a second.
struct ReadBudget {
    window: Instant,
    used: u32,
    warned: bool,
}

impl Default for ReadBudget {
    fn default() -> Self {
        ReadBudget {
            window: Instant::now(),
            used: 0,
            warned: false,
        }
    }
}

impl ReadBudget {
    fn take(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.used = 0;
        }
        if self.used >= MAX_READS_PER_SECOND {
            if !self.warned {
                self.warned = true;
                tracing::warn!(max = MAX_READS_PER_SECOND, "more execs a second than the process table reads from /proc; the others are not recorded (reported once)");
            }
            return false;
        }
        self.used += 1;
        true
    }
}

/// Reads the exec of `pid` queued at `at` into the table, unless the
/// process exited or exec'd again since.
fn read_if_waiting(
    pid: i32,
    at: Instant,
    waiting: &mut HashMap<i32, Instant>,
    reader: &ProcReader,
    table: &Mutex<ProcessTable>,
    reads: &mut ReadBudget,
    stats: &ReaderStats,
) {
    use std::sync::atomic::Ordering::Relaxed;
    if waiting.get(&pid) != Some(&at) {
        return;
    }
    waiting.remove(&pid);
    if !reads.take() {
        stats.skipped.fetch_add(1, Relaxed);
        // The entry left is the image before this exec's.
        lock(table).forget(pid);
        return;
    }
    // Read outside the lock: /proc reads can be slow.
    match reader.read(pid) {
        Some(record) => lock(table).insert(pid, record),
        // Gone meanwhile (its exit not read yet): the old image's entry
        // is not this one's.
        None => lock(table).forget(pid),
    }
}

/// The table, whatever a panicking holder left behind (a cache: at worst
/// stale).
pub fn lock(t: &Mutex<ProcessTable>) -> std::sync::MutexGuard<'_, ProcessTable> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram as the kernel sends it: nlmsghdr, cn_msg, proc_event.
    fn datagram(what: u32, data: &[u8]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes()); // cpu
        ev.extend_from_slice(&123u64.to_ne_bytes()); // timestamp_ns
        ev.extend_from_slice(data);
        let mut msg = Vec::new();
        let len = (NLMSG_HDR_LEN + CN_MSG_LEN + ev.len()) as u32;
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&3u16.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        msg.extend_from_slice(&(ev.len() as u16).to_ne_bytes());
        msg.extend_from_slice(&[0; 2]);
        msg.extend_from_slice(&ev);
        msg
    }

    fn words(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn decodes_the_events_the_table_uses() {
        let fork = datagram(PROC_EVENT_FORK, &words(&[10, 10, 11, 11]));
        let thread = datagram(PROC_EVENT_FORK, &words(&[10, 10, 12, 10]));
        let exec = datagram(PROC_EVENT_EXEC, &words(&[11, 11]));
        let mut comm_data = words(&[11, 11]);
        comm_data.extend_from_slice(b"worker\0\0\0\0\0\0\0\0\0\0");
        let comm = datagram(PROC_EVENT_COMM, &comm_data);
        let exit = datagram(PROC_EVENT_EXIT, &words(&[11, 11, 9, 17, 10, 10]));
        let thread_exit = datagram(PROC_EVENT_EXIT, &words(&[12, 10, 0, 17, 10, 10]));
        let ack = datagram(PROC_EVENT_NONE, &words(&[1]));
        let mut all = Vec::new();
        for d in [&fork, &thread, &exec, &comm, &exit, &thread_exit, &ack] {
            all.extend_from_slice(d);
        }
        assert_eq!(
            parse_datagram(&all),
            vec![
                ProcEvent::Fork {
                    parent_tgid: 10,
                    child_tgid: 11,
                    timestamp_ns: 123
                },
                ProcEvent::Other,
                ProcEvent::Exec { tgid: 11 },
                ProcEvent::Comm {
                    tgid: 11,
                    comm: "worker".into()
                },
                ProcEvent::Exit { tgid: 11 },
                ProcEvent::Other,
                ProcEvent::Ack { err: 1 },
            ]
        );
    }

    #[test]
    fn hostile_datagrams_decode_to_nothing_or_stop() {
        assert!(parse_datagram(&[]).is_empty());
        assert!(parse_datagram(&[0xff; 15]).is_empty());
        // A length past the end, a length below the header.
        let mut bad = datagram(PROC_EVENT_EXEC, &words(&[1, 1]));
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_datagram(&bad).is_empty());
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse_datagram(&bad).is_empty());
        // Truncated event data; another connector's message.
        let short = datagram(PROC_EVENT_EXEC, &[1, 0]);
        assert!(parse_datagram(&short).is_empty());
        let mut other = datagram(PROC_EVENT_EXEC, &words(&[1, 1]));
        other[NLMSG_HDR_LEN..NLMSG_HDR_LEN + 4].copy_from_slice(&7u32.to_ne_bytes());
        assert!(parse_datagram(&other).is_empty());
        // A negative pid is not a pid.
        let negative = datagram(PROC_EVENT_EXEC, &words(&[u32::MAX, u32::MAX]));
        assert!(parse_datagram(&negative).is_empty());
    }

    /// The real connector, as root: a child's exec is recorded with its
    /// command line, and its exit keeps it findable.
    #[test]
    fn records_a_real_exec_and_exit() {
        let connector = match Connector::open() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED: no process connector here: {e}");
                return;
            }
        };
        let table = Arc::new(Mutex::new(ProcessTable::new()));
        let stats = Arc::new(ReaderStats::default());
        let shutdown = CancellationToken::new();
        let reader = ProcReader::new(std::path::Path::new("/proc"), &[]);
        let handle = spawn_reader(
            connector,
            reader,
            table.clone(),
            stats.clone(),
            shutdown.clone(),
        )
        .expect("thread");
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "exec sleep 3600"])
            .spawn()
            .expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        let recorded = loop {
            if let Some(r) = lock(&table).lookup(pid, "sleep").cloned() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(recorded.command_line.as_deref(), Some("sleep 3600"));
        assert!(recorded.executable_path.is_some());
        assert_eq!(recorded.parent_pid, i32::try_from(std::process::id()).ok());
        child.kill().expect("kill");
        child.wait().expect("reap");
        loop {
            let t = lock(&table);
            if t.exited.iter().any(|(p, _)| *p == pid) {
                assert!(t.lookup(pid, "sleep").is_some());
                break;
            }
            drop(t);
            std::thread::sleep(Duration::from_millis(5));
        }
        shutdown.cancel();
        handle.join().expect("reader thread");
    }
}
