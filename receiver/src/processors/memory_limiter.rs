//! The `memory_limiter` processor: refuses data while the agent uses too
//! much memory, like the collector's `memorylimiterprocessor`, so that
//! receivers push back (OTLP 429/503, file readers pause) instead of the agent
//! growing until the kernel kills it.
//!
//! A background task samples the process's resident memory
//! (`/proc/self/statm`) every `check_interval`, less the resident pages of
//! mapped systemd journal files: the `journald` receiver reads them through
//! libsystemd's mappings, and those pages are page cache the kernel drops at
//! will, not the agent's. Limits:
//! - hard limit: `limit_mib`, or `limit_percentage` of the memory available to
//!   the agent (its cgroup's limit, v2 `memory.max` or v1
//!   `memory.limit_in_bytes`, the smallest along the cgroup's ancestors, when
//!   lower than `MemTotal`; else `MemTotal`);
//! - soft limit: hard limit minus the spike allowance (`spike_limit_mib`, or
//!   `spike_limit_percentage`; default 20% of the hard limit).
//!
//! Above the soft limit new data is refused (`ConsumeError::Refused` with
//! `retry_after` = `check_interval`) until usage falls below it again. Where
//! the collector forces a garbage collection, a reading above the soft limit
//! first has the allocators give freed memory back to the OS (at most once a
//! second) and is taken again, so memory already freed refuses no data.
//!
//! Unlike the collector, a decision never rests on a reading older than
//! [`MAX_READING_AGE`]: data is offered each time faster than
//! `check_interval` lets the sampler see usage grow (at tens of MB/s a
//! second's intake is more than a spike allowance, and usage went from below
//! the soft limit to above the hard one between two samples), so `consume`
//! reads the usage again when the last reading is older. Those readings
//! decide; the background sampler runs only while data is refused: it reads
//! every `check_interval` (usage falls while nothing is offered, and the
//! refusal must end without data to look at), and logs when refusing starts
//! and stops, at most once an interval (a usage near the soft limit flips
//! the readings at consume time often). Accepting, it waits for a reading
//! that refuses: a sampler that read every interval would wake an idle
//! agent for nothing, and one that ran while data flows would only repeat
//! the readings data takes anyway.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::component::{
    BuildContext, ComponentConfig, Factory, ProcessorConfig, ProcessorFactory, Stability,
};
use crate::config::{from_node, ConfigError, GoDuration, Node, ValidationError};
use crate::pipeline::{Batch, ConsumeError, Consumer, DynConsumer, Signal};
use crate::telemetry::ProcessorMetrics;

const MIB: u64 = 1024 * 1024;

/// Oldest reading of the usage a decision may rest on; `consume` reads it
/// again when the last one is older (reading `/proc/self/statm` costs a few
/// microseconds; see [`read_rss`] for when more is read).
const MAX_READING_AGE: Duration = Duration::from_millis(10);

/// Least time between two forced releases of freed memory
/// ([`release_freed_memory`]).
const RELEASE_INTERVAL: Duration = Duration::from_secs(1);

/// `memory_limiter` configuration (the collector's keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// Time between two memory usage samples; required (1s is recommended).
    pub check_interval: GoDuration,
    /// Hard limit on the agent's resident memory, in MiB.
    pub limit_mib: u64,
    /// Headroom below `limit_mib` for usage spikes between samples, in MiB;
    /// data is refused above `limit_mib - spike_limit_mib`. 0 = 20% of the limit.
    pub spike_limit_mib: u64,
    /// Hard limit as a percentage of the memory available to the agent (its
    /// cgroup limit, else the host's total); used when `limit_mib` is 0.
    pub limit_percentage: u64,
    /// Spike headroom as a percentage of the same total; 0 = 20% of the limit.
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: GoDuration::ZERO,
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }
}

impl ComponentConfig for MemoryLimiterConfig {
    /// The collector's checks and messages.
    fn validate(&self) -> Result<(), ValidationError> {
        if self.check_interval.is_zero() {
            return Err(ValidationError::at(
                "check_interval",
                "must be greater than zero",
            ));
        }
        if self.limit_mib == 0 && self.limit_percentage == 0 {
            return Err(ValidationError::whole(
                "'limit_mib' or 'limit_percentage' must be greater than zero",
            ));
        }
        if self.limit_mib > 0 && self.spike_limit_mib >= self.limit_mib {
            return Err(ValidationError::at(
                "spike_limit_mib",
                "must be smaller than 'limit_mib'",
            ));
        }
        if self.limit_percentage > 100 || self.spike_limit_percentage > 100 {
            return Err(ValidationError::whole(
                "'limit_percentage' and 'spike_limit_percentage' must be greater than zero and less than or equal to hundred",
            ));
        }
        if self.limit_mib == 0 && self.spike_limit_percentage >= self.limit_percentage {
            return Err(ValidationError::at(
                "spike_limit_percentage",
                "must be smaller than 'limit_percentage'",
            ));
        }
        Ok(())
    }
}

/// Makes `memory_limiter` processors.
pub struct MemoryLimiterProcessorFactory;

impl Factory for MemoryLimiterProcessorFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["memory_limiter"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "refuses data while the agent's own memory is above its limit, so the agent never becomes an OOM itself"
    }
}

impl ProcessorFactory for MemoryLimiterProcessorFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ProcessorConfig>, ConfigError> {
        Ok(Box::new(from_node::<MemoryLimiterConfig>(node)?))
    }
}

impl ProcessorConfig for MemoryLimiterConfig {
    fn build(
        &self,
        ctx: &BuildContext,
        signal: Signal,
        next: DynConsumer,
    ) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> {
        build(self, ctx, signal, next)
    }
}

impl MemoryLimiterConfig {
    /// (hard, soft) limits in bytes; `total` is the memory available to the
    /// agent, read only when a percentage is configured.
    fn limits(&self, total: impl FnOnce() -> anyhow::Result<u64>) -> anyhow::Result<(u64, u64)> {
        let (hard, spike) = if self.limit_mib > 0 {
            (
                self.limit_mib.saturating_mul(MIB),
                self.spike_limit_mib.saturating_mul(MIB),
            )
        } else {
            let total = total()?;
            (
                total / 100 * self.limit_percentage,
                total / 100 * self.spike_limit_percentage,
            )
        };
        let spike = if spike == 0 { hard / 5 } else { spike };
        Ok((hard, hard.saturating_sub(spike)))
    }
}

pub fn build(
    c: &MemoryLimiterConfig,
    ctx: &BuildContext,
    s: Signal,
    next: DynConsumer,
) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> {
    build_with(c, ctx, s, next, Arc::new(read_rss), release_freed_memory)
}

/// Reads the current memory usage in bytes.
type UsageSampler = Arc<dyn Fn() -> std::io::Result<u64> + Send + Sync>;

fn build_with(
    c: &MemoryLimiterConfig,
    ctx: &BuildContext,
    s: Signal,
    next: DynConsumer,
    sampler: UsageSampler,
    release: fn() -> bool,
) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> {
    c.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
    let (hard, soft) = c
        .limits(available_memory)
        .map_err(|e| anyhow::anyhow!("{}: cannot determine the memory limit: {e}", ctx.id))?;
    let state = Arc::new(LimiterState {
        id: ctx.id.to_string(),
        hard,
        soft,
        refusing: AtomicBool::new(false),
        refusal_began: Notify::new(),
        last_usage: AtomicU64::new(0),
        epoch: Instant::now(),
        read_at: AtomicU64::new(0),
        release,
    });
    tracing::info!(
        processor = %ctx.id,
        limit_mib = hard / MIB,
        soft_limit_mib = soft / MIB,
        "memory limiter configured"
    );
    // Sample once now, so the first batches are already checked.
    let mut refusing = false;
    state.check(&sampler, &mut refusing);
    let stop = CancellationToken::new();
    let task = tokio::spawn(sample_loop(
        Arc::clone(&state),
        Arc::clone(&sampler),
        c.check_interval.get(),
        refusing,
        stop.clone(),
    ));
    let observed = Arc::clone(&state);
    let refusing_gauge = ctx.telemetry.processor_gauge(
        &ctx.id,
        s,
        crate::config::MetricsLevel::Normal,
        "oomscope_processor_memory_limiter_refusing",
        "1 while the memory limiter refuses data (usage above its soft limit), else 0",
        move || i64::from(observed.refusing.load(Ordering::Relaxed)),
    );
    let consumer = MemoryLimiter {
        _refusing_gauge: refusing_gauge,
        state,
        sampler,
        retry_after: c.check_interval.get(),
        signal: s,
        metrics: ctx.telemetry.processor(&ctx.id),
        next,
        _stop_sampling: stop.drop_guard(),
    };
    Ok((Arc::new(consumer), Some(task)))
}

struct LimiterState {
    id: String,
    hard: u64,
    soft: u64,
    refusing: AtomicBool,
    /// A reading began to refuse: wakes the sampler.
    refusal_began: Notify,
    last_usage: AtomicU64,
    /// `read_at` counts nanoseconds from here.
    epoch: Instant,
    /// When the usage was last read (or a read began).
    read_at: AtomicU64,
    /// Gives freed memory back to the OS, at most once a second; whether it
    /// did ([`release_freed_memory`]).
    release: fn() -> bool,
}

impl LimiterState {
    fn nanos_now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Reads the usage and decides on it. Above the soft limit the
    /// allocators are first asked to give freed memory back (as the
    /// collector forces a garbage collection) and the usage is read again,
    /// so that memory the agent no longer uses refuses no data. An
    /// unreadable /proc keeps the previous decision: it is no reason to start
    /// or stop refusing. A decision that begins to refuse wakes the sampler,
    /// whoever read: a consume's reading stored after the sampler's (which
    /// saw usage fall and went to sleep) must not leave it asleep while
    /// data is refused.
    fn read(&self, sampler: &UsageSampler) -> std::io::Result<u64> {
        self.read_at.store(self.nanos_now(), Ordering::Release);
        let mut usage = sampler()?;
        if usage > self.soft && (self.release)() {
            usage = sampler()?;
        }
        self.last_usage.store(usage, Ordering::Relaxed);
        if usage > self.soft {
            if !self.refusing.swap(true, Ordering::AcqRel) {
                self.refusal_began.notify_one();
            }
        } else {
            self.refusing.store(false, Ordering::Release);
        }
        Ok(usage)
    }

    /// Reads the usage again when the last reading is older than
    /// [`MAX_READING_AGE`]; of concurrent callers, one reads.
    fn refresh(&self, sampler: &UsageSampler) {
        let now = self.nanos_now();
        let last = self.read_at.load(Ordering::Acquire);
        if now.saturating_sub(last) < MAX_READING_AGE.as_nanos() as u64 {
            return;
        }
        if self
            .read_at
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // Errors are the sampler's to report, while it runs.
            let _ = self.read(sampler);
        }
    }

    /// The sampler's reading. Logs when refusing starts or stops (as seen
    /// every `check_interval`, so that readings at consume time near the
    /// soft limit do not flood the log).
    fn check(&self, sampler: &UsageSampler, was_refusing: &mut bool) {
        let usage = match self.read(sampler) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(processor = %self.id, error = %e, "memory limiter: cannot read memory usage");
                return;
            }
        };
        let refuse = usage > self.soft;
        match (*was_refusing, refuse) {
            (false, true) => tracing::warn!(
                processor = %self.id,
                cur_mem_mib = usage / MIB,
                soft_limit_mib = self.soft / MIB,
                hard_limit_mib = self.hard / MIB,
                "memory usage is above the soft limit: refusing data"
            ),
            (true, false) => tracing::info!(
                processor = %self.id,
                cur_mem_mib = usage / MIB,
                soft_limit_mib = self.soft / MIB,
                "memory usage is below the soft limit again: accepting data"
            ),
            (true, true) if usage > self.hard => tracing::debug!(
                processor = %self.id,
                cur_mem_mib = usage / MIB,
                hard_limit_mib = self.hard / MIB,
                "memory usage is above the hard limit"
            ),
            _ => {}
        }
        *was_refusing = refuse;
    }
}

async fn sample_loop(
    state: Arc<LimiterState>,
    sampler: UsageSampler,
    every: Duration,
    mut refusing: bool,
    stop: CancellationToken,
) {
    // build() has just sampled.
    let mut last_look = Instant::now();
    loop {
        if !refusing {
            // A permit left by a refusal the sampler already saw (its own
            // reading, or a consume's) costs one look below, no more.
            tokio::select! {
                () = stop.cancelled() => return,
                () = state.refusal_began.notified() => {}
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(last_look + every) => {}
        }
        state.check(&sampler, &mut refusing);
        last_look = Instant::now();
    }
}

struct MemoryLimiter {
    state: Arc<LimiterState>,
    sampler: UsageSampler,
    retry_after: Duration,
    signal: Signal,
    metrics: ProcessorMetrics,
    next: DynConsumer,
    /// Stops the sampling task when the consumer is dropped.
    _stop_sampling: DropGuard,
    /// Keeps the state gauge's callback registered while the limiter runs.
    _refusing_gauge: Option<opentelemetry::metrics::ObservableGauge<i64>>,
}

#[async_trait]
impl Consumer for MemoryLimiter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.state.refresh(&self.sampler);
        if self.state.refusing.load(Ordering::Acquire) {
            self.metrics.refused(self.signal, batch.item_count());
            // The batch's finalizers drop unsettled: the source sees Failed
            // and offers the data again.
            return Err(ConsumeError::Refused {
                reason: format!(
                    "data refused due to high memory usage ({} MiB, soft limit {} MiB)",
                    self.state.last_usage.load(Ordering::Relaxed) / MIB,
                    self.state.soft / MIB
                ),
                retry_after: Some(self.retry_after),
            });
        }
        self.next.consume(batch).await
    }
}

/// Has the allocators give memory that was freed back to the OS, unless
/// that was done less than [`RELEASE_INTERVAL`] ago; returns whether it ran.
///
/// mimalloc returns freed memory a second later, and only when it allocates
/// again; glibc's malloc (used by the C libraries: zstd) keeps freed heap
/// memory. After a burst of large requests an idle agent kept hundreds of
/// MiB it did not use, the next burst came on top, and this limiter refused
/// data because of memory that was free. The collector forces a garbage
/// collection above its limit for the same reason. A forced collection
/// costs milliseconds (it also purges what mimalloc would soon reuse), so
/// under sustained load it runs at most once an interval.
pub(crate) fn release_freed_memory() -> bool {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let start = START.get_or_init(std::time::Instant::now);
    // +1: a first call right at start is not "0 ms after the last".
    let now_ms = u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(RELEASE_INTERVAL.as_millis() as u64);
    let last = LAST_MS.load(Ordering::Relaxed);
    if now_ms.saturating_sub(last) < RELEASE_INTERVAL.as_millis() as u64
        || LAST_MS
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return false;
    }
    // SAFETY: both only walk the allocators' own free lists.
    unsafe {
        libmimalloc_sys::mi_collect(true);
        #[cfg(target_env = "gnu")]
        libc::malloc_trim(0);
    }
    true
}

/// Above this much resident file-backed memory (`statm`'s shared pages: the
/// binary, its libraries, and mapped files), the mapped journal files are
/// looked up in `/proc/self/smaps`; below it reading `statm` is all.
const FILE_PAGES_LOOKED_INTO: u64 = 64 * MIB;

/// Least time between two walks of `/proc/self/smaps` (a walk costs about a
/// millisecond; `consume` may read the usage every [`MAX_READING_AGE`]).
const JOURNAL_MAPPINGS_MAX_AGE: Duration = Duration::from_secs(1);

/// The process's resident memory in bytes (`/proc/self/statm` field 2) less
/// the resident pages of mapped journal files (see the module's comment).
fn read_rss() -> std::io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let mut fields = statm.split_whitespace().skip(1).map(str::parse::<u64>);
    let (Some(Ok(resident)), Some(Ok(shared))) = (fields.next(), fields.next()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/self/statm: unexpected content {statm:?}"),
        ));
    };
    let page = crate::sysconf::page_size();
    let resident = resident.saturating_mul(page);
    if shared.saturating_mul(page) < FILE_PAGES_LOOKED_INTO {
        return Ok(resident);
    }
    Ok(resident.saturating_sub(mapped_journal_resident_cached()))
}

/// [`mapped_journal_resident`] of `/proc/self/smaps`, walked at most once a
/// [`JOURNAL_MAPPINGS_MAX_AGE`]; 0 when smaps cannot be read (all counts).
fn mapped_journal_resident_cached() -> u64 {
    static LAST: std::sync::Mutex<Option<(std::time::Instant, u64)>> = std::sync::Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((at, bytes)) = *last {
        if at.elapsed() < JOURNAL_MAPPINGS_MAX_AGE {
            return bytes;
        }
    }
    let bytes = std::fs::read_to_string("/proc/self/smaps")
        .map(|smaps| mapped_journal_resident(&smaps))
        .unwrap_or(0);
    *last = Some((std::time::Instant::now(), bytes));
    bytes
}

/// Sum of `Rss:` over the mappings in `smaps` text whose file is a systemd
/// journal file (`*.journal`, or `*.journal~` for one journald set aside).
fn mapped_journal_resident(smaps: &str) -> u64 {
    let mut in_journal = false;
    let mut kib = 0u64;
    for line in smaps.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        if first == "Rss:" {
            if in_journal {
                kib = kib.saturating_add(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
            }
        } else if !first.ends_with(':') {
            // A mapping's header: range, perms, offset, device, inode, path.
            let path = words.nth(4).unwrap_or("");
            in_journal = path.ends_with(".journal") || path.ends_with(".journal~");
        }
    }
    kib.saturating_mul(1024)
}

/// Memory available to the agent: its cgroup's limit when lower than the
/// host's total, else the host's total.
fn available_memory() -> anyhow::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| anyhow::anyhow!("cannot read /proc/meminfo: {e}"))?;
    let total =
        mem_total(&meminfo).ok_or_else(|| anyhow::anyhow!("/proc/meminfo has no MemTotal"))?;
    let cgroup = cgroup_memory_limit();
    Ok(cgroup.map_or(total, |c| c.min(total)))
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The lowest memory limit along this process's cgroup and its ancestors.
fn cgroup_memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dirs = cgroup_memory_dirs(&cgroups, &mountinfo);
    dirs.iter()
        .filter_map(|(dir, file)| lowest_limit_upwards(dir, file))
        .min()
}

/// (cgroup directory, limit file name) for the memory controller, v2 and v1.
fn cgroup_memory_dirs(cgroups: &str, mountinfo: &str) -> Vec<(Vec<PathBuf>, &'static str)> {
    let mut out = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (fstype, file) = if controllers.is_empty() {
            ("cgroup2", "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("cgroup", "memory.limit_in_bytes")
        } else {
            continue;
        };
        for (root, mount_point) in cgroup_mounts(mountinfo, fstype) {
            let rel = path.strip_prefix(root.as_str()).unwrap_or(path);
            let mount_point = PathBuf::from(mount_point);
            let mut chain = Vec::new();
            let mut dir = mount_point.join(rel.trim_start_matches('/'));
            loop {
                chain.push(dir.clone());
                if dir == mount_point || !dir.pop() || !dir.starts_with(&mount_point) {
                    break;
                }
            }
            out.push((chain, file));
        }
    }
    out
}

/// (root, mount point) of the mounts of `fstype`; for v1 only memory ones.
fn cgroup_mounts(mountinfo: &str, fstype: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let fs = r.next()?;
            let _source = r.next();
            let super_opts = r.next().unwrap_or("");
            if fs != fstype || (fstype == "cgroup" && !super_opts.split(',').any(|o| o == "memory"))
            {
                return None;
            }
            let mut l = left.split_whitespace();
            let root = l.nth(3)?.to_string();
            let mount_point = l.next()?.to_string();
            Some((root, mount_point))
        })
        .collect()
}

fn lowest_limit_upwards(chain: &[PathBuf], file: &str) -> Option<u64> {
    chain
        .iter()
        .filter_map(|dir| read_limit(&dir.join(file)))
        .min()
}

/// A limit file's value; `max` (v2) means none.
fn read_limit(path: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ComponentId;
    use crate::extensions::Extensions;
    use crate::pipeline::consumer::testing::Collect;
    use crate::pipeline::Payload;
    use crate::telemetry::Telemetry;
    use tokio_util::sync::CancellationToken;

    fn ctx() -> BuildContext {
        BuildContext {
            id: ComponentId::new("memory_limiter", None),
            telemetry: Telemetry::noop(),
            extensions: Arc::new(Extensions::default()),
            shutdown: CancellationToken::new(),
        }
    }

    fn cfg(limit_mib: u64) -> MemoryLimiterConfig {
        MemoryLimiterConfig {
            check_interval: GoDuration::from_secs(1),
            limit_mib,
            ..Default::default()
        }
    }

    #[test]
    fn validation_uses_the_collector_messages() {
        let zero = MemoryLimiterConfig::default();
        assert_eq!(
            zero.validate().err().map(|e| e.to_string()).as_deref(),
            Some("check_interval: must be greater than zero")
        );
        let no_limit = MemoryLimiterConfig {
            check_interval: GoDuration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(
            no_limit.validate().err().map(|e| e.to_string()).as_deref(),
            Some("'limit_mib' or 'limit_percentage' must be greater than zero")
        );
        let spike = MemoryLimiterConfig {
            spike_limit_mib: 100,
            ..cfg(100)
        };
        assert_eq!(
            spike.validate().err().map(|e| e.to_string()).as_deref(),
            Some("spike_limit_mib: must be smaller than 'limit_mib'")
        );
        let pct = MemoryLimiterConfig {
            check_interval: GoDuration::from_secs(1),
            limit_percentage: 80,
            spike_limit_percentage: 25,
            ..Default::default()
        };
        assert!(pct.validate().is_ok());
        let parsed: MemoryLimiterConfig = serde_json::from_value(serde_json::json!({
            "check_interval": "1s", "limit_mib": 512, "spike_limit_mib": 128
        }))
        .expect("valid");
        assert_eq!(parsed.limits(|| Ok(0)).ok(), Some((512 * MIB, 384 * MIB)));
    }

    #[test]
    fn limits_default_spike_is_a_fifth_and_percentages_use_the_total() {
        assert_eq!(cfg(100).limits(|| Ok(0)).ok(), Some((100 * MIB, 80 * MIB)));
        let pct = MemoryLimiterConfig {
            check_interval: GoDuration::from_secs(1),
            limit_percentage: 50,
            spike_limit_percentage: 10,
            ..Default::default()
        };
        assert_eq!(
            pct.limits(|| Ok(1000 * MIB)).ok(),
            Some((500 * MIB, 400 * MIB))
        );
        assert!(available_memory().is_ok_and(|m| m > 0));
    }

    #[test]
    fn finds_cgroup_v1_and_v2_limit_files() {
        let cgroups = "4:memory:/app/x\n0::/svc\n";
        let mountinfo =
            "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n\
                         31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                         32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let dirs = cgroup_memory_dirs(cgroups, mountinfo);
        assert_eq!(dirs.len(), 2);
        assert_eq!(dirs[0].1, "memory.limit_in_bytes");
        assert_eq!(
            dirs[0].0,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/app/x"),
                PathBuf::from("/sys/fs/cgroup/memory/app"),
                PathBuf::from("/sys/fs/cgroup/memory"),
            ]
        );
        assert_eq!(dirs[1].1, "memory.max");
        assert_eq!(dirs[1].0[0], PathBuf::from("/sys/fs/cgroup/unified/svc"));
    }

    #[test]
    fn reads_limit_files_with_max_meaning_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = dir.path().join("child");
        std::fs::create_dir(&child).expect("mkdir");
        std::fs::write(dir.path().join("memory.max"), "1048576\n").expect("write");
        std::fs::write(child.join("memory.max"), "max\n").expect("write");
        let chain = vec![child.clone(), dir.path().to_path_buf()];
        assert_eq!(lowest_limit_upwards(&chain, "memory.max"), Some(1_048_576));
        assert_eq!(lowest_limit_upwards(&chain[..1], "memory.max"), None);
    }

    #[tokio::test]
    async fn refuses_when_rss_is_above_the_limit() {
        assert!(
            read_rss().is_ok_and(|r| r > MIB),
            "a test process uses more than 1 MiB"
        );
        let (collect, mut out) = Collect::new(None);
        let (consumer, task) = build(&cfg(1), &ctx(), Signal::Logs, collect).expect("build");
        let err = consumer
            .consume(Batch::new(Payload::Logs(Vec::new())))
            .await
            .err();
        match err {
            Some(ConsumeError::Refused { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(1)))
            }
            other => panic!("expected Refused, got {other:?}"),
        }
        assert!(out.try_recv().is_err());
        drop(consumer);
        let task = task.expect("sampling task");
        tokio::time::timeout(crate::test_support::WAIT, task)
            .await
            .expect("the sampling task ends when the consumer is dropped")
            .expect("join");
    }

    #[tokio::test]
    async fn passes_when_the_limit_is_high() {
        let (collect, mut out) = Collect::new(None);
        let (consumer, _task) = build(&cfg(1 << 30), &ctx(), Signal::Logs, collect).expect("build");
        consumer
            .consume(Batch::new(Payload::Logs(Vec::new())))
            .await
            .expect("accepted");
        assert!(out.recv().await.is_some());
    }

    /// A limiter over a usage the test sets: hard 100 MiB, soft 80 MiB,
    /// sampled every second.
    fn with_usage(
        start: u64,
    ) -> (
        Arc<AtomicU64>,
        DynConsumer,
        tokio::sync::mpsc::UnboundedReceiver<Batch>,
    ) {
        let usage = Arc::new(AtomicU64::new(start));
        let usage_for_sampler = Arc::clone(&usage);
        let sampler: UsageSampler = Arc::new(move || Ok(usage_for_sampler.load(Ordering::Relaxed)));
        let (collect, out) = Collect::new(None);
        let (consumer, _task) =
            build_with(&cfg(100), &ctx(), Signal::Logs, collect, sampler, || false).expect("build");
        (usage, consumer, out)
    }

    #[tokio::test(start_paused = true)]
    async fn stops_refusing_once_usage_falls() {
        let (usage, consumer, mut out) = with_usage(90 * MIB);
        let batch = || Batch::new(Payload::Logs(Vec::new()));
        assert!(consumer.consume(batch()).await.is_err());
        usage.store(50 * MIB, Ordering::Relaxed);
        assert!(
            consumer.consume(batch()).await.is_err(),
            "still refused on a reading younger than MAX_READING_AGE"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        consumer
            .consume(batch())
            .await
            .expect("accepted after the next sample");
        assert!(out.recv().await.is_some());
    }

    /// Data offered faster than `check_interval` is checked against a fresh
    /// reading: usage that jumps above the soft limit between two samples of
    /// the background task is refused within MAX_READING_AGE, not up to a
    /// whole check_interval later (10x the sustainable OTLP load took RSS
    /// from below the soft limit to 30% above the hard one between two
    /// samples; tests/otlp_overload.rs).
    #[tokio::test(start_paused = true)]
    async fn usage_growing_between_samples_is_refused_on_a_fresh_reading() {
        let (usage, consumer, mut out) = with_usage(50 * MIB);
        let batch = || Batch::new(Payload::Logs(Vec::new()));
        consumer
            .consume(batch())
            .await
            .expect("below the soft limit");
        assert!(out.recv().await.is_some());
        usage.store(120 * MIB, Ordering::Relaxed);
        tokio::time::sleep(MAX_READING_AGE).await;
        match consumer.consume(batch()).await {
            Err(ConsumeError::Refused { reason, .. }) => {
                assert!(reason.contains("120 MiB"), "{reason}")
            }
            other => panic!("expected a refusal well before the next sample, got {other:?}"),
        }
        // And it accepts again as soon as a fresh reading is low.
        usage.store(60 * MIB, Ordering::Relaxed);
        tokio::time::sleep(MAX_READING_AGE).await;
        consumer
            .consume(batch())
            .await
            .expect("fresh reading is low");
    }

    /// Accepting, the sampler does not run: an idle agent is not woken, and
    /// data flowing is checked on the readings it takes. A refusal starts
    /// it: it reads every interval while nothing is offered, sees usage
    /// fall, and stops again.
    #[tokio::test(start_paused = true)]
    async fn the_sampler_runs_only_while_data_is_refused() {
        let reads = Arc::new(AtomicU64::new(0));
        let usage = Arc::new(AtomicU64::new(50 * MIB));
        let sampler: UsageSampler = {
            let reads = Arc::clone(&reads);
            let usage = Arc::clone(&usage);
            Arc::new(move || {
                reads.fetch_add(1, Ordering::Relaxed);
                Ok(usage.load(Ordering::Relaxed))
            })
        };
        let (collect, mut out) = Collect::new(None);
        let (consumer, _task) =
            build_with(&cfg(100), &ctx(), Signal::Logs, collect, sampler, || false).expect("build");
        let offer = || consumer.consume(Batch::new(Payload::Logs(Vec::new())));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            reads.load(Ordering::Relaxed),
            1,
            "the build's reading alone"
        );

        // Data offered alone, then flowing (20 offers 100 ms apart): the
        // consumes' readings, none of the sampler's.
        offer().await.expect("below the soft limit");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(reads.load(Ordering::Relaxed), 2, "the consume's reading");
        for _ in 0..20 {
            offer().await.expect("below the soft limit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(reads.load(Ordering::Relaxed), 22, "one reading per consume");
        for _ in 0..21 {
            assert!(out.recv().await.is_some());
        }

        // Refused: the sampler reads every interval with nothing offered.
        usage.store(90 * MIB, Ordering::Relaxed);
        assert!(offer().await.is_err());
        let refused_at = reads.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5500)).await;
        let sampled = reads.load(Ordering::Relaxed) - refused_at;
        assert!(
            (5..=6).contains(&sampled),
            "{sampled} readings in 5.5 intervals while refusing"
        );
        // Usage falls: the next look sees it, and the sampler stops.
        usage.store(50 * MIB, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stopped = reads.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            reads.load(Ordering::Relaxed),
            stopped,
            "stopped after refusing ended"
        );
        offer().await.expect("accepting again");
        assert_eq!(reads.load(Ordering::Relaxed), stopped + 1);
    }

    /// Above the soft limit the allocators give freed memory back before
    /// data is refused: usage that was only freed memory refuses nothing.
    #[tokio::test(start_paused = true)]
    async fn freed_memory_is_given_back_before_refusing() {
        static USAGE: AtomicU64 = AtomicU64::new(0);
        USAGE.store(90 * MIB, Ordering::Relaxed);
        let sampler: UsageSampler = Arc::new(|| Ok(USAGE.load(Ordering::Relaxed)));
        // Giving back what is free brings usage under the soft limit.
        fn release() -> bool {
            USAGE.store(50 * MIB, Ordering::Relaxed);
            true
        }
        let (collect, mut out) = Collect::new(None);
        let (consumer, _task) =
            build_with(&cfg(100), &ctx(), Signal::Logs, collect, sampler, release).expect("build");
        consumer
            .consume(Batch::new(Payload::Logs(Vec::new())))
            .await
            .expect("not refused for memory that was free");
        assert!(out.recv().await.is_some());
    }

    /// A reading taken when data arrives also gives freed memory back
    /// before it refuses: usage that grew between two samples, but only by
    /// memory that was freed, refuses nothing.
    #[tokio::test(start_paused = true)]
    async fn a_fresh_reading_at_consume_time_gives_freed_memory_back_first() {
        static USAGE: AtomicU64 = AtomicU64::new(0);
        USAGE.store(50 * MIB, Ordering::Relaxed);
        let sampler: UsageSampler = Arc::new(|| Ok(USAGE.load(Ordering::Relaxed)));
        fn release() -> bool {
            USAGE.store(50 * MIB, Ordering::Relaxed);
            true
        }
        let (collect, mut out) = Collect::new(None);
        let (consumer, _task) =
            build_with(&cfg(100), &ctx(), Signal::Logs, collect, sampler, release).expect("build");
        // Between two samples of the background task, usage grows by
        // memory that is already free.
        USAGE.store(90 * MIB, Ordering::Relaxed);
        tokio::time::sleep(MAX_READING_AGE).await;
        consumer
            .consume(Batch::new(Payload::Logs(Vec::new())))
            .await
            .expect("not refused for memory that was free");
        assert!(out.recv().await.is_some());
    }

    #[test]
    fn journal_mappings_are_summed_from_smaps() {
        let smaps = "\
55d0c0a00000-55d0c0b00000 r-xp 00000000 fe:00 1234 /usr/bin/oomscope
Size:               1024 kB
Rss:                 900 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0000800000 r--s 00000000 fe:00 99 /var/log/journal/0123/system.journal
Size:               8192 kB
Rss:                4096 kB
7f0000800000-7f0001000000 r--s 00800000 fe:00 98 /var/log/journal/0123/user-1000@0005-0006.journal~
Rss:                 100 kB
7f0001000000-7f0001100000 rw-p 00000000 00:00 0 
Rss:                 200 kB
7f0001100000-7f0001200000 r--s 00000000 fe:00 97 /tmp/not a journal.journal.gz
Rss:                  50 kB
";
        assert_eq!(mapped_journal_resident(smaps), (4096 + 100) * 1024);
        assert_eq!(mapped_journal_resident(""), 0);
    }

    /// The real release runs (mimalloc and glibc calls) without harm, and
    /// at most once an interval.
    #[test]
    fn release_freed_memory_runs_at_most_once_an_interval() {
        let block = std::hint::black_box(vec![1u8; 8 << 20]);
        drop(block);
        let first = release_freed_memory();
        let second = release_freed_memory();
        assert!(!(first && second), "twice within {RELEASE_INTERVAL:?}");
        assert!(read_rss().is_ok());
    }
}
