//! What the status page shows, taken from the incident hub at once (each
//! of the hub's locks is held only to copy what it has) and then rendered
//! off any lock: as JSON (`/api/status.json`, this module's `Serialize`
//! form) and as HTML (`page`).
//!
//! Bounded: at most [`MAX_INCIDENTS`] incidents, the hub's own bounds on
//! rows, samples and messages, and every string from outside (paths,
//! names, command lines) cut to [`MAX_TEXT`] bytes.

use serde::Serialize;

use crate::incidents::leadup::{MemoryEvents, PressureAt};
use crate::incidents::{
    CgroupSample, CgroupState, Incident, IncidentHub, LeadUp, ProcessState, RuntimeMessage,
    SystemSample,
};
use crate::receivers::oom::kill::OomKill;

/// The version of the JSON form; bumped when a field changes meaning or
/// goes (new fields may appear at any time).
pub const VERSION: u32 = 1;
/// Incidents shown, newest first.
pub const MAX_INCIDENTS: usize = 10;
/// Bytes kept of any one string from outside (a cgroup path, a command
/// line); runtime messages keep the hub's bound (4 KiB).
pub const MAX_TEXT: usize = 1024;
/// Bytes kept of a runtime message's labels (runtime, pattern, source).
pub const MAX_LABEL: usize = 256;
/// Rows of the kernel's task table shown per incident.
pub const MAX_TASKS: usize = 10;

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: u32,
    /// When this was taken, Unix ns.
    pub time_unix_nano: u64,
    /// Whether an `oom` receiver runs (without one there are no kills).
    pub incidents_enabled: bool,
    /// When the `memory` receiver's latest scrape was taken (`None`: no
    /// `memory` receiver, or no scrape yet).
    pub scrape_time_unix_nano: Option<u64>,
    pub system: Option<System>,
    /// System memory and pressure over the last hour, oldest first.
    pub history: Vec<SystemPoint>,
    /// The cgroups nearest their limits, nearest first.
    pub cgroups: Vec<Cgroup>,
    /// The largest processes, largest first.
    pub processes: Vec<Process>,
    /// The latest incidents, newest first.
    pub incidents: Vec<IncidentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct System {
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    /// Memory PSI, percent of wall time.
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
    pub psi_some_avg60: Option<f64>,
    pub psi_full_avg60: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SystemPoint {
    pub time_unix_nano: u64,
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub time_unix_nano: u64,
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cgroup {
    pub path: String,
    pub container_id: Option<String>,
    pub container_name: Option<String>,
    pub pod_name: Option<String>,
    pub usage_bytes: Option<u64>,
    pub working_set_bytes: Option<u64>,
    /// Its own limit (`None`: unlimited).
    pub limit_bytes: Option<u64>,
    /// What it can still grow by, under its own and its ancestors' limits.
    pub headroom_bytes: Option<i64>,
    /// Seconds until the working set reaches the limit at its growth.
    pub time_to_limit_seconds: Option<f64>,
    /// Its ring, oldest first (about one a second, up to 96).
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: i32,
    pub name: String,
    pub rss_bytes: u64,
    pub cgroup: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    /// `oom.incident.id`.
    pub id: String,
    pub start_time_unix_nano: u64,
    pub pids: Vec<i32>,
    pub container_id: Option<String>,
    pub cgroup: Option<String>,
    /// `None` while only a runtime message is known.
    pub kill: Option<KillView>,
    pub lead_up: Option<LeadUpView>,
    pub messages: Vec<MessageView>,
    /// Messages beyond those kept.
    pub messages_dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KillView {
    pub time_unix_nano: u64,
    /// `ebpf` or `kmsg`.
    pub source: &'static str,
    pub victim: VictimView,
    pub trigger: TriggerView,
    pub scope: ScopeView,
}

#[derive(Debug, Clone, Serialize)]
pub struct VictimView {
    pub pid: i32,
    pub comm: String,
    pub executable_path: Option<String>,
    pub command_line: Option<String>,
    pub uid: Option<u32>,
    pub total_vm_bytes: Option<u64>,
    pub anon_rss_bytes: Option<u64>,
    pub file_rss_bytes: Option<u64>,
    pub shmem_rss_bytes: Option<u64>,
    pub oom_score_adj: Option<i32>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub container_name: Option<String>,
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    /// The kernel picked a victim already exiting and sent no kill.
    pub exiting: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TriggerView {
    pub pid: Option<i32>,
    pub comm: Option<String>,
    pub gfp_mask: Option<String>,
    pub order: Option<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScopeView {
    /// `cgroup` or `system`.
    pub trigger_type: Option<&'static str>,
    pub constraint: Option<String>,
    pub memcg: Option<String>,
    pub memcg_limit_bytes: Option<u64>,
    pub memcg_usage_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeadUpView {
    /// The cgroup the samples are of: the victim's or its nearest sampled
    /// ancestor.
    pub cgroup: Option<String>,
    /// The last 60 s before the kill, oldest first.
    pub samples: Vec<Sample>,
    /// Working set growth, bytes per second.
    pub growth_rate_10s: Option<f64>,
    pub growth_rate_60s: Option<f64>,
    /// Read at the kill.
    pub limit_bytes: Option<u64>,
    pub usage_at_kill_bytes: Option<u64>,
    pub events: Option<Events>,
    pub failcnt: Option<u64>,
    pub cgroup_pressure: Option<Pressure>,
    pub system_pressure: Option<Pressure>,
    /// The kernel's task table: its largest rows, and how many it had.
    pub tasks: Vec<TaskView>,
    pub task_count: usize,
    /// The kill the samples lead up to, Unix ns.
    pub kill_time_unix_nano: u64,
}

impl LeadUpView {
    /// The last sample before the kill.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.last()
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Events {
    pub low: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    pub oom_group_kill: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pressure {
    pub some_avg10: Option<f64>,
    pub full_avg10: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub pid: i32,
    pub name: String,
    pub rss_bytes: u64,
    pub oom_score_adj: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub time_unix_nano: u64,
    /// `java`, `go`, ...
    pub runtime: String,
    /// The pattern that matched (`oom.pattern`).
    pub pattern: String,
    /// Where it was read: a file, a journal unit.
    pub source: String,
    pub pid: Option<i32>,
    /// Its first 4 KiB: the error and the top of its stack.
    pub text: String,
}

/// `s` cut to at most `max` bytes at a character boundary (an ellipsis
/// marks the cut).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + '…'.len_utf8());
    out.push_str(&s[..end]);
    out.push('…');
    out
}

fn text(s: &str) -> String {
    clip(s, MAX_TEXT)
}

fn opt(s: Option<&String>) -> Option<String> {
    s.map(|s| text(s))
}

fn sample(s: &CgroupSample) -> Sample {
    Sample {
        time_unix_nano: s.at_unix_nano,
        usage_bytes: s.usage,
        working_set_bytes: s.working_set,
    }
}

fn point(s: &SystemSample) -> SystemPoint {
    SystemPoint {
        time_unix_nano: s.at_unix_nano,
        total_bytes: s.total,
        available_bytes: s.available,
        psi_some_avg10: s.psi_some_avg10,
        psi_full_avg10: s.psi_full_avg10,
    }
}

fn cgroup(c: &CgroupState, samples: &[CgroupSample]) -> Cgroup {
    Cgroup {
        path: text(&c.path),
        container_id: opt(c.container_id.as_ref()),
        container_name: opt(c.container_name.as_ref()),
        pod_name: opt(c.pod_name.as_ref()),
        usage_bytes: c.usage,
        working_set_bytes: c.working_set,
        limit_bytes: c.limit,
        headroom_bytes: c.headroom,
        time_to_limit_seconds: c.time_to_limit,
        samples: samples.iter().map(sample).collect(),
    }
}

fn process(p: &ProcessState) -> Process {
    Process {
        pid: p.pid,
        name: text(&p.name),
        rss_bytes: p.rss,
        cgroup: opt(p.cgroup.as_ref()),
    }
}

fn pressure(p: &PressureAt) -> Pressure {
    Pressure {
        some_avg10: p.some_avg10,
        full_avg10: p.full_avg10,
    }
}

fn events(e: &MemoryEvents) -> Events {
    Events {
        low: e.low,
        high: e.high,
        max: e.max,
        oom: e.oom,
        oom_kill: e.oom_kill,
        oom_group_kill: e.oom_group_kill,
    }
}

fn lead_up(l: &LeadUp) -> LeadUpView {
    LeadUpView {
        cgroup: opt(l.cgroup.as_ref()),
        samples: l.samples.iter().map(sample).collect(),
        growth_rate_10s: l.growth_10s,
        growth_rate_60s: l.growth_60s,
        limit_bytes: l.limit,
        usage_at_kill_bytes: l.usage_at_kill,
        events: l.events.as_ref().map(events),
        failcnt: l.failcnt,
        cgroup_pressure: l.cgroup_pressure.as_ref().map(pressure),
        system_pressure: l.system_pressure.as_ref().map(pressure),
        tasks: l
            .tasks
            .iter()
            .take(MAX_TASKS)
            .map(|t| TaskView {
                pid: t.pid,
                name: text(&t.name),
                rss_bytes: t.rss_bytes,
                oom_score_adj: t.oom_score_adj,
            })
            .collect(),
        task_count: l.task_count,
        kill_time_unix_nano: l.kill_unix_nano,
    }
}

fn kill(k: &OomKill) -> KillView {
    let v = &k.victim;
    let workload = v.workload.as_deref();
    KillView {
        time_unix_nano: k.time_unix_nano,
        source: k.source.as_str(),
        victim: VictimView {
            pid: v.pid,
            comm: text(&v.comm),
            executable_path: opt(v.executable_path.as_ref()),
            command_line: opt(v.command_line.as_ref()),
            uid: v.uid,
            total_vm_bytes: v.total_vm,
            anon_rss_bytes: v.anon_rss,
            file_rss_bytes: v.file_rss,
            shmem_rss_bytes: v.shmem_rss,
            oom_score_adj: v.oom_score_adj,
            cgroup: opt(v.cgroup.as_ref()),
            container_id: opt(v.container_id.as_ref()),
            container_name: opt(workload.and_then(|w| w.container_name.as_ref())),
            pod_name: opt(workload.and_then(|w| w.pod_name.as_ref())),
            namespace: opt(workload.and_then(|w| w.namespace.as_ref())),
            exiting: v.exiting,
        },
        trigger: TriggerView {
            pid: k.trigger.pid,
            comm: opt(k.trigger.comm.as_ref()),
            gfp_mask: opt(k.trigger.gfp_mask.as_ref()),
            order: k.trigger.order,
        },
        scope: ScopeView {
            trigger_type: k.scope.trigger_type,
            constraint: opt(k.scope.constraint.as_ref()),
            memcg: opt(k.scope.memcg.as_ref()),
            memcg_limit_bytes: k.scope.memcg_limit,
            memcg_usage_bytes: k.scope.memcg_usage,
        },
    }
}

fn message(m: &RuntimeMessage) -> MessageView {
    MessageView {
        time_unix_nano: m.time_unix_nano,
        runtime: clip(&m.runtime, MAX_LABEL),
        pattern: clip(&m.pattern, MAX_LABEL),
        source: clip(&m.source, MAX_LABEL),
        pid: m.pid,
        // Already cut by the hub (4 KiB); cut again should that bound grow.
        text: clip(&m.text, 4 * MAX_TEXT),
    }
}

/// An incident as the page shows it.
pub fn incident(i: &Incident) -> IncidentView {
    IncidentView {
        id: text(&i.id),
        start_time_unix_nano: i.start_unix_nano,
        pids: i.identity.pids.clone(),
        container_id: opt(i.identity.container_id.as_ref()),
        cgroup: opt(i.identity.cgroup.as_ref()),
        kill: i.kill.as_deref().map(kill),
        lead_up: i.lead_up.as_deref().map(lead_up),
        messages: i.messages.iter().map(message).collect(),
        messages_dropped: i.messages_dropped,
    }
}

impl Status {
    /// Takes what `hub` has now. Each of the hub's locks is held only to
    /// copy its part; the conversion runs after.
    pub fn collect(hub: &IncidentHub, now_unix_nano: u64) -> Status {
        let (latest, history) = hub.snapshot();
        let incidents = hub.recent(MAX_INCIDENTS);
        let (scrape_time, system, cgroups, processes) = match &latest {
            Some(scrape) => (
                Some(scrape.at_unix_nano),
                scrape.system.map(|s| System {
                    total_bytes: s.total,
                    available_bytes: s.available,
                    psi_some_avg10: s.psi_some_avg10,
                    psi_full_avg10: s.psi_full_avg10,
                    psi_some_avg60: scrape.psi_some_avg60,
                    psi_full_avg60: scrape.psi_full_avg60,
                }),
                scrape
                    .cgroups
                    .iter()
                    .map(|c| cgroup(c, &hub.cgroup_samples(&c.path)))
                    .collect(),
                scrape.processes.iter().map(process).collect(),
            ),
            None => (None, None, Vec::new(), Vec::new()),
        };
        Status {
            version: VERSION,
            time_unix_nano: now_unix_nano,
            incidents_enabled: hub.enabled(),
            scrape_time_unix_nano: scrape_time,
            system,
            history: history.iter().map(point).collect(),
            cgroups,
            processes,
            incidents: incidents.iter().map(incident).collect(),
        }
    }
}
