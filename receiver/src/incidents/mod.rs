//! Incidents: an OOM kill joined with its lead-up and with the runtime's
//! own OOM messages about the same process or container.
//!
//! One [`IncidentHub`] per agent (in [`crate::extensions::Extensions`]):
//! - the `memory` receiver hands it each scrape ([`history`]): a small ring
//!   of samples per cgroup, the system's memory and pressure over the last
//!   hour, the latest summary;
//! - the `oom` receiver turns it on, reads a kill's lead-up from it
//!   ([`leadup`]) and registers the kill ([`registry`]): the record gets its
//!   `oom.incident.id` at once, never held back;
//! - `filelog` and `journald` register each runtime OOM message: it gets
//!   the id of a kill of the same process or container around it, or opens
//!   an incident a later kill joins;
//! - the `oomscope.v1` API (`ListIncidents`, `Snapshot`), `oomscope top`
//!   and the `status` extension read it.
//!
//! Everything is bounded (rings, incidents, messages) and every lock is
//! held for a few map operations: nothing here can block a pipeline.

pub mod history;
pub mod leadup;
pub mod registry;
pub mod runtime;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use history::{CgroupSample, CgroupState, ProcessState, Scrape, SystemSample};
pub use leadup::LeadUp;
pub use registry::{Identity, Incident, RuntimeMessage};

use crate::receivers::oom::kill::OomKill;

/// Default window around a kill in which runtime messages join it.
pub const DEFAULT_BEFORE: Duration = Duration::from_secs(60);
pub const DEFAULT_AFTER: Duration = Duration::from_secs(10);

/// The attribute that joins a kill and the runtime messages around it.
pub const INCIDENT_ID: &str = "oom.incident.id";

/// The agent's incidents and the memory history they draw on.
#[derive(Debug)]
pub struct IncidentHub {
    /// Set by an `oom` receiver: without one there are no kills to join,
    /// and runtime messages get no id.
    enabled: AtomicBool,
    history: Mutex<history::History>,
    registry: Mutex<registry::Registry>,
    /// Bumped at each new or changed incident, for views that wait.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for IncidentHub {
    fn default() -> Self {
        IncidentHub {
            enabled: AtomicBool::new(false),
            history: Mutex::new(history::History::default()),
            registry: Mutex::new(registry::Registry::new(DEFAULT_BEFORE, DEFAULT_AFTER)),
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

/// A poisoned lock still holds consistent data here (each update is a few
/// plain assignments): go on with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl IncidentHub {
    /// Turns incidents on, with the window around a kill in which runtime
    /// messages join it.
    pub fn enable(&self, before: Duration, after: Duration) {
        lock(&self.registry).set_window(before, after);
        self.enabled.store(true, Ordering::Release);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// One scrape of the `memory` receiver.
    pub fn record_scrape(&self, scrape: Scrape) {
        lock(&self.history).record(scrape);
    }

    /// The lead-up of a kill at `kill_unix_nano` in `cgroup`, from the
    /// ring of that cgroup or of its nearest sampled ancestor (a container
    /// killed before its first sample is still in a sampled pod).
    pub fn lead_up(&self, cgroup: Option<&str>, kill_unix_nano: u64) -> LeadUp {
        let history = lock(&self.history);
        let sampled = cgroup.and_then(|c| {
            crate::receivers::oom::enrich::ancestors(c)
                .into_iter()
                .find(|p| history.has_cgroup(p))
        });
        match sampled {
            Some(path) => {
                let samples = history.cgroup_samples(&path, kill_unix_nano);
                LeadUp::from_samples(Some(path), samples, kill_unix_nano)
            }
            None => LeadUp {
                cgroup: cgroup.map(str::to_owned),
                kill_unix_nano,
                ..LeadUp::default()
            },
        }
    }

    /// Registers a kill; returns its incident id.
    pub fn kill(&self, kill: Arc<OomKill>, lead_up: Option<Arc<LeadUp>>) -> String {
        let id = lock(&self.registry).kill(kill, lead_up);
        self.changed();
        id
    }

    /// Registers a runtime OOM message; its incident id, or `None` while
    /// incidents are off.
    pub fn message(&self, identity: Identity, message: RuntimeMessage) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        let id = lock(&self.registry).message(identity, message);
        self.changed();
        Some(id)
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes on every new or changed incident.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The newest `limit` incidents, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Incident> {
        lock(&self.registry).recent(limit)
    }

    pub fn incident(&self, id: &str) -> Option<Incident> {
        lock(&self.registry).get(id)
    }

    /// The latest scrape and the system ring (oldest first).
    pub fn snapshot(&self) -> (Option<Scrape>, Vec<SystemSample>) {
        let history = lock(&self.history);
        (
            history.latest().cloned(),
            history.system().copied().collect(),
        )
    }

    /// The ring of one cgroup (oldest first).
    pub fn cgroup_samples(&self, path: &str) -> Vec<CgroupSample> {
        lock(&self.history).cgroup_samples(path, u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::oom::kill::{Scope, Source, Trigger, Victim};

    const S: u64 = 1_000_000_000;

    fn state(path: &str, usage: u64) -> CgroupState {
        CgroupState {
            path: path.into(),
            usage: Some(usage),
            working_set: Some(usage),
            limit: None,
            headroom: None,
            time_to_limit: None,
            container_id: None,
            container_name: None,
            pod_name: None,
        }
    }

    #[test]
    fn a_kill_reads_the_lead_up_of_its_cgroup_or_its_nearest_sampled_ancestor() {
        let hub = IncidentHub::default();
        for i in 0..7u64 {
            hub.record_scrape(Scrape {
                at_unix_nano: i * 10 * S,
                cgroups: vec![state("/kubepods/pod1", 100 * i)],
                ..Scrape::default()
            });
        }
        let own = hub.lead_up(Some("/kubepods/pod1"), 65 * S);
        assert_eq!(own.cgroup.as_deref(), Some("/kubepods/pod1"));
        assert_eq!(own.last().map(|s| s.usage), Some(600));
        assert_eq!(own.growth_10s, Some(10.0));
        let child = hub.lead_up(Some("/kubepods/pod1/ctr"), 65 * S);
        assert_eq!(child.cgroup.as_deref(), Some("/kubepods/pod1"));
        let none = hub.lead_up(Some("/elsewhere"), 65 * S);
        assert_eq!(none.cgroup.as_deref(), Some("/elsewhere"));
        assert!(none.samples.is_empty());
    }

    #[test]
    fn runtime_messages_get_no_id_until_an_oom_receiver_turns_incidents_on() {
        let hub = IncidentHub::default();
        let message = RuntimeMessage {
            time_unix_nano: S,
            runtime: "go".into(),
            pattern: "go.fatal_out_of_memory".into(),
            source: "a.log".into(),
            pid: Some(5),
            text: "fatal error: runtime: out of memory".into(),
        };
        let identity = Identity {
            pids: vec![5],
            ..Identity::default()
        };
        assert_eq!(hub.message(identity.clone(), message.clone()), None);
        hub.enable(DEFAULT_BEFORE, DEFAULT_AFTER);
        let mut watch = hub.watch();
        watch.mark_unchanged();
        let id = hub.message(identity, message).expect("test fixture");
        assert!(watch.has_changed().expect("test fixture"));
        let kill = Arc::new(OomKill {
            time_unix_nano: 2 * S,
            kernel_time_ns: None,
            source: Source::Kmsg,
            victim: Victim {
                pid: 5,
                ..Victim::default()
            },
            trigger: Trigger::default(),
            scope: Scope::default(),
        });
        assert_eq!(hub.kill(kill, None), id);
        assert_eq!(hub.recent(10).len(), 1);
    }
}
