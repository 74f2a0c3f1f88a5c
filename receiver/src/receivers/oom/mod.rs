//! The `oom` receiver: every kernel OOM kill, as one LogRecord
//! (`event_name` `linux.oom.kill`) and the `linux.oom.kills` counter.
//!
//! Two sources, correlated by victim pid so that one kill is one record:
//! - the `oom/mark_victim` tracepoint through eBPF (`crate::ebpf`): fires the
//!   moment the kernel marks a victim, also for each `memory.oom.group`
//!   member and for a victim that was already exiting;
//! - the kernel's own OOM report on `/dev/kmsg` (`crate::kernel_log`): constraint,
//!   the cgroup whose limit was hit, gfp_mask, order, and the exact memory
//!   figures of the "Killed process" line.
//!
//! An eBPF event waits at most `report_wait` for its report (this kernel
//! prints no `oom_reaper` line, so nothing waits for one). A victim marked
//! while already exiting gets no "Killed process" line: when the kernel log
//! is being read and no report came within the wait, the record says
//! `oom.victim.exiting: true`; a report read later still is counted as the
//! kill it was, not recorded again. Without eBPF (no CAP_BPF, no tracepoint,
//! lockdown) the receiver says why once and builds the same records from
//! the report alone (`oom.source: kmsg`). Kills are reported from the
//! receiver's start on: the kernel log is read from its end.
//!
//! Each kill is one ResourceLogs whose resource is the victim's workload
//! (`container.*`, `k8s.*`: [`crate::workload`]), resolved the moment the
//! event arrives, while the victim and its runtime process are still there.
//! `cgroups.include`/`exclude` drop kills of other cgroups before they are
//! recorded or counted.

pub mod enrich;
pub mod kill;
pub mod metrics;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use receiver_common::exec::ExecArgs;
use receiver_common::oom::{flags, OomVictimEvent};
use receiver_common::oom_scope::{scope_flags, scope_hook, OomScopeEvent, CONSTRAINT_NAMES};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ReceiverOutputs;
use crate::api::events::OomEventHub;
use crate::clock::{unix_now_nanos, Clock};
use crate::component::{
    BuildContext, ComponentConfig, Factory, ReceiverConfig, ReceiverFactory, Stability, StartFuture,
};
use crate::config::{from_node, ComponentId, ConfigError, GoDuration, Node, ValidationError};
use crate::ebpf::loader::{
    load_mark_victim_with, ExecHookStatus, LoadOptions, MarkVictimProbe, ProbeEvent,
};
use crate::ebpf::scope_hook::{MemcgPaths, ScopeHookChoice, ScopeHookStatus};
use crate::incidents::{self, IncidentHub, LeadUp};
use crate::kernel_log::{KmsgEvent, KmsgReader, OomReport, OomReportAssembler, StartAt};
use crate::metric_catalog::{int, MetricsBuilder, OVERFLOW_VALUE};
use crate::pipeline::data::{kv_str, scoped_logs, scoped_metrics};
use crate::pipeline::{consume_retrying, DynConsumer, Payload};
use crate::process_table::connector::{self, Connector, ReaderStats};
use crate::process_table::{ProcReader, ProcessTable};
use crate::receivers::cgroup_filter::{CgroupFilter, CgroupFilterConfig};
use crate::workload::{Resolver, WorkloadConfig};
use kill::{OomKill, Scope, Source, Trigger, Victim};

/// Which kernel sources the receiver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// eBPF with the kernel report merged in; the report alone when eBPF
    /// cannot be used.
    #[default]
    Auto,
    /// eBPF is required: the receiver fails to start without it.
    Ebpf,
    /// The kernel report alone (`/dev/kmsg`), eBPF never loaded.
    Kmsg,
}

/// How the receiver keeps the command line, executable, parent and start
/// of processes for victims gone from /proc before their kill is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProcessTracking {
    /// The eBPF exec hook when it is attached (command lines only, no
    /// agent CPU per exec), else the netlink process connector when it can
    /// be opened, else neither.
    #[default]
    Auto,
    /// The eBPF exec hook only.
    Ebpf,
    /// The netlink process connector (besides the exec hook, if attached):
    /// also the executable, parent and start of a vanished victim, at the
    /// cost of reading /proc at each exec. The receiver fails to start
    /// without it.
    Netlink,
}

/// `oom` receiver configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OomReceiverConfig {
    /// `auto`, `ebpf` or `kmsg`.
    pub mode: Mode,
    /// How long an eBPF event waits for the kernel's report of the same
    /// kill; the report normally follows within a millisecond.
    pub report_wait: GoDuration,
    /// The kernel log device.
    pub kmsg_path: PathBuf,
    /// Where /proc is (a host's /proc mounted elsewhere when the agent runs
    /// in a container).
    pub proc_path: PathBuf,
    /// Where cgroupfs is.
    pub cgroup_path: PathBuf,
    /// Where the host's files are: paths container runtimes name (bundles,
    /// storage, kubelet logs) are read under it (`/hostfs` when the agent
    /// runs in a container with the host's `/` mounted there).
    pub root_path: PathBuf,
    /// Only kills whose victim's cgroup passes are reported and counted.
    pub cgroups: CgroupFilterConfig,
    /// Container and pod identity of the victim (the record's resource).
    pub workload: WorkloadConfig,
    /// Argument names whose values are redacted from command lines
    /// (case-insensitive substrings).
    pub secret_keys: Vec<String>,
    /// `auto`, `ebpf` or `netlink`: how victims that vanish before /proc is
    /// read keep their command line.
    pub process_tracking: ProcessTracking,
    /// `auto`, `fentry`, `kprobe` or `off`: the hook on the kernel's
    /// `oom_kill_process` that gives the constraint, the memcg with its
    /// usage and limit, and the trigger at the moment of the kill.
    pub scope_hook: ScopeHookChoice,
    /// How often the counters (kills, missed kills, dropped events) are
    /// reported besides each kill.
    pub metrics_interval: GoDuration,
    /// The live events API (`oomscope.v1.OomEvents/Subscribe`, used by
    /// `oomscope events`); `null` turns it off.
    pub events: Option<EventsConfig>,
    /// Incidents: each kill's lead-up, and the runtime OOM messages of the
    /// same process or container around it, joined by `oom.incident.id`.
    pub incidents: IncidentsConfig,
}

/// `incidents`: joining kills with their lead-up and runtime messages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    pub enabled: bool,
    /// How long before a kill a runtime message of the same process or
    /// container joins it.
    pub before: GoDuration,
    /// How long after a kill a runtime message joins it.
    pub after: GoDuration,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            enabled: true,
            before: GoDuration::from_secs(60),
            after: GoDuration::from_secs(10),
        }
    }
}

impl IncidentsConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        // Messages are kept for the window: bounded, so is it.
        for (key, d) in [("before", self.before.get()), ("after", self.after.get())] {
            if d > Duration::from_secs(3600) {
                return Err(ValidationError::at(key, "must be at most 1h"));
            }
        }
        Ok(())
    }
}

/// `events`: where the live events API listens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `127.0.0.1:PORT` or `unix:/path/to.sock`.
    pub endpoint: String,
    /// Unix endpoint: permission bits of the socket, octal ("0660").
    pub unix_socket_mode: Option<String>,
    /// Unix endpoint: group of the socket (name or number).
    pub unix_socket_group: Option<String>,
    /// TCP endpoint: serve TLS (the collector's server `tls` keys).
    pub tls: Option<crate::tls::TlsServerConfig>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            endpoint: crate::api::events::DEFAULT_ENDPOINT.to_string(),
            unix_socket_mode: None,
            unix_socket_group: None,
            tls: None,
        }
    }
}

impl EventsConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        let endpoint = self
            .endpoint
            .parse::<crate::api::EventsEndpoint>()
            .map_err(|err| ValidationError::at("endpoint", err.to_string()))?;
        let unix = matches!(endpoint, crate::api::EventsEndpoint::Unix(_));
        if let Some(mode) = &self.unix_socket_mode {
            parse_socket_mode(mode).map_err(|e| ValidationError::at("unix_socket_mode", e))?;
        }
        for (key, set) in [
            ("unix_socket_mode", self.unix_socket_mode.is_some()),
            ("unix_socket_group", self.unix_socket_group.is_some()),
        ] {
            if set && !unix {
                return Err(ValidationError::at(
                    key,
                    "applies to a Unix socket endpoint (unix:/path) only",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if unix {
                return Err(ValidationError::at(
                    "tls",
                    "applies to a TCP endpoint; a Unix socket is guarded by unix_socket_mode and unix_socket_group",
                ));
            }
            tls.validate().map_err(|e| e.within("tls"))?;
        }
        Ok(())
    }

    /// The serving options, with the group looked up and the TLS files read.
    fn serve_options(&self, id: &ComponentId) -> anyhow::Result<crate::api::events::ServeOptions> {
        let mut unix = crate::api::events::UnixSocketOptions::default();
        if let Some(mode) = &self.unix_socket_mode {
            unix.mode = parse_socket_mode(mode)
                .map_err(|e| anyhow::anyhow!("events::unix_socket_mode: {e}"))?;
        }
        if let Some(group) = &self.unix_socket_group {
            unix.group = Some(
                group_id(group).map_err(|e| anyhow::anyhow!("events::unix_socket_group: {e}"))?,
            );
        }
        let tls = match &self.tls {
            Some(tls) => Some(crate::tls::ServerTls::load(
                tls,
                &[b"h2"],
                format!("receiver {id}, events::tls"),
            )?),
            None => None,
        };
        Ok(crate::api::events::ServeOptions {
            unix_socket: unix,
            tls,
        })
    }
}

/// `"0660"` (octal, with or without the leading 0) as permission bits.
fn parse_socket_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim();
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{text:?} is not an octal mode such as \"0660\""))?;
    if mode > 0o777 {
        return Err(format!("{text:?} is above 0777"));
    }
    if mode & 0o600 != 0o600 {
        return Err(format!(
            "{text:?} must let the owner (the agent) read and write the socket (0600)"
        ));
    }
    Ok(mode)
}

/// A group name or number as a gid.
fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.trim().parse::<u32>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(group.trim())
        .map_err(|_| format!("{group:?} is not a valid group name"))?;
    // SAFETY: `group` is plain data (integers and pointers); all zeroes is
    // a valid value, which getgrnam_r overwrites.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the buffer outlives it.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot look up group {group:?}: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    if found.is_null() {
        return Err(format!("no group named {group:?} on this host"));
    }
    Ok(entry.gr_gid)
}

impl Default for OomReceiverConfig {
    fn default() -> Self {
        OomReceiverConfig {
            mode: Mode::Auto,
            report_wait: GoDuration::from_millis(250),
            kmsg_path: PathBuf::from("/dev/kmsg"),
            proc_path: PathBuf::from("/proc"),
            cgroup_path: PathBuf::from("/sys/fs/cgroup"),
            root_path: PathBuf::from("/"),
            cgroups: CgroupFilterConfig::default(),
            workload: WorkloadConfig::default(),
            secret_keys: crate::redact::default_keys(),
            process_tracking: ProcessTracking::Auto,
            scope_hook: ScopeHookChoice::Auto,
            metrics_interval: GoDuration::from_secs(10),
            events: Some(EventsConfig::default()),
            incidents: IncidentsConfig::default(),
        }
    }
}

impl ComponentConfig for OomReceiverConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.report_wait.get() > Duration::from_secs(10) {
            return Err(ValidationError::at(
                "report_wait",
                "must be at most 10s (OOM records must not wait long)",
            ));
        }
        if self.metrics_interval.is_zero() {
            return Err(ValidationError::at(
                "metrics_interval",
                "must be greater than zero",
            ));
        }
        if let Some(e) = &self.events {
            e.validate().map_err(|err| err.within("events"))?;
        }
        self.cgroups.validate().map_err(|e| e.within("cgroups"))?;
        self.workload.validate().map_err(|e| e.within("workload"))?;
        self.incidents
            .validate()
            .map_err(|e| e.within("incidents"))?;
        Ok(())
    }
}

/// Makes `oom` receivers.
pub struct OomReceiverFactory;

impl Factory for OomReceiverFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["oom"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "reports each kernel OOM kill as it happens (eBPF on the mark_victim tracepoint, joined with the kernel's report)"
    }
}

impl ReceiverFactory for OomReceiverFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ReceiverConfig>, ConfigError> {
        Ok(Box::new(from_node::<OomReceiverConfig>(node)?))
    }
}

impl ReceiverConfig for OomReceiverConfig {
    fn start(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
    ) -> StartFuture<'_, JoinHandle<()>> {
        Box::pin(start(self, ctx, outputs))
    }
}

impl OomReceiverConfig {
    fn cgroup_roots(&self) -> Vec<PathBuf> {
        // v1 memory controller first, then v2 (plain or hybrid).
        ["memory", "", "unified"]
            .iter()
            .map(|sub| self.cgroup_path.join(sub))
            .collect()
    }
}

/// Upper bound on kills waiting for their other half (report or event).
const MAX_PENDING: usize = 4096;
/// How long an `oom_kill_process` event waits for its victim's event.
const SCOPE_TTL: Duration = Duration::from_secs(10);
/// How long a record sent without its report is remembered, for a report
/// that comes past `report_wait` (a killer stalled between the event and
/// its "Killed process" line: a CPU-throttled cgroup, a host in an OOM
/// storm). A pid is not reused within it but on a host that cycles pids
/// very fast, and the comm must match too.
const LATE_REPORT_TTL: Duration = Duration::from_secs(60);
/// Kills between the correlator and the emitter.
const EMIT_QUEUE: usize = 1024;
/// Kernel log records read at most at once after a victim event, without
/// waiting for the log's wake-up (a report of a host with many tasks is
/// longer; the rest is read as it comes).
const EAGER_KMSG_RECORDS: usize = 1024;

/// Starts the receiver: decides the sources (failing here when none can be
/// used), then runs until shutdown.
pub async fn start(
    cfg: &OomReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
) -> anyhow::Result<JoinHandle<()>> {
    let cfg = cfg.clone();
    // Command lines are redacted on the kill path: patterns ready before it.
    crate::redact::prepare();
    CgroupFilter::new(&cfg.cgroups.include, &cfg.cgroups.exclude)
        .map_err(|e| anyhow::anyhow!("receiver {}: {e}", ctx.id))?;
    let options = LoadOptions {
        scope_hook: cfg.scope_hook,
    };
    // Kills are read and delivered on a thread of their own: on the shared
    // runtime, the ring buffer's and the kernel log's wake-ups wait while its
    // workers encode and compress bulk traffic (milliseconds a request).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("receiver {}: cannot start its thread: {e}", ctx.id))?;
    let kill_handle = runtime.handle().clone();
    // Should `start` fail before the thread takes it, shut down without
    // waiting.
    let kill_runtime = crate::urgent_lane::BackgroundShutdown(Some(runtime));
    // The ring buffers and the kernel log are registered with its reactor.
    let on_kill_thread = kill_handle.enter();
    let mut probe = match cfg.mode {
        Mode::Kmsg => None,
        Mode::Ebpf => Some(load_mark_victim_with(options).map_err(|e| {
            anyhow::anyhow!(
                "receiver {}: eBPF is required (mode: ebpf) but cannot be used: {e}",
                ctx.id
            )
        })?),
        Mode::Auto => match load_mark_victim_with(options) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(receiver = %ctx.id, reason = %e, "eBPF cannot be used; OOM kills are built from the kernel log alone (oom.source: kmsg)");
                None
            }
        },
    };
    if let Some(probe) = &probe {
        let absent = crate::ebpf::format::absent_fields(&probe.layout());
        if !absent.is_empty() {
            tracing::warn!(receiver = %ctx.id, absent = %absent.join(", "), "this kernel's oom/mark_victim tracepoint lacks fields: a kill's record takes them from the kernel's OOM report (/dev/kmsg) instead, without it they are left out (`oomscope doctor`: tracepoint)");
        }
        match probe.exec_hooks() {
            ExecHookStatus::Unavailable(why) => {
                tracing::warn!(receiver = %ctx.id, reason = %why, "the exec hook is off: a victim that exits before /proc is read gets no process.command_line");
            }
            attached @ ExecHookStatus::Attached { facts, .. } => {
                tracing::debug!(receiver = %ctx.id, hooks = %attached, "recording command lines at exec");
                if let Some(missing) = facts.missing() {
                    tracing::info!(receiver = %ctx.id, %missing, "the exec hook records no such facts: a victim gone from /proc before its kill is read has only what it recorded");
                }
            }
        }
    }
    if let Some(probe) = probe
        .as_mut()
        .filter(|p| matches!(p.exec_hooks(), ExecHookStatus::Attached { .. }))
    {
        // Processes exec'd before the hook was attached: one /proc scan,
        // so that they too are known once gone from /proc.
        let seeded = probe.seed_exec_args(proc_exec_entries(&cfg.proc_path));
        tracing::debug!(receiver = %ctx.id, seeded, "the exec hook knows the processes running at start");
    }
    if let Some(probe) = &probe {
        match probe.scope_hook() {
            ScopeHookStatus::Unavailable(why) if cfg.scope_hook != ScopeHookChoice::Off => {
                tracing::info!(receiver = %ctx.id, reason = %why, "no hook on oom_kill_process: the constraint and memcg of a kill come from the kernel log (rate-limited)");
            }
            hook => {
                tracing::debug!(receiver = %ctx.id, %hook, "the OOM killer's decisions are read in the kernel")
            }
        }
    }
    let kmsg = match KmsgReader::open(&cfg.kmsg_path, StartAt::End) {
        Ok(r) => Some(r),
        Err(e) if probe.is_some() => {
            tracing::warn!(receiver = %ctx.id, path = %cfg.kmsg_path.display(), error = %e, "cannot read the kernel log; OOM records will lack the kernel's report (constraint, memcg, gfp_mask)");
            None
        }
        Err(e) => anyhow::bail!(
            "receiver {}: cannot observe OOM kills: eBPF is not in use and {} cannot be read: {e}",
            ctx.id,
            cfg.kmsg_path.display()
        ),
    };
    drop(on_kill_thread);
    let processes = track_processes(&cfg, &ctx, probe.as_ref())?;
    tracing::info!(
        receiver = %ctx.id,
        ebpf = probe.is_some(),
        kmsg = kmsg.is_some(),
        process_events = processes.is_some(),
        "watching for OOM kills"
    );
    let hub = match &cfg.events {
        Some(events) => {
            let hub = OomEventHub::new(crate::api::events::HUB_CAPACITY)
                .with_incidents(Arc::clone(&ctx.extensions.incidents));
            let options = events
                .serve_options(&ctx.id)
                .map_err(|e| e.context(format!("receiver {}: live events API", ctx.id)))?;
            crate::api::events::serve_with(
                &events.endpoint,
                options,
                hub.clone(),
                ctx.shutdown.clone(),
            )
            .await
            .map_err(|e| e.context(format!("receiver {}: live events API", ctx.id)))?;
            tracing::info!(receiver = %ctx.id, endpoint = %events.endpoint, "serving live OOM events (oomscope events)");
            Some(hub)
        }
        None => None,
    };
    let (tx, rx) = mpsc::channel(EMIT_QUEUE);
    let mut emitter = Emitter::new(ctx.clone(), outputs, probe.is_some(), hub);
    if cfg.incidents.enabled {
        let hub = Arc::clone(&ctx.extensions.incidents);
        hub.enable(cfg.incidents.before.get(), cfg.incidents.after.get());
        emitter.incidents = Some(IncidentSources {
            hub,
            cgroup_roots: cfg.cgroup_roots(),
            proc_path: cfg.proc_path.clone(),
        });
    }
    let refresh = cfg.workload.refresh_interval.get();
    let mut correlator = Correlator::new(cfg, probe, kmsg, tx);
    correlator.processes = processes;
    if correlator.cfg.workload.enabled {
        tokio::spawn(refresh_workloads(
            correlator.workload.clone(),
            refresh,
            ctx.shutdown.clone(),
        ));
    }
    let shutdown = ctx.shutdown.clone();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let (running, started) = tokio::sync::oneshot::channel::<()>();
    // Dropped with the task `start` returns (at its end, or when the
    // service aborts a receiver that outlived its grace): the thread then
    // drops its work, and with it the pipeline heads it holds.
    let (keep_running, stop) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("oom-kills".to_string())
        .spawn(move || {
            crate::privileges::raise_thread_priority(KILL_THREAD_NICE, "oom-kills");
            let _ = running.send(());
            let mut kill_runtime = kill_runtime;
            let Some(runtime) = kill_runtime.0.take() else {
                return;
            };
            runtime.block_on(async move {
                let work = async {
                    let emit_task = tokio::spawn(emitter.run(rx, shutdown.clone()));
                    correlator.run(shutdown).await;
                    // The correlator dropped its sender: the emitter
                    // delivers what is queued, then ends.
                    let _ = emit_task.await;
                };
                tokio::select! {
                    () = work => {}
                    _ = stop => {}
                }
            });
            // Tasks still on the runtime (an emitter cut short) go with it.
            drop(runtime);
            let _ = done.send(());
        })
        .map_err(|e| anyhow::anyhow!("receiver {}: cannot start its thread: {e}", ctx.id))?;
    // Started means running at its priority.
    let _ = started.await;
    let id = ctx.id.clone();
    Ok(tokio::spawn(async move {
        let _keep_running = keep_running;
        if finished.await.is_err() {
            tracing::error!(receiver = %id, "the OOM kill thread ended abnormally (a panic); kills are no longer reported");
        }
    }))
}

/// The kill thread's nice value: ahead of the agent's bulk work and of
/// ordinary processes when it wakes, so that a kill is read while the CPUs
/// are busy (they are, around an OOM kill). It sleeps between kills.
const KILL_THREAD_NICE: i32 = crate::urgent_lane::URGENT_NICE;

/// The exec hook's entries of the processes under `proc_path` now (pid,
/// entry), in pid order; kernel threads and processes gone meanwhile left
/// out.
fn proc_exec_entries(proc_path: &std::path::Path) -> impl Iterator<Item = (u32, ExecArgs)> {
    let hz = crate::sysconf::clock_ticks_per_second();
    let mut pids: Vec<u32> = std::fs::read_dir(proc_path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let proc_path = proc_path.to_path_buf();
    pids.into_iter().filter_map(move |pid| {
        crate::ebpf::exec_args::entry_from_proc(&proc_path.join(pid.to_string()), hz)
            .map(|entry| (pid, entry))
    })
}

/// What /proc did not give, from the exec hook's entry.
fn fill_from_exec(victim: &mut Victim, exec: enrich::RecordedFacts) {
    // argv as exec'd wins over /proc's: read at the kill, the victim's
    // stack may be half torn down or reaped (the oom_reaper unmaps a slow
    // victim's memory), and a partial command line reads as a whole one.
    // One read from /proc at the agent's start only fills in: the process
    // may have set a title since.
    if exec.command_line.is_some() && !(exec.from_proc && victim.command_line.is_some()) {
        victim.command_line = exec.command_line;
        victim.command_line_from_exec = true;
    }
    if victim.executable_path.is_none() && exec.executable_path.is_some() {
        victim.executable_name = exec.executable_path.as_deref().and_then(enrich::base_name);
        victim.executable_path = exec.executable_path;
    }
    victim.parent_pid = victim.parent_pid.or(exec.parent_pid);
    victim.start_unix_nano = victim.start_unix_nano.or(exec.start_unix_nano);
}

/// What the exec hook did not give, from the process table; its command
/// line (read at exec) wins over /proc's at the kill, as the hook's does.
fn fill_from_record(victim: &mut Victim, r: &crate::process_table::ProcessRecord) {
    if r.command_line.is_some() && !victim.command_line_from_exec {
        victim.command_line = r.command_line.clone();
    }
    if victim.executable_path.is_none() {
        victim.executable_path = r.executable_path.clone();
        victim.executable_name = r.executable_path.as_deref().and_then(enrich::base_name);
    }
    victim.parent_pid = victim.parent_pid.or(r.parent_pid);
    victim.start_unix_nano = victim.start_unix_nano.or(r.start_unix_nano);
    if victim.cgroup.is_none() {
        victim.cgroup = r.cgroup.clone();
    }
}

/// The netlink process table, when `process_tracking` asks for it (and, in
/// `auto`, the exec hook is not attached). `netlink` fails without it.
fn track_processes(
    cfg: &OomReceiverConfig,
    ctx: &BuildContext,
    probe: Option<&MarkVictimProbe>,
) -> anyhow::Result<Option<Arc<Mutex<ProcessTable>>>> {
    let exec_hook =
        probe.is_some_and(|p| !matches!(p.exec_hooks(), ExecHookStatus::Unavailable(_)));
    let wanted = match cfg.process_tracking {
        ProcessTracking::Ebpf => false,
        ProcessTracking::Auto => !exec_hook,
        ProcessTracking::Netlink => true,
    };
    if !wanted {
        return Ok(None);
    }
    let connector = match Connector::open() {
        Ok(c) => c,
        Err(e) if cfg.process_tracking == ProcessTracking::Netlink => anyhow::bail!(
            "receiver {}: process_tracking: netlink, but the process connector cannot be used: {e}",
            ctx.id
        ),
        Err(e) => {
            tracing::warn!(receiver = %ctx.id, error = %e, "neither the exec hook nor the process connector can be used: a victim that exits before /proc is read gets no process.command_line");
            return Ok(None);
        }
    };
    let table = Arc::new(Mutex::new(ProcessTable::new()));
    let reader = ProcReader::new(&cfg.proc_path, &cfg.secret_keys);
    connector::spawn_reader(
        connector,
        reader,
        table.clone(),
        Arc::new(ReaderStats::default()),
        ctx.shutdown.clone(),
    )
    .map_err(|e| anyhow::anyhow!("receiver {}: process events thread: {e}", ctx.id))?;
    tracing::debug!(receiver = %ctx.id, "recording processes from the kernel's process events");
    Ok(Some(table))
}

/// Looks running containers up every `interval` (off the async workers), so
/// that a victim's workload is known before its runtime process exits.
async fn refresh_workloads(
    resolver: Arc<Mutex<Resolver>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // At once, then on the shared grid (one wake-up with the other
    // periodic work).
    let mut tick = crate::clock::GridTicker::starting_now(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let r = resolver.clone();
        let _ = tokio::task::spawn_blocking(move || {
            lock(&r).refresh();
        })
        .await;
    }
}

/// The resolver, whatever a panicking holder left behind (its state is a
/// cache: at worst stale).
fn lock(r: &Mutex<Resolver>) -> std::sync::MutexGuard<'_, Resolver> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Messages from the correlator to the emitter.
enum Emit {
    Kill(Box<OomKill>),
    /// A kill whose record went out without its report, marked exiting:
    /// the report came later. Counted as a kill; no second record.
    LateReport(Box<OomKill>),
    /// Periodic counters: kills the kernel counted that produced no record,
    /// and events the ring buffer dropped.
    Stats {
        missed: u64,
        dropped: Option<u64>,
    },
}

struct PendingEvent {
    kill: OomKill,
    deadline: Instant,
    /// The exec hook's entries for the victim's pid, kept when the event
    /// had no comm to match them with (a tracepoint without `comm`): its
    /// report names the victim.
    unmatched: Vec<ExecArgs>,
}

struct PendingReport {
    report: OomReport,
    deadline: Instant,
}

/// A record sent without its report and so marked exiting, kept to
/// recognise a report that comes later.
struct SentUnreported {
    pid: i32,
    /// Empty where the tracepoint has no `comm`.
    comm: String,
    at: Instant,
}

struct Correlator {
    cfg: OomReceiverConfig,
    probe: Option<MarkVictimProbe>,
    kmsg: Option<KmsgReader>,
    assembler: OomReportAssembler,
    events: HashMap<i32, PendingEvent>,
    reports: HashMap<i32, PendingReport>,
    /// Records sent marked exiting, oldest first (bounded by
    /// [`MAX_PENDING`] and [`LATE_REPORT_TTL`]).
    sent_unreported: VecDeque<SentUnreported>,
    tx: mpsc::Sender<Emit>,
    /// `/proc/vmstat` `oom_kill` at start; `None` where the kernel lacks it.
    vmstat_base: Option<u64>,
    /// The gaps between the kernel's count and the kills accounted for, at
    /// each stats tick within the last [`Correlator::missed_grace`] (and the
    /// newest before it): a kill is in flight from the kernel's count until
    /// its event or report is read, so only a lasting gap is missed.
    gaps: VecDeque<(Instant, u64)>,
    /// Real kills (not exiting victims) handed to the emitter.
    kills_emitted: u64,
    /// Real kills left out by `cgroups` (not missed: seen and dropped).
    kills_filtered: u64,
    /// Second kills of a victim as a member of its own memory.oom.group:
    /// counted by the kernel, one record.
    kills_repeated: u64,
    filter: CgroupFilter,
    workload: Arc<Mutex<Resolver>>,
    /// Processes recorded from the kernel's process events, when in use.
    processes: Option<Arc<Mutex<ProcessTable>>>,
    /// `oom_kill_process` events waiting for their victim's event, by
    /// victim pid.
    scopes: HashMap<i32, (OomScopeEvent, Instant)>,
    memcg_paths: MemcgPaths,
    missed: u64,
    /// Events are expected from eBPF, so a report waits for its event.
    /// Kept apart from `probe` so the correlation can be tested without one.
    ebpf_active: bool,
}

impl Correlator {
    fn new(
        cfg: OomReceiverConfig,
        probe: Option<MarkVictimProbe>,
        kmsg: Option<KmsgReader>,
        tx: mpsc::Sender<Emit>,
    ) -> Self {
        let vmstat_base = read_vmstat_oom_kill(&cfg.proc_path);
        let ebpf_active = probe.is_some();
        // Checked by `start` (and the config's validation) already.
        let filter =
            CgroupFilter::new(&cfg.cgroups.include, &cfg.cgroups.exclude).unwrap_or_default();
        let workload = Arc::new(Mutex::new(Resolver::new(
            &cfg.workload,
            &cfg.proc_path,
            &cfg.root_path,
        )));
        Correlator {
            kills_filtered: 0,
            kills_repeated: 0,
            filter,
            workload,
            processes: None,
            scopes: HashMap::new(),
            memcg_paths: MemcgPaths::new(&cfg.cgroup_path),
            cfg,
            probe,
            kmsg,
            assembler: OomReportAssembler::new(),
            events: HashMap::new(),
            reports: HashMap::new(),
            sent_unreported: VecDeque::new(),
            tx,
            vmstat_base,
            gaps: VecDeque::new(),
            kills_emitted: 0,
            missed: 0,
            ebpf_active,
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        // At once, then on the shared grid: reported with the other
        // periodic data.
        let mut stats = crate::clock::GridTicker::starting_now(self.cfg.metrics_interval.get());
        loop {
            let deadline = self.next_deadline();
            // Biased, sources before the deadline: a half whose partner is
            // already readable is not alone. The task may have been
            // descheduled past a deadline while the partner waited (a host in
            // an OOM storm is a busy one); the timer and the partner's
            // readiness then come in the same reactor turn, and the partner
            // must win.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                event = next_event(&mut self.probe) => match event {
                    Ok(ProbeEvent::Scope(ev)) => self.on_scope(ev),
                    Ok(ProbeEvent::Victim(ev)) => {
                        if self.on_event(&ev).await {
                            self.read_kernel_log_now().await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the eBPF ring buffer failed; going on with the kernel log alone");
                        self.probe = None;
                        self.ebpf_active = false;
                    }
                },
                record = next_kmsg(&mut self.kmsg) => {
                    if self.on_kmsg(record).await.is_break() {
                        break;
                    }
                }
                () = sleep_until(deadline) => self.expire(Instant::now()).await,
                _ = stats.tick() => self.send_stats().await,
            }
        }
        // Shutdown: emit what is waiting, as it is.
        self.expire(Instant::now() + Duration::from_secs(3600))
            .await;
        self.send_stats().await;
    }

    /// A record (or gap) of the kernel log, or its failure; `Break` when no
    /// source of kills is left.
    async fn on_kmsg(&mut self, record: std::io::Result<KmsgEvent>) -> ControlFlow<()> {
        match record {
            Ok(KmsgEvent::Record(rec)) => {
                if let Some(report) = self.assembler.push(&rec) {
                    self.on_report(report).await;
                }
            }
            Ok(KmsgEvent::Gap { missed }) => {
                tracing::warn!(?missed, "kernel log records were overwritten before they were read; an OOM report may be incomplete");
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the kernel log failed; OOM records will lack the kernel's report");
                self.kmsg = None;
                if self.probe.is_none() {
                    tracing::error!("no source of OOM kills is left; the oom receiver stops");
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Reads what the kernel log holds now, without waiting for it to signal
    /// readers: a victim event waits for its report. The kernel stores the
    /// report's last line ("Killed process") right after the event, but wakes
    /// `/dev/kmsg` readers only once its consoles have printed it, which on a
    /// serial console takes milliseconds a line, and longer while several
    /// kills queue for the console. Bounded: the rest is read as it comes.
    async fn read_kernel_log_now(&mut self) {
        for _ in 0..EAGER_KMSG_RECORDS {
            let Some(kmsg) = self.kmsg.as_mut() else {
                return;
            };
            let Some(record) = kmsg.try_next().transpose() else {
                return;
            };
            if self.on_kmsg(record).await.is_break() {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.events
            .values()
            .map(|p| p.deadline)
            .chain(self.reports.values().map(|p| p.deadline))
            .min()
    }

    /// An `oom_kill_process` call: for the victim's event, which the kernel
    /// sends right after (or already waits for its report).
    fn on_scope(&mut self, ev: OomScopeEvent) {
        if !ev.has(scope_flags::VICTIM) {
            return;
        }
        if let Some(pending) = self.events.get_mut(&ev.victim_tgid) {
            apply_scope(&mut pending.kill, &ev);
            return;
        }
        if self.scopes.len() >= MAX_PENDING {
            let oldest = self
                .scopes
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(pid, _)| *pid);
            if let Some(pid) = oldest {
                self.scopes.remove(&pid);
            }
        }
        self.scopes.insert(ev.victim_tgid, (ev, Instant::now()));
    }

    /// Whether its record waits for the kernel's report.
    async fn on_event(&mut self, ev: &OomVictimEvent) -> bool {
        let (kill, unmatched) = self.kill_from_event(ev);
        let pid = kill.victim.pid;
        if let Some(pending) = self.reports.remove(&pid) {
            let merged = self.merge(kill, &pending.report);
            self.emit(merged).await;
            return false;
        }
        if self.kmsg.is_none() {
            // Nothing to wait for.
            self.emit(kill).await;
            return false;
        }
        if self.events.len() >= MAX_PENDING {
            self.expire_oldest_event().await;
        }
        let deadline = Instant::now() + self.cfg.report_wait.get();
        let pending = PendingEvent {
            kill,
            deadline,
            unmatched,
        };
        if let Some(previous) = self.events.insert(pid, pending) {
            // The same pid marked twice within the wait (pid reuse is
            // implausibly fast; an exiting victim re-marked is not): keep both.
            self.emit_unreported(previous.kill).await;
        }
        true
    }

    async fn on_report(&mut self, report: OomReport) {
        if report.repeated_victim {
            // Its record is out (or waiting for its event) already.
            self.kills_repeated += 1;
            tracing::debug!(
                pid = report.killed.pid,
                "the kernel killed the victim again as a member of its memory.oom.group"
            );
            return;
        }
        let pid = report.killed.pid;
        if let Some(pending) = self.events.remove(&pid) {
            let mut merged = self.merge(pending.kill, &report);
            if !pending.unmatched.is_empty() {
                // The report named the victim: its exec entry can be matched now.
                let ktime = merged.kernel_time_ns;
                self.fill_recorded(&mut merged.victim, &pending.unmatched, ktime);
            }
            self.emit(merged).await;
            return;
        }
        if self.take_sent_unreported(pid, &report.killed.comm, Instant::now()) {
            let kill = self.kill_from_report(&report);
            tracing::warn!(
                pid,
                comm = %report.killed.comm,
                report_wait = ?self.cfg.report_wait.get(),
                "the kernel's report of an OOM kill came after report_wait: its record went \
                 out marked as an exiting victim; the kill is counted, with no second record \
                 (raise report_wait if this recurs)"
            );
            self.emit_late(kill).await;
            return;
        }
        if !self.ebpf_active {
            let kill = self.kill_from_report(&report);
            self.emit(kill).await;
            return;
        }
        // The report came before the event (the ring buffer is read later
        // than the log, or dropped the event): wait for it just as long.
        if self.reports.len() >= MAX_PENDING {
            self.expire_oldest_report().await;
        }
        let deadline = Instant::now() + self.cfg.report_wait.get();
        if let Some(previous) = self.reports.insert(pid, PendingReport { report, deadline }) {
            let kill = self.kill_from_report(&previous.report);
            self.emit(kill).await;
        }
    }

    async fn expire(&mut self, now: Instant) {
        // A hook event whose victim event never came (dropped, or filtered).
        self.scopes
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < SCOPE_TTL);
        let due: Vec<i32> = self
            .events
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            if let Some(p) = self.events.remove(&pid) {
                self.emit_unreported(p.kill).await;
            }
        }
        let due: Vec<i32> = self
            .reports
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            if let Some(p) = self.reports.remove(&pid) {
                // eBPF did not see it (a dropped ring buffer event): the
                // report alone still makes the record.
                let kill = self.kill_from_report(&p.report);
                self.emit(kill).await;
            }
        }
    }

    async fn expire_oldest_event(&mut self) {
        let oldest = self
            .events
            .iter()
            .min_by_key(|(_, p)| p.deadline)
            .map(|(pid, _)| *pid);
        if let Some(p) = oldest.and_then(|pid| self.events.remove(&pid)) {
            self.emit_unreported(p.kill).await;
        }
    }

    async fn expire_oldest_report(&mut self) {
        let oldest = self
            .reports
            .iter()
            .min_by_key(|(_, p)| p.deadline)
            .map(|(pid, _)| *pid);
        if let Some(p) = oldest.and_then(|pid| self.reports.remove(&pid)) {
            let kill = self.kill_from_report(&p.report);
            self.emit(kill).await;
        }
    }

    /// An eBPF event whose report never came: with the kernel log being
    /// read, the kernel printed no "Killed process" line, which it does only
    /// for a victim that was already exiting.
    async fn emit_unreported(&mut self, mut kill: OomKill) {
        // oom_kill_process saw it (the hook): killed, not exiting.
        kill.victim.exiting = self.kmsg.is_some() && kill.scope.hook.is_none();
        if kill.victim.exiting {
            self.remember_sent_unreported(&kill, Instant::now());
        }
        self.emit(kill).await;
    }

    fn remember_sent_unreported(&mut self, kill: &OomKill, at: Instant) {
        while self.sent_unreported.len() >= MAX_PENDING
            || self
                .sent_unreported
                .front()
                .is_some_and(|s| at.saturating_duration_since(s.at) >= LATE_REPORT_TTL)
        {
            self.sent_unreported.pop_front();
        }
        self.sent_unreported.push_back(SentUnreported {
            pid: kill.victim.pid,
            comm: kill.victim.comm.clone(),
            at,
        });
    }

    /// Whether a report is the late one of a record already sent marked
    /// exiting (then forgotten: a second report is a new kill).
    fn take_sent_unreported(&mut self, pid: i32, comm: &str, now: Instant) -> bool {
        let found = self.sent_unreported.iter().rposition(|s| {
            s.pid == pid
                && (s.comm.is_empty() || s.comm == comm)
                && now.saturating_duration_since(s.at) < LATE_REPORT_TTL
        });
        match found {
            Some(i) => {
                self.sent_unreported.remove(i);
                true
            }
            None => false,
        }
    }

    /// A late report's kill: counted (its record went out marked exiting,
    /// which the counters left out), not recorded again.
    async fn emit_late(&mut self, kill: OomKill) {
        self.hand_over(kill, Emit::LateReport).await;
    }

    /// Whether `cgroups` lets the kill through: by the victim's cgroup, or
    /// the memcg when the victim's is unknown; with `include` set, a kill
    /// of no known cgroup does not pass.
    fn selected(&self, kill: &OomKill) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        match kill
            .victim
            .cgroup
            .as_deref()
            .or(kill.scope.memcg.as_deref())
        {
            Some(cgroup) => self.filter.selected(cgroup),
            None => !self.filter.has_include(),
        }
    }

    async fn emit(&mut self, kill: OomKill) {
        self.hand_over(kill, Emit::Kill).await;
    }

    /// Completes a kill, drops it when `cgroups` leaves it out, counts it,
    /// and hands it to the emitter as `message` says.
    async fn hand_over(&mut self, mut kill: OomKill, message: fn(Box<OomKill>) -> Emit) {
        if let (None, Some(id)) = (&kill.scope.memcg, kill.scope.memcg_id) {
            // No report named it: the hook's kernfs id does.
            kill.scope.memcg = self.memcg_paths.path(id);
        }
        if kill.scope.group.is_none() {
            // The victim chosen first: its report came before the kernel
            // named the group, or there was none.
            if let Some(cgroup) = kill.victim.cgroup.as_deref() {
                kill.scope.group = enrich::oom_group(
                    &self.cfg.cgroup_roots(),
                    cgroup,
                    kill.scope.memcg.as_deref(),
                );
            }
        }
        if !self.selected(&kill) {
            if !kill.victim.exiting {
                self.kills_filtered += 1;
            }
            tracing::debug!(pid = kill.victim.pid, cgroup = ?kill.victim.cgroup, "OOM kill outside cgroups.include/exclude; not reported");
            return;
        }
        if !kill.victim.exiting {
            self.kills_emitted += 1;
        }
        if self.tx.send(message(Box::new(kill))).await.is_err() {
            tracing::debug!("OOM emitter is gone; a kill was not delivered");
        }
    }

    /// How long a gap between the kernel's count and the kills accounted
    /// for must last to be missed: longer than a kill's event or report
    /// takes to be read on a loaded host (a memory.oom.group's repeated
    /// kill is counted by the kernel before its report says so).
    fn missed_grace(&self) -> Duration {
        self.cfg.report_wait.get() + Duration::from_secs(2)
    }

    async fn send_stats(&mut self) {
        self.send_stats_at(Instant::now()).await;
    }

    async fn send_stats_at(&mut self, at: Instant) {
        /// Stats ticks kept at most (a tick is at least 1 ms apart).
        const MAX_GAPS: usize = 4096;
        if let (Some(base), Some(now)) =
            (self.vmstat_base, read_vmstat_oom_kill(&self.cfg.proc_path))
        {
            // Kills still waiting for their other half are not missed.
            let accounted = self.kills_emitted
                + self.kills_filtered
                + self.kills_repeated
                + (self.events.len() + self.reports.len()) as u64;
            let gap = now.saturating_sub(base).saturating_sub(accounted);
            let grace = self.missed_grace();
            self.gaps.push_back((at, gap));
            while self.gaps.len() > MAX_GAPS
                || (self.gaps.len() > 1 && at.saturating_duration_since(self.gaps[1].0) >= grace)
            {
                self.gaps.pop_front();
            }
            // Missed: the least gap over the grace. A counter: never goes
            // down (a pending kill resolving later does not un-miss an
            // earlier one).
            if at.saturating_duration_since(self.gaps[0].0) >= grace {
                let lasting = self.gaps.iter().map(|(_, g)| *g).min().unwrap_or(0);
                self.missed = self.missed.max(lasting);
            }
        }
        let dropped = self.probe.as_ref().and_then(|p| p.drops().ok());
        let _ = self
            .tx
            .send(Emit::Stats {
                missed: self.missed,
                dropped,
            })
            .await;
    }

    /// The argv entries the exec hook recorded for `pid`. Read first, when a
    /// kill arrives: the entry of a victim that exits moves to a small map
    /// of its own, which keeps only the latest exits.
    fn recorded_args(&self, pid: i32) -> Vec<ExecArgs> {
        self.probe
            .as_ref()
            .map(|probe| probe.exec_args(pid))
            .unwrap_or_default()
    }

    /// The exec hook's facts from `recorded`, matched by the victim's comm
    /// (known only from its report where the tracepoint has no `comm`).
    fn fill_recorded(
        &self,
        victim: &mut Victim,
        recorded: &[ExecArgs],
        kill_ktime_ns: Option<u64>,
    ) {
        if let Some(exec) = enrich::recorded_facts(
            recorded,
            &victim.comm,
            kill_ktime_ns,
            &self.cfg.secret_keys,
            crate::clock::boot_unix_nanos(),
        ) {
            fill_from_exec(victim, exec);
        }
    }

    /// /proc's facts; what /proc no longer has (the victim has exited its
    /// memory, or was reaped) from the exec hook's `recorded` entries.
    fn enrich(&self, victim: &mut Victim, recorded: &[ExecArgs], kill_ktime_ns: Option<u64>) {
        let facts = enrich::read_process(&self.cfg.proc_path, victim.pid, &self.cfg.secret_keys);
        victim.executable_name = facts.executable_name;
        victim.executable_path = facts.executable_path;
        victim.parent_pid = facts.parent_pid;
        victim.start_unix_nano = facts.start_unix_nano;
        victim.command_line = facts.command_line;
        self.fill_recorded(victim, recorded, kill_ktime_ns);
        if victim.cgroup.is_none() {
            victim.cgroup = facts.cgroup;
        }
        if let Some(table) = &self.processes {
            if let Some(r) = connector::lock(table).lookup(victim.pid, &victim.comm) {
                fill_from_record(victim, r);
            }
        }
        self.set_container_ids(victim);
    }

    /// Container and pod ids from the cgroup path, and the workload they
    /// name (the victim's runtime process is looked for above its pid).
    fn set_container_ids(&self, victim: &mut Victim) {
        if let Some(cg) = &victim.cgroup {
            let ids = enrich::container_ids(cg);
            victim.container_id = ids.container_id;
            victim.pod_uid = ids.pod_uid;
            victim.workload = lock(&self.workload).resolve(cg, Some(victim.pid));
        }
    }

    /// The kill an event describes, and the exec hook's entries for its
    /// pid when they could not be matched for want of the victim's comm.
    fn kill_from_event(&mut self, ev: &OomVictimEvent) -> (OomKill, Vec<ExecArgs>) {
        let kb = |flag: u32, v: u64| ev.has(flag).then(|| v.saturating_mul(1024));
        let mut comm = comm_str(&ev.comm);
        if comm.is_empty() {
            // A tracepoint without `comm`: a report already here names it.
            if let Some(pending) = self.reports.get(&ev.pid) {
                comm.clone_from(&pending.report.killed.comm);
            }
        }
        let mut victim = Victim {
            pid: ev.pid,
            comm,
            uid: ev.has(flags::UID).then_some(ev.uid),
            total_vm: kb(flags::TOTAL_VM, ev.total_vm_kb),
            anon_rss: kb(flags::ANON_RSS, ev.anon_rss_kb),
            file_rss: kb(flags::FILE_RSS, ev.file_rss_kb),
            shmem_rss: kb(flags::SHMEM_RSS, ev.shmem_rss_kb),
            pgtables: kb(flags::PGTABLES, ev.pgtables_kb),
            oom_score_adj: ev
                .has(flags::OOM_SCORE_ADJ)
                .then_some(i32::from(ev.oom_score_adj)),
            ..Victim::default()
        };
        // Read now: the victim is dying.
        let recorded = self.recorded_args(ev.pid);
        self.enrich(&mut victim, &recorded, Some(ev.ktime_ns));
        let unmatched = if victim.comm.is_empty() && !victim.command_line_from_exec {
            recorded
        } else {
            Vec::new()
        };
        let trigger_comm = comm_str(&ev.trigger_comm);
        let mut kill = OomKill {
            time_unix_nano: Clock::now().unix_nano_from_ns(ev.ktime_ns),
            kernel_time_ns: Some(ev.ktime_ns),
            source: Source::Ebpf,
            victim,
            trigger: Trigger {
                // The thread group id is the process id users know.
                pid: (ev.trigger_tgid > 0).then_some(ev.trigger_tgid),
                comm: (!trigger_comm.is_empty()).then_some(trigger_comm),
                gfp_mask: None,
                order: None,
            },
            scope: Scope::default(),
        };
        if let Some((scope, _)) = self.scopes.remove(&ev.pid) {
            apply_scope(&mut kill, &scope);
        }
        (kill, unmatched)
    }

    fn kill_from_report(&self, r: &OomReport) -> OomKill {
        let k = &r.killed;
        let mut victim = Victim {
            pid: k.pid,
            comm: k.comm.clone(),
            ..Victim::default()
        };
        let recorded = self.recorded_args(k.pid);
        self.enrich(&mut victim, &recorded, None);
        let mut kill = OomKill {
            time_unix_nano: Clock::now().unix_nano(r.monotonic_us),
            kernel_time_ns: None,
            source: Source::Kmsg,
            victim,
            trigger: Trigger::default(),
            scope: Scope::default(),
        };
        self.apply_report(&mut kill, r);
        kill
    }

    fn merge(&self, mut kill: OomKill, r: &OomReport) -> OomKill {
        self.apply_report(&mut kill, r);
        kill
    }

    /// The report's facts win for memory figures (they are what the kernel
    /// printed) and fill what the event lacks.
    fn apply_report(&self, kill: &mut OomKill, r: &OomReport) {
        let k = &r.killed;
        let v = &mut kill.victim;
        if v.comm.is_empty() {
            v.comm = k.comm.clone();
        }
        let bytes = |kb: Option<u64>| kb.map(|kb| kb.saturating_mul(1024));
        v.total_vm = bytes(k.total_vm_kb).or(v.total_vm);
        v.anon_rss = bytes(k.anon_rss_kb).or(v.anon_rss);
        v.file_rss = bytes(k.file_rss_kb).or(v.file_rss);
        v.shmem_rss = bytes(k.shmem_rss_kb).or(v.shmem_rss);
        v.pgtables = bytes(k.pgtables_kb).or(v.pgtables);
        v.uid = v.uid.or(k.uid);
        v.oom_score_adj = k.oom_score_adj.or(v.oom_score_adj);
        // The kernel's view at the moment of the kill wins over /proc, which
        // may already show the root cgroup for a victim that has exited.
        if let Some(task_memcg) = &r.task_memcg {
            v.cgroup = Some(task_memcg.clone());
            self.set_container_ids(v);
        }
        let t = &mut kill.trigger;
        t.pid = t.pid.or(r.trigger_pid);
        t.comm = t.comm.clone().or_else(|| r.trigger_comm.clone());
        t.gfp_mask = r.gfp_mask.clone();
        t.order = r.order;
        let s = &mut kill.scope;
        s.group = r.oom_group.clone();
        if r.task_count > 0 {
            s.tasks.clone_from(&r.tasks);
            s.task_count = r.task_count;
        }
        if r.constraint.is_some() || r.oom_memcg.is_some() || r.global_oom {
            s.constraint = r.constraint.clone();
            s.memcg = r.oom_memcg.clone();
            let memcg_oom = r.constraint.as_deref() == Some("CONSTRAINT_MEMCG")
                || (r.oom_memcg.is_some() && !r.global_oom);
            s.trigger_type = Some(if memcg_oom { "cgroup" } else { "system" });
            s.memcg_usage = r.memcg_usage_bytes.or(s.memcg_usage);
            s.memcg_limit = if memcg_oom {
                r.memcg_limit_bytes.or_else(|| {
                    r.oom_memcg
                        .as_deref()
                        .and_then(|cg| enrich::memcg_limit(&self.cfg.cgroup_roots(), cg))
                })
            } else {
                None
            };
        } else if kill.scope.hook.is_none() {
            // The kernel rate-limits the report's header (10 per 5 s): only
            // the "Killed process" line came, and no hook saw the kill.
            // Derive the scope from the trigger's memory cgroup: its nearest
            // ancestor-or-self with a limit is the one that was hit; none
            // means a system-wide OOM.
            self.infer_scope(kill);
        }
    }

    fn infer_scope(&self, kill: &mut OomKill) {
        let Some(trigger) = kill.trigger.pid else {
            return;
        };
        let facts = enrich::read_process(&self.cfg.proc_path, trigger, &[]);
        let Some(cgroup) = facts.cgroup else { return };
        let roots = self.cfg.cgroup_roots();
        let limited = enrich::ancestors(&cgroup)
            .into_iter()
            .find_map(|cg| enrich::memcg_limit(&roots, &cg).map(|limit| (cg, limit)));
        let s = &mut kill.scope;
        match limited {
            Some((cg, limit)) => {
                s.constraint = Some("CONSTRAINT_MEMCG".to_string());
                s.memcg = Some(cg);
                s.memcg_limit = Some(limit);
                s.trigger_type = Some("cgroup");
            }
            None => {
                s.constraint = Some("CONSTRAINT_NONE".to_string());
                s.trigger_type = Some("system");
            }
        }
    }
}

/// What the `oom_kill_process` hook read, into `kill` where the kill lacks
/// it (the kernel's report, merged later, wins for what it prints).
fn apply_scope(kill: &mut OomKill, ev: &OomScopeEvent) {
    kill.scope.hook = match ev.hook {
        scope_hook::FENTRY => Some("fentry"),
        scope_hook::KPROBE => Some("kprobe"),
        _ => None,
    };
    // oom_kill_process runs only for a victim it kills.
    kill.victim.exiting = false;
    let s = &mut kill.scope;
    if ev.has(scope_flags::CONSTRAINT) {
        if let Some(name) = CONSTRAINT_NAMES.get(ev.constraint as usize) {
            s.constraint = Some((*name).to_owned());
        }
    }
    if ev.has(scope_flags::MEMCG) {
        s.trigger_type = Some("cgroup");
        let page = crate::sysconf::page_size();
        if ev.has(scope_flags::MEMCG_MAX) && ev.memcg_max_pages < (i64::MAX as u64) / page {
            s.memcg_limit = Some(ev.memcg_max_pages.saturating_mul(page));
        }
        if ev.has(scope_flags::MEMCG_USAGE) {
            s.memcg_usage = Some(ev.memcg_usage_pages.saturating_mul(page));
        }
        if ev.has(scope_flags::MEMCG_ID) {
            s.memcg_id = Some(ev.memcg_id);
        }
    } else if ev.has(scope_flags::CONSTRAINT) {
        s.trigger_type = Some("system");
    }
    let t = &mut kill.trigger;
    if t.pid.is_none() && ev.trigger_tgid > 0 {
        t.pid = Some(ev.trigger_tgid);
    }
    if t.comm.is_none() {
        let comm = comm_str(&ev.trigger_comm);
        t.comm = (!comm.is_empty()).then_some(comm);
    }
    if t.gfp_mask.is_none() && ev.has(scope_flags::GFP_MASK) {
        t.gfp_mask = Some(format!("{:#x}", ev.gfp_mask));
    }
    if t.order.is_none() && ev.has(scope_flags::ORDER) {
        t.order = Some(ev.order);
    }
}

async fn next_event(probe: &mut Option<MarkVictimProbe>) -> std::io::Result<ProbeEvent> {
    match probe {
        Some(p) => p.next_any().await,
        None => std::future::pending().await,
    }
}

async fn next_kmsg(kmsg: &mut Option<KmsgReader>) -> std::io::Result<KmsgEvent> {
    match kmsg {
        Some(k) => k.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn comm_str(raw: &[u8]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// `oom_kill` from /proc/vmstat (kernel 4.13+).
fn read_vmstat_oom_kill(proc_path: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc_path.join("vmstat")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// Series key of `linux.oom.kills`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    trigger_type: &'static str,
    comm: String,
    cgroup: Option<String>,
    container_id: Option<String>,
}

/// Turns kills into OTLP and hands them to the pipelines, retrying while a
/// pipeline refuses (memory limiter): an OOM record is the last thing to drop.
struct Emitter {
    ctx: BuildContext,
    logs: Option<DynConsumer>,
    metrics: Option<DynConsumer>,
    start_unix_nano: u64,
    kills: BTreeMap<SeriesKey, u64>,
    ebpf: bool,
    hub: Option<OomEventHub>,
    /// Where kills register as incidents, and the files their lead-up is
    /// read from; `None` with `incidents.enabled: false`.
    incidents: Option<IncidentSources>,
}

struct IncidentSources {
    hub: Arc<IncidentHub>,
    cgroup_roots: Vec<std::path::PathBuf>,
    proc_path: std::path::PathBuf,
}

impl IncidentSources {
    /// The kill's lead-up (its cgroup's ring, and its cgroup's files and
    /// the system's pressure read now, right after it), registered with
    /// the kill; returns the incident id and the lead-up.
    fn register(&self, kill: &OomKill) -> (String, Arc<LeadUp>) {
        // The victim's cgroup; where it was gone before /proc was read and
        // no report named it, the memcg whose limit was hit (the hook's).
        let cgroup = kill
            .victim
            .cgroup
            .as_deref()
            .or(kill.scope.memcg.as_deref());
        let mut lead_up = self.hub.lead_up(cgroup, kill.time_unix_nano);
        if let Some(cgroup) = cgroup.map(str::to_owned).or_else(|| lead_up.cgroup.clone()) {
            lead_up.read_cgroup_files(&self.cgroup_roots, &cgroup);
        }
        lead_up.read_system_pressure(&self.proc_path);
        lead_up.tasks.clone_from(&kill.scope.tasks);
        lead_up.task_count = kill.scope.task_count;
        let lead_up = Arc::new(lead_up);
        let id = self
            .hub
            .kill(Arc::new(kill.clone()), Some(Arc::clone(&lead_up)));
        (id, lead_up)
    }
}

impl Emitter {
    fn new(
        ctx: BuildContext,
        outputs: ReceiverOutputs,
        ebpf: bool,
        hub: Option<OomEventHub>,
    ) -> Self {
        Emitter {
            ctx,
            logs: outputs.logs,
            metrics: outputs.metrics,
            start_unix_nano: unix_now_nanos(),
            kills: BTreeMap::new(),
            ebpf,
            hub,
            incidents: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Emit>, shutdown: CancellationToken) {
        let metrics = self.ctx.telemetry.receiver(&self.ctx.id, "kernel");
        while let Some(msg) = rx.recv().await {
            match msg {
                Emit::Kill(kill) => {
                    tracing::warn!(receiver = %self.ctx.id, "{}", kill.summary());
                    let incident = self.incidents.as_ref().map(|s| s.register(&kill));
                    // Live subscribers first: they never wait on a pipeline.
                    if let Some(hub) = &self.hub {
                        let mut api = kill.to_api();
                        if let Some((id, lead_up)) = &incident {
                            api.incident_id.clone_from(id);
                            api.lead_up = Some(lead_up.to_api());
                        }
                        hub.publish(api);
                    }
                    let key = self.count(&kill);
                    if let Some(logs) = self.logs.clone() {
                        let mut record = kill.log_record(unix_now_nanos());
                        if let Some((id, lead_up)) = &incident {
                            record.attributes.push(kv_str(incidents::INCIDENT_ID, id));
                            record.attributes.extend(lead_up.attributes());
                        }
                        let mut resource_logs = scoped_logs(kill::SCOPE_NAME, vec![record]);
                        resource_logs.resource = kill.resource();
                        let payload = Payload::Logs(vec![resource_logs]);
                        deliver(&logs, payload, true, &shutdown, &metrics).await;
                    }
                    self.deliver_count(&key, &shutdown, &metrics).await;
                }
                Emit::LateReport(kill) => {
                    let key = self.count(&kill);
                    self.deliver_count(&key, &shutdown, &metrics).await;
                }
                Emit::Stats { missed, dropped } => {
                    if let Some(m) = self.metrics.clone() {
                        let payload =
                            Payload::Metrics(vec![self.kill_metrics(None, Some(missed), dropped)]);
                        // Periodic counters: batched with the other
                        // periodic data, not sent alone like a kill record.
                        deliver(&m, payload, false, &shutdown, &metrics).await;
                    }
                }
            }
        }
    }

    /// The kill's series of `linux.oom.kills`, as it stands now. Not
    /// urgent: the periodic counters (not urgent) carry the same cumulative
    /// series, and an urgent payload would overtake one held in `batch` (a
    /// backend takes a count older than the last as out of order). The
    /// kill's record is the urgent part.
    async fn deliver_count(
        &self,
        key: &SeriesKey,
        shutdown: &CancellationToken,
        metrics: &crate::telemetry::ReceiverMetrics,
    ) {
        if let Some(m) = &self.metrics {
            let payload = Payload::Metrics(vec![self.kill_metrics(Some(key), None, None)]);
            deliver(m, payload, false, shutdown, metrics).await;
        }
    }

    fn count(&mut self, kill: &OomKill) -> SeriesKey {
        let mut key = SeriesKey {
            trigger_type: kill.scope.trigger_type.unwrap_or("unknown"),
            comm: kill.victim.comm.clone(),
            cgroup: kill.victim.cgroup.clone(),
            container_id: kill.victim.container_id.clone(),
        };
        if !self.kills.contains_key(&key) && self.kills.len() >= metrics::MAX_KILL_SERIES {
            key = SeriesKey {
                trigger_type: key.trigger_type,
                comm: OVERFLOW_VALUE.to_string(),
                cgroup: None,
                container_id: None,
            };
        }
        // Exiting victims were not killed; they are records, not kills.
        let n = self.kills.entry(key.clone()).or_insert(0);
        if !kill.victim.exiting {
            *n += 1;
        }
        key
    }

    /// `linux.oom.kills` (one series, or all), and the trust counters.
    fn kill_metrics(
        &self,
        only: Option<&SeriesKey>,
        missed: Option<u64>,
        dropped: Option<u64>,
    ) -> ResourceMetrics {
        let start = self.start_unix_nano;
        let mut b = MetricsBuilder::new(unix_now_nanos());
        for (k, n) in self
            .kills
            .iter()
            .filter(|(k, _)| only.is_none_or(|o| o == *k))
        {
            let mut attrs = vec![
                kv_str("oom.trigger_type", k.trigger_type),
                kv_str("oom.victim.comm", &k.comm),
            ];
            if let Some(cg) = &k.cgroup {
                attrs.push(kv_str("oom.victim.cgroup", cg));
            }
            if let Some(id) = &k.container_id {
                attrs.push(kv_str("container.id", id));
            }
            b.int(&metrics::LINUX_OOM_KILLS, start, int(*n), attrs);
        }
        if let Some(m) = missed {
            b.int(&metrics::LINUX_OOM_KILLS_MISSED, start, int(m), Vec::new());
        }
        if let Some(d) = dropped.filter(|_| self.ebpf) {
            b.int(&metrics::EBPF_DROPPED_EVENTS, start, int(d), Vec::new());
        }
        scoped_metrics(kill::SCOPE_NAME, None, b.into_metrics())
    }
}

/// Hands one payload to a pipeline, `urgent` (a kill: no batching delay)
/// or not. While the pipeline refuses (memory limiter), retries until
/// shutdown.
async fn deliver(
    to: &DynConsumer,
    payload: Payload,
    urgent: bool,
    shutdown: &CancellationToken,
    metrics: &crate::telemetry::ReceiverMetrics,
) {
    let payload = Arc::new(payload);
    let signal = payload.signal();
    let items = payload.item_count();
    if items == 0 {
        return;
    }
    match consume_retrying(to.as_ref(), &payload, urgent, false, shutdown).await {
        Ok(_) => metrics.accepted(signal, items),
        Err(e) => {
            tracing::error!(error = %e, "pipeline did not take an OOM record");
            metrics.not_accepted(signal, items, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BuildContext {
        BuildContext {
            id: crate::config::ComponentId::new("oom", None),
            telemetry: crate::telemetry::Telemetry::noop(),
            extensions: Arc::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Aborting the task `start` returns (the service aborts a receiver
    /// that outlived its shutdown grace) ends the kill thread's work, which
    /// lets go of the pipeline heads so that the pipelines can drain.
    #[tokio::test]
    async fn aborting_the_receiver_releases_its_pipeline_heads() {
        const TEST: &str = "aborting_the_receiver_releases_its_pipeline_heads";
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || std::fs::File::open("/dev/kmsg").is_err() {
            eprintln!("SKIPPED {TEST}: needs root and a readable /dev/kmsg");
            return;
        }
        let cfg = OomReceiverConfig {
            mode: Mode::Kmsg,
            process_tracking: ProcessTracking::Ebpf,
            events: None,
            ..OomReceiverConfig::default()
        };
        let (collect, _records) = crate::pipeline::consumer::testing::Collect::new(None);
        let head: DynConsumer = collect;
        let held = Arc::downgrade(&head);
        let outputs = ReceiverOutputs {
            logs: Some(head),
            metrics: None,
        };
        let task = start(&cfg, ctx(), outputs).await.expect("start");
        assert!(
            held.upgrade().is_some(),
            "the running receiver holds its head"
        );
        task.abort();
        // Bounds a hang only; the thread lets go as soon as it sees the abort.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while held.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the kill thread still holds the pipeline head after the abort"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The events API's socket mode and group, and where TLS applies.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn events_socket_mode_group_and_tls_are_checked() {
        assert_eq!(parse_socket_mode("0660"), Ok(0o660));
        assert_eq!(parse_socket_mode("600"), Ok(0o600));
        assert!(parse_socket_mode("0860").is_err());
        assert!(parse_socket_mode("01777").is_err());
        assert!(parse_socket_mode("0060").unwrap_err().contains("owner"));
        assert_eq!(group_id("root"), Ok(0));
        assert_eq!(group_id("1234"), Ok(1234));
        assert!(group_id("no-such-group-oomscope")
            .unwrap_err()
            .contains("no group"));
        let tcp_with_mode = EventsConfig {
            unix_socket_mode: Some("0600".into()),
            ..EventsConfig::default()
        };
        let e = tcp_with_mode.validate().unwrap_err().to_string();
        assert!(e.contains("unix_socket_mode"), "{e}");
        let unix_with_tls = EventsConfig {
            endpoint: "unix:/run/oomscope.sock".into(),
            tls: Some(crate::tls::TlsServerConfig {
                cert_file: Some("/c.pem".into()),
                key_file: Some("/k.pem".into()),
                ..Default::default()
            }),
            ..EventsConfig::default()
        };
        let e = unix_with_tls.validate().unwrap_err().to_string();
        assert!(e.contains("tls"), "{e}");
        let unix = EventsConfig {
            endpoint: "unix:/run/oomscope.sock".into(),
            unix_socket_mode: Some("0600".into()),
            unix_socket_group: Some("root".into()),
            tls: None,
        };
        unix.validate().unwrap();
    }
    use crate::kernel_log::KilledProcess;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};

    fn event(pid: i32, trigger: i32) -> OomVictimEvent {
        let mut ev = OomVictimEvent::ZERO;
        ev.pid = pid;
        ev.trigger_tgid = trigger;
        ev.trigger_pid = trigger;
        ev.ktime_ns = 1;
        ev.anon_rss_kb = 100;
        ev.flags = flags::PID | flags::COMM | flags::ANON_RSS;
        ev.comm[..4].copy_from_slice(b"test");
        ev
    }

    fn report(pid: i32) -> OomReport {
        OomReport {
            constraint: Some("CONSTRAINT_MEMCG".into()),
            oom_memcg: Some("/limited".into()),
            task_memcg: Some("/limited".into()),
            memcg_limit_bytes: Some(50 << 20),
            gfp_mask: Some("0xcc0(GFP_KERNEL)".into()),
            order: Some(0),
            killed: KilledProcess {
                pid,
                comm: "test".into(),
                total_vm_kb: Some(300),
                anon_rss_kb: Some(200),
                file_rss_kb: Some(10),
                shmem_rss_kb: Some(0),
                uid: Some(7),
                pgtables_kb: Some(4),
                oom_score_adj: Some(0),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A correlator with a kernel log open (a regular file: never read in
    /// these tests, it only makes the kernel report "expected").
    fn correlator(
        with_kmsg: bool,
        proc_path: &std::path::Path,
    ) -> (Correlator, mpsc::Receiver<Emit>, tempfile::NamedTempFile) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let kmsg =
            with_kmsg.then(|| KmsgReader::open(file.path(), StartAt::Beginning).expect("open"));
        let cfg = OomReceiverConfig {
            proc_path: proc_path.to_path_buf(),
            ..OomReceiverConfig::default()
        };
        let (tx, rx) = mpsc::channel(16);
        (Correlator::new(cfg, None, kmsg, tx), rx, file)
    }

    fn kill(msg: Option<Emit>) -> OomKill {
        match msg {
            Some(Emit::Kill(k)) => *k,
            _ => panic!("expected a kill"),
        }
    }

    #[tokio::test]
    async fn event_then_report_is_one_record_with_the_kernel_figures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, mut rx, _f) = correlator(true, dir.path());
        c.on_event(&event(42, 41)).await;
        assert!(rx.try_recv().is_err(), "waits for the report");
        c.on_report(report(42)).await;
        let k = kill(rx.recv().await);
        assert_eq!(k.source, Source::Ebpf);
        assert_eq!(
            k.victim.anon_rss,
            Some(200 * 1024),
            "the report's figure wins"
        );
        assert_eq!(k.victim.uid, Some(7));
        assert_eq!(k.trigger.pid, Some(41));
        assert_eq!(k.scope.constraint.as_deref(), Some("CONSTRAINT_MEMCG"));
        assert_eq!(k.scope.trigger_type, Some("cgroup"));
        assert_eq!(k.victim.cgroup.as_deref(), Some("/limited"));
        assert!(!k.victim.exiting);
        c.expire(Instant::now() + Duration::from_secs(60)).await;
        assert!(rx.try_recv().is_err(), "one kill, one record");
    }

    /// The event's deadline has passed by the time the task runs again, and
    /// its report is readable by then too (the task was descheduled, as on
    /// a host in an OOM storm): the report wins, every time, and the kill is
    /// one complete record. (With an unbiased choice between the two, this
    /// split the kill about every other time; hence the repetitions.)
    #[tokio::test]
    async fn a_report_readable_when_the_deadline_passes_still_merges() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("tempdir");
        for round in 0..32 {
            let pid = 1000 + round;
            // The kernel log is a pipe here: a device-like source that polls.
            let fifo = dir.path().join(format!("kmsg-{round}"));
            let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
                .expect("no NUL in a temp path");
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
            let kmsg = KmsgReader::open(&fifo, StartAt::End).expect("open the pipe");
            let mut writer = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open the pipe's writing end");
            let cfg = OomReceiverConfig {
                proc_path: dir.path().to_path_buf(),
                report_wait: GoDuration::from_millis(0),
                ..OomReceiverConfig::default()
            };
            let (tx, mut rx) = mpsc::channel(16);
            let mut c = Correlator::new(cfg, None, Some(kmsg), tx);
            c.ebpf_active = true;
            c.on_event(&event(pid, pid)).await;
            writer
                .write_all(
                    format!(
                    "3,418,391799786,-;Memory cgroup out of memory: Killed process {pid} (test) \
                     total-vm:300kB, anon-rss:200kB, file-rss:10kB, shmem-rss:0kB, UID:7 \
                     pgtables:4kB oom_score_adj:0\n"
                )
                    .as_bytes(),
                )
                .expect("write the report");
            // One reactor turn, as the descheduled task gets on waking: the
            // pipe's readiness is known, and the deadline is long past.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let shutdown = CancellationToken::new();
            let run = tokio::spawn(c.run(shutdown.clone()));
            let k = kill(rx.recv().await);
            assert_eq!(k.victim.pid, pid);
            assert!(
                !k.victim.exiting,
                "round {round}: the report was left behind"
            );
            assert_eq!(k.victim.anon_rss, Some(200 * 1024), "round {round}");
            shutdown.cancel();
            run.await.expect("the correlator ends");
            while let Ok(msg) = rx.try_recv() {
                assert!(
                    matches!(msg, Emit::Stats { .. }),
                    "round {round}: one kill, one record"
                );
            }
        }
    }

    #[tokio::test]
    async fn report_then_event_is_one_record_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, mut rx, _f) = correlator(true, dir.path());
        // With a probe present the report waits for its event.
        c.ebpf_active = true;
        c.on_report(report(43)).await;
        assert!(rx.try_recv().is_err());
        c.on_event(&event(43, 43)).await;
        let k = kill(rx.recv().await);
        assert_eq!(k.source, Source::Ebpf);
        assert_eq!(k.victim.file_rss, Some(10 * 1024));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_event_without_report_is_an_exiting_victim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, mut rx, _f) = correlator(true, dir.path());
        c.on_event(&event(44, 1)).await;
        c.expire(Instant::now() + Duration::from_secs(1)).await;
        let k = kill(rx.recv().await);
        assert!(
            k.victim.exiting,
            "no Killed line while the log is read: the victim was exiting"
        );
        assert_eq!(
            k.victim.anon_rss,
            Some(100 * 1024),
            "the eBPF figures stand"
        );
    }

    /// A report read after its event's record went out (marked exiting)
    /// makes no second record: the kill is counted, and only once.
    #[tokio::test]
    async fn a_report_past_the_wait_is_counted_not_recorded_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, mut rx, _f) = correlator(true, dir.path());
        c.ebpf_active = true;
        c.on_event(&event(50, 1)).await;
        c.expire(Instant::now() + Duration::from_secs(1)).await;
        assert!(kill(rx.recv().await).victim.exiting);
        assert_eq!(c.kills_emitted, 0, "an exiting victim is not a kill");

        c.on_report(report(50)).await;
        match rx.try_recv() {
            Ok(Emit::LateReport(k)) => {
                assert_eq!(k.victim.pid, 50);
                assert!(!k.victim.exiting);
            }
            _ => panic!("expected the late report's count"),
        }
        assert_eq!(c.kills_emitted, 1, "the kill is accounted for");
        c.expire(Instant::now() + Duration::from_secs(60)).await;
        assert!(rx.try_recv().is_err(), "one kill, one record");

        // Another report of that pid is another kill: it waits for its
        // event, and goes out alone when none comes.
        c.on_report(report(50)).await;
        assert!(rx.try_recv().is_err());
        c.expire(Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(kill(rx.recv().await).source, Source::Kmsg);
    }

    /// Only a report of the same process is late: another comm under a
    /// reused pid is a kill of its own.
    #[tokio::test]
    async fn a_late_report_must_name_the_same_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, mut rx, _f) = correlator(true, dir.path());
        c.on_event(&event(51, 1)).await;
        c.expire(Instant::now() + Duration::from_secs(1)).await;
        assert!(kill(rx.recv().await).victim.exiting);
        let mut other = report(51);
        other.killed.comm = "other".into();
        c.on_report(other).await;
        let k = kill(rx.recv().await);
        assert_eq!(k.victim.comm, "other");
        assert!(!k.victim.exiting);

        // Remembered within its time only.
        let sent = Instant::now();
        let (old, _) = c.kill_from_event(&event(52, 1));
        c.remember_sent_unreported(&old, sent);
        assert!(!c.take_sent_unreported(52, "test", sent + LATE_REPORT_TTL));
        assert!(c.take_sent_unreported(52, "test", sent + LATE_REPORT_TTL / 2));
    }

    #[tokio::test]
    async fn without_the_kernel_log_events_go_out_at_once_and_are_not_called_exiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, mut rx, _f) = correlator(false, dir.path());
        c.on_event(&event(45, 1)).await;
        let k = kill(rx.try_recv().ok());
        assert!(!k.victim.exiting);
    }

    #[tokio::test]
    async fn a_report_whose_event_never_comes_still_makes_a_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, mut rx, _f) = correlator(true, dir.path());
        c.ebpf_active = true;
        c.on_report(report(46)).await;
        c.expire(Instant::now() + Duration::from_secs(1)).await;
        let k = kill(rx.recv().await);
        assert_eq!(k.source, Source::Kmsg);
        assert_eq!(k.victim.pid, 46);
        assert_eq!(k.victim.anon_rss, Some(200 * 1024));
    }

    /// `linux.oom.kills.missed`: the kernel's `/proc/vmstat` `oom_kill` rose
    /// more than the records emitted (and pending).
    #[tokio::test]
    async fn kills_the_kernel_counted_without_a_record_are_missed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("vmstat"), "pgfault 1\noom_kill 5\n").expect("vmstat");
        let (mut c, mut rx, _f) = correlator(false, dir.path());
        c.on_event(&event(47, 1)).await;
        let _ = kill(rx.recv().await);
        let missed = |msg: Option<Emit>| match msg {
            Some(Emit::Stats { missed, .. }) => missed,
            _ => panic!("expected stats"),
        };
        let start = Instant::now();
        let grace = c.missed_grace();
        std::fs::write(dir.path().join("vmstat"), "pgfault 1\noom_kill 9\n").expect("vmstat");
        c.send_stats_at(start).await;
        assert_eq!(missed(rx.recv().await), 0, "in flight, for all one knows");
        c.send_stats_at(start + grace / 2).await;
        assert_eq!(missed(rx.recv().await), 0, "still within the grace");
        c.send_stats_at(start + grace).await;
        assert_eq!(missed(rx.recv().await), 3, "4 kills counted, 1 recorded");
        // A counter: it does not go down.
        std::fs::write(dir.path().join("vmstat"), "oom_kill 5\n").expect("vmstat");
        c.send_stats_at(start + grace * 3).await;
        assert_eq!(missed(rx.recv().await), 3);
    }

    /// A kill the kernel counted before its record's halves were read (a
    /// memory.oom.group's repeated kill, counted before its report says it
    /// repeats) is not missed once it is accounted for within the grace.
    #[tokio::test]
    async fn a_kill_accounted_for_within_the_grace_is_not_missed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("vmstat"), "oom_kill 0\n").expect("vmstat");
        let (mut c, mut rx, _f) = correlator(false, dir.path());
        let start = Instant::now();
        let grace = c.missed_grace();
        std::fs::write(dir.path().join("vmstat"), "oom_kill 1\n").expect("vmstat");
        c.send_stats_at(start).await;
        c.send_stats_at(start + grace / 2).await;
        c.on_event(&event(49, 1)).await;
        c.send_stats_at(start + grace).await;
        c.send_stats_at(start + grace * 2).await;
        let mut missed = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            if let Emit::Stats { missed: m, .. } = msg {
                missed.push(m);
            }
        }
        assert_eq!(missed, [0, 0, 0, 0]);
    }

    /// The counters are shaped as the catalog says, and kills past the cap
    /// share the overflow series of their trigger type.
    #[test]
    fn kill_metrics_follow_the_catalog_and_the_cap() {
        let outputs = ReceiverOutputs {
            logs: None,
            metrics: None,
        };
        let mut emitter = Emitter::new(ctx(), outputs, true, None);
        let mut kill = OomKill {
            time_unix_nano: 1,
            kernel_time_ns: None,
            source: Source::Kmsg,
            victim: Victim {
                pid: 1,
                cgroup: Some("/app".into()),
                container_id: Some("c0ffee".into()),
                ..Victim::default()
            },
            trigger: Trigger::default(),
            scope: Scope {
                trigger_type: Some("cgroup"),
                ..Scope::default()
            },
        };
        for i in 0..metrics::MAX_KILL_SERIES + 2 {
            kill.victim.comm = format!("comm{i}");
            emitter.count(&kill);
        }
        let rm = emitter.kill_metrics(None, Some(3), Some(2));
        crate::metric_catalog::checks::assert_emitted_per_catalog(
            std::slice::from_ref(&rm),
            metrics::ALL,
        );
        let emitted = &rm.scope_metrics[0].metrics;
        let names: Vec<&str> = emitted.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            metrics::ALL.iter().map(|d| d.name).collect::<Vec<_>>()
        );
        let Some(metric::Data::Sum(kills)) = &emitted[0].data else {
            panic!("{:?}", emitted[0]);
        };
        assert_eq!(kills.data_points.len(), metrics::MAX_KILL_SERIES + 1);
        let overflow_comm = kv_str("oom.victim.comm", OVERFLOW_VALUE);
        let overflow: Vec<_> = kills
            .data_points
            .iter()
            .filter(|p| p.attributes.contains(&overflow_comm))
            .collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].value, Some(number_data_point::Value::AsInt(2)));
        assert_eq!(
            overflow[0].attributes.len(),
            2,
            "trigger type and comm only"
        );
    }

    /// `cgroups`: a kill outside `include` (or inside `exclude`) makes no
    /// record, and it is not missed either (it was seen).
    #[tokio::test]
    async fn kills_outside_the_cgroup_filter_are_dropped_not_missed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("vmstat"), "oom_kill 0\n").expect("vmstat");
        let run = |include: &[&str], exclude: &[&str]| {
            let cfg = OomReceiverConfig {
                proc_path: dir.path().to_path_buf(),
                cgroups: CgroupFilterConfig {
                    include: include.iter().map(|s| s.to_string()).collect(),
                    exclude: exclude.iter().map(|s| s.to_string()).collect(),
                },
                ..OomReceiverConfig::default()
            };
            let (tx, rx) = mpsc::channel(16);
            (Correlator::new(cfg, None, None, tx), rx)
        };
        // The report's task memcg is `/limited`.
        for (include, exclude, kept) in [
            (&[][..], &[][..], true),
            (&["/limited"][..], &[][..], true),
            (&["/fleet/node-07/**"][..], &[][..], false),
            (&[][..], &["/lim*"][..], false),
        ] {
            let (mut c, mut rx) = run(include, exclude);
            c.on_report(report(48)).await;
            std::fs::write(dir.path().join("vmstat"), "oom_kill 1\n").expect("vmstat");
            c.send_stats().await;
            let mut kills = 0;
            let mut missed = None;
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Emit::Kill(_) => kills += 1,
                    Emit::Stats { missed: m, .. } => missed = Some(m),
                    Emit::LateReport(_) => panic!("no record went out before"),
                }
            }
            assert_eq!(kills, usize::from(kept), "{include:?} {exclude:?}");
            assert_eq!(missed, Some(0), "{include:?} {exclude:?}");
            std::fs::write(dir.path().join("vmstat"), "oom_kill 0\n").expect("vmstat");
        }
    }

    /// The victim's container is the record's resource, not a record
    /// attribute; a victim in no container has no resource of its own.
    #[test]
    fn the_workload_is_the_resource() {
        let id = "337a88232145e348ea79b36d30c171bcbc569fb7c6dac82f15185a0b42276bb1";
        let workload = crate::workload::Workload {
            container_id: Some(id.to_string()),
            container_name: Some("victim1".into()),
            runtime: Some("podman"),
            image_name: Some("localhost/bb".into()),
            image_tags: vec!["1.0".into()],
            ..Default::default()
        };
        let mut kill = OomKill {
            time_unix_nano: 1,
            kernel_time_ns: None,
            source: Source::Ebpf,
            victim: Victim {
                pid: 7,
                comm: "alloc".into(),
                cgroup: Some(format!("/libpod_parent/libpod-{id}")),
                container_id: Some(id.to_string()),
                workload: Some(Arc::new(workload)),
                ..Victim::default()
            },
            trigger: Trigger::default(),
            scope: Scope::default(),
        };
        let resource = kill.resource().expect("a resource");
        let keys: Vec<&str> = resource
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "container.id",
                "container.name",
                "container.runtime.name",
                "container.image.name",
                "container.image.tags"
            ]
        );
        let record = kill.log_record(2);
        assert!(record
            .attributes
            .iter()
            .all(|kv| !kv.key.starts_with("container.") && !kv.key.starts_with("k8s.")));
        assert!(record
            .attributes
            .iter()
            .any(|kv| kv.key == "oom.victim.cgroup"));
        kill.victim.workload = None;
        kill.victim.container_id = None;
        kill.victim.cgroup = Some("/oomtest".into());
        assert_eq!(kill.resource(), None);
    }

    #[test]
    fn config_checks() {
        let ok = OomReceiverConfig::default();
        assert!(ok.validate().is_ok());
        let slow = OomReceiverConfig {
            report_wait: GoDuration::from_secs(11),
            ..OomReceiverConfig::default()
        };
        assert!(slow.validate().is_err());
        let bad = OomReceiverConfig {
            events: Some(EventsConfig {
                endpoint: "nowhere".into(),
                ..EventsConfig::default()
            }),
            ..OomReceiverConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad_glob = OomReceiverConfig {
            cgroups: CgroupFilterConfig {
                include: vec!["[".into()],
                exclude: Vec::new(),
            },
            ..OomReceiverConfig::default()
        };
        assert!(bad_glob.validate().is_err());
    }
}
