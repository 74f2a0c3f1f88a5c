//! The `memory` receiver: memory samples from /proc and cgroups, as metrics.
//!
//! Every `collection_interval` one scrape reads
//! - system memory (`/proc/meminfo`, `/proc/vmstat`: [`system`]),
//! - memory pressure (`/proc/pressure/memory`: [`psi`]),
//! - the top processes by resident memory (`/proc/PID/*`: [`process`]),
//! - every memory cgroup that has a limit or holds processes ([`cgroup`]),
//!
//! and hands one metrics payload to the pipelines. When PSI is available a
//! pressure trigger is registered with the kernel; while it fires, sampling
//! runs every `pressure.trigger.interval` instead (the build-up before an OOM
//! kill is what this receiver is for).
//!
//! Files are read with plain `open`/`read` into reused buffers and parsed in
//! place (no `procfs` crate: it allocates a map per status file and a string
//! per field, which is most of the cost of a scrape over thousands of
//! processes). Processes and cgroups that vanish mid-scrape are skipped
//! silently; any other unreadable file is reported once.

pub mod cgroup;
pub mod metrics;
pub mod process;
pub mod psi;
pub mod system;

use std::collections::HashSet;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ReceiverOutputs;
use crate::clock::unix_now_nanos;
use crate::component::{
    BuildContext, ComponentConfig, Factory, ReceiverConfig, ReceiverFactory, Stability, StartFuture,
};
use crate::config::{from_node, ConfigError, GoDuration, Node, ValidationError};
use crate::incidents::{self, IncidentHub};
use crate::metric_catalog::MetricsBuilder;
use crate::pipeline::data::scoped_metrics;
use crate::pipeline::{Batch, DynConsumer, Payload, Signal};
use crate::receivers::cgroup_filter::CgroupFilter;
use crate::telemetry::ReceiverMetrics;
use crate::workload::{Resolver, WorkloadConfig};

/// Instrumentation scope of every metric of this receiver.
pub const SCOPE_NAME: &str = "oomscope/memory";

/// `memory` receiver configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryReceiverConfig {
    /// How often everything is scraped.
    pub collection_interval: GoDuration,
    /// Wait before the first scrape.
    pub initial_delay: GoDuration,
    /// Where the host's file system is: `/proc`, `/sys/fs/cgroup` and
    /// `/etc/passwd` are read under it (`/hostfs` when the agent runs in a
    /// container with the host's root mounted there).
    pub root_path: PathBuf,
    /// System memory, swap, paging and kernel counters.
    pub system: SystemConfig,
    /// Memory pressure (PSI).
    pub pressure: PressureConfig,
    /// The top processes by resident memory.
    pub processes: ProcessesConfig,
    /// Memory cgroups (`include`/`exclude` also select processes).
    pub cgroups: CgroupsConfig,
    /// Container and pod identity of cgroups and processes (their
    /// resource).
    pub workload: WorkloadConfig,
}

impl Default for MemoryReceiverConfig {
    fn default() -> Self {
        MemoryReceiverConfig {
            collection_interval: GoDuration::from_secs(10),
            initial_delay: GoDuration::from_secs(1),
            root_path: PathBuf::from("/"),
            system: SystemConfig::default(),
            pressure: PressureConfig::default(),
            processes: ProcessesConfig::default(),
            cgroups: CgroupsConfig::default(),
            workload: WorkloadConfig::default(),
        }
    }
}

/// `system`: /proc/meminfo and /proc/vmstat.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    pub enabled: bool,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig { enabled: true }
    }
}

/// `pressure`: /proc/pressure/memory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PressureConfig {
    pub enabled: bool,
    /// A kernel PSI trigger that speeds sampling up while pressure is high;
    /// `null` turns it off.
    pub trigger: Option<TriggerConfig>,
}

impl Default for PressureConfig {
    fn default() -> Self {
        PressureConfig {
            enabled: true,
            trigger: Some(TriggerConfig::default()),
        }
    }
}

/// `pressure.trigger`: "some" stall of `stall` within `window` fires it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerConfig {
    /// Stall time within `window` that counts as high pressure.
    pub stall: GoDuration,
    /// The trigger's window (500ms..10s). Without CAP_SYS_RESOURCE the
    /// kernel accepts only multiples of 2s: the window is then rounded up
    /// and `stall` scaled alike.
    pub window: GoDuration,
    /// How often to scrape while the trigger fires.
    pub interval: GoDuration,
    /// How long after the last firing sampling stays fast.
    pub hold: GoDuration,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            stall: GoDuration::from_millis(150),
            window: GoDuration::from_secs(1),
            interval: GoDuration::from_secs(1),
            hold: GoDuration::from_secs(30),
        }
    }
}

/// How `names` are matched against a process name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// The whole name equals one of `names`.
    #[default]
    Strict,
    /// One of `names` (a regular expression) matches somewhere in the name.
    Regexp,
}

/// `include` / `exclude` of processes (hostmetrics' process scraper keys).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NameMatchConfig {
    pub names: Vec<String>,
    pub match_type: MatchType,
}

/// `processes`: the top `top` processes by resident memory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessesConfig {
    pub enabled: bool,
    /// How many processes (the largest by RSS) are reported.
    pub top: usize,
    /// Only processes whose name (the kernel's comm) matches are candidates.
    pub include: Option<NameMatchConfig>,
    /// Processes whose name matches are never reported.
    pub exclude: Option<NameMatchConfig>,
    /// Argument names whose values are redacted from command lines
    /// (case-insensitive substrings).
    pub secret_keys: Vec<String>,
}

impl Default for ProcessesConfig {
    fn default() -> Self {
        ProcessesConfig {
            enabled: true,
            top: 20,
            include: None,
            exclude: None,
            secret_keys: crate::redact::default_keys(),
        }
    }
}

/// `cgroups`: memory cgroups with a limit or processes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupsConfig {
    pub enabled: bool,
    /// At most this many cgroups are reported per scrape.
    pub max_cgroups: usize,
    /// Cgroup path globs (`/kubepods/**`); when set, only matching cgroups
    /// are reported.
    pub include: Vec<String>,
    /// Cgroup path globs never reported.
    pub exclude: Vec<String>,
    /// Samples of this recent past feed `oomscope.cgroup.memory.time_to_limit`.
    pub growth_window: GoDuration,
}

impl Default for CgroupsConfig {
    fn default() -> Self {
        CgroupsConfig {
            enabled: true,
            max_cgroups: 500,
            include: Vec::new(),
            exclude: Vec::new(),
            growth_window: GoDuration::from_secs(120),
        }
    }
}

/// Upper bounds of the config (everything a scrape holds is bounded by them).
const MAX_TOP: usize = 10_000;
const MAX_CGROUPS: usize = 100_000;

impl ComponentConfig for MemoryReceiverConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.collection_interval.is_zero() {
            return Err(ValidationError::at(
                "collection_interval",
                "must be greater than zero",
            ));
        }
        if let Some(t) = &self.pressure.trigger {
            validate_trigger(t).map_err(|e| e.within("pressure::trigger"))?;
        }
        if self.processes.top == 0 || self.processes.top > MAX_TOP {
            return Err(ValidationError::at(
                "processes::top",
                format!("must be between 1 and {MAX_TOP}"),
            ));
        }
        for (key, m) in [
            ("processes::include", &self.processes.include),
            ("processes::exclude", &self.processes.exclude),
        ] {
            if let Some(m) = m {
                process::NameFilter::new(m).map_err(|e| ValidationError::at(key, e.to_string()))?;
            }
        }
        if self.cgroups.max_cgroups == 0 || self.cgroups.max_cgroups > MAX_CGROUPS {
            return Err(ValidationError::at(
                "cgroups::max_cgroups",
                format!("must be between 1 and {MAX_CGROUPS}"),
            ));
        }
        for (key, globs) in [
            ("cgroups::include", &self.cgroups.include),
            ("cgroups::exclude", &self.cgroups.exclude),
        ] {
            for g in globs {
                glob::Pattern::new(g)
                    .map_err(|e| ValidationError::at(key, format!("invalid glob {g:?}: {e}")))?;
            }
        }
        if self.cgroups.growth_window.is_zero() {
            return Err(ValidationError::at(
                "cgroups::growth_window",
                "must be greater than zero",
            ));
        }
        self.workload.validate().map_err(|e| e.within("workload"))?;
        Ok(())
    }
}

/// `pressure::trigger`: a window the kernel accepts (500ms..=10s) and a
/// stall that fits in it.
fn validate_trigger(t: &TriggerConfig) -> Result<(), ValidationError> {
    let window = t.window.get();
    if window < Duration::from_millis(500) || window > Duration::from_secs(10) {
        return Err(ValidationError::at(
            "window",
            "must be between 500ms and 10s",
        ));
    }
    if t.stall.is_zero() || t.stall.get() > window {
        return Err(ValidationError::at(
            "stall",
            "must be greater than zero and at most the window",
        ));
    }
    if t.interval.is_zero() {
        return Err(ValidationError::at("interval", "must be greater than zero"));
    }
    Ok(())
}

/// Makes `memory` receivers.
pub struct MemoryReceiverFactory;

impl Factory for MemoryReceiverFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["memory"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "samples memory from /proc and cgroups: system memory, PSI pressure, processes, cgroup usage against limits"
    }

    fn signals(&self) -> &'static [Signal] {
        &[Signal::Metrics]
    }
}

impl ReceiverFactory for MemoryReceiverFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ReceiverConfig>, ConfigError> {
        Ok(Box::new(from_node::<MemoryReceiverConfig>(node)?))
    }
}

impl ReceiverConfig for MemoryReceiverConfig {
    fn start(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
    ) -> StartFuture<'_, JoinHandle<()>> {
        Box::pin(start(self, ctx, outputs))
    }
}

impl MemoryReceiverConfig {
    fn proc_path(&self) -> PathBuf {
        self.root_path.join("proc")
    }
}

/// Reports each distinct problem once (an unreadable file is not news at
/// every scrape). Bounded: past `MAX_KEYS` distinct problems it goes quiet.
#[derive(Debug, Default)]
pub struct WarnOnce {
    seen: HashSet<String>,
}

impl WarnOnce {
    const MAX_KEYS: usize = 1024;

    /// Logs `message` unless `key` was logged before.
    pub fn warn(&mut self, key: &str, message: std::fmt::Arguments<'_>) {
        if self.seen.len() >= Self::MAX_KEYS || self.seen.contains(key) {
            return;
        }
        self.seen.insert(key.to_string());
        tracing::warn!("{message}");
    }

    /// How many distinct problems were reported.
    pub fn count(&self) -> usize {
        self.seen.len()
    }

    /// The keys of the problems reported (for tests and diagnostics).
    pub fn keys(&self) -> Vec<&str> {
        self.seen.iter().map(String::as_str).collect()
    }
}

/// Whether an error means the process or cgroup went away while it was
/// read (not worth a word): ENOENT, ESRCH (a task exiting), ENODEV (a
/// removed cgroup's files).
pub fn vanished(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
        || matches!(err.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENODEV))
}

/// Reads a whole small file into `buf` (cleared first), at most `max` bytes.
pub fn read_file(path: &Path, buf: &mut Vec<u8>, max: usize) -> io::Result<()> {
    buf.clear();
    let f = std::fs::File::open(path)?;
    f.take(max as u64).read_to_end(buf)?;
    Ok(())
}

/// Start times shared by every part of a scrape.
#[derive(Debug, Clone, Copy)]
pub struct Starts {
    /// Unix time of boot: start of the kernel's cumulative counters.
    pub boot_unix_nano: u64,
    /// Unix time the receiver started: start of non-monotonic sums.
    pub receiver_unix_nano: u64,
}

/// One full scrape (system, pressure, processes, cgroups), reusable: the
/// scrapers keep their buffers and caches between scrapes. Public so the
/// benchmark (`examples/memory_scrape.rs`) measures exactly what runs.
pub struct Scraper {
    starts: Starts,
    warn: WarnOnce,
    system: Option<system::SystemScraper>,
    pressure: Option<psi::PressureScraper>,
    processes: Option<process::ProcessScraper>,
    cgroups: Option<cgroup::CgroupScraper>,
    workloads: Resolver,
    /// Where each scrape's summary goes (incidents' lead-up, the views).
    incidents: Option<Arc<IncidentHub>>,
}

impl Scraper {
    /// Checks `cfg` and builds the scrapers it enables.
    pub fn new(cfg: &MemoryReceiverConfig) -> Result<Scraper, String> {
        cfg.validate().map_err(|e| e.to_string())?;
        let proc_path = cfg.proc_path();
        let starts = Starts {
            boot_unix_nano: crate::clock::boot_unix_nanos(),
            receiver_unix_nano: unix_now_nanos(),
        };
        Ok(Scraper {
            starts,
            warn: WarnOnce::default(),
            system: cfg.system.enabled.then(|| {
                let page_size = crate::sysconf::page_size();
                system::SystemScraper::new(&proc_path, page_size)
            }),
            pressure: cfg
                .pressure
                .enabled
                .then(|| psi::PressureScraper::new(&proc_path)),
            processes: if cfg.processes.enabled {
                Some(process::ProcessScraper::new(
                    &cfg.root_path,
                    &cfg.processes,
                    CgroupFilter::new(&cfg.cgroups.include, &cfg.cgroups.exclude)?,
                    starts.boot_unix_nano,
                )?)
            } else {
                None
            },
            cgroups: if cfg.cgroups.enabled {
                Some(cgroup::CgroupScraper::new(
                    &cfg.root_path.join("sys/fs/cgroup"),
                    &cfg.cgroups,
                )?)
            } else {
                None
            },
            workloads: Resolver::new(&cfg.workload, &proc_path, &cfg.root_path),
            incidents: None,
        })
    }

    /// Hands each scrape's summary to `hub` from now on.
    pub fn share_with(&mut self, hub: Arc<IncidentHub>) {
        if let Some(c) = &mut self.cgroups {
            c.keep_states = true;
        }
        if let Some(p) = &mut self.processes {
            p.keep_states = true;
        }
        self.incidents = Some(hub);
    }

    /// One scrape: the host's metrics (system, pressure, cgroups of no
    /// container or pod) under one resource without attributes (the
    /// `resource` processor adds the host's), then one resource per
    /// container or pod cgroup (its workload), then one per reported
    /// process.
    pub fn scrape(&mut self) -> Vec<ResourceMetrics> {
        if self.cgroups.is_some() || self.processes.is_some() {
            self.workloads.refresh_if_due();
        }
        let mut b = MetricsBuilder::new(unix_now_nanos());
        let mut workload_metrics = Vec::new();
        if let Some(s) = &mut self.system {
            s.scrape(&mut b, &self.starts, &mut self.warn);
        }
        if let Some(p) = &mut self.pressure {
            p.scrape(&mut b, &self.starts, &mut self.warn);
        }
        if let Some(c) = &mut self.cgroups {
            c.scrape(
                &mut b,
                &self.starts,
                &mut self.warn,
                &mut self.workloads,
                &mut workload_metrics,
            );
        }
        let mut out = Vec::new();
        let time = b.time_unix_nano();
        if !b.is_empty() {
            out.push(scoped_metrics(SCOPE_NAME, None, b.into_metrics()));
        }
        out.append(&mut workload_metrics);
        if let Some(p) = &mut self.processes {
            p.scrape(time, &mut self.warn, &mut self.workloads, &mut out);
        }
        if let Some(hub) = self.incidents.clone() {
            // Stamped when the reads are done, not when they began: a
            // sample stamped before a kill was then read before it, so a
            // kill's lead-up never shows the cgroup already emptied by it.
            hub.record_scrape(self.summary(unix_now_nanos()));
        }
        out
    }

    /// What this scrape saw, for incidents and the views.
    fn summary(&mut self, at_unix_nano: u64) -> incidents::Scrape {
        let pressure = self.pressure.as_mut().and_then(|p| p.last.take());
        let system = self.system.as_mut().and_then(|s| s.last.take());
        let system = (system.is_some() || pressure.is_some()).then(|| incidents::SystemSample {
            at_unix_nano,
            total: system.and_then(|(total, _)| total),
            available: system.and_then(|(_, available)| available),
            psi_some_avg10: pressure.and_then(|p| p.some).map(|l| l.avg10),
            psi_full_avg10: pressure.and_then(|p| p.full).map(|l| l.avg10),
        });
        incidents::Scrape {
            at_unix_nano,
            system,
            psi_some_avg60: pressure.and_then(|p| p.some).map(|l| l.avg60),
            psi_full_avg60: pressure.and_then(|p| p.full).map(|l| l.avg60),
            cgroups: self
                .cgroups
                .as_mut()
                .map(|c| std::mem::take(&mut c.states))
                .unwrap_or_default(),
            processes: self
                .processes
                .as_mut()
                .map(|p| std::mem::take(&mut p.states))
                .unwrap_or_default(),
        }
    }

    /// Distinct problems reported so far (unreadable files and the like).
    pub fn warnings(&self) -> usize {
        self.warn.count()
    }

    /// What was reported (one key per distinct problem).
    pub fn warned(&self) -> Vec<&str> {
        self.warn.keys()
    }
}

/// Starts the receiver: builds the scrapers, registers the PSI trigger when
/// PSI is there, then scrapes until shutdown.
pub async fn start(
    cfg: &MemoryReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
) -> anyhow::Result<JoinHandle<()>> {
    let cfg = cfg.clone();
    let mut scraper =
        Scraper::new(&cfg).map_err(|e| anyhow::anyhow!("receiver {}: {e}", ctx.id))?;
    scraper.share_with(Arc::clone(&ctx.extensions.incidents));
    let trigger = match (&cfg.pressure.trigger, cfg.pressure.enabled) {
        (Some(t), true) => {
            let path = cfg.proc_path().join("pressure/memory");
            match psi::PsiTrigger::register(&path, t.stall.get(), t.window.get()) {
                Ok(trigger) => {
                    tracing::info!(
                        receiver = %ctx.id,
                        stall = ?trigger.stall,
                        window = ?trigger.window,
                        fast_interval = %t.interval,
                        "memory pressure trigger registered; sampling speeds up while it fires"
                    );
                    Some(trigger)
                }
                Err(e) => {
                    tracing::warn!(receiver = %ctx.id, path = %path.display(), error = %e, "no memory pressure trigger; sampling stays at collection_interval");
                    None
                }
            }
        }
        _ => None,
    };
    let Some(to) = outputs.metrics else {
        anyhow::bail!(
            "receiver {}: the memory receiver produces metrics only; put it in a metrics pipeline",
            ctx.id
        );
    };
    tracing::info!(receiver = %ctx.id, interval = %cfg.collection_interval, "sampling memory");
    let telemetry = ctx.telemetry.receiver(&ctx.id, "");
    Ok(tokio::spawn(run(cfg, scraper, trigger, to, telemetry, ctx)))
}

async fn run(
    cfg: MemoryReceiverConfig,
    scraper: Scraper,
    mut trigger: Option<psi::PsiTrigger>,
    to: DynConsumer,
    telemetry: ReceiverMetrics,
    ctx: BuildContext,
) {
    let normal = cfg.collection_interval.get();
    let (fast, hold) = cfg
        .pressure
        .trigger
        .as_ref()
        .map(|t| (t.interval.get().min(normal), t.hold.get()))
        .unwrap_or((normal, Duration::ZERO));
    let mut scraper = Some(scraper);
    let mut next = Instant::now() + cfg.initial_delay.get();
    let mut fast_until: Option<Instant> = None;
    // The kernel's timer: one wake-up a scrape (see `KernelTimer`).
    let mut timer = crate::clock::KernelTimer::new();
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            () = timer.sleep_until(next) => {}
            fired = triggered(&trigger) => {
                match fired {
                    Ok(()) => {
                        let now = Instant::now();
                        let was_fast = fast_until.is_some_and(|t| t > now);
                        fast_until = Some(now + hold);
                        if !was_fast {
                            tracing::info!(receiver = %ctx.id, interval = ?fast, "memory pressure is high; sampling faster");
                            next = next.min(now);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(receiver = %ctx.id, error = %e, "the memory pressure trigger failed; sampling stays at collection_interval");
                        trigger = None;
                    }
                }
                continue;
            }
        }
        let started = Instant::now();
        let Some(mut s) = scraper.take() else { break };
        // Reading /proc is blocking file I/O; keep it off the runtime's workers.
        let joined = tokio::task::spawn_blocking(move || {
            let out = s.scrape();
            (s, out)
        })
        .await;
        let out = match joined {
            Ok((s, out)) => {
                scraper = Some(s);
                out
            }
            Err(e) => {
                tracing::error!(receiver = %ctx.id, error = %e, "a memory scrape failed; the receiver stops");
                break;
            }
        };
        deliver(&to, out, &telemetry).await;
        let now = Instant::now();
        let interval = match fast_until {
            Some(t) if t > now => fast,
            Some(_) => {
                tracing::info!(receiver = %ctx.id, "memory pressure is back to normal");
                fast_until = None;
                normal
            }
            None => normal,
        };
        // On the shared grid: the scrape and the receivers' own counters
        // reach the batch processor together.
        next = crate::clock::on_grid(started + interval, interval);
    }
}

async fn triggered(trigger: &Option<psi::PsiTrigger>) -> io::Result<()> {
    match trigger {
        Some(t) => t.triggered().await,
        None => std::future::pending().await,
    }
}

/// Hands one scrape to the pipelines. A refused scrape is dropped (the
/// next one brings fresher figures), as the collector's scrapers do.
async fn deliver(to: &DynConsumer, out: Vec<ResourceMetrics>, telemetry: &ReceiverMetrics) {
    let batch = Batch::new(Payload::Metrics(out));
    let signal = batch.signal();
    let items = batch.item_count();
    if items == 0 {
        return;
    }
    match to.consume(batch).await {
        Ok(()) => telemetry.accepted(signal, items),
        Err(e) => {
            tracing::debug!(error = %e, "the pipeline refused a memory scrape; it is dropped");
            telemetry.not_accepted(signal, items, &e);
        }
    }
}

#[cfg(test)]
mod tests;
