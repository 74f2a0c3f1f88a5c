//! A kill's lead-up: how its victim's cgroup climbed before it (from the
//! `memory` receiver's ring), what the cgroup's files say at the kill (limit,
//! `memory.events` or `memory.failcnt`, pressure), the system's memory
//! pressure at the kill, and the kernel's task table. Its OTLP form is the
//! `oom.leadup.*` and `oom.tasks.*` attributes of the kill record.

use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};

use super::history::{growth_rate, CgroupSample};
use crate::kernel_log::oom_report::OomTask;
use crate::pipeline::data::kv;
use crate::receivers::memory::cgroup::{parse_flat_keyed, parse_limit};
use crate::receivers::memory::read_file;
use crate::receivers::memory::system::parse_u64;

/// Lead-up samples a kill keeps: those of the last [`LEADUP_WINDOW_NS`].
pub const LEADUP_WINDOW_NS: u64 = 60 * 1_000_000_000;
/// Bound on one cgroup file read at the kill.
const MAX_FILE: usize = 4096;

/// `memory.events` (cgroup v2): how often the cgroup hit each boundary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    pub low: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    pub oom_group_kill: Option<u64>,
}

/// Memory pressure averages, percent of wall time over 10 s.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PressureAt {
    pub some_avg10: Option<f64>,
    pub full_avg10: Option<f64>,
}

/// Everything known about the build-up to one kill.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadUp {
    /// The cgroup the samples and files are of: the victim's, or its
    /// nearest ancestor that was sampled.
    pub cgroup: Option<String>,
    /// Samples of the last [`LEADUP_WINDOW_NS`] before the kill, oldest
    /// first.
    pub samples: Vec<CgroupSample>,
    /// Working set growth, bytes per second, over about 10 s and 60 s
    /// before the last sample.
    pub growth_10s: Option<f64>,
    pub growth_60s: Option<f64>,
    /// Read at the kill.
    pub limit: Option<u64>,
    pub usage_at_kill: Option<u64>,
    pub events: Option<MemoryEvents>,
    /// v1 `memory.failcnt`.
    pub failcnt: Option<u64>,
    pub cgroup_pressure: Option<PressureAt>,
    pub system_pressure: Option<PressureAt>,
    /// The kernel's task table: its largest rows and how many it had.
    pub tasks: Vec<OomTask>,
    pub task_count: usize,
    /// When the kill happened, Unix ns (the sample ages are relative to it).
    pub kill_unix_nano: u64,
}

impl LeadUp {
    /// The lead-up from the ring's `samples` (all those kept, oldest
    /// first) for a kill at `kill_unix_nano`.
    pub fn from_samples(
        cgroup: Option<String>,
        samples: Vec<CgroupSample>,
        kill_unix_nano: u64,
    ) -> LeadUp {
        let since = kill_unix_nano.saturating_sub(LEADUP_WINDOW_NS);
        let growth_10s = growth_rate(&samples, 10 * 1_000_000_000);
        let growth_60s = growth_rate(&samples, LEADUP_WINDOW_NS);
        let samples = samples
            .into_iter()
            .filter(|s| s.at_unix_nano >= since && s.at_unix_nano <= kill_unix_nano)
            .collect();
        LeadUp {
            cgroup,
            samples,
            growth_10s,
            growth_60s,
            kill_unix_nano,
            ..LeadUp::default()
        }
    }

    /// The last sample before the kill.
    pub fn last(&self) -> Option<&CgroupSample> {
        self.samples.last()
    }

    /// Reads what the cgroup's files say now (right after the kill):
    /// limit, usage, events, failcnt, pressure. `roots` are the cgroup
    /// hierarchies to look in (v1 memory controller, v2); the first where
    /// the cgroup has a limit file is its hierarchy.
    pub fn read_cgroup_files(&mut self, roots: &[PathBuf], path: &str) {
        let rel = path.trim_start_matches('/');
        let mut buf = Vec::new();
        for dir in roots.iter().map(|r| r.join(rel)) {
            if read(&dir.join("memory.max"), &mut buf) {
                self.limit = parse_limit(&buf);
                self.usage_at_kill = read_u64(&dir.join("memory.current"), &mut buf);
                if read(&dir.join("memory.events"), &mut buf) {
                    self.events = Some(parse_events(&buf));
                }
                if read(&dir.join("memory.pressure"), &mut buf) {
                    self.cgroup_pressure = Some(parse_pressure(&buf));
                }
                return;
            }
            if read(&dir.join("memory.limit_in_bytes"), &mut buf) {
                self.limit = parse_limit(&buf);
                self.usage_at_kill = read_u64(&dir.join("memory.usage_in_bytes"), &mut buf);
                self.failcnt = read_u64(&dir.join("memory.failcnt"), &mut buf);
                return;
            }
        }
    }

    /// Reads the system's memory pressure now.
    pub fn read_system_pressure(&mut self, proc_path: &Path) {
        let mut buf = Vec::new();
        if read(&proc_path.join("pressure/memory"), &mut buf) {
            self.system_pressure = Some(parse_pressure(&buf));
        }
    }

    /// The kill record's `oom.leadup.*` and `oom.tasks.*` attributes, only
    /// those that are known.
    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut a = Vec::new();
        let int = |v: u64| any_value::Value::IntValue(i64::try_from(v).unwrap_or(i64::MAX));
        let double = any_value::Value::DoubleValue;
        if let Some(cg) = &self.cgroup {
            a.push(kv(
                "oom.leadup.cgroup",
                any_value::Value::StringValue(cg.clone()),
            ));
        }
        if let Some(last) = self.last() {
            a.push(kv("oom.leadup.usage", int(last.usage)));
            a.push(kv("oom.leadup.working_set", int(last.working_set)));
            let age = self.kill_unix_nano.saturating_sub(last.at_unix_nano) as f64 / 1e9;
            a.push(kv("oom.leadup.sample_age", double(age)));
            a.push(kv(
                "oom.leadup.samples",
                int(u64::try_from(self.samples.len()).unwrap_or(u64::MAX)),
            ));
        }
        if let Some(g) = self.growth_10s {
            a.push(kv("oom.leadup.growth_rate.10s", double(g)));
        }
        if let Some(g) = self.growth_60s {
            a.push(kv("oom.leadup.growth_rate.60s", double(g)));
        }
        if let Some(v) = self.limit {
            a.push(kv("oom.leadup.limit", int(v)));
        }
        if let Some(v) = self.usage_at_kill {
            a.push(kv("oom.leadup.usage_at_kill", int(v)));
        }
        if let Some(v) = self.failcnt {
            a.push(kv("oom.leadup.failcnt", int(v)));
        }
        if let Some(e) = &self.events {
            for (key, v) in [
                ("oom.leadup.events.low", e.low),
                ("oom.leadup.events.high", e.high),
                ("oom.leadup.events.max", e.max),
                ("oom.leadup.events.oom", e.oom),
                ("oom.leadup.events.oom_kill", e.oom_kill),
                ("oom.leadup.events.oom_group_kill", e.oom_group_kill),
            ] {
                if let Some(v) = v {
                    a.push(kv(key, int(v)));
                }
            }
        }
        for (prefix, p) in [
            ("oom.leadup.cgroup_psi", &self.cgroup_pressure),
            ("oom.leadup.psi", &self.system_pressure),
        ] {
            if let Some(p) = p {
                if let Some(v) = p.some_avg10 {
                    a.push(kv(&format!("{prefix}.some.avg10"), double(v)));
                }
                if let Some(v) = p.full_avg10 {
                    a.push(kv(&format!("{prefix}.full.avg10"), double(v)));
                }
            }
        }
        if self.task_count > 0 {
            a.push(kv(
                "oom.tasks.count",
                int(u64::try_from(self.task_count).unwrap_or(u64::MAX)),
            ));
            a.push(kv(
                "oom.tasks.largest",
                crate::kernel_log::report_record::task_rows(&self.tasks),
            ));
        }
        a
    }
}

/// Reads a small file into `buf`; `false` when it cannot be read (a
/// cgroup gone with its last process, a kernel without the file).
fn read(path: &Path, buf: &mut Vec<u8>) -> bool {
    read_file(path, buf, MAX_FILE).is_ok()
}

fn read_u64(path: &Path, buf: &mut Vec<u8>) -> Option<u64> {
    read(path, buf)
        .then(|| parse_u64(buf.trim_ascii()))
        .flatten()
}

/// `memory.events`: `low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n...`.
pub fn parse_events(text: &[u8]) -> MemoryEvents {
    let mut e = MemoryEvents::default();
    for (key, value) in parse_flat_keyed(text) {
        let slot = match key {
            b"low" => &mut e.low,
            b"high" => &mut e.high,
            b"max" => &mut e.max,
            b"oom" => &mut e.oom,
            b"oom_kill" => &mut e.oom_kill,
            b"oom_group_kill" => &mut e.oom_group_kill,
            _ => continue,
        };
        *slot = Some(value);
    }
    e
}

/// The avg10 of a pressure file's `some` and `full` lines.
pub fn parse_pressure(text: &[u8]) -> PressureAt {
    let p = crate::receivers::memory::psi::parse_pressure(text);
    PressureAt {
        some_avg10: p.some.map(|l| l.avg10),
        full_avg10: p.full.map(|l| l.avg10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn attr<'a>(a: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        a.iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn the_lead_up_keeps_the_last_minute_and_its_growth() {
        let samples: Vec<_> = (0..=12u64)
            .map(|i| CgroupSample {
                at_unix_nano: 1000 * S + i * 10 * S,
                usage: 1000 + i * 100,
                working_set: 500 + i * 100,
            })
            .collect();
        let kill = 1000 * S + 123 * S;
        let l = LeadUp::from_samples(Some("/a".into()), samples, kill);
        // 60 s before the kill at 1123 s: samples from 1063 s on.
        assert_eq!(l.samples.len(), 6);
        assert_eq!(l.last().map(|s| s.working_set), Some(1700));
        assert_eq!(l.growth_10s, Some(10.0));
        assert_eq!(l.growth_60s, Some(10.0));
        let a = l.attributes();
        assert_eq!(
            attr(&a, "oom.leadup.working_set"),
            Some(&any_value::Value::IntValue(1700))
        );
        assert_eq!(
            attr(&a, "oom.leadup.usage"),
            Some(&any_value::Value::IntValue(2200))
        );
        assert_eq!(
            attr(&a, "oom.leadup.sample_age"),
            Some(&any_value::Value::DoubleValue(3.0))
        );
        assert_eq!(
            attr(&a, "oom.leadup.growth_rate.10s"),
            Some(&any_value::Value::DoubleValue(10.0))
        );
    }

    #[test]
    fn memory_events_and_pressure_parse_and_skip_what_they_do_not_know() {
        let e = parse_events(
            b"low 0\nhigh 3\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\nbogus x\nnew_key 5\n",
        );
        assert_eq!(e.max, Some(12));
        assert_eq!(e.oom_kill, Some(1));
        assert_eq!(e.oom_group_kill, Some(0));
        let p = parse_pressure(
            b"some avg10=12.34 avg60=1.00 avg300=0.00 total=123\nfull avg10=5.00 avg60=0.00 avg300=0.00 total=45\n",
        );
        assert_eq!(p.some_avg10, Some(12.34));
        assert_eq!(p.full_avg10, Some(5.0));
        assert_eq!(parse_pressure(b"garbage"), PressureAt::default());
    }

    #[test]
    fn cgroup_files_are_read_for_v2_and_v1() {
        let dir = tempfile::tempdir().expect("test fixture");
        let v2 = dir.path().join("v2/kubepods/pod1");
        std::fs::create_dir_all(&v2).expect("test fixture");
        std::fs::write(v2.join("memory.max"), "104857600\n").expect("test fixture");
        std::fs::write(v2.join("memory.current"), "104000000\n").expect("test fixture");
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 40\noom 2\noom_kill 2\n",
        )
        .expect("test fixture");
        std::fs::write(
            v2.join("memory.pressure"),
            "some avg10=80.00 avg60=20.00 avg300=5.00 total=1\nfull avg10=70.00 avg60=10.00 avg300=2.00 total=1\n",
        )
        .expect("test fixture");
        let mut l = LeadUp::default();
        l.read_cgroup_files(
            &[dir.path().join("v1"), dir.path().join("v2")],
            "/kubepods/pod1",
        );
        assert_eq!(l.limit, Some(104857600));
        assert_eq!(l.usage_at_kill, Some(104000000));
        assert_eq!(l.events.and_then(|e| e.max), Some(40));
        assert_eq!(l.cgroup_pressure.and_then(|p| p.full_avg10), Some(70.0));

        let v1 = dir.path().join("v1/docker/abc");
        std::fs::create_dir_all(&v1).expect("test fixture");
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n")
            .expect("test fixture");
        std::fs::write(v1.join("memory.usage_in_bytes"), "5000\n").expect("test fixture");
        std::fs::write(v1.join("memory.failcnt"), "77\n").expect("test fixture");
        let mut l = LeadUp::default();
        l.read_cgroup_files(
            &[dir.path().join("v1"), dir.path().join("v2")],
            "/docker/abc",
        );
        assert_eq!(l.limit, None, "v1's unlimited is no limit");
        assert_eq!(l.usage_at_kill, Some(5000));
        assert_eq!(l.failcnt, Some(77));

        // A cgroup gone already: nothing, and no error.
        let mut l = LeadUp::default();
        l.read_cgroup_files(&[dir.path().join("v2")], "/gone");
        assert_eq!(l, LeadUp::default());
    }
}
