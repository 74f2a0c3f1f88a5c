//! Per-process memory: the top N processes by resident memory, each as one
//! Resource.
//!
//! Cost is what matters here (a host may run 10,000 processes): for every
//! pid only `/proc/PID/statm` is read (one open, one read, one close; the
//! kernel's cheapest per-process file) and the pid enters a bounded min-heap
//! of the N largest. Only the N selected get the richer reads (`stat`,
//! `status`, `oom_score`, `oom_score_adj`, `cgroup`, and `cmdline`/`exe`
//! unless cached). The directory is read with getdents into a reused buffer,
//! files are opened relative to the /proc directory descriptor with paths
//! built in a reused buffer, and read into a reused buffer: the loop over
//! all pids does not allocate. Command line and executable are cached by
//! (pid, start time), for the processes selected in the last scrape only.
//!
//! The per-pid loop therefore does not use the procfs crate: its
//! `Process::new_with_root` and `statm()` allocate a path, a directory
//! descriptor and a `String` per pid (see README "Performance"). Of the
//! selected processes' files, `cgroup` is parsed by procfs
//! ([`cgroup_from_proc`]); `status` is not (see [`parse_status`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use rustix::fs::{Mode, OFlags, RawDir};

use super::metrics as m;
use super::system::{parse_i64, parse_u64};
use super::{read_file, WarnOnce};
use super::{vanished, MatchType, NameMatchConfig, ProcessesConfig};
use crate::incidents::ProcessState;
use crate::metric_catalog::{int, MetricsBuilder};
use crate::pipeline::data::scoped_metrics;
use crate::pipeline::data::{kv_int, kv_str};
use crate::receivers::cgroup_filter::CgroupFilter;
use crate::receivers::oom::enrich::cgroup_from_proc;
use crate::redact::redact_args;
use crate::workload::Resolver;

/// Process names to keep or drop, matched against the kernel's comm.
#[derive(Debug)]
pub enum NameFilter {
    Strict(HashSet<String>),
    Regexp(regex::RegexSet),
}

impl NameFilter {
    pub fn new(cfg: &NameMatchConfig) -> Result<NameFilter, String> {
        if cfg.names.is_empty() {
            return Err("names: at least one name is required".into());
        }
        Ok(match cfg.match_type {
            MatchType::Strict => NameFilter::Strict(cfg.names.iter().cloned().collect()),
            MatchType::Regexp => NameFilter::Regexp(
                regex::RegexSet::new(&cfg.names)
                    .map_err(|e| format!("names: invalid regex: {e}"))?,
            ),
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Strict(set) => set.contains(name),
            NameFilter::Regexp(set) => set.is_match(name),
        }
    }
}

/// A pid competing for the top N: ordered by resident pages (then pid, so
/// that ties resolve the same way every scrape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    resident_pages: u64,
    pid: i32,
    size_pages: u64,
}

/// The fields of /proc/PID/stat used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat<'a> {
    pub comm: &'a [u8],
    pub state: u8,
    pub ppid: i32,
    pub minflt: u64,
    pub majflt: u64,
    /// Clock ticks after boot.
    pub starttime: u64,
}

/// Parses /proc/PID/stat. The comm may contain spaces and parentheses: it
/// runs from the first `(` to the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat<'_>> {
    let open = memchr::memchr(b'(', text)?;
    let close = memchr::memrchr(b')', text)?;
    if close < open {
        return None;
    }
    let comm = &text[open + 1..close];
    // After ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt
    // majflt cmajflt utime stime cutime cstime priority nice num_threads
    // itrealvalue starttime ...
    let mut fields = text
        .get(close + 2..)?
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let ppid = parse_i64(fields.next()?).and_then(|v| i32::try_from(v).ok())?;
    let mut fields = fields.skip(5); // pgrp session tty_nr tpgid flags
    let minflt = parse_u64(fields.next()?)?;
    let mut fields = fields.skip(1); // cminflt
    let majflt = parse_u64(fields.next()?)?;
    let mut fields = fields.skip(9); // cmajflt .. itrealvalue
    let starttime = parse_u64(fields.next()?)?;
    Some(Stat {
        comm,
        state,
        ppid,
        minflt,
        majflt,
        starttime,
    })
}

/// /proc/PID/statm: (size, resident) in pages.
pub fn parse_statm(text: &[u8]) -> Option<(u64, u64)> {
    let mut fields = text
        .split(|b| *b == b' ' || *b == b'\n')
        .filter(|f| !f.is_empty());
    let size = parse_u64(fields.next()?)?;
    let resident = parse_u64(fields.next()?)?;
    Some((size, resident))
}

/// The fields of /proc/PID/status used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// VmSwap in bytes (absent for kernel threads).
    pub swap: Option<u64>,
    /// The real uid.
    pub uid: Option<u32>,
}

/// Parses /proc/PID/status for the selected processes. Not procfs's
/// `Status`: it fails the whole file unless some 20 lines are there (Tgid,
/// Gid, FDSize, Groups, SigQ, Sig*, Cap*, ...), none of which is used here;
/// a status without them (a restricted or emulated /proc, or a recorded
/// host under `root_path`) would lose the process's owner and swap.
pub fn parse_status(text: &[u8]) -> Status {
    let mut status = Status::default();
    for line in text.split(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"VmSwap:") {
            let mut f = rest
                .split(|b| *b == b' ' || *b == b'\t')
                .filter(|f| !f.is_empty());
            status.swap = f
                .next()
                .and_then(parse_u64)
                .map(|kb| kb.saturating_mul(1024));
        } else if let Some(rest) = line.strip_prefix(b"Uid:") {
            status.uid = rest
                .split(|b| *b == b' ' || *b == b'\t')
                .find(|f| !f.is_empty())
                .and_then(parse_u64)
                .and_then(|v| u32::try_from(v).ok());
        }
    }
    status
}

/// A single number in a file (`oom_score`, `oom_score_adj`).
fn parse_number(text: &[u8]) -> Option<i64> {
    let end = text
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    parse_i64(&text[..end])
}

/// What does not change while a process runs one program (cached by pid,
/// start time and comm: an exec changes the comm unless the new program has
/// the same name).
#[derive(Debug, Clone, Default)]
struct StaticFacts {
    executable_path: Option<String>,
    command_line: Option<String>,
    /// The scrape that last selected this process (the cache keeps only the
    /// latest scrape's processes).
    seen: u64,
}

/// Bound on what is read of /proc/PID/cmdline (the rest is cut).
const MAX_CMDLINE: usize = 32 * 1024;
/// Bound on any other per-process file (status is about 1.5 KiB).
const MAX_PROC_FILE: usize = 16 * 1024;

/// User names from the host's /etc/passwd, reloaded when it changes.
#[derive(Debug)]
struct Users {
    path: PathBuf,
    names: HashMap<u32, String>,
    mtime: Option<SystemTime>,
    buf: Vec<u8>,
}

/// Bound on the users kept (a passwd file of a million lines is not read whole).
const MAX_USERS: usize = 65_536;

impl Users {
    fn new(path: PathBuf) -> Self {
        Users {
            path,
            names: HashMap::new(),
            mtime: None,
            buf: Vec::new(),
        }
    }

    fn refresh(&mut self) {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime.is_none() || mtime == self.mtime {
            return;
        }
        self.mtime = mtime;
        self.names.clear();
        if read_file(&self.path, &mut self.buf, 16 << 20).is_err() {
            return;
        }
        for line in self.buf.split(|b| *b == b'\n') {
            if self.names.len() >= MAX_USERS {
                break;
            }
            // name:password:uid:gid:gecos:home:shell
            let mut f = line.split(|b| *b == b':');
            let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if let (Ok(name), Some(uid)) = (
                std::str::from_utf8(name),
                parse_u64(uid).and_then(|v| u32::try_from(v).ok()),
            ) {
                self.names.entry(uid).or_insert_with(|| name.to_string());
            }
        }
    }

    /// The user name, else the uid as text.
    fn name(&self, uid: u32) -> String {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

/// Scrapes the top processes by resident memory.
pub struct ProcessScraper {
    proc_path: PathBuf,
    top: usize,
    include: Option<NameFilter>,
    exclude: Option<NameFilter>,
    /// The receiver's `cgroups.include`/`exclude`, applied to each
    /// process's memory cgroup.
    cgroups: CgroupFilter,
    secret_keys: Vec<String>,
    page_size: u64,
    ticks_per_second: u64,
    boot_unix_nano: u64,
    /// File contents (kept at its length: `read_at` returns how much is valid).
    buf: Vec<u8>,
    dir_buf: Vec<MaybeUninit<u8>>,
    path_buf: Vec<u8>,
    heap: BinaryHeap<Reverse<Candidate>>,
    cache: HashMap<(i32, u64, String), StaticFacts>,
    users: Users,
    scrape_seq: u64,
    /// The processes the last scrape reported, largest first (for
    /// incidents and the views), kept only while `keep_states` is set.
    pub states: Vec<ProcessState>,
    pub keep_states: bool,
}

impl ProcessScraper {
    pub fn new(
        root_path: &Path,
        cfg: &ProcessesConfig,
        cgroups: CgroupFilter,
        boot_unix_nano: u64,
    ) -> Result<ProcessScraper, String> {
        let include = cfg
            .include
            .as_ref()
            .map(NameFilter::new)
            .transpose()
            .map_err(|e| format!("processes::include: {e}"))?;
        let exclude = cfg
            .exclude
            .as_ref()
            .map(NameFilter::new)
            .transpose()
            .map_err(|e| format!("processes::exclude: {e}"))?;
        Ok(ProcessScraper {
            proc_path: root_path.join("proc"),
            top: cfg.top,
            include,
            exclude,
            cgroups,
            secret_keys: cfg
                .secret_keys
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
            page_size: crate::sysconf::page_size(),
            ticks_per_second: crate::sysconf::clock_ticks_per_second(),
            boot_unix_nano,
            buf: vec![0; 4096],
            dir_buf: vec![MaybeUninit::uninit(); 64 * 1024],
            path_buf: Vec::with_capacity(64),
            heap: BinaryHeap::with_capacity(cfg.top + 1),
            cache: HashMap::new(),
            states: Vec::new(),
            keep_states: false,
            users: Users::new(root_path.join("etc/passwd")),
            scrape_seq: 0,
        })
    }

    /// Appends one ResourceMetrics per selected process to `out`, largest
    /// first.
    pub fn scrape(
        &mut self,
        time_unix_nano: u64,
        warn: &mut WarnOnce,
        workloads: &mut Resolver,
        out: &mut Vec<ResourceMetrics>,
    ) {
        self.scrape_seq += 1;
        self.states.clear();
        let dir = match rustix::fs::open(
            &self.proc_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) => {
                warn.warn(
                    "proc-dir",
                    format_args!(
                        "memory receiver: cannot open {}: {e}; no process metrics",
                        self.proc_path.display()
                    ),
                );
                return;
            }
        };
        self.select(&dir, warn);
        let mut selected: Vec<Candidate> = self.heap.drain().map(|Reverse(c)| c).collect();
        selected.sort_unstable_by(|a, b| b.cmp(a));
        self.users.refresh();
        for c in selected {
            if let Some(rm) = self.describe(&dir, c, time_unix_nano, warn, workloads) {
                out.push(rm);
            }
        }
        let seq = self.scrape_seq;
        self.cache.retain(|_, f| f.seen == seq);
    }

    /// Fills the heap with the top N candidates from every pid's statm.
    fn select(&mut self, dir: &OwnedFd, warn: &mut WarnOnce) {
        self.heap.clear();
        // Taken out for the loop (the entries borrow it) and put back after.
        let mut dir_buf = std::mem::take(&mut self.dir_buf);
        let mut entries = RawDir::new(dir.as_fd(), &mut dir_buf);
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    warn.warn(
                        "proc-getdents",
                        format_args!("memory receiver: listing /proc failed: {e}"),
                    );
                    break;
                }
            };
            let name = entry.file_name().to_bytes();
            let Some(pid) = parse_u64(name).and_then(|p| i32::try_from(p).ok()) else {
                continue;
            };
            path_in(&mut self.path_buf, name, b"/statm");
            let n = match read_at(dir.as_fd(), &self.path_buf, &mut self.buf, MAX_PROC_FILE) {
                Ok(n) => n,
                Err(e) => {
                    note_error(warn, "statm", &e);
                    continue;
                }
            };
            let Some((size_pages, resident_pages)) = parse_statm(&self.buf[..n]) else {
                continue;
            };
            // Kernel threads have no memory of their own.
            if resident_pages == 0 {
                continue;
            }
            let candidate = Candidate {
                resident_pages,
                pid,
                size_pages,
            };
            let enters = self.heap.len() < self.top
                || self
                    .heap
                    .peek()
                    .is_some_and(|Reverse(min)| candidate > *min);
            if !enters {
                continue;
            }
            if (self.include.is_some() || self.exclude.is_some())
                && !self.name_passes(dir.as_fd(), name, warn)
            {
                continue;
            }
            if !self.cgroups.is_empty() && !self.cgroup_passes(dir.as_fd(), name, warn) {
                continue;
            }
            if self.heap.len() >= self.top {
                self.heap.pop();
            }
            self.heap.push(Reverse(candidate));
        }
        self.dir_buf = dir_buf;
    }

    /// Whether the process's comm passes include/exclude (read only for
    /// pids that would enter the top N).
    fn name_passes(&mut self, dir: BorrowedFd<'_>, pid: &[u8], warn: &mut WarnOnce) -> bool {
        path_in(&mut self.path_buf, pid, b"/comm");
        let n = match read_at(dir, &self.path_buf, &mut self.buf, MAX_PROC_FILE) {
            Ok(n) => n,
            Err(e) => {
                note_error(warn, "comm", &e);
                return false;
            }
        };
        let comm = self.buf[..n].strip_suffix(b"\n").unwrap_or(&self.buf[..n]);
        let comm = String::from_utf8_lossy(comm);
        self.include.as_ref().is_none_or(|f| f.matches(&comm))
            && !self.exclude.as_ref().is_some_and(|f| f.matches(&comm))
    }

    /// Whether the process's memory cgroup passes `cgroups` (read only for
    /// pids that would enter the top N); one of no known cgroup passes
    /// only when `include` is unset.
    fn cgroup_passes(&mut self, dir: BorrowedFd<'_>, pid: &[u8], warn: &mut WarnOnce) -> bool {
        path_in(&mut self.path_buf, pid, b"/cgroup");
        let cgroup = match read_at(dir, &self.path_buf, &mut self.buf, MAX_PROC_FILE) {
            Ok(n) => cgroup_from_proc(&String::from_utf8_lossy(&self.buf[..n])),
            Err(e) => {
                note_error(warn, "cgroup", &e);
                None
            }
        };
        match cgroup {
            Some(cg) => self.cgroups.selected(&cg),
            None => !self.cgroups.has_include(),
        }
    }

    /// Reads the selected process's details; `None` when it vanished.
    fn describe(
        &mut self,
        dir: &OwnedFd,
        c: Candidate,
        time_unix_nano: u64,
        warn: &mut WarnOnce,
        workloads: &mut Resolver,
    ) -> Option<ResourceMetrics> {
        let pid_text = c.pid.to_string();
        let pid = pid_text.as_bytes();
        let dir = dir.as_fd();

        let n = self.read(dir, pid, b"/stat", MAX_PROC_FILE, warn)?;
        let stat = parse_stat(&self.buf[..n])?;
        let comm = String::from_utf8_lossy(stat.comm).into_owned();
        let (ppid, minflt, majflt, starttime) =
            (stat.ppid, stat.minflt, stat.majflt, stat.starttime);
        let start_unix_nano = crate::process_table::ticks_to_unix_nano(
            self.boot_unix_nano,
            self.ticks_per_second,
            starttime,
        );

        let n = self.read(dir, pid, b"/status", MAX_PROC_FILE, warn)?;
        let status = parse_status(&self.buf[..n]);
        let oom_score = self
            .read(dir, pid, b"/oom_score", 64, warn)
            .and_then(|n| parse_number(&self.buf[..n]));
        let oom_score_adj = self
            .read(dir, pid, b"/oom_score_adj", 64, warn)
            .and_then(|n| parse_number(&self.buf[..n]));
        let cgroup = self
            .read(dir, pid, b"/cgroup", MAX_PROC_FILE, warn)
            .and_then(|n| cgroup_from_proc(&String::from_utf8_lossy(&self.buf[..n])));

        // exec keeps the pid and the start time but changes the command
        // line and the executable, and (nearly always) the comm.
        let key = (c.pid, starttime, comm.clone());
        let seq = self.scrape_seq;
        if let Some(facts) = self.cache.get_mut(&key) {
            facts.seen = seq;
        } else {
            let facts = self.read_static(dir, pid, warn);
            self.cache
                .insert(key.clone(), StaticFacts { seen: seq, ..facts });
        }
        let facts = self.cache.get(&key)?;

        let mut attributes = vec![
            kv_int("process.pid", i64::from(c.pid)),
            kv_int("process.parent_pid", i64::from(ppid)),
        ];
        let exe_name = facts
            .executable_path
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .unwrap_or(&comm);
        attributes.push(kv_str("process.executable.name", exe_name));
        let state = ProcessState {
            pid: c.pid,
            name: exe_name.to_owned(),
            rss: c.resident_pages.saturating_mul(self.page_size),
            cgroup: cgroup.clone(),
        };
        if let Some(path) = &facts.executable_path {
            attributes.push(kv_str("process.executable.path", path));
        }
        if let Some(cmd) = &facts.command_line {
            attributes.push(kv_str("process.command_line", cmd));
        }
        if let Some(uid) = status.uid {
            attributes.push(kv_str("process.owner", &self.users.name(uid)));
        }
        if let Some(cg) = &cgroup {
            attributes.push(kv_str("process.linux.cgroup", cg));
            if let Some(w) = workloads.resolve(cg, Some(c.pid)) {
                attributes.extend(w.resource_attributes());
            }
        }

        let mut b = MetricsBuilder::new(time_unix_nano);
        let start = start_unix_nano;
        b.int(
            &m::PROCESS_MEMORY_USAGE,
            start,
            int(c.resident_pages.saturating_mul(self.page_size)),
            Vec::new(),
        );
        b.int(
            &m::PROCESS_MEMORY_VIRTUAL,
            start,
            int(c.size_pages.saturating_mul(self.page_size)),
            Vec::new(),
        );
        if let Some(swap) = status.swap {
            b.int(&m::PROCESS_MEMORY_SWAP, start, int(swap), Vec::new());
        }
        for (kind, v) in [("major", majflt), ("minor", minflt)] {
            b.int(
                &m::PROCESS_PAGING_FAULTS,
                start,
                int(v),
                vec![kv_str("system.paging.fault.type", kind)],
            );
        }
        if let Some(v) = oom_score {
            b.int(&m::PROCESS_OOM_SCORE, start, v, Vec::new());
        }
        if let Some(v) = oom_score_adj {
            b.int(&m::PROCESS_OOM_SCORE_ADJ, start, v, Vec::new());
        }
        if self.keep_states {
            self.states.push(state);
        }
        Some(scoped_metrics(
            super::SCOPE_NAME,
            Some(Resource {
                attributes,
                ..Default::default()
            }),
            b.into_metrics(),
        ))
    }

    /// Command line (redacted) and executable path.
    fn read_static(&mut self, dir: BorrowedFd<'_>, pid: &[u8], warn: &mut WarnOnce) -> StaticFacts {
        let command_line = self
            .read(dir, pid, b"/cmdline", MAX_CMDLINE, warn)
            .map(|n| {
                let args: Vec<String> = self.buf[..n]
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                redact_args(&args, &self.secret_keys).join(" ")
            })
            .filter(|c| !c.is_empty());
        path_in(&mut self.path_buf, pid, b"/exe");
        let executable_path =
            match rustix::fs::readlinkat(dir, self.path_buf.as_slice(), Vec::new()) {
                Ok(target) => {
                    let target = target.to_string_lossy();
                    // A deleted (replaced) binary reads as "/path/x (deleted)".
                    Some(target.trim_end_matches(" (deleted)").to_string())
                }
                Err(e) => {
                    let e = io::Error::from(e);
                    if !vanished(&e) && self.alive(dir, pid) {
                        note_error(warn, "exe", &e);
                    }
                    None
                }
            };
        StaticFacts {
            executable_path,
            command_line,
            seen: 0,
        }
    }

    /// Reads `/proc/<pid><file>` into the buffer; `None` when it vanished or
    /// cannot be read (reported once).
    fn read(
        &mut self,
        dir: BorrowedFd<'_>,
        pid: &[u8],
        file: &'static [u8],
        max: usize,
        warn: &mut WarnOnce,
    ) -> Option<usize> {
        path_in(&mut self.path_buf, pid, file);
        match read_at(dir, &self.path_buf, &mut self.buf, max) {
            Ok(n) => Some(n),
            Err(e) => {
                if !vanished(&e) && self.alive(dir, pid) {
                    note_error(warn, &String::from_utf8_lossy(&file[1..]), &e);
                }
                None
            }
        }
    }

    /// Whether the process still runs (not exited, not a zombie): a process
    /// on its way out can fail reads with other errors than ENOENT/ESRCH
    /// (EACCES on `exe` once its memory is gone), which are no news either.
    fn alive(&mut self, dir: BorrowedFd<'_>, pid: &[u8]) -> bool {
        path_in(&mut self.path_buf, pid, b"/stat");
        match read_at(dir, &self.path_buf, &mut self.buf, MAX_PROC_FILE) {
            Ok(n) => {
                parse_stat(&self.buf[..n]).is_some_and(|s| !matches!(s.state, b'Z' | b'X' | b'x'))
            }
            Err(_) => false,
        }
    }
}

/// `<pid><suffix>` into `buf`.
fn path_in(buf: &mut Vec<u8>, pid: &[u8], suffix: &[u8]) {
    buf.clear();
    buf.extend_from_slice(pid);
    buf.extend_from_slice(suffix);
}

/// Reads a whole file relative to `dir` into `buf`, growing it up to `max`;
/// returns the length read. /proc files give all they have in one read when
/// the buffer is large enough, so a short read ends it (no extra read for
/// the end of file).
fn read_at(dir: BorrowedFd<'_>, path: &[u8], buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let fd = rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= max {
                break;
            }
            let grown = (buf.len() * 2).clamp(512, max);
            buf.resize(grown, 0);
        }
        let limit = buf.len().min(max);
        let n = rustix::io::read(&fd, &mut buf[len..limit])?;
        len += n;
        if n == 0 || len < limit {
            break;
        }
    }
    Ok(len)
}

/// A failed per-process read: a vanished process is normal; anything else
/// (EACCES on another user's `exe` without CAP_SYS_PTRACE, ...) is reported
/// once per file kind and error.
fn note_error(warn: &mut WarnOnce, file: &str, e: &io::Error) {
    if vanished(e) {
        return;
    }
    let key = format!("proc/{file}/{:?}", e.kind());
    warn.warn(
        &key,
        format_args!(
            "memory receiver: cannot read /proc/PID/{file} of some processes: {e} (reported once)"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_comm() {
        let text = b"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1234 0 56 0 10 20 0 0 20 0 1 0 987654 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let s = parse_stat(text).expect("parse");
        assert_eq!(s.comm, b"a) b (c)");
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.minflt, 1234);
        assert_eq!(s.majflt, 56);
        assert_eq!(s.starttime, 987654);
        assert_eq!(parse_stat(b"4242 (x"), None);
        assert_eq!(parse_stat(b"4242 (x) S"), None);
    }

    #[test]
    fn stat_of_this_process() {
        let text = std::fs::read("/proc/self/stat").expect("stat");
        let s = parse_stat(&text).expect("parse");
        // SAFETY: no preconditions.
        assert_eq!(s.ppid, unsafe { libc::getppid() });
        assert!(s.minflt > 0);
        assert!(s.starttime > 0);
    }

    #[test]
    fn statm_and_status() {
        assert_eq!(parse_statm(b"2562 384 320 5 0 110 0\n"), Some((2562, 384)));
        assert_eq!(parse_statm(b"0 0 0 0 0 0 0\n"), Some((0, 0)));
        assert_eq!(parse_statm(b"12\n"), None);
        let status = b"Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\nVmRSS:\t   70000 kB\nVmSwap:\t     128 kB\n";
        assert_eq!(
            parse_status(status),
            Status {
                swap: Some(128 * 1024),
                uid: Some(1000)
            }
        );
        assert_eq!(
            parse_status(b"Name:\tkthreadd\nUid:\t0\t0\t0\t0\n").swap,
            None
        );
        assert_eq!(parse_number(b"-1000\n"), Some(-1000));
        assert_eq!(parse_number(b"667\n"), Some(667));
        assert_eq!(parse_number(b"\n"), None);
    }

    #[test]
    fn name_filters() {
        let strict = NameFilter::new(&NameMatchConfig {
            names: vec!["java".into()],
            match_type: MatchType::Strict,
        })
        .expect("strict");
        assert!(strict.matches("java"));
        assert!(!strict.matches("javac"));
        let re = NameFilter::new(&NameMatchConfig {
            names: vec!["^py".into(), "node$".into()],
            match_type: MatchType::Regexp,
        })
        .expect("regexp");
        assert!(re.matches("python3"));
        assert!(re.matches("node"));
        assert!(!re.matches("nodejs"));
        assert!(NameFilter::new(&NameMatchConfig {
            names: vec!["(".into()],
            match_type: MatchType::Regexp,
        })
        .is_err());
        assert!(NameFilter::new(&NameMatchConfig::default()).is_err());
    }

    #[test]
    fn read_at_grows_the_buffer_up_to_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), vec![b'x'; 3000]).expect("write");
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("open");
        let mut buf = vec![0; 16];
        assert_eq!(
            read_at(fd.as_fd(), b"f", &mut buf, 10_000).expect("read"),
            3000
        );
        assert_eq!(
            read_at(fd.as_fd(), b"f", &mut buf, 1000).expect("read"),
            1000
        );
        assert!(vanished(
            &read_at(fd.as_fd(), b"nope", &mut buf, 100).expect_err("absent")
        ));
    }
}
