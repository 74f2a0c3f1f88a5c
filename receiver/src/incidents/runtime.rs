//! Runtime OOM records (`filelog`, `journald`) as incident messages: who
//! wrote them, and their `oom.incident.id`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::registry::{Identity, RuntimeMessage, MAX_MESSAGE_BYTES, MAX_PIDS};
use super::{IncidentHub, INCIDENT_ID};
use crate::pipeline::data::kv_str;

/// Whether records of `runtime` are about the process that wrote them:
/// the kernel's reports are the `oom` receiver's, and the kubelet writes
/// about other containers.
pub fn about_its_writer(runtime: &str) -> bool {
    !matches!(runtime, "kernel" | "kubelet")
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

/// The container a file's identity attributes name: `container.id`, and
/// `k8s.pod.uid` with `k8s.container.name` (a kubelet log path).
pub fn container_identity(attributes: &[KeyValue]) -> Identity {
    let s = |key| {
        string_attr(attributes, key)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Identity {
        container_id: s("container.id"),
        pod_container: s("k8s.pod.uid").zip(s("k8s.container.name")),
        ..Identity::default()
    }
}

/// Registers `record` (a matched runtime OOM record) with the hub and adds
/// its `oom.incident.id`. Does nothing for records that are not a runtime's
/// own OOM message, or while incidents are off.
pub fn register(
    hub: &IncidentHub,
    record: &mut LogRecord,
    identity: Identity,
    source: &str,
    pid: Option<i32>,
) {
    if !hub.enabled() {
        return;
    }
    let Some(runtime) = string_attr(&record.attributes, "oom.runtime") else {
        return;
    };
    if !about_its_writer(runtime) {
        return;
    }
    let pattern = string_attr(&record.attributes, "oom.pattern").unwrap_or_default();
    let mut text = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => {
            let mut end = s.len().min(MAX_MESSAGE_BYTES);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        }
        _ => String::new(),
    };
    text.shrink_to_fit();
    let time = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let message = RuntimeMessage {
        time_unix_nano: time,
        runtime: runtime.to_owned(),
        pattern: pattern.to_owned(),
        source: source.to_owned(),
        pid,
        text,
    };
    if let Some(id) = hub.message(identity, message) {
        record.attributes.push(kv_str(INCIDENT_ID, &id));
    }
}

/// A process that has a file open for writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub pid: i32,
    pub cgroup: Option<String>,
}

/// How long the writers of a file are taken as known.
const WRITERS_TTL: Duration = Duration::from_secs(10);
/// Files whose writers are remembered at most.
const MAX_CACHED_FILES: usize = 64;
/// Open files looked at per search at most: a host with millions of open
/// files gets an incomplete answer, never a long stall.
const MAX_FDS_SCANNED: usize = 200_000;
/// Least time between two searches: a burst of OOM messages in many files
/// costs at most two searches a second (the rest get no writer, and join by
/// where they were read).
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(500);

/// Finds who writes a log file: the processes that have it open for
/// writing, from `/proc/PID/fd` and `fdinfo`. Only asked when a runtime OOM
/// message was read from the file, and cached, so its cost (a `stat` per
/// open file on the host) is paid rarely.
#[derive(Debug)]
pub struct WriterFinder {
    proc_path: PathBuf,
    own_pid: i32,
    cache: HashMap<(u64, u64), (Instant, Vec<Writer>)>,
    last_scan: Option<Instant>,
}

impl WriterFinder {
    pub fn new(proc_path: &Path) -> Self {
        WriterFinder {
            proc_path: proc_path.to_path_buf(),
            own_pid: i32::try_from(std::process::id()).unwrap_or(0),
            cache: HashMap::new(),
            last_scan: None,
        }
    }

    /// The processes that have `path` open for writing (at most
    /// [`MAX_PIDS`]); empty when none, or when /proc cannot tell.
    pub fn writers(&mut self, path: &Path) -> Vec<Writer> {
        self.writers_at(path, Instant::now())
    }

    /// [`Self::writers`] as of `now` (tests pass their own clock).
    fn writers_at(&mut self, path: &Path, now: Instant) -> Vec<Writer> {
        let Ok(meta) = std::fs::metadata(path) else {
            return Vec::new();
        };
        let key = (meta.dev(), meta.ino());
        if let Some((at, writers)) = self.cache.get(&key) {
            if now.duration_since(*at) < WRITERS_TTL {
                return writers.clone();
            }
        }
        if self
            .last_scan
            .is_some_and(|at| now.duration_since(at) < MIN_SCAN_INTERVAL)
        {
            return Vec::new();
        }
        self.last_scan = Some(now);
        let writers = self.scan(key);
        if self.cache.len() >= MAX_CACHED_FILES {
            self.cache
                .retain(|_, (at, _)| now.duration_since(*at) < WRITERS_TTL);
            if self.cache.len() >= MAX_CACHED_FILES {
                self.cache.clear();
            }
        }
        self.cache.insert(key, (now, writers.clone()));
        writers
    }

    fn scan(&self, (dev, ino): (u64, u64)) -> Vec<Writer> {
        let Ok(procs) = std::fs::read_dir(&self.proc_path) else {
            return Vec::new();
        };
        let mut writers = Vec::new();
        let mut scanned = 0usize;
        for entry in procs.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if pid == self.own_pid {
                continue;
            }
            let proc_dir = entry.path();
            // A process gone or not ours to look at: skipped.
            let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                scanned += 1;
                if scanned > MAX_FDS_SCANNED {
                    return writers;
                }
                let Ok(target) = std::fs::metadata(fd.path()) else {
                    continue;
                };
                if target.dev() != dev || target.ino() != ino {
                    continue;
                }
                let flags = read_small(&proc_dir.join("fdinfo").join(fd.file_name()))
                    .and_then(|t| fdinfo_flags(&t));
                // O_WRONLY or O_RDWR: a reader (`tail -f`) is not a writer.
                if flags.is_some_and(|f| f & 0o3 != 0) {
                    let cgroup = read_small(&proc_dir.join("cgroup"))
                        .and_then(|t| crate::receivers::oom::enrich::cgroup_from_proc(&t));
                    writers.push(Writer { pid, cgroup });
                    if writers.len() >= MAX_PIDS {
                        return writers;
                    }
                    break;
                }
            }
        }
        writers
    }
}

fn read_small(path: &Path) -> Option<String> {
    let mut buf = Vec::new();
    crate::receivers::memory::read_file(path, &mut buf, 64 * 1024).ok()?;
    String::from_utf8(buf).ok()
}

/// The `flags:` of an fdinfo file (octal).
fn fdinfo_flags(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
}

/// The identity of a record written by `writers` (and of `container`, when
/// its file is a container's log), and the writer's pid when there is
/// exactly one.
pub fn writers_identity(writers: &[Writer], container: Identity) -> (Identity, Option<i32>) {
    let pid = match writers {
        [one] => Some(one.pid),
        _ => None,
    };
    // One cgroup for all of them, or none (they are not one container).
    let cgroup = writers.first().and_then(|w| w.cgroup.clone()).filter(|c| {
        writers
            .iter()
            .all(|w| w.cgroup.as_deref() == Some(c.as_str()))
    });
    (
        Identity {
            pids: writers.iter().map(|w| w.pid).collect(),
            cgroup,
            ..container
        },
        pid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn the_writer_of_a_file_is_found_and_a_reader_is_not() {
        let dir = tempfile::tempdir().expect("test fixture");
        let path = dir.path().join("app.log");
        std::fs::write(&path, "").expect("test fixture");
        // A child that holds the file open for writing (its stdout), and
        // one that only reads it.
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("test fixture");
        let mut writer = std::process::Command::new("sleep")
            .arg("600")
            .stdout(out)
            .spawn()
            .expect("test fixture");
        let input = std::fs::File::open(&path).expect("test fixture");
        let mut reader = std::process::Command::new("sleep")
            .arg("600")
            .stdin(input)
            .spawn()
            .expect("test fixture");
        let mut finder = WriterFinder::new(Path::new("/proc"));
        let writers = finder.writers(&path);
        let _ = writer.kill();
        let _ = reader.kill();
        let _ = writer.wait();
        let _ = reader.wait();
        let pids: Vec<i32> = writers.iter().map(|w| w.pid).collect();
        assert_eq!(pids, vec![writer.id() as i32]);
        assert!(writers[0].cgroup.is_some());
        let (identity, pid) = writers_identity(&writers, Identity::default());
        assert_eq!(pid, Some(writer.id() as i32));
        assert_eq!(identity.cgroup, writers[0].cgroup);
    }

    #[test]
    fn searches_are_spaced_however_many_files_ask() {
        let dir = tempfile::tempdir().expect("test fixture");
        let mut finder = WriterFinder::new(Path::new("/proc"));
        // All at one instant: however slow the machine, it is one moment.
        let now = Instant::now();
        for i in 0..100 {
            let path = dir.path().join(format!("{i}.log"));
            std::fs::write(&path, "x").expect("test fixture");
            finder.writers_at(&path, now);
        }
        // One search ran; the other 99 files were answered without one.
        assert_eq!(finder.cache.len(), 1);
    }

    #[test]
    fn a_file_nobody_writes_has_no_writers_and_a_missing_one_is_no_error() {
        let dir = tempfile::tempdir().expect("test fixture");
        let path = dir.path().join("quiet.log");
        std::fs::File::create(&path)
            .expect("test fixture")
            .write_all(b"x")
            .expect("test fixture");
        let mut finder = WriterFinder::new(Path::new("/proc"));
        assert!(finder.writers(&path).is_empty());
        assert!(finder.writers(&dir.path().join("missing.log")).is_empty());
    }

    #[test]
    fn fdinfo_flags_are_octal() {
        assert_eq!(
            fdinfo_flags("pos:\t0\nflags:\t0102001\nmnt_id:\t25\n"),
            Some(0o102001)
        );
        assert_eq!(fdinfo_flags("pos: 0\n"), None);
    }

    #[test]
    fn only_runtime_messages_about_their_writer_join() {
        let hub = IncidentHub::default();
        hub.enable(super::super::DEFAULT_BEFORE, super::super::DEFAULT_AFTER);
        let record = |runtime: &str| LogRecord {
            time_unix_nano: 5,
            attributes: vec![kv_str("oom.runtime", runtime), kv_str("oom.pattern", "x.y")],
            ..Default::default()
        };
        let mut java = record("java");
        register(&hub, &mut java, Identity::default(), "a.log", None);
        assert!(string_attr(&java.attributes, INCIDENT_ID).is_some());
        for other in ["kernel", "kubelet"] {
            let mut r = record(other);
            register(&hub, &mut r, Identity::default(), "a.log", None);
            assert!(string_attr(&r.attributes, INCIDENT_ID).is_none(), "{other}");
        }
    }
}
