//! `ListIncidents` and `Snapshot`: the incident hub in its `oomscope.v1`
//! form.

use super::v1;
use crate::incidents::leadup::{MemoryEvents, PressureAt};
use crate::incidents::{
    CgroupSample, CgroupState, Incident, IncidentHub, LeadUp, ProcessState, RuntimeMessage,
    SystemSample,
};

fn sample(s: &CgroupSample) -> v1::CgroupSample {
    v1::CgroupSample {
        time_unix_nano: s.at_unix_nano,
        usage_bytes: s.usage,
        working_set_bytes: s.working_set,
    }
}

fn pressure(p: &PressureAt) -> v1::Pressure {
    v1::Pressure {
        some_avg10: p.some_avg10,
        full_avg10: p.full_avg10,
    }
}

fn events(e: &MemoryEvents) -> v1::MemoryEvents {
    v1::MemoryEvents {
        low: e.low,
        high: e.high,
        max: e.max,
        oom: e.oom,
        oom_kill: e.oom_kill,
        oom_group_kill: e.oom_group_kill,
    }
}

impl LeadUp {
    pub fn to_api(&self) -> v1::LeadUp {
        v1::LeadUp {
            cgroup: self.cgroup.clone().unwrap_or_default(),
            samples: self.samples.iter().map(sample).collect(),
            growth_rate_10s: self.growth_10s,
            growth_rate_60s: self.growth_60s,
            limit_bytes: self.limit,
            usage_at_kill_bytes: self.usage_at_kill,
            events: self.events.as_ref().map(events),
            failcnt: self.failcnt,
            cgroup_pressure: self.cgroup_pressure.as_ref().map(pressure),
            system_pressure: self.system_pressure.as_ref().map(pressure),
            tasks: self
                .tasks
                .iter()
                .map(|t| v1::Task {
                    pid: t.pid,
                    name: t.name.clone(),
                    rss_bytes: t.rss_bytes,
                    oom_score_adj: t.oom_score_adj,
                })
                .collect(),
            task_count: u32::try_from(self.task_count).unwrap_or(u32::MAX),
        }
    }
}

fn message(m: &RuntimeMessage) -> v1::RuntimeMessage {
    v1::RuntimeMessage {
        time_unix_nano: m.time_unix_nano,
        runtime: m.runtime.clone(),
        pattern: m.pattern.clone(),
        source: m.source.clone(),
        pid: m.pid.unwrap_or(0),
        text: m.text.clone(),
    }
}

/// An incident in its API form.
pub fn incident(i: &Incident) -> v1::Incident {
    v1::Incident {
        id: i.id.clone(),
        start_time_unix_nano: i.start_unix_nano,
        kill: i.kill.as_ref().map(|k| {
            let mut kill = k.to_api();
            kill.incident_id.clone_from(&i.id);
            kill.lead_up = i.lead_up.as_ref().map(|l| l.to_api());
            kill
        }),
        messages: i.messages.iter().map(message).collect(),
        messages_dropped: i.messages_dropped,
        pids: i.identity.pids.clone(),
        container_id: i.identity.container_id.clone().unwrap_or_default(),
        cgroup: i.identity.cgroup.clone().unwrap_or_default(),
    }
}

/// Incidents one `ListIncidents` answer holds at most.
pub const MAX_LISTED: usize = 64;
/// Bytes one `ListIncidents` answer holds at most (encoded; one incident
/// always fits): an answer is built and sent whole, and a client that does
/// not read it keeps it in the agent's memory until the connection goes.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// `ListIncidents`.
pub fn list(hub: &IncidentHub, request: &v1::ListIncidentsRequest) -> v1::ListIncidentsResponse {
    let incidents = if request.id.is_empty() {
        let limit = match request.limit {
            0 => MAX_LISTED,
            n => usize::try_from(n).unwrap_or(MAX_LISTED).min(MAX_LISTED),
        };
        hub.recent(limit)
    } else {
        hub.incident(&request.id).into_iter().collect()
    };
    let mut listed = Vec::new();
    let mut bytes = 0usize;
    for i in &incidents {
        let one = incident(i);
        bytes += prost::Message::encoded_len(&one);
        if bytes > MAX_ANSWER_BYTES && !listed.is_empty() {
            break;
        }
        listed.push(one);
    }
    v1::ListIncidentsResponse { incidents: listed }
}

fn system_sample(s: &SystemSample) -> v1::SystemSample {
    v1::SystemSample {
        time_unix_nano: s.at_unix_nano,
        total_bytes: s.total,
        available_bytes: s.available,
        psi_some_avg10: s.psi_some_avg10,
        psi_full_avg10: s.psi_full_avg10,
    }
}

fn cgroup(c: &CgroupState, samples: Vec<v1::CgroupSample>) -> v1::CgroupState {
    v1::CgroupState {
        path: c.path.clone(),
        usage_bytes: c.usage,
        working_set_bytes: c.working_set,
        limit_bytes: c.limit,
        headroom_bytes: c.headroom,
        time_to_limit_seconds: c.time_to_limit,
        container_id: c.container_id.clone().unwrap_or_default(),
        container_name: c.container_name.clone().unwrap_or_default(),
        pod_name: c.pod_name.clone().unwrap_or_default(),
        samples,
    }
}

fn process(p: &ProcessState) -> v1::ProcessState {
    v1::ProcessState {
        pid: p.pid,
        name: p.name.clone(),
        rss_bytes: p.rss,
        cgroup: p.cgroup.clone().unwrap_or_default(),
    }
}

/// `Snapshot`.
pub fn snapshot(hub: &IncidentHub, request: &v1::SnapshotRequest) -> v1::HostSnapshot {
    let (latest, history) = hub.snapshot();
    let Some(latest) = latest else {
        return v1::HostSnapshot::default();
    };
    let system = latest.system.map(|s| v1::SystemMemory {
        total_bytes: s.total,
        available_bytes: s.available,
        pressure: Some(v1::Pressure {
            some_avg10: s.psi_some_avg10,
            full_avg10: s.psi_full_avg10,
        }),
        psi_some_avg60: latest.psi_some_avg60,
        psi_full_avg60: latest.psi_full_avg60,
    });
    v1::HostSnapshot {
        time_unix_nano: latest.at_unix_nano,
        system,
        cgroups: latest
            .cgroups
            .iter()
            .map(|c| {
                let samples = if request.include_cgroup_samples {
                    hub.cgroup_samples(&c.path).iter().map(sample).collect()
                } else {
                    Vec::new()
                };
                cgroup(c, samples)
            })
            .collect(),
        processes: latest.processes.iter().map(process).collect(),
        history: if request.include_history {
            history.iter().map(system_sample).collect()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::Identity;

    #[test]
    fn an_answer_is_bounded_in_count_and_bytes_and_one_incident_is_found_by_id() {
        let hub = IncidentHub::default();
        hub.enable(
            crate::incidents::DEFAULT_BEFORE,
            crate::incidents::DEFAULT_AFTER,
        );
        let mut ids = Vec::new();
        for pid in 1..=200 {
            for n in 0..8u64 {
                let id = hub.message(
                    Identity {
                        pids: vec![pid],
                        ..Identity::default()
                    },
                    RuntimeMessage {
                        time_unix_nano: 1_000_000_000 + n,
                        runtime: "java".into(),
                        pattern: "java.heap_space".into(),
                        source: "a.log".into(),
                        pid: Some(pid),
                        text: "x".repeat(4096),
                    },
                );
                ids.push(id.expect("incidents are on"));
            }
        }
        let all = list(&hub, &v1::ListIncidentsRequest::default());
        assert!(!all.incidents.is_empty() && all.incidents.len() <= MAX_LISTED);
        let size = prost::Message::encoded_len(&all);
        assert!(size <= MAX_ANSWER_BYTES + 64, "{size}");
        // Newest first.
        assert_eq!(all.incidents[0].pids, vec![200]);
        let one = list(
            &hub,
            &v1::ListIncidentsRequest {
                limit: 0,
                id: ids[ids.len() - 1].clone(),
            },
        );
        assert_eq!(one.incidents.len(), 1);
        assert_eq!(one.incidents[0].messages.len(), 8);
        let none = list(
            &hub,
            &v1::ListIncidentsRequest {
                limit: 0,
                id: "0".repeat(32),
            },
        );
        assert!(none.incidents.is_empty());
    }

    #[test]
    fn a_snapshot_without_a_memory_receiver_is_empty() {
        let hub = IncidentHub::default();
        let s = snapshot(&hub, &v1::SnapshotRequest::default());
        assert_eq!(s, v1::HostSnapshot::default());
    }
}
