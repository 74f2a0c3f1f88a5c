//! A real `systemd-journald` of the test's own, and writers for it.
//!
//! journald runs without systemd as PID 1 in a private mount and network
//! namespace (`unshare -m -n`): scratch directories are bound over
//! `/run/systemd` (its sockets), `/run/log` (its volatile journal) and
//! `/var/log/journal`, and a test `journald.conf` over the host's
//! (`Storage=volatile`, `Audit=no`, `ReadKMsg=no`: it neither touches the
//! host's audit settings nor reads the host's kernel log; no rate limit).
//! From outside, its sockets are files in the scratch directory and its
//! journal files are in `<dir>/run-log/journal/<machine-id>/`.
//!
//! Writers: a native-protocol datagram, and a program whose stdout and
//! stderr are a journald stream (as systemd connects a service's), started
//! in a cgroup `system.slice/<name>.service` of the cgroup2 hierarchy so that
//! journald gives its entries `_SYSTEMD_UNIT=<name>.service`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{is_root, signal};

/// systemd-journald, where Debian and Fedora put it.
fn journald_binary() -> Option<PathBuf> {
    [
        "/lib/systemd/systemd-journald",
        "/usr/lib/systemd/systemd-journald",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// A journald of the test's own; stopped on drop.
pub struct Journald {
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Journald {
    /// Starts journald with `extra` lines added to its `[Journal]` section.
    /// `Err` says why it cannot run here (the caller skips).
    pub fn start(extra: &str) -> Result<Journald, String> {
        if !is_root() {
            return Err("needs root (mount namespaces, journald)".into());
        }
        let binary = journald_binary()
            .ok_or("systemd-journald is not installed (apt-get install systemd)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        for sub in ["run-systemd", "run-log", "var-log-journal", "empty"] {
            std::fs::create_dir(d.join(sub)).map_err(|e| e.to_string())?;
        }
        std::fs::write(
            d.join("journald.conf"),
            format!(
                "[Journal]\nStorage=volatile\nAudit=no\nReadKMsg=no\nRateLimitBurst=0\n\
                 ForwardToSyslog=no\nForwardToKMsg=no\nForwardToConsole=no\nForwardToWall=no\n{extra}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let script = format!(
            "set -e; mount --bind {d}/run-systemd /run/systemd; mount --bind {d}/run-log /run/log; \
             mount --bind {d}/var-log-journal /var/log/journal; \
             mount --bind {d}/journald.conf /etc/systemd/journald.conf; \
             for c in /etc/systemd/journald.conf.d /usr/lib/systemd/journald.conf.d /usr/local/lib/systemd/journald.conf.d; do \
               if [ -d $c ]; then mount --bind {d}/empty $c; fi; done; \
             exec {binary}",
            d = d.display(),
            binary = binary.display()
        );
        let log = std::fs::File::create(d.join("journald.log")).map_err(|e| e.to_string())?;
        let child = Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "sh", "-c", &script])
            .env("SYSTEMD_LOG_TARGET", "console")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut journald = Journald { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(journald.socket().exists() && journald.active_file().is_some()) {
            if let Ok(Some(status)) = journald.child.try_wait() {
                return Err(format!(
                    "systemd-journald did not start in a private namespace ({status}): {}",
                    journald.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "systemd-journald not ready within 60s: {}",
                    journald.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(journald)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("journald.log")).unwrap_or_default()
    }

    /// The native protocol's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run-systemd/journal/socket")
    }

    /// The stdout streams' socket.
    pub fn stdout_socket(&self) -> PathBuf {
        self.dir.path().join("run-systemd/journal/stdout")
    }

    /// The directory of the journal files (machine-id subdirectories below).
    pub fn journal_dir(&self) -> PathBuf {
        self.dir.path().join("run-log/journal")
    }

    /// Every journal file, archived ones included.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in std::fs::read_dir(self.journal_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.file_name().to_string_lossy().contains(".journal") {
                    out.push(f.path());
                }
            }
        }
        out.sort();
        out
    }

    pub fn active_file(&self) -> Option<PathBuf> {
        self.files()
            .into_iter()
            .find(|f| f.ends_with("system.journal"))
    }

    pub fn archived_files(&self) -> Vec<PathBuf> {
        self.files()
            .into_iter()
            .filter(|f| f.to_string_lossy().contains('@'))
            .collect()
    }

    /// Sends one entry over the native protocol (fields `NAME=value`,
    /// values without newlines).
    pub fn send(&self, fields: &[(&str, &str)]) {
        let mut datagram = String::new();
        for (name, value) in fields {
            datagram.push_str(name);
            datagram.push('=');
            datagram.push_str(value);
            datagram.push('\n');
        }
        let socket = UnixDatagram::unbound().expect("datagram socket");
        socket
            .send_to(datagram.as_bytes(), self.socket())
            .unwrap_or_else(|e| panic!("send to journald: {e}"));
    }

    /// Waits until journald has written `message` (and so every entry sent
    /// before it: one socket, read in order). `send` only queues a
    /// datagram, and journald may take a signal (a rotation) before the
    /// datagrams queued ahead of it.
    pub fn wait_written(&self, message: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.messages().iter().any(|m| m == message) {
            assert!(
                Instant::now() < deadline,
                "journald did not write {message:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Rotates the journal (SIGUSR2, as `journalctl --rotate`) and waits
    /// until an archived file more than before is there.
    pub fn rotate(&self) {
        let before = self.archived_files().len();
        signal(self.pid(), libc::SIGUSR2);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.archived_files().len() <= before {
            assert!(
                Instant::now() < deadline,
                "journald did not rotate: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The MESSAGEs in the journal now, per journalctl.
    pub fn messages(&self) -> Vec<String> {
        let output = Command::new("journalctl")
            .arg("-D")
            .arg(self.journal_dir())
            .args(["-o", "cat", "--no-pager"])
            .output()
            .expect("journalctl");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The cgroup2 hierarchy's mount point.
fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        (fstype == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// A cgroup `system.slice/<name>.service` in the cgroup2 hierarchy, which
/// journald takes for a unit; its processes are killed and it is removed on
/// drop.
pub struct UnitCgroup {
    pub unit: String,
    pub path: PathBuf,
    created_slice: Option<PathBuf>,
    children: Vec<Child>,
}

impl UnitCgroup {
    pub fn create(name: &str) -> Result<UnitCgroup, String> {
        let mount = cgroup2_mount().ok_or("no cgroup2 hierarchy is mounted")?;
        let slice = mount.join("system.slice");
        let created_slice = if slice.is_dir() {
            None
        } else {
            std::fs::create_dir(&slice).map_err(|e| format!("{}: {e}", slice.display()))?;
            Some(slice.clone())
        };
        let unit = format!("oomscope-test-{}-{name}.service", std::process::id());
        let path = slice.join(&unit);
        std::fs::create_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(UnitCgroup {
            unit,
            path,
            created_slice,
            children: Vec::new(),
        })
    }

    /// Runs `shell` (sh -c) with stdout and stderr connected to journald's
    /// stdout socket, in this cgroup, as systemd starts a service: the
    /// stream's header names the unit, which journald falls back on when the
    /// writer is gone before it reads its /proc. journald gives each line
    /// the pid of the process that wrote it: a program the shell `exec`s
    /// keeps the returned pid.
    pub fn run_logged(&mut self, journald: &Journald, identifier: &str, shell: &str) -> u32 {
        const CONNECT: &str = r#"
import os, socket, sys
cgroup, path, identifier, unit, shell = sys.argv[1:6]
with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
# The stream header: identifier, unit id, priority, level prefix, and no
# forwarding to syslog, kmsg or the console.
s.sendall(f"{identifier}\n{unit}\n6\n0\n0\n0\n0\n".encode())
os.dup2(s.fileno(), 1)
os.dup2(s.fileno(), 2)
os.execvp("sh", ["sh", "-c", shell])
"#;
        let child = Command::new("python3")
            .args(["-c", CONNECT])
            .arg(&self.path)
            .arg(journald.stdout_socket())
            .arg(identifier)
            .arg(&self.unit)
            .arg(shell)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run python3");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                signal(pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir(&self.path);
        if let Some(slice) = &self.created_slice {
            let _ = std::fs::remove_dir(slice);
        }
    }
}

/// Whether `path` is an executable file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
