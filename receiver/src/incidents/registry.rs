//! Recent incidents and how records join them.
//!
//! An incident is one OOM kill, or a runtime's own OOM message (Java's
//! `OutOfMemoryError`, Go's `fatal error: runtime: out of memory`, ...), or
//! both: a kill and the runtime messages of the same process or container
//! from `before` ahead of it to `after` behind it share one id. Neither
//! waits for the other: whichever comes first opens the incident and goes
//! out at once with its id; the other finds it and takes the same id.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::leadup::LeadUp;
use crate::receivers::oom::kill::OomKill;

/// Incidents kept at most (the oldest goes first).
pub const MAX_INCIDENTS: usize = 256;
/// Runtime messages kept per incident; later ones are counted only.
pub const MAX_MESSAGES: usize = 8;
/// Bytes of a runtime message's text kept (its first lines: the error and
/// the top of its stack).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Process ids an identity holds at most.
pub const MAX_PIDS: usize = 8;

/// Who a record is about: the same process or the same container (or
/// cgroup) joins records into one incident.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub pids: Vec<i32>,
    pub container_id: Option<String>,
    /// A cgroup path (`/system.slice/app.service`); the root joins nothing.
    pub cgroup: Option<String>,
    /// A Kubernetes container as its pod's uid and the container's name
    /// (what a kubelet log path, `/var/log/pods/NS_POD_UID/NAME/`, names).
    pub pod_container: Option<(String, String)>,
}

impl Identity {
    /// Whether `self` and `other` are the same process, container or
    /// cgroup.
    pub fn joins(&self, other: &Identity) -> bool {
        if self.pids.iter().any(|p| *p > 0 && other.pids.contains(p)) {
            return true;
        }
        if let (Some(a), Some(b)) = (&self.container_id, &other.container_id) {
            if !a.is_empty() && a == b {
                return true;
            }
        }
        if let (Some(a), Some(b)) = (&self.pod_container, &other.pod_container) {
            if a == b && !a.0.is_empty() && !a.1.is_empty() {
                return true;
            }
        }
        matches!((&self.cgroup, &other.cgroup), (Some(a), Some(b)) if a == b && a != "/" && !a.is_empty())
    }

    /// Adds what `other` knows (bounded).
    fn merge(&mut self, other: &Identity) {
        for p in &other.pids {
            if !self.pids.contains(p) && self.pids.len() < MAX_PIDS {
                self.pids.push(*p);
            }
        }
        if self.container_id.is_none() {
            self.container_id.clone_from(&other.container_id);
        }
        if self.cgroup.is_none() {
            self.cgroup.clone_from(&other.cgroup);
        }
        if self.pod_container.is_none() {
            self.pod_container.clone_from(&other.pod_container);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
            && self.container_id.is_none()
            && self.cgroup.is_none()
            && self.pod_container.is_none()
    }
}

/// A runtime's own OOM message, as an incident keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeMessage {
    /// When it was written (the line's own time, else when it was read).
    pub time_unix_nano: u64,
    /// `oom.runtime` (`java`, `go`, ...).
    pub runtime: String,
    /// `oom.pattern`.
    pub pattern: String,
    /// Where it was read: a file path, a journal unit, `kmsg`.
    pub source: String,
    pub pid: Option<i32>,
    /// The first [`MAX_MESSAGE_BYTES`] of its text.
    pub text: String,
}

/// One incident.
#[derive(Debug, Clone)]
pub struct Incident {
    /// 32 hex digits.
    pub id: String,
    /// When it began: its kill, or its first message if that came first.
    pub start_unix_nano: u64,
    pub identity: Identity,
    pub kill: Option<Arc<OomKill>>,
    pub lead_up: Option<Arc<LeadUp>>,
    pub messages: Vec<RuntimeMessage>,
    /// Messages beyond [`MAX_MESSAGES`].
    pub messages_dropped: u64,
}

impl Incident {
    fn kill_time(&self) -> Option<u64> {
        self.kill.as_ref().map(|k| k.time_unix_nano)
    }

    fn last_message_time(&self) -> Option<u64> {
        self.messages.iter().map(|m| m.time_unix_nano).max()
    }

    fn add_message(&mut self, mut message: RuntimeMessage) {
        if self.messages.len() >= MAX_MESSAGES {
            self.messages_dropped += 1;
            return;
        }
        truncate_at_char(&mut message.text, MAX_MESSAGE_BYTES);
        self.messages.push(message);
    }
}

/// The incidents of the last while.
#[derive(Debug)]
pub struct Registry {
    incidents: VecDeque<Incident>,
    before: u64,
    after: u64,
}

impl Registry {
    pub fn new(before: Duration, after: Duration) -> Self {
        Registry {
            incidents: VecDeque::new(),
            before: nanos(before),
            after: nanos(after),
        }
    }

    pub fn set_window(&mut self, before: Duration, after: Duration) {
        self.before = nanos(before);
        self.after = nanos(after);
    }

    /// A kill: joins the newest incident of the same process or container
    /// that has runtime messages from at most `before` ahead of it (and no
    /// kill yet), or opens one. Returns the incident's id.
    pub fn kill(&mut self, kill: Arc<OomKill>, lead_up: Option<Arc<LeadUp>>) -> String {
        let identity = kill_identity(&kill);
        let at = kill.time_unix_nano;
        let (before, after) = (self.before, self.after);
        let joined = self.incidents.iter_mut().rev().find(|i| {
            i.kill.is_none()
                && i.identity.joins(&identity)
                && i.messages.iter().any(|m| {
                    m.time_unix_nano.saturating_add(before) >= at
                        && m.time_unix_nano <= at.saturating_add(after)
                })
        });
        if let Some(incident) = joined {
            incident.kill = Some(kill);
            incident.lead_up = lead_up;
            incident.identity.merge(&identity);
            incident.start_unix_nano = incident.start_unix_nano.min(at);
            return incident.id.clone();
        }
        self.open(Incident {
            id: new_id(),
            start_unix_nano: at,
            identity,
            kill: Some(kill),
            lead_up,
            messages: Vec::new(),
            messages_dropped: 0,
        })
    }

    /// A runtime message of `identity`: joins the newest kill of the same
    /// process or container from `after` ahead of it to `before` behind
    /// it, else the newest incident of the same process, container or
    /// source whose last message is at most `before` older, else opens one.
    /// Returns the incident's id.
    pub fn message(&mut self, identity: Identity, message: RuntimeMessage) -> String {
        let at = message.time_unix_nano;
        let (before, after) = (self.before, self.after);
        let by_kill = self.incidents.iter().rposition(|i| {
            i.kill_time()
                .is_some_and(|k| at.saturating_add(before) >= k && at <= k.saturating_add(after))
                && i.identity.joins(&identity)
        });
        let found = by_kill.or_else(|| {
            self.incidents.iter().rposition(|i| {
                let joins = i.identity.joins(&identity)
                    || (identity.is_empty()
                        && i.messages.iter().any(|m| m.source == message.source));
                joins
                    && i.kill.is_none()
                    && i.last_message_time().is_some_and(|t| {
                        at.saturating_sub(t) <= before && t <= at.saturating_add(before)
                    })
            })
        });
        if let Some(index) = found {
            if let Some(incident) = self.incidents.get_mut(index) {
                incident.identity.merge(&identity);
                incident.add_message(message);
                return incident.id.clone();
            }
        }
        let mut incident = Incident {
            id: new_id(),
            start_unix_nano: at,
            identity,
            kill: None,
            lead_up: None,
            messages: Vec::new(),
            messages_dropped: 0,
        };
        incident.add_message(message);
        self.open(incident)
    }

    fn open(&mut self, incident: Incident) -> String {
        let id = incident.id.clone();
        while self.incidents.len() >= MAX_INCIDENTS {
            self.incidents.pop_front();
        }
        self.incidents.push_back(incident);
        id
    }

    /// The newest `limit` incidents, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Incident> {
        self.incidents.iter().rev().take(limit).cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Incident> {
        self.incidents.iter().find(|i| i.id == id).cloned()
    }

    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }
}

/// The process, container and cgroup a kill is of.
pub fn kill_identity(kill: &OomKill) -> Identity {
    let v = &kill.victim;
    let workload = v.workload.as_deref();
    let pod_uid = workload
        .and_then(|w| w.pod_uid.clone())
        .or_else(|| v.pod_uid.clone());
    let container_name = workload.and_then(|w| w.k8s_container_name.clone());
    Identity {
        pids: if v.pid > 0 { vec![v.pid] } else { Vec::new() },
        container_id: v
            .container_id
            .clone()
            .or_else(|| workload.and_then(|w| w.container_id.clone())),
        cgroup: v.cgroup.clone(),
        pod_container: pod_uid.zip(container_name),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A random 128-bit id in hex, like a trace id.
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::oom::kill::{Scope, Source, Trigger, Victim};

    const S: u64 = 1_000_000_000;

    fn kill(pid: i32, container: Option<&str>, cgroup: &str, at: u64) -> Arc<OomKill> {
        Arc::new(OomKill {
            time_unix_nano: at,
            kernel_time_ns: None,
            source: Source::Ebpf,
            victim: Victim {
                pid,
                comm: "java".into(),
                cgroup: Some(cgroup.into()),
                container_id: container.map(str::to_owned),
                ..Victim::default()
            },
            trigger: Trigger::default(),
            scope: Scope::default(),
        })
    }

    fn msg(at: u64, source: &str) -> RuntimeMessage {
        RuntimeMessage {
            time_unix_nano: at,
            runtime: "java".into(),
            pattern: "java.heap_space".into(),
            source: source.into(),
            pid: None,
            text: "java.lang.OutOfMemoryError: Java heap space".into(),
        }
    }

    fn pid(p: i32) -> Identity {
        Identity {
            pids: vec![p],
            ..Identity::default()
        }
    }

    fn registry() -> Registry {
        Registry::new(Duration::from_secs(60), Duration::from_secs(10))
    }

    #[test]
    fn a_message_before_the_kill_and_the_kill_share_one_id() {
        let mut r = registry();
        let m = r.message(pid(42), msg(100 * S, "/var/log/app.log"));
        let k = r.kill(kill(42, None, "/app", 130 * S), None);
        assert_eq!(m, k);
        assert_eq!(r.len(), 1);
        let i = r.get(&k).expect("test fixture");
        assert!(i.kill.is_some());
        assert_eq!(i.messages.len(), 1);
        assert_eq!(i.start_unix_nano, 100 * S);
    }

    #[test]
    fn a_message_after_the_kill_takes_its_id_within_the_window() {
        let mut r = registry();
        let k = r.kill(kill(42, Some("abc"), "/pod/abc", 100 * S), None);
        // Same container, another pid, 5 s after: joined.
        let container = Identity {
            container_id: Some("abc".into()),
            ..Identity::default()
        };
        assert_eq!(r.message(container.clone(), msg(105 * S, "c.log")), k);
        // Read after the kill but written before it (the log is read later).
        assert_eq!(r.message(pid(42), msg(95 * S, "c.log")), k);
        // 11 s after: a new incident.
        assert_ne!(r.message(container, msg(111 * S, "c.log")), k);
    }

    #[test]
    fn a_message_too_long_before_the_kill_is_its_own_incident() {
        let mut r = registry();
        let m = r.message(pid(42), msg(100 * S, "a.log"));
        let k = r.kill(kill(42, None, "/app", 161 * S), None);
        assert_ne!(m, k);
    }

    #[test]
    fn other_processes_and_containers_do_not_join() {
        let mut r = registry();
        let k = r.kill(kill(42, Some("abc"), "/pod/abc", 100 * S), None);
        assert_ne!(r.message(pid(43), msg(101 * S, "x.log")), k);
        let other = Identity {
            container_id: Some("def".into()),
            cgroup: Some("/".into()),
            ..Identity::default()
        };
        assert_ne!(r.message(other, msg(101 * S, "y.log")), k);
    }

    #[test]
    fn a_kubelet_log_joins_by_pod_uid_and_container_name() {
        let mut r = registry();
        let mut k = (*kill(42, None, "/kubepods/burstable/pod0b5c/abc", 100 * S)).clone();
        k.victim.workload = Some(Arc::new(crate::workload::Workload {
            pod_uid: Some("0b5c".into()),
            k8s_container_name: Some("app".into()),
            ..crate::workload::Workload::default()
        }));
        let id = r.kill(Arc::new(k), None);
        let log = |name: &str| Identity {
            pod_container: Some(("0b5c".into(), name.into())),
            ..Identity::default()
        };
        assert_eq!(r.message(log("app"), msg(101 * S, "/var/log/pods/a")), id);
        assert_ne!(
            r.message(log("sidecar"), msg(101 * S, "/var/log/pods/b")),
            id
        );
    }

    #[test]
    fn the_same_cgroup_joins_a_service_restarted_under_another_pid() {
        let mut r = registry();
        let k = r.kill(kill(42, None, "/system.slice/app.service", 100 * S), None);
        let service = Identity {
            pids: vec![77],
            cgroup: Some("/system.slice/app.service".into()),
            ..Identity::default()
        };
        assert_eq!(r.message(service, msg(102 * S, "journal")), k);
    }

    #[test]
    fn messages_of_one_process_group_into_one_incident_and_are_bounded() {
        let mut r = registry();
        let first = r.message(pid(9), msg(100 * S, "a.log"));
        for i in 0..20 {
            assert_eq!(r.message(pid(9), msg((101 + i) * S, "a.log")), first);
        }
        let i = r.get(&first).expect("test fixture");
        assert_eq!(i.messages.len(), MAX_MESSAGES);
        assert_eq!(i.messages_dropped, 20 + 1 - MAX_MESSAGES as u64);
        // Messages of an unknown writer group by where they were read.
        let a = r.message(Identity::default(), msg(200 * S, "b.log"));
        assert_eq!(r.message(Identity::default(), msg(201 * S, "b.log")), a);
        assert_ne!(r.message(Identity::default(), msg(201 * S, "c.log")), a);
    }

    #[test]
    fn the_registry_is_bounded_and_a_long_message_is_cut() {
        let mut r = registry();
        for p in 0..(MAX_INCIDENTS as i32 + 100) {
            r.kill(kill(p + 1, None, "/x", 100 * S), None);
        }
        assert_eq!(r.len(), MAX_INCIDENTS);
        let mut long = msg(100 * S, "z.log");
        long.text = "é".repeat(MAX_MESSAGE_BYTES);
        let id = r.message(pid(999_999), long);
        let text = &r.get(&id).expect("test fixture").messages[0].text;
        assert!(text.len() <= MAX_MESSAGE_BYTES);
        assert!(text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn ids_are_32_hex_digits_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
