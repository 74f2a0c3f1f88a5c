//! What the status page shows: the answers of the gRPC API's `Snapshot`
//! and `ListIncidents` (the `oomscope.v1` messages, the same that
//! `oomscope top` reads), taken from the incident hub at once and then
//! rendered off any lock, as JSON (`/api/status.json`, this module's
//! `Serialize` form) and as HTML (`page`).
//!
//! Bounded by the API's own bounds: the hub's rows, samples and messages,
//! and `ListIncidents`' bytes per answer; the page shows at most
//! [`MAX_INCIDENTS`] incidents.

use serde::Serialize;

use crate::api::incidents;
use crate::api::v1;
use crate::incidents::IncidentHub;

/// The version of the JSON form; bumped when a field changes meaning or
/// goes (new fields may appear at any time). 2: the `oomscope.v1`
/// messages (`snapshot`, `incidents`) in place of the page's own.
pub const VERSION: u32 = 2;
/// Incidents shown, newest first.
pub const MAX_INCIDENTS: usize = 10;

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: u32,
    /// When this was taken, Unix ns.
    pub time_unix_nano: u64,
    /// Whether an `oom` receiver runs (without one there are no kills).
    pub incidents_enabled: bool,
    /// `Snapshot` with the system's history and the cgroups' samples
    /// (`time_unix_nano` 0 and nothing else: no `memory` receiver, or no
    /// scrape yet).
    pub snapshot: v1::HostSnapshot,
    /// `ListIncidents`: the latest incidents, newest first.
    pub incidents: Vec<v1::Incident>,
}

impl Status {
    /// Takes what `hub` has now, through the API's own handlers.
    pub fn collect(hub: &IncidentHub, now_unix_nano: u64) -> Status {
        let snapshot = incidents::snapshot(
            hub,
            &v1::SnapshotRequest {
                include_history: true,
                include_cgroup_samples: true,
            },
        );
        let listed = incidents::list(
            hub,
            &v1::ListIncidentsRequest {
                limit: MAX_INCIDENTS as u32,
                id: String::new(),
            },
        );
        Status {
            version: VERSION,
            time_unix_nano: now_unix_nano,
            incidents_enabled: hub.enabled(),
            snapshot,
            incidents: listed.incidents,
        }
    }
}
