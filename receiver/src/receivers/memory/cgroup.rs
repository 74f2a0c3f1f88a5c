//! Per-cgroup memory from the memory controller's hierarchy, cgroup v1
//! (`memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.oom_control`,
//! ...) or v2 (`memory.current`, `memory.max`, `memory.events`, ...).
//!
//! Every scrape walks the hierarchy (depth first, sorted, so the first
//! `max_cgroups` are the same ones each time) and reports every cgroup that
//! has a limit set or holds processes and passes include/exclude. Besides
//! the kernel's figures it derives `headroom` (the smallest limit - usage of
//! the cgroup and its ancestors) and `time_to_limit`: the least-squares
//! slope of the working set (usage - inactive_file) over the samples of the
//! last `growth_window` (at least [`MIN_GROWTH_SAMPLES`]), and the room left
//! to it (headroom + inactive_file) / slope when the slope is positive;
//! absent when it is flat or falling, or no limit is on the path.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::metrics as m;
use super::psi;
use super::system::parse_u64;
use super::{read_file, vanished, CgroupsConfig, Starts, WarnOnce};
use crate::incidents::CgroupState;
use crate::metric_catalog::{int, MetricDef, MetricsBuilder};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::pipeline::data::{kv_str, scoped_metrics};
use crate::receivers::cgroup_filter::CgroupFilter;
use crate::workload::Resolver;

/// Which cgroup version the memory controller is mounted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where the memory controller's hierarchy is under `cgroup_fs` (normally
/// /sys/fs/cgroup): v2 when the unified hierarchy there (or at `unified/`,
/// hybrid mode) lists `memory` in `cgroup.controllers`, else the v1
/// `memory/` hierarchy. A controller is bound to one hierarchy at a time.
pub fn find_memory_hierarchy(cgroup_fs: &Path) -> Option<(PathBuf, Version)> {
    for dir in [cgroup_fs.to_path_buf(), cgroup_fs.join("unified")] {
        if std::fs::read_to_string(dir.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|n| n == "memory"))
        {
            return Some((dir, Version::V2));
        }
    }
    let v1 = cgroup_fs.join("memory");
    v1.join("memory.usage_in_bytes")
        .is_file()
        .then_some((v1, Version::V1))
}

/// v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with
/// 4 KiB pages); anything this large is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// A limit file: `max` (v2) or the v1 sentinel is no limit (`None`).
pub fn parse_limit(text: &[u8]) -> Option<u64> {
    let t = text.trim_ascii();
    if t == b"max" {
        return None;
    }
    parse_u64(t).filter(|v| *v < V1_UNLIMITED)
}

/// `key value` lines (memory.stat, memory.events, memory.oom_control).
pub fn parse_flat_keyed(text: &[u8]) -> impl Iterator<Item = (&[u8], u64)> {
    text.split(|b| *b == b'\n').filter_map(|line| {
        let sp = memchr::memchr(b' ', line)?;
        Some((&line[..sp], parse_u64(line[sp + 1..].trim_ascii())?))
    })
}

/// memory.stat figures reported as `oomscope.cgroup.memory.breakdown`, by the
/// `oomscope.cgroup.memory.type` value, with their v2 and v1 (hierarchical) keys.
const BREAKDOWN: &[(&str, &str, &str)] = &[
    ("anon", "anon", "total_rss"),
    ("file", "file", "total_cache"),
    ("kernel", "kernel", ""),
    ("kernel_stack", "kernel_stack", ""),
    ("pagetables", "pagetables", ""),
    ("sock", "sock", ""),
    ("shmem", "shmem", "total_shmem"),
    ("file_mapped", "file_mapped", "total_mapped_file"),
    ("file_dirty", "file_dirty", "total_dirty"),
    ("file_writeback", "file_writeback", "total_writeback"),
    ("slab_reclaimable", "slab_reclaimable", ""),
    ("slab_unreclaimable", "slab_unreclaimable", ""),
    ("active_anon", "active_anon", "total_active_anon"),
    ("inactive_anon", "inactive_anon", "total_inactive_anon"),
    ("active_file", "active_file", "total_active_file"),
    ("inactive_file", "inactive_file", "total_inactive_file"),
    ("unevictable", "unevictable", "total_unevictable"),
];

/// The memory.stat figures used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryStat {
    /// By [`BREAKDOWN`] index.
    pub breakdown: [Option<u64>; BREAKDOWN.len()],
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
}

impl MemoryStat {
    fn inactive_file(&self) -> Option<u64> {
        BREAKDOWN
            .iter()
            .position(|(name, _, _)| *name == "inactive_file")
            .and_then(|i| self.breakdown[i])
    }
}

/// Parses memory.stat of either version (v1: the hierarchical `total_*`
/// figures, which include descendants as v2's do).
pub fn parse_memory_stat(text: &[u8], version: Version) -> MemoryStat {
    let mut stat = MemoryStat::default();
    for (key, value) in parse_flat_keyed(text) {
        let (pgfault, pgmajfault): (&[u8], &[u8]) = match version {
            Version::V2 => (b"pgfault", b"pgmajfault"),
            Version::V1 => (b"total_pgfault", b"total_pgmajfault"),
        };
        if key == pgfault {
            stat.pgfault = Some(value);
        } else if key == pgmajfault {
            stat.pgmajfault = Some(value);
        } else if let Some(i) = BREAKDOWN.iter().position(|(_, v2, v1)| {
            let k = match version {
                Version::V2 => *v2,
                Version::V1 => *v1,
            };
            !k.is_empty() && k.as_bytes() == key
        }) {
            stat.breakdown[i] = Some(value);
        }
    }
    stat
}

/// v1 memory.oom_control: (`oom_kill` count, `under_oom`).
pub fn parse_oom_control(text: &[u8]) -> (Option<u64>, Option<u64>) {
    let (mut kills, mut under) = (None, None);
    for (key, value) in parse_flat_keyed(text) {
        match key {
            b"oom_kill" => kills = Some(value),
            b"under_oom" => under = Some(value),
            _ => {}
        }
    }
    (kills, under)
}

/// Fewest samples `time_to_limit` is estimated from.
pub const MIN_GROWTH_SAMPLES: usize = 3;
/// Most samples kept per cgroup (fast sampling under pressure fills the
/// window with more).
const MAX_GROWTH_SAMPLES: usize = 256;

/// Seconds until `limit` at the least-squares growth rate of `samples`
/// (seconds, bytes), from the last sample's usage; `None` unless usage grows.
pub fn time_to_limit(samples: &VecDeque<(f64, f64)>, limit: u64) -> Option<f64> {
    if samples.len() < MIN_GROWTH_SAMPLES {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_u = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (t, u) in samples {
        sxx += (t - mean_t) * (t - mean_t);
        sxy += (t - mean_t) * (u - mean_u);
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    if !slope.is_finite() || slope <= 0.0 {
        return None;
    }
    let last = samples.back()?.1;
    Some(((limit as f64 - last).max(0.0)) / slope)
}

/// Adds a working-set sample to a cgroup's recent growth, forgetting what
/// is older than `window` seconds. A fall to under half of the previous
/// sample is a step, not a trend (an OOM kill or a restart emptied the
/// cgroup): the growth before it says nothing about the next, and would
/// keep a time to limit on an idle cgroup for a whole window.
fn push_growth_sample(samples: &mut VecDeque<(f64, f64)>, now: f64, working_set: f64, window: f64) {
    if samples
        .back()
        .is_some_and(|(_, previous)| working_set < previous / 2.0)
    {
        samples.clear();
    }
    samples.push_back((now, working_set));
    while samples.front().is_some_and(|(t, _)| now - t > window)
        || samples.len() > MAX_GROWTH_SAMPLES
    {
        samples.pop_front();
    }
}

/// What is kept per cgroup between scrapes.
#[derive(Debug)]
struct Tracked {
    /// The directory's inode: a cgroup removed and created again under the
    /// same path is a new series.
    ino: u64,
    /// Start of its cumulative counters.
    start_unix_nano: u64,
    /// `oomscope.cgroup.path`, built once.
    attributes: Vec<KeyValue>,
    /// (seconds since the scraper started, usage bytes).
    samples: VecDeque<(f64, f64)>,
    /// The walk that last passed it (it is forgotten once it is gone).
    seen: u64,
    /// The scrape that last reported it (the bound drops the longest
    /// unreported first).
    reported: u64,
    /// v1 `memory.failcnt`, which a write of 0 resets: its last value, and
    /// the start of its series (a new one after a reset).
    failcnt: Option<(u64, u64)>,
}

/// Tracked cgroups kept at most, as a multiple of `max_cgroups` (cgroups
/// that come and go in the report keep their series).
const TRACKED_PER_REPORTED: usize = 4;

/// Bound on directories visited per scrape, whatever `max_cgroups` is.
const MAX_VISITED: usize = 200_000;
/// Bound on what is read of one cgroup file (memory.stat is about 1.5 KiB).
const MAX_FILE: usize = 64 * 1024;

/// Scrapes the memory cgroups.
pub struct CgroupScraper {
    cgroup_fs: PathBuf,
    hierarchy: Option<(PathBuf, Version)>,
    filter: CgroupFilter,
    max_cgroups: usize,
    growth_window: Duration,
    tracked: HashMap<String, Tracked>,
    buf: Vec<u8>,
    epoch: Instant,
    seq: u64,
    /// Whether a scrape ran: cgroups seen at the first one have counters
    /// that began at boot at the earliest; for one first seen later, when
    /// its counters began is unknown (it may have existed unreported), so
    /// its series starts with a true reset point (start time = the time of
    /// its first point), as the OpenTelemetry data model prescribes.
    scraped_before: bool,
    /// The cgroups the last scrape reported (for incidents and the views),
    /// kept only while `keep_states` is set.
    pub states: Vec<CgroupState>,
    pub keep_states: bool,
}

/// The tightest memory limit over a cgroup and its ancestors: a cgroup is
/// OOM-killed at whichever of them it reaches first.
#[derive(Debug, Clone, Copy)]
struct Headroom(i128);

impl Headroom {
    /// The headroom of a cgroup with `limit` and `usage` whose ancestors
    /// leave it `inherited`.
    fn of(limit: Option<u64>, usage: Option<u64>, inherited: Option<Headroom>) -> Option<Headroom> {
        match (limit.zip(usage), inherited) {
            (Some((l, u)), Some(Headroom(h))) => {
                Some(Headroom((i128::from(l) - i128::from(u)).min(h)))
            }
            (Some((l, u)), None) => Some(Headroom(i128::from(l) - i128::from(u))),
            (None, inherited) => inherited,
        }
    }
}

impl CgroupScraper {
    pub fn new(cgroup_fs: &Path, cfg: &CgroupsConfig) -> Result<CgroupScraper, String> {
        Ok(CgroupScraper {
            cgroup_fs: cgroup_fs.to_path_buf(),
            hierarchy: None,
            filter: CgroupFilter::new(&cfg.include, &cfg.exclude)?,
            max_cgroups: cfg.max_cgroups,
            growth_window: cfg.growth_window.get(),
            tracked: HashMap::new(),
            buf: Vec::with_capacity(4096),
            epoch: Instant::now(),
            seq: 0,
            scraped_before: false,
            states: Vec::new(),
            keep_states: false,
        })
    }

    /// The hierarchy in use, once found.
    pub fn hierarchy(&self) -> Option<&(PathBuf, Version)> {
        self.hierarchy.as_ref()
    }

    /// Scrapes every selected cgroup: those of no container or pod into
    /// `b` (the host's resource), each container's or pod's into a
    /// ResourceMetrics of its own in `out`, whose resource is its workload.
    pub fn scrape(
        &mut self,
        b: &mut MetricsBuilder,
        starts: &Starts,
        warn: &mut WarnOnce,
        workloads: &mut Resolver,
        out: &mut Vec<ResourceMetrics>,
    ) {
        let Some((root, version)) = self.find_hierarchy(warn) else {
            return;
        };
        self.seq += 1;
        self.states.clear();
        let now_secs = self.epoch.elapsed().as_secs_f64();
        let new_series_start = if self.scraped_before {
            b.time_unix_nano()
        } else {
            starts.boot_unix_nano
        };
        let mut reported = 0usize;
        let mut visited = 0usize;
        // (relative path, "" for the root; the tightest headroom of its
        // ancestors), popped in sorted order.
        let mut stack: Vec<(String, Option<Headroom>)> = vec![(String::new(), None)];
        while let Some((rel, inherited)) = stack.pop() {
            visited += 1;
            if visited > MAX_VISITED {
                warn.warn(
                    "cgroup-visited",
                    format_args!(
                        "memory receiver: more than {MAX_VISITED} cgroups; the rest is not walked"
                    ),
                );
                break;
            }
            let dir = if rel.is_empty() {
                root.clone()
            } else {
                root.join(&rel)
            };
            let children = match child_cgroups(&dir, &rel) {
                Ok(children) => children,
                Err(e) => {
                    if !vanished(&e) {
                        note(warn, &dir, &e);
                    }
                    continue;
                }
            };
            let path = format!("/{rel}");
            let seq = self.seq;
            if let Some(t) = self.tracked.get_mut(&path) {
                t.seen = seq;
            }
            // Its own limit and usage: needed for its descendants' headroom
            // even when it is not reported itself.
            let own = match self.limit_and_usage(&dir, version, rel.is_empty(), warn) {
                Ok(own) => own,
                Err(e) => {
                    if !vanished(&e) {
                        note(warn, &dir, &e);
                    }
                    continue;
                }
            };
            // v2: a cgroup without the memory controller has no memory.*
            // files, and neither can its children.
            let Some((limit, usage)) = own else {
                continue;
            };
            let headroom = Headroom::of(limit, usage, inherited);
            if self.filter.selected(&path) {
                let workload = workloads.resolve(&path, None);
                let mut own = workload
                    .as_ref()
                    .map(|_| MetricsBuilder::new(b.time_unix_nano()));
                let into = own.as_mut().unwrap_or(&mut *b);
                let mark = into.mark();
                let kind = match &workload {
                    Some(w) if w.container_id.is_some() => Owner::Container,
                    Some(w) if w.pod_uid.is_some() => Owner::Pod,
                    _ => Owner::Cgroup,
                };
                let cgroup = Cgroup {
                    dir: &dir,
                    path: &path,
                    version,
                    limit,
                    usage,
                    headroom,
                    owner: kind,
                };
                let scraped = self.scrape_one(into, &cgroup, now_secs, new_series_start, warn);
                if let Err(e) = &scraped {
                    // Gone half read: none of it is reported. A container
                    // ending is routine, so only a debug line says so.
                    into.rollback(mark);
                    if vanished(e) {
                        tracing::debug!(cgroup = %path, "memory receiver: the cgroup vanished while it was read; left out of this scrape");
                    } else {
                        note(warn, &dir, e);
                    }
                }
                if let (Some(own), Some(w)) = (own, &workload) {
                    if !own.is_empty() {
                        out.push(scoped_metrics(
                            super::SCOPE_NAME,
                            Some(Resource {
                                attributes: w.resource_attributes(),
                                ..Default::default()
                            }),
                            own.into_metrics(),
                        ));
                    }
                }
                if let Ok(true) = scraped {
                    if let (Some(state), Some(w)) =
                        (self.states.last_mut().filter(|s| s.path == path), &workload)
                    {
                        state.container_id.clone_from(&w.container_id);
                        state.container_name = w
                            .container_name
                            .clone()
                            .or_else(|| w.k8s_container_name.clone());
                        state.pod_name.clone_from(&w.pod_name);
                    }
                    reported += 1;
                    if reported >= self.max_cgroups {
                        if !stack.is_empty() || !children.is_empty() {
                            warn.warn(
                                "cgroup-max",
                                format_args!(
                                    "memory receiver: cgroups::max_cgroups ({}) reached; the cgroups after it in the walk are left out (raise it or narrow cgroups::include)",
                                    self.max_cgroups
                                ),
                            );
                        }
                        break;
                    }
                }
            }
            stack.extend(children.into_iter().map(|c| (c, headroom)));
        }
        self.prune_tracked();
        self.scraped_before = true;
    }

    /// The memory controller's hierarchy, looked for until found (warned
    /// about while it is not).
    fn find_hierarchy(&mut self, warn: &mut WarnOnce) -> Option<(PathBuf, Version)> {
        if self.hierarchy.is_none() {
            self.hierarchy = find_memory_hierarchy(&self.cgroup_fs);
        }
        if self.hierarchy.is_none() {
            warn.warn(
                "cgroup-hierarchy",
                format_args!(
                    "memory receiver: no memory cgroup hierarchy under {} (neither cgroup2 with the memory controller nor v1 memory/); no cgroup metrics",
                    self.cgroup_fs.display()
                ),
            );
        }
        self.hierarchy.clone()
    }

    /// Forgets the cgroups this walk did not pass; beyond the bound on
    /// tracked cgroups, also those unreported the longest.
    fn prune_tracked(&mut self) {
        let seq = self.seq;
        self.tracked.retain(|_, t| t.seen == seq);
        let cap = self.max_cgroups.saturating_mul(TRACKED_PER_REPORTED);
        if self.tracked.len() > cap {
            let mut by_report: Vec<(u64, String)> = self
                .tracked
                .iter()
                .map(|(p, t)| (t.reported, p.clone()))
                .collect();
            by_report.sort_unstable();
            let excess = self.tracked.len() - cap;
            for (_, path) in by_report.into_iter().take(excess) {
                self.tracked.remove(&path);
            }
        }
    }

    /// A cgroup's own limit and usage; `None` when it has no memory
    /// controller files (v2: the controller is not enabled for it).
    fn limit_and_usage(
        &mut self,
        dir: &Path,
        version: Version,
        is_root: bool,
        warn: &mut WarnOnce,
    ) -> io::Result<Option<(Option<u64>, Option<u64>)>> {
        let (usage_file, limit_file) = match version {
            Version::V2 => ("memory.current", "memory.max"),
            Version::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
        };
        let limit = match self.read(dir, limit_file, warn)? {
            Some(()) => parse_limit(&self.buf),
            // The v2 root has no memory.max; elsewhere no memory controller.
            None if is_root => None,
            None => return Ok(None),
        };
        let usage = self
            .read(dir, usage_file, warn)?
            .and_then(|()| parse_u64(self.buf.trim_ascii()));
        Ok(Some((limit, usage)))
    }

    /// Reports one cgroup; `Ok(false)` when it has neither a limit nor
    /// processes.
    fn scrape_one(
        &mut self,
        b: &mut MetricsBuilder,
        cgroup: &Cgroup<'_>,
        now_secs: f64,
        new_series_start: u64,
        warn: &mut WarnOnce,
    ) -> io::Result<bool> {
        let Cgroup {
            dir,
            path,
            version,
            limit,
            usage,
            headroom,
            owner: _,
        } = *cgroup;
        if limit.is_none() && !self.holds_processes(dir)? {
            return Ok(false);
        }

        let ino = std::fs::metadata(dir)?.ino();
        let stat = self
            .read(dir, "memory.stat", warn)?
            .map(|()| parse_memory_stat(&self.buf, version));
        // What grows toward an OOM kill: usage less the inactive page cache
        // (reclaimed at the limit rather than killed for), the kubelet's
        // working set. Plain usage when memory.stat is missing.
        let working_set = usage.map(|u| {
            u.saturating_sub(
                stat.as_ref()
                    .and_then(MemoryStat::inactive_file)
                    .unwrap_or(0),
            )
        });
        let tracked = self.track(path, ino, new_series_start, now_secs, working_set);
        // The working set can grow by the headroom plus the inactive page
        // cache it would push out: (usage + headroom) is its limit.
        let growth = match (headroom, usage) {
            (Some(Headroom(h)), Some(u)) => {
                let room = u64::try_from(h.max(0)).unwrap_or(u64::MAX);
                time_to_limit(&tracked.samples, u.saturating_add(room))
            }
            _ => None,
        };
        let series = Series {
            start: tracked.start_unix_nano,
            attributes: tracked.attributes.clone(),
        };

        record_levels(b, &series, cgroup, growth);
        if let Some(stat) = &stat {
            record_memory_stat(b, &series, stat, cgroup);
        }
        match version {
            Version::V2 => self.scrape_v2_files(b, dir, &series, warn)?,
            Version::V1 => self.scrape_v1_files(b, cgroup, &series, warn)?,
        }
        if self.keep_states {
            self.states.push(CgroupState {
                path: path.to_owned(),
                usage,
                working_set,
                limit,
                headroom: headroom.map(|Headroom(h)| i64::try_from(h).unwrap_or(i64::MAX)),
                time_to_limit: growth,
                container_id: None,
                container_name: None,
                pod_name: None,
            });
        }
        Ok(true)
    }

    /// The kept state of the cgroup at `path`, brought up to this scrape:
    /// marked seen and reported, with `working_set` as its newest growth
    /// sample.
    fn track(
        &mut self,
        path: &str,
        ino: u64,
        new_series_start: u64,
        now_secs: f64,
        working_set: Option<u64>,
    ) -> &Tracked {
        let seq = self.seq;
        let window = self.growth_window.as_secs_f64();
        let tracked = self
            .tracked
            .entry(path.to_string())
            .or_insert_with(|| new_tracked(path, ino, new_series_start));
        if tracked.ino != ino {
            *tracked = new_tracked(path, ino, new_series_start);
        }
        tracked.seen = seq;
        if tracked.reported + 1 != seq {
            // Not reported last time: older samples do not describe the
            // recent growth.
            tracked.samples.clear();
        }
        tracked.reported = seq;
        if let Some(ws) = working_set {
            push_growth_sample(&mut tracked.samples, now_secs, ws as f64, window);
        }
        tracked
    }

    /// The v2-only files: memory.high, swap, memory.events and
    /// memory.pressure.
    fn scrape_v2_files(
        &mut self,
        b: &mut MetricsBuilder,
        dir: &Path,
        series: &Series,
        warn: &mut WarnOnce,
    ) -> io::Result<()> {
        let start = series.start;
        if self.read(dir, "memory.high", warn)?.is_some() {
            if let Some(high) = parse_limit(&self.buf) {
                b.int(&m::CGROUP_MEMORY_HIGH, start, int(high), series.attrs());
            }
        }
        if self.read(dir, "memory.swap.current", warn)?.is_some() {
            if let Some(v) = parse_u64(self.buf.trim_ascii()) {
                b.int(&m::CGROUP_MEMORY_SWAP_USAGE, start, int(v), series.attrs());
            }
        }
        if self.read(dir, "memory.swap.max", warn)?.is_some() {
            if let Some(v) = parse_limit(&self.buf) {
                b.int(&m::CGROUP_MEMORY_SWAP_LIMIT, start, int(v), series.attrs());
            }
        }
        if self.read(dir, "memory.events", warn)?.is_some() {
            for (key, v) in parse_flat_keyed(&self.buf) {
                let event = String::from_utf8_lossy(key);
                b.int(
                    &m::CGROUP_MEMORY_EVENTS,
                    start,
                    int(v),
                    series.attrs_with("oomscope.cgroup.memory.event", &event),
                );
            }
        }
        if self.read(dir, "memory.pressure", warn)?.is_some() {
            let p = psi::parse_pressure(&self.buf);
            psi::record(
                b,
                &m::CGROUP_PSI_AVG,
                &m::CGROUP_PSI_STALL_TIME,
                &p,
                start,
                &series.attributes,
            );
        }
        Ok(())
    }

    /// The v1-only files: memsw (swap), memory.oom_control, memory.failcnt
    /// and kmem.
    fn scrape_v1_files(
        &mut self,
        b: &mut MetricsBuilder,
        cgroup: &Cgroup<'_>,
        series: &Series,
        warn: &mut WarnOnce,
    ) -> io::Result<()> {
        let (dir, start) = (cgroup.dir, series.start);
        if self
            .read(dir, "memory.memsw.usage_in_bytes", warn)?
            .is_some()
        {
            if let (Some(memsw), Some(u)) = (parse_u64(self.buf.trim_ascii()), cgroup.usage) {
                b.int(
                    &m::CGROUP_MEMORY_SWAP_USAGE,
                    start,
                    int(memsw.saturating_sub(u)),
                    series.attrs(),
                );
            }
        }
        if self.read(dir, "memory.oom_control", warn)?.is_some() {
            let (kills, under) = parse_oom_control(&self.buf);
            if let Some(k) = kills {
                b.int(
                    &m::CGROUP_MEMORY_EVENTS,
                    start,
                    int(k),
                    series.attrs_with("oomscope.cgroup.memory.event", "oom_kill"),
                );
            }
            if let Some(u) = under {
                b.int(&m::CGROUP_MEMORY_UNDER_OOM, start, int(u), series.attrs());
            }
        }
        if self.read(dir, "memory.failcnt", warn)?.is_some() {
            if let Some(v) = parse_u64(self.buf.trim_ascii()) {
                let series_start =
                    self.failcnt_series_start(cgroup.path, v, b.time_unix_nano(), start);
                b.int(
                    &m::CGROUP_MEMORY_EVENTS,
                    series_start,
                    int(v),
                    series.attrs_with("oomscope.cgroup.memory.event", "max"),
                );
            }
        }
        if self
            .read(dir, "memory.kmem.usage_in_bytes", warn)?
            .is_some()
        {
            if let Some(v) = parse_u64(self.buf.trim_ascii()) {
                b.int(
                    &m::CGROUP_MEMORY_BREAKDOWN,
                    start,
                    int(v),
                    series.attrs_with("oomscope.cgroup.memory.type", "kernel"),
                );
            }
        }
        Ok(())
    }

    /// The start of the series of the cgroup's v1 `memory.failcnt`, now
    /// `value`; remembers the value.
    fn failcnt_series_start(&mut self, path: &str, value: u64, now: u64, start: u64) -> u64 {
        let Some(failcnt) = self.tracked.get_mut(path).map(|t| &mut t.failcnt) else {
            return start;
        };
        let series = match *failcnt {
            // Reset by a write of 0: a new series.
            Some((last, _)) if value < last => now,
            Some((_, series)) => series,
            None => start,
        };
        *failcnt = Some((value, series));
        series
    }

    /// Whether `cgroup.procs` lists at least one process (only its start is
    /// read).
    fn holds_processes(&mut self, dir: &Path) -> io::Result<bool> {
        match read_file(&dir.join("cgroup.procs"), &mut self.buf, 64) {
            Ok(()) => Ok(self.buf.iter().any(u8::is_ascii_digit)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads `dir/file` into the buffer. `Ok(None)` when the file is absent
    /// (kernel version, swap accounting off, the root cgroup); an error when
    /// the cgroup vanished (the caller skips it); other errors are reported
    /// once per file and give `Ok(None)`.
    fn read(&mut self, dir: &Path, file: &str, warn: &mut WarnOnce) -> io::Result<Option<()>> {
        let path = dir.join(file);
        match read_file(&path, &mut self.buf, MAX_FILE) {
            Ok(()) => Ok(Some(())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The file, or the whole cgroup? Only the latter ends it.
                if dir.exists() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
            Err(e) if vanished(&e) => Err(e),
            Err(e) => {
                note(warn, &path, &e);
                Ok(None)
            }
        }
    }
}

/// One cgroup of the walk, with what the walk read of it.
#[derive(Debug, Clone, Copy)]
struct Cgroup<'a> {
    dir: &'a Path,
    path: &'a str,
    version: Version,
    /// Its own limit (none: no limit of its own).
    limit: Option<u64>,
    usage: Option<u64>,
    /// The tightest (limit - usage) of it and its ancestors.
    headroom: Option<Headroom>,
    owner: Owner,
}

/// What a memory cgroup is: a container's and a pod's get the registry's
/// `container.*` and `k8s.pod.*` names for the figures the registry has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Cgroup,
    Container,
    Pod,
}

impl Owner {
    fn usage(self) -> &'static MetricDef {
        match self {
            Owner::Cgroup => &m::CGROUP_MEMORY_USAGE,
            Owner::Container => &m::CONTAINER_MEMORY_USAGE,
            Owner::Pod => &m::POD_MEMORY_USAGE,
        }
    }

    fn working_set(self) -> &'static MetricDef {
        match self {
            Owner::Cgroup => &m::CGROUP_MEMORY_WORKING_SET,
            Owner::Container => &m::CONTAINER_MEMORY_WORKING_SET,
            Owner::Pod => &m::POD_MEMORY_WORKING_SET,
        }
    }

    fn paging_faults(self) -> &'static MetricDef {
        match self {
            Owner::Cgroup => &m::CGROUP_PAGING_FAULTS,
            Owner::Container => &m::CONTAINER_PAGING_FAULTS,
            Owner::Pod => &m::POD_PAGING_FAULTS,
        }
    }

    /// `available` (limit - working set) and `rss` (anon): only the
    /// registry has them, for containers and pods.
    fn available_and_rss(self) -> Option<(&'static MetricDef, &'static MetricDef)> {
        match self {
            Owner::Cgroup => None,
            Owner::Container => Some((&m::CONTAINER_MEMORY_AVAILABLE, &m::CONTAINER_MEMORY_RSS)),
            Owner::Pod => Some((&m::POD_MEMORY_AVAILABLE, &m::POD_MEMORY_RSS)),
        }
    }
}

/// Where one cgroup's points go: the start of its series and its
/// attributes.
struct Series {
    start: u64,
    attributes: Vec<KeyValue>,
}

impl Series {
    /// The attributes of a point of the cgroup.
    fn attrs(&self) -> Vec<KeyValue> {
        self.attributes.clone()
    }

    /// The attributes of a point of the cgroup, plus `key` = `value`.
    fn attrs_with(&self, key: &str, value: &str) -> Vec<KeyValue> {
        let mut a = self.attributes.clone();
        a.push(kv_str(key, value));
        a
    }
}

/// Usage, limit, headroom and time to limit (`growth`).
fn record_levels(
    b: &mut MetricsBuilder,
    series: &Series,
    cgroup: &Cgroup<'_>,
    growth: Option<f64>,
) {
    let start = series.start;
    if let Some(u) = cgroup.usage {
        b.int(cgroup.owner.usage(), start, int(u), series.attrs());
    }
    if let Some(l) = cgroup.limit {
        b.int(&m::CGROUP_MEMORY_LIMIT, start, int(l), series.attrs());
    }
    if let (Some(Headroom(h)), Some(_)) = (cgroup.headroom, cgroup.usage) {
        let h = i64::try_from(h).unwrap_or(if h < 0 { i64::MIN } else { i64::MAX });
        b.int(&m::CGROUP_MEMORY_HEADROOM, start, h, series.attrs());
    }
    if let Some(t) = growth {
        b.double(&m::CGROUP_MEMORY_TIME_TO_LIMIT, start, t, series.attrs());
    }
}

/// The memory.stat figures: the breakdown, the working set and the page
/// faults.
fn record_memory_stat(
    b: &mut MetricsBuilder,
    series: &Series,
    stat: &MemoryStat,
    cgroup: &Cgroup<'_>,
) {
    let (start, usage, owner) = (series.start, cgroup.usage, cgroup.owner);
    for (i, (name, _, _)) in BREAKDOWN.iter().enumerate() {
        if let Some(v) = stat.breakdown[i] {
            b.int(
                &m::CGROUP_MEMORY_BREAKDOWN,
                start,
                int(v),
                series.attrs_with("oomscope.cgroup.memory.type", name),
            );
        }
    }
    if let (Some(u), Some(inactive)) = (usage, stat.inactive_file()) {
        let working_set = u.saturating_sub(inactive);
        b.int(owner.working_set(), start, int(working_set), series.attrs());
        if let (Some((available, _)), Some(limit)) = (owner.available_and_rss(), cgroup.limit) {
            b.int(
                available,
                start,
                int(limit.saturating_sub(working_set)),
                series.attrs(),
            );
        }
    }
    // BREAKDOWN[0]: anon (v1 total_rss).
    if let (Some((_, rss)), Some(anon)) = (owner.available_and_rss(), stat.breakdown[0]) {
        b.int(rss, start, int(anon), series.attrs());
    }
    if let (Some(all), Some(major)) = (stat.pgfault, stat.pgmajfault) {
        for (kind, v) in [("major", major), ("minor", all.saturating_sub(major))] {
            b.int(
                owner.paging_faults(),
                start,
                int(v),
                series.attrs_with("system.paging.fault.type", kind),
            );
        }
    }
}

/// The subdirectories of `dir`, the cgroup at `rel`, as paths relative to
/// the root, in reverse order: the walk pops them off its stack sorted.
fn child_cgroups(dir: &Path, rel: &str) -> io::Result<Vec<String>> {
    let mut children: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|name| {
            if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            }
        })
        .collect();
    children.sort_unstable_by(|a, b| b.cmp(a));
    Ok(children)
}

fn new_tracked(path: &str, ino: u64, start_unix_nano: u64) -> Tracked {
    // Container and pod identity is the resource, not a point attribute.
    let attributes = vec![kv_str("oomscope.cgroup.path", path)];
    Tracked {
        ino,
        start_unix_nano,
        attributes,
        samples: VecDeque::new(),
        seen: 0,
        reported: 0,
        failcnt: None,
    }
}

/// Reports an unreadable cgroup file once per file name and kind of error
/// (one permission problem on `memory.stat` is one line, not one per cgroup).
fn note(warn: &mut WarnOnce, path: &Path, e: &io::Error) {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    warn.warn(
        &format!("cgroup-file:{file}:{:?}", e.kind()),
        format_args!(
            "memory receiver: cannot read {}: {e} (reported once for every cgroup's {file} with this error)",
            path.display()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(b"max\n"), None);
        assert_eq!(parse_limit(b"52428800\n"), Some(52428800));
        assert_eq!(parse_limit(b"9223372036854771712\n"), None, "v1 unlimited");
        assert_eq!(parse_limit(b"garbage"), None);
    }

    #[test]
    fn v2_memory_stat_and_events() {
        let stat = b"anon 1000\nfile 2000\nkernel 300\nkernel_stack 16384\npagetables 4096\nsock 0\nshmem 50\nfile_mapped 60\nfile_dirty 7\nfile_writeback 0\nslab_reclaimable 100\nslab_unreclaimable 200\ninactive_anon 10\nactive_anon 990\ninactive_file 1500\nactive_file 500\nunevictable 0\npgfault 5000\npgmajfault 12\n";
        let s = parse_memory_stat(stat, Version::V2);
        assert_eq!(s.breakdown[0], Some(1000));
        assert_eq!(s.breakdown[1], Some(2000));
        assert_eq!(s.inactive_file(), Some(1500));
        assert_eq!(s.pgfault, Some(5000));
        assert_eq!(s.pgmajfault, Some(12));
        let events: Vec<(&[u8], u64)> =
            parse_flat_keyed(b"low 0\nhigh 3\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n")
                .collect();
        assert_eq!(events.len(), 6);
        assert_eq!(events[2], (&b"max"[..], 17));
        assert_eq!(events[4], (&b"oom_kill"[..], 1));
    }

    #[test]
    fn v1_files() {
        let stat = b"cache 4096\nrss 8192\nshmem 0\nmapped_file 0\ninactive_file 4096\npgfault 10\npgmajfault 1\nhierarchical_memory_limit 52428800\ntotal_cache 40960\ntotal_rss 81920\ntotal_shmem 0\ntotal_mapped_file 4096\ntotal_inactive_file 30000\ntotal_pgfault 100\ntotal_pgmajfault 3\n";
        let s = parse_memory_stat(stat, Version::V1);
        assert_eq!(s.breakdown[0], Some(81920), "anon = total_rss");
        assert_eq!(s.breakdown[1], Some(40960), "file = total_cache");
        assert_eq!(s.inactive_file(), Some(30000));
        assert_eq!(s.pgfault, Some(100));
        assert_eq!(s.pgmajfault, Some(3));
        assert_eq!(
            parse_oom_control(b"oom_kill_disable 0\nunder_oom 1\noom_kill 4\n"),
            (Some(4), Some(1))
        );
    }

    #[test]
    fn a_step_down_starts_the_growth_afresh() {
        let mut s = VecDeque::new();
        for (t, ws) in [(0.0, 10e6), (1.0, 20e6), (2.0, 30e6)] {
            push_growth_sample(&mut s, t, ws, 120.0);
        }
        assert!(time_to_limit(&s, 32_000_000).is_some());
        // Killed: 30 MB to 12 kB. No estimate from the growth before.
        push_growth_sample(&mut s, 3.0, 12e3, 120.0);
        assert_eq!(s.len(), 1);
        assert_eq!(time_to_limit(&s, 32_000_000), None);
        // A small dip is noise, not a step.
        push_growth_sample(&mut s, 4.0, 16e3, 120.0);
        push_growth_sample(&mut s, 5.0, 10e3, 120.0);
        assert_eq!(s.len(), 3);
        // Old samples leave the window.
        push_growth_sample(&mut s, 200.0, 10e3, 120.0);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn growth_estimate() {
        let mut s = VecDeque::new();
        assert_eq!(time_to_limit(&s, 100), None);
        // 10 bytes a second, at 50 now: 50 more bytes take 5 s.
        for (t, u) in [(0.0, 30.0), (1.0, 40.0), (2.0, 50.0)] {
            s.push_back((t, u));
        }
        let t = time_to_limit(&s, 100).expect("growing");
        assert!((t - 5.0).abs() < 1e-9, "{t}");
        // Noisy but growing: the fit, not the last two points.
        let noisy: VecDeque<(f64, f64)> =
            [(0.0, 0.0), (1.0, 20.0), (2.0, 10.0), (3.0, 30.0)].into();
        let t = time_to_limit(&noisy, 100).expect("growing");
        // slope 8: (100 - 30) / 8
        assert!((t - 8.75).abs() < 1e-9, "{t}");
        // Flat or shrinking: absent.
        let flat: VecDeque<(f64, f64)> = [(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)].into();
        assert_eq!(time_to_limit(&flat, 100), None);
        let down: VecDeque<(f64, f64)> = [(0.0, 9.0), (1.0, 5.0), (2.0, 1.0)].into();
        assert_eq!(time_to_limit(&down, 100), None);
        // Already over the limit: 0.
        let over: VecDeque<(f64, f64)> = [(0.0, 90.0), (1.0, 100.0), (2.0, 110.0)].into();
        assert_eq!(time_to_limit(&over, 100), Some(0.0));
    }
}
