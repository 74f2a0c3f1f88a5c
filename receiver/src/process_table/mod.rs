//! Who each process is, recorded when it starts, for OOM victims that are
//! gone from /proc by the time their kill is read.
//!
//! An OOM victim loses its command line and executable the moment its
//! memory is torn down, and its /proc entry when its parent reaps it; an
//! agent slowed by the very memory pressure it reports can come too late
//! for both. Where the eBPF exec hook cannot be used (`mode: kmsg`, no
//! CAP_BPF, no syscall tracepoints) this table is kept up to date from the
//! kernel's process events ([`connector`], the netlink process connector):
//! at each exec the new image's command line (secrets redacted), executable
//! path, parent, start time and cgroup are read from /proc; a fork without
//! exec inherits its parent's; an exit moves the entry to a short list of
//! recent exits. One /proc scan at start seeds it.
//!
//! Bounded: at most [`MAX_LIVE`] live and [`MAX_EXITED`] exited entries and
//! [`MAX_TEXT_BYTES`] of text in all; the oldest live entries go first.

pub mod connector;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::path::Path;

use crate::receivers::memory::process::parse_stat;
use crate::receivers::oom::enrich::cgroup_from_proc;
use crate::redact::redact_args;

/// Live processes kept at most (a busy host runs a few thousand).
pub const MAX_LIVE: usize = 8192;
/// Exited processes kept: a victim's kill is read within milliseconds of
/// its exit, even on a slow agent far fewer than this many exits later.
pub const MAX_EXITED: usize = 1024;
/// Text (command lines, paths, cgroups) kept in all entries together.
pub const MAX_TEXT_BYTES: usize = 4 << 20;
/// Bytes of /proc/PID/cmdline read per process; longer ones are cut.
pub const MAX_CMDLINE_BYTES: usize = 4096;
/// Bytes of /proc/PID/stat or /proc/PID/cgroup read.
const MAX_PROC_FILE: usize = 4096;

/// One process as it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRecord {
    /// The kernel's comm (at most 15 bytes), to tell a reused pid.
    pub comm: String,
    /// /proc/PID/exe at exec (a deleted binary without " (deleted)").
    pub executable_path: Option<String>,
    /// The arguments joined by spaces, secrets redacted.
    pub command_line: Option<String>,
    pub parent_pid: Option<i32>,
    /// Wall-clock start of the process, ns since the epoch.
    pub start_unix_nano: Option<u64>,
    /// Its memory cgroup at exec (v1 memory controller's, else v2's).
    pub cgroup: Option<String>,
}

impl ProcessRecord {
    fn text_bytes(&self) -> usize {
        self.comm.len()
            + self.executable_path.as_ref().map_or(0, String::len)
            + self.command_line.as_ref().map_or(0, String::len)
            + self.cgroup.as_ref().map_or(0, String::len)
    }
}

struct Live {
    record: ProcessRecord,
    /// Key in `ProcessTable::age`.
    seq: u64,
}

/// Processes by pid (thread group id), bounded.
pub struct ProcessTable {
    live: HashMap<i32, Live>,
    /// Live pids by insertion order: the oldest are evicted first.
    age: BTreeMap<u64, i32>,
    exited: VecDeque<(i32, ProcessRecord)>,
    text_bytes: usize,
    next_seq: u64,
    /// Entries evicted for room before their process exited.
    pub evicted: u64,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessTable {
    pub fn new() -> Self {
        ProcessTable {
            live: HashMap::new(),
            age: BTreeMap::new(),
            exited: VecDeque::new(),
            text_bytes: 0,
            next_seq: 0,
            evicted: 0,
        }
    }

    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    pub fn exited_len(&self) -> usize {
        self.exited.len()
    }

    /// `pid` is (now) the process `record` describes: after an exec, a
    /// fork, or found by the seeding scan.
    pub fn insert(&mut self, pid: i32, record: ProcessRecord) {
        self.remove_live(pid);
        self.text_bytes += record.text_bytes();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.age.insert(seq, pid);
        self.live.insert(pid, Live { record, seq });
        while self.live.len() > MAX_LIVE || self.text_bytes > MAX_TEXT_BYTES {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    /// A new process `child` forked from `parent` without exec: same
    /// command line and executable, its own start and parent.
    pub fn fork(&mut self, parent: i32, child: i32, start_unix_nano: Option<u64>) {
        let Some(from) = self.live.get(&parent) else {
            return;
        };
        let record = ProcessRecord {
            parent_pid: Some(parent),
            start_unix_nano,
            ..from.record.clone()
        };
        self.insert(child, record);
    }

    /// The process renamed itself (prctl PR_SET_NAME on its leader).
    pub fn rename(&mut self, pid: i32, comm: &str) {
        if let Some(live) = self.live.get_mut(&pid) {
            self.text_bytes = self.text_bytes - live.record.comm.len() + comm.len();
            live.record.comm = comm.to_owned();
        }
    }

    /// Forgets the live entry of `pid` (an exec that was not read: the
    /// entry describes the image before it).
    pub fn forget(&mut self, pid: i32) {
        self.remove_live(pid);
    }

    /// The process exited: its entry moves to the recent exits.
    pub fn exit(&mut self, pid: i32) {
        let Some(record) = self.remove_live(pid) else {
            return;
        };
        self.text_bytes += record.text_bytes();
        self.exited.push_back((pid, record));
        while self.exited.len() > MAX_EXITED {
            if let Some((_, old)) = self.exited.pop_front() {
                self.text_bytes -= old.text_bytes();
            }
        }
    }

    /// The recorded process `pid` whose comm is `comm` (the kernel's, as
    /// in the OOM report): the live one, else the latest that exited. An
    /// entry of another comm is an earlier process that had the pid.
    pub fn lookup(&self, pid: i32, comm: &str) -> Option<&ProcessRecord> {
        let matches = |r: &ProcessRecord| comm.is_empty() || r.comm == comm;
        if let Some(live) = self.live.get(&pid).filter(|l| matches(&l.record)) {
            return Some(&live.record);
        }
        self.exited
            .iter()
            .rev()
            .find(|(p, r)| *p == pid && matches(r))
            .map(|(_, r)| r)
    }

    fn remove_live(&mut self, pid: i32) -> Option<ProcessRecord> {
        let live = self.live.remove(&pid)?;
        self.age.remove(&live.seq);
        self.text_bytes -= live.record.text_bytes();
        Some(live.record)
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, pid)) = self.age.pop_first() else {
            // Only exited entries hold the text: drop the oldest of those.
            return match self.exited.pop_front() {
                Some((_, old)) => {
                    self.text_bytes -= old.text_bytes();
                    true
                }
                None => false,
            };
        };
        if let Some(live) = self.live.remove(&pid) {
            self.text_bytes -= live.record.text_bytes();
            self.evicted += 1;
        }
        true
    }
}

/// How /proc is read for the table: where it is, the boot time and clock
/// rate that turn a start in ticks into wall-clock time, and the secrets
/// to redact.
#[derive(Debug, Clone)]
pub struct ProcReader {
    proc_path: std::path::PathBuf,
    boot_unix_nano: u64,
    ticks_per_second: u64,
    secret_keys: Vec<String>,
}

impl ProcReader {
    pub fn new(proc_path: &Path, secret_keys: &[String]) -> Self {
        crate::redact::prepare();
        ProcReader {
            proc_path: proc_path.to_path_buf(),
            boot_unix_nano: crate::clock::boot_unix_nanos(),
            ticks_per_second: crate::sysconf::clock_ticks_per_second(),
            secret_keys: secret_keys.to_vec(),
        }
    }

    /// Process `pid` as /proc shows it now; `None` when it is gone (or is
    /// a kernel thread: no command line, no executable).
    pub fn read(&self, pid: i32) -> Option<ProcessRecord> {
        let dir = self.proc_path.join(pid.to_string());
        let stat = read_bounded(&dir.join("stat"), MAX_PROC_FILE)?;
        let stat = parse_stat(&stat)?;
        let raw = read_bounded(&dir.join("cmdline"), MAX_CMDLINE_BYTES)?;
        if raw.is_empty() {
            return None;
        }
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let command_line =
            Some(redact_args(&args, &self.secret_keys).join(" ")).filter(|c| !c.is_empty());
        let executable_path = std::fs::read_link(dir.join("exe")).ok().map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        });
        let cgroup = read_bounded(&dir.join("cgroup"), MAX_PROC_FILE)
            .and_then(|text| cgroup_from_proc(&String::from_utf8_lossy(&text)));
        Some(ProcessRecord {
            comm: String::from_utf8_lossy(stat.comm).into_owned(),
            executable_path,
            command_line,
            parent_pid: Some(stat.ppid),
            start_unix_nano: Some(self.start_unix_nano(stat.starttime)),
            cgroup,
        })
    }

    /// Every process /proc lists now, in pid order, into `table`.
    pub fn seed(&self, table: &mut ProcessTable) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.proc_path) else {
            return 0;
        };
        let mut pids: Vec<i32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        let mut seeded = 0;
        for pid in pids {
            if let Some(record) = self.read(pid) {
                table.insert(pid, record);
                seeded += 1;
            }
        }
        seeded
    }

    fn start_unix_nano(&self, ticks: u64) -> u64 {
        ticks_to_unix_nano(self.boot_unix_nano, self.ticks_per_second, ticks)
    }
}

/// A start time from /proc/PID/stat (clock ticks after boot) as Unix ns.
pub fn start_unix_nano(ticks: u64) -> u64 {
    ticks_to_unix_nano(
        crate::clock::boot_unix_nanos(),
        crate::sysconf::clock_ticks_per_second(),
        ticks,
    )
}

/// Clock ticks after boot (`/proc/PID/stat` start) as Unix ns, given the
/// boot time and the tick rate.
pub fn ticks_to_unix_nano(boot_unix_nano: u64, hz: u64, ticks: u64) -> u64 {
    // Seconds and the remainder apart: ticks * 1e9 overflows u64 after
    // about 5.8 years of uptime at 100 Hz.
    let hz = hz.max(1);
    boot_unix_nano.saturating_add(
        (ticks / hz)
            .saturating_mul(1_000_000_000)
            .saturating_add((ticks % hz).saturating_mul(1_000_000_000) / hz),
    )
}

fn read_bounded(path: &Path, max: usize) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(512);
    file.take(max as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(comm: &str, cmd: &str) -> ProcessRecord {
        ProcessRecord {
            comm: comm.into(),
            executable_path: Some(format!("/usr/bin/{comm}")),
            command_line: Some(cmd.into()),
            parent_pid: Some(1),
            start_unix_nano: Some(1),
            cgroup: Some("/a".into()),
        }
    }

    #[test]
    fn an_exited_process_is_found_by_pid_and_comm() {
        let mut t = ProcessTable::new();
        t.insert(10, record("alloc", "/alloc 64"));
        t.exit(10);
        assert_eq!(t.live_len(), 0);
        let r = t.lookup(10, "alloc").expect("exited entry");
        assert_eq!(r.command_line.as_deref(), Some("/alloc 64"));
        // A later process with the pid, another comm: each is found by its own.
        t.insert(10, record("sh", "sh -c x"));
        assert_eq!(
            t.lookup(10, "alloc")
                .and_then(|r| r.command_line.as_deref()),
            Some("/alloc 64")
        );
        assert_eq!(
            t.lookup(10, "sh").and_then(|r| r.command_line.as_deref()),
            Some("sh -c x")
        );
        assert!(t.lookup(10, "java").is_none());
    }

    #[test]
    fn a_forked_child_inherits_the_command_line_with_its_own_parent() {
        let mut t = ProcessTable::new();
        t.insert(10, record("worker", "python3 app.py"));
        t.fork(10, 11, Some(99));
        let child = t.lookup(11, "worker").expect("child");
        assert_eq!(child.command_line.as_deref(), Some("python3 app.py"));
        assert_eq!(child.parent_pid, Some(10));
        assert_eq!(child.start_unix_nano, Some(99));
        // A fork of an unknown parent records nothing (no guess).
        t.fork(77, 78, None);
        assert!(t.lookup(78, "").is_none());
        t.rename(11, "renamed");
        assert!(t.lookup(11, "worker").is_none());
        assert!(t.lookup(11, "renamed").is_some());
    }

    #[test]
    fn bounded_in_entries_and_text() {
        let mut t = ProcessTable::new();
        for pid in 0..(MAX_LIVE as i32 + 100) {
            t.insert(pid, record("p", "x"));
        }
        assert_eq!(t.live_len(), MAX_LIVE);
        assert_eq!(t.evicted, 100);
        // The oldest went first.
        assert!(t.lookup(0, "p").is_none());
        assert!(t.lookup(MAX_LIVE as i32 + 99, "p").is_some());
        for pid in 0..(MAX_EXITED as i32 + 10) {
            t.insert(pid, record("p", "x"));
            t.exit(pid);
        }
        assert_eq!(t.exited_len(), MAX_EXITED);

        let mut t = ProcessTable::new();
        let long = "y".repeat(MAX_CMDLINE_BYTES);
        for pid in 0..2000 {
            t.insert(pid, record("p", &long));
        }
        assert!(t.text_bytes <= MAX_TEXT_BYTES, "{}", t.text_bytes);
        assert!(t.live_len() < 2000);
        // Text accounting returns to zero with the entries.
        for pid in 0..2000 {
            t.remove_live(pid);
        }
        assert_eq!(t.text_bytes, 0);
    }

    #[test]
    fn reads_this_process() {
        let reader = ProcReader::new(Path::new("/proc"), &crate::redact::default_keys());
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let r = reader.read(me).expect("this process");
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(r.executable_path.as_deref(), exe.to_str());
        assert!(r.command_line.is_some());
        assert!(r.parent_pid.is_some_and(|p| p > 0));
        let start = r.start_unix_nano.expect("start");
        assert!(start <= crate::clock::unix_now_nanos());
        let mut table = ProcessTable::new();
        assert!(reader.seed(&mut table) > 0);
        assert!(table.lookup(me, &r.comm).is_some());
        // No such process.
        assert!(reader.read(i32::MAX).is_none());
    }
}
