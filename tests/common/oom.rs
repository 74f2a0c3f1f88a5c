//! A contained OOM kill for tests: a memory cgroup with a small limit and a
//! python3 child that allocates inside it until the kernel kills it.
//!
//! Never allocate without a limit: an unbounded allocation wakes the global
//! OOM killer, which may kill anything on the machine. The child is moved
//! into the cgroup before `exec`, the limit is read back before the child
//! starts, and the child also stops by itself after a bounded amount.

use super::kernel_log::kernel_log_lock;
use super::{machine_lock, LockMode, MachineLock};

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

/// The limit of the test cgroup.
pub const OOM_LIMIT_BYTES: u64 = 50 * 1024 * 1024;

/// The child allocates 10 MiB blocks, at most this many (far above the limit),
/// and touches every page (`bytes * n` writes them).
const PYTHON_ALLOCATOR: &str = "a = []
for _ in range(60):
    a.append(b'x' * (10 << 20))
raise SystemExit('allocated 600 MiB without being OOM-killed')
";

/// [`PYTHON_ALLOCATOR`] behind a gate: it allocates only after a line on
/// its stdin, so a test can act between its exec and its death.
const GATED_PYTHON_ALLOCATOR: &str = "import sys
sys.stdin.readline()
a = []
for _ in range(60):
    a.append(b'x' * (10 << 20))
raise SystemExit('allocated 600 MiB without being OOM-killed')
";

/// Which cgroup hierarchy the test cgroup lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// cgroup v1 memory controller (`memory.limit_in_bytes`).
    V1,
    /// cgroup v2 (`memory.max`).
    V2,
}

/// A memory cgroup, with a limit unless it only groups others; removed on
/// drop (its children must be dropped first).
#[derive(Debug)]
pub struct MemoryCgroup {
    path: PathBuf,
    /// Its path inside the hierarchy, as the kernel names it: `/a/b`.
    relative: String,
    version: CgroupVersion,
    /// Whether it has a limit of its own (only then may it hold an allocator).
    limited: bool,
}

/// Where a memory controller is available, v2 first.
pub fn find_memory_hierarchy() -> Option<(PathBuf, CgroupVersion)> {
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let controllers = fs::read_to_string(Path::new(root).join("cgroup.controllers"));
        if controllers.is_ok_and(|c| c.split_whitespace().any(|name| name == "memory")) {
            return Some((PathBuf::from(root), CgroupVersion::V2));
        }
    }
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").is_file() {
        return Some((v1.to_path_buf(), CgroupVersion::V1));
    }
    None
}

impl MemoryCgroup {
    /// Creates a uniquely named cgroup limited to `limit` bytes (no swap).
    /// `Ok(None)` when the host has no memory controller.
    pub fn create(limit: u64) -> io::Result<Option<Self>> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "oomscope-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Self::create_at(&name, Some(limit))
    }

    /// Creates the cgroup `relative` (`a/b/c`, inside the memory hierarchy;
    /// its parent must exist), limited to `limit` bytes (no swap), or without
    /// a limit of its own when `limit` is `None` (a cgroup that groups
    /// others). On cgroup v2 the memory controller is enabled for the
    /// parent's children. `Ok(None)` when the host has no memory controller.
    pub fn create_at(relative: &str, limit: Option<u64>) -> io::Result<Option<Self>> {
        let Some((root, version)) = find_memory_hierarchy() else {
            return Ok(None);
        };
        let relative = relative.trim_matches('/');
        let path = root.join(relative);
        if version == CgroupVersion::V2 {
            // The memory controller must be enabled for the children of the parent.
            let parent = path.parent().unwrap_or(&root);
            let control = parent.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control)?;
            if !enabled.split_whitespace().any(|c| c == "memory") {
                fs::write(&control, "+memory")?;
            }
        }
        fs::create_dir(&path)?;
        let cgroup = Self {
            path,
            relative: format!("/{relative}"),
            version,
            limited: limit.is_some(),
        };
        let Some(limit) = limit else {
            return Ok(Some(cgroup));
        };
        let limit_file = match version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        fs::write(cgroup.path.join(limit_file), limit.to_string())?;
        if version == CgroupVersion::V2 {
            // Absent when swap accounting is off; then there is no swap to use.
            let _ = fs::write(cgroup.path.join("memory.swap.max"), "0");
        }
        let read_back: u64 = fs::read_to_string(cgroup.path.join(limit_file))?
            .trim()
            .parse()
            .map_err(|e| io::Error::other(format!("{limit_file}: {e}")))?;
        if read_back == 0 || read_back > limit {
            return Err(io::Error::other(format!(
                "{limit_file} reads {read_back}, wanted at most {limit}: refusing to allocate"
            )));
        }
        Ok(Some(cgroup))
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its path inside the hierarchy, as the kernel names it (in
    /// /proc/PID/cgroup and its OOM reports): `/<name>`, or `/a/b/<name>`
    /// for one made with [`MemoryCgroup::create_at`].
    pub fn cgroup_path(&self) -> String {
        self.relative.clone()
    }

    /// Its memory usage and limit files (v1 `memory.usage_in_bytes` and
    /// `memory.limit_in_bytes`, v2 `memory.current` and `memory.max`).
    pub fn usage_and_limit_files(&self) -> (PathBuf, PathBuf) {
        let (usage, limit) = match self.version {
            CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
            CgroupVersion::V2 => ("memory.current", "memory.max"),
        };
        (self.path.join(usage), self.path.join(limit))
    }

    /// The hierarchy it lives in.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Starts `python3` inside the cgroup, allocating until it is OOM-killed.
    /// The child's pid is python's pid (`sh` execs it).
    pub fn spawn_allocator(&self) -> io::Result<OomChild> {
        if !self.limited {
            return Err(io::Error::other(format!(
                "{} has no limit of its own: refusing to allocate in it",
                self.path.display()
            )));
        }
        let procs = self.path.join("cgroup.procs");
        // `set -e`: if joining the cgroup fails, never exec the allocator.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"set -e; echo $$ > "$1"; exec python3 -c "$2""#)
            .arg("sh")
            .arg(&procs)
            .arg(PYTHON_ALLOCATOR)
            .spawn()?;
        Ok(OomChild { child })
    }
}

impl MemoryCgroup {
    /// Like [`Self::spawn_allocator`], with `extra` arguments after the
    /// script (python ignores them). Returns the child and the allocator's
    /// exact argv (`python3 -c SCRIPT EXTRA...`).
    pub fn spawn_allocator_with_args(
        &self,
        extra: &[String],
    ) -> io::Result<(OomChild, Vec<String>)> {
        // The interpreter itself, not a wrapper on PATH (pyenv's shim execs
        // it with another argv[0]).
        let output = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()?;
        let python = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || python.is_empty() {
            return Err(io::Error::other("python3 does not name its executable"));
        }
        let procs = self.path.join("cgroup.procs");
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"set -e; echo $$ > "$1"; shift; exec "$@""#)
            .arg("sh")
            .arg(&procs)
            .arg(&python)
            .arg("-c")
            .arg(PYTHON_ALLOCATOR)
            .args(extra)
            .spawn()?;
        let mut argv = vec![python, "-c".to_owned(), PYTHON_ALLOCATOR.to_owned()];
        argv.extend(extra.iter().cloned());
        Ok((OomChild { child }, argv))
    }
}

impl MemoryCgroup {
    /// An allocator in the cgroup that waits, exec'd, until
    /// [`GatedAllocator::release`]; returns it with its exact argv.
    pub fn spawn_gated_allocator(
        &self,
        extra: &[String],
    ) -> io::Result<(GatedAllocator, Vec<String>)> {
        if !self.limited {
            return Err(io::Error::other(
                "no limit of its own: refusing to allocate in it",
            ));
        }
        let output = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()?;
        let python = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || python.is_empty() {
            return Err(io::Error::other("python3 does not name its executable"));
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"set -e; echo $$ > "$1"; shift; exec "$@""#)
            .arg("sh")
            .arg(self.path.join("cgroup.procs"))
            .arg(&python)
            .arg("-c")
            .arg(GATED_PYTHON_ALLOCATOR)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        let mut argv = vec![
            python.clone(),
            "-c".to_owned(),
            GATED_PYTHON_ALLOCATOR.to_owned(),
        ];
        argv.extend(extra.iter().cloned());
        let gated = GatedAllocator {
            child: OomChild { child },
            python,
        };
        gated.wait_for_exec()?;
        Ok((gated, argv))
    }
}

/// See [`MemoryCgroup::spawn_gated_allocator`].
#[derive(Debug)]
pub struct GatedAllocator {
    pub child: OomChild,
    python: String,
}

impl GatedAllocator {
    /// Until `sh` has exec'd python (its /proc/PID/exe is the interpreter).
    fn wait_for_exec(&self) -> io::Result<()> {
        let exe = format!("/proc/{}/exe", self.child.pid());
        // /proc/PID/exe names the file, links resolved.
        let python = fs::canonicalize(&self.python)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if fs::read_link(&exe).is_ok_and(|p| p == python) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other("the allocator never exec'd python"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets it allocate (until its cgroup's limit kills it).
    /// Until python waits at its gate (blocked in read(2) on stdin): its
    /// exec has returned, so the kernel has sent every event of it.
    pub fn wait_until_gated(&self) -> io::Result<()> {
        let syscall = format!("/proc/{}/syscall", self.child.pid());
        let read = libc::SYS_read.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read_to_string(&syscall).unwrap_or_default();
            if text.split_whitespace().next() == Some(read.as_str()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "the allocator never waited at its gate: {text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn release(&mut self) -> io::Result<()> {
        use std::io::Write as _;
        let stdin = self
            .child
            .child
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        stdin.write_all(b"go\n")?;
        stdin.flush()
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // rmdir fails with EBUSY until the killed task has fully exited.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!("could not remove test cgroup {}: {e}", self.path.display());
                    return;
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// The allocating child; killed and reaped on drop.
#[derive(Debug)]
pub struct OomChild {
    child: Child,
}

impl OomChild {
    /// The child's pid (python's).
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// Waits for the child to exit (it is OOM-killed, or gives up after its
    /// bounded allocation).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }
}

impl Drop for OomChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The right to cause OOM kills, held by a test until dropped.
#[derive(Debug)]
pub struct OomSlot {
    _kills: MachineLock,
    _kernel_log: MachineLock,
}

/// Takes the machine-wide right to cause OOM kills.
///
/// The kernel prints the header of its OOM report (constraint, cgroup,
/// gfp_mask) at most 10 times per 5 s (`oom_rs` ratelimit in
/// mm/oom_kill.c), for the whole machine. So tests that kill take turns,
/// across test binaries and across suites running at the same time, and each
/// waits, before killing, until the last kill on the machine is more than
/// 5 s old (by the kernel's own timestamps), so that earlier kills cannot
/// have used up the budget. The slot also holds the kernel log shared (see
/// [`kernel_log_lock`]): tests read their kills' reports back from it.
pub async fn oom_test_slot() -> OomSlot {
    tokio::task::spawn_blocking(oom_test_slot_blocking)
        .await
        .expect("take the OOM test slot")
}

/// [`oom_test_slot`] for tests that are not async.
pub fn oom_test_slot_blocking() -> OomSlot {
    let kills = machine_lock("oom-kills", LockMode::Exclusive);
    let kernel_log = kernel_log_lock(LockMode::Shared);
    let window = Duration::from_millis(5500);
    if let Some(age) = last_kill_age() {
        if age < window {
            thread::sleep(window - age);
        }
    }
    OomSlot {
        _kills: kills,
        _kernel_log: kernel_log,
    }
}

/// How long ago the kernel last printed "Killed process", from /dev/kmsg
/// timestamps (CLOCK_MONOTONIC microseconds).
fn last_kill_age() -> Option<Duration> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .ok()?;
    let mut last_us = None;
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if rec.contains("Killed process") {
                    last_us = rec.split(',').nth(2).and_then(|t| t.parse::<u64>().ok());
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall writing into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now_us =
        u64::try_from(ts.tv_sec).ok()? * 1_000_000 + u64::try_from(ts.tv_nsec).ok()? / 1000;
    Some(Duration::from_micros(now_us.saturating_sub(last_us?)))
}
