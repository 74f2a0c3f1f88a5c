//! What the `memory` receiver saw lately, kept for incidents and the views:
//! a small ring of samples per memory cgroup (the lead-up of a kill), a
//! ring of system memory and pressure (the last hour, for the status page's
//! charts) and the latest scrape's summary (`Snapshot`).
//!
//! Bounded whatever the host: at most [`MAX_CGROUPS`] rings of at most
//! [`CGROUP_SAMPLES`] samples, kept about [`CGROUP_SPACING`] apart (a
//! sample that close to the one before the newest replaces the newest), so
//! a ring spans well over the 60 s a kill record reports however fast the
//! pressure trigger samples.

use std::collections::{HashMap, VecDeque};

/// Cgroup rings kept at most; past it the ring updated least recently goes.
pub const MAX_CGROUPS: usize = 2048;
/// Samples per cgroup ring.
pub const CGROUP_SAMPLES: usize = 96;
/// About the least time between two samples of one ring, nanoseconds
/// (1 s): with [`CGROUP_SAMPLES`] a ring spans over 80 s (samples 0.1 s
/// apart) to 96 s, more than the 60 s of lead-up a kill record reports.
pub const CGROUP_SPACING: u64 = 1_000_000_000;
/// Samples older than this are dropped from a ring, nanoseconds (10 min):
/// a kill's lead-up is about the minutes before it.
pub const CGROUP_MAX_AGE: u64 = 600 * 1_000_000_000;
/// System samples kept: one hour at one per 5 s.
pub const SYSTEM_SAMPLES: usize = 720;
/// Least time between two system samples, nanoseconds (5 s).
pub const SYSTEM_SPACING: u64 = 5_000_000_000;
/// Cgroups and processes a snapshot lists at most.
pub const SNAPSHOT_ROWS: usize = 20;

/// One sample of one memory cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupSample {
    pub at_unix_nano: u64,
    /// `memory.current` (v2) / `memory.usage_in_bytes` (v1).
    pub usage: u64,
    /// Usage less the inactive page cache: what grows toward a kill.
    pub working_set: u64,
}

/// One sample of the system.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SystemSample {
    pub at_unix_nano: u64,
    pub total: Option<u64>,
    pub available: Option<u64>,
    /// Memory PSI, percent of wall time over 10 s.
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
}

/// A cgroup as the latest scrape saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupState {
    pub path: String,
    pub usage: Option<u64>,
    pub working_set: Option<u64>,
    /// Its own limit (`None`: unlimited).
    pub limit: Option<u64>,
    /// What it can still grow by, over its own limit and its ancestors'.
    pub headroom: Option<i64>,
    /// Seconds until the working set reaches the limit at its current
    /// growth (`None`: not growing, or no limit).
    pub time_to_limit: Option<f64>,
    pub container_id: Option<String>,
    pub container_name: Option<String>,
    pub pod_name: Option<String>,
}

/// A process as the latest scrape saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessState {
    pub pid: i32,
    pub name: String,
    pub rss: u64,
    pub cgroup: Option<String>,
}

/// What one scrape of the `memory` receiver hands over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub at_unix_nano: u64,
    pub system: Option<SystemSample>,
    pub psi_some_avg60: Option<f64>,
    pub psi_full_avg60: Option<f64>,
    pub cgroups: Vec<CgroupState>,
    /// Largest first.
    pub processes: Vec<ProcessState>,
}

#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<CgroupSample>,
    /// The scrape that last updated it (the bound drops the oldest).
    updated: u64,
}

/// The rings and the latest scrape.
#[derive(Debug, Default)]
pub struct History {
    cgroups: HashMap<String, Ring>,
    system: VecDeque<SystemSample>,
    latest: Option<Scrape>,
    scrapes: u64,
}

impl History {
    /// Takes one scrape: each cgroup's sample into its ring, the system's
    /// into the system ring; keeps the scrape (with its cgroups sorted by
    /// headroom and cut to [`SNAPSHOT_ROWS`]) as the latest.
    pub fn record(&mut self, mut scrape: Scrape) {
        self.scrapes += 1;
        let seq = self.scrapes;
        let at = scrape.at_unix_nano;
        for c in &scrape.cgroups {
            let (Some(usage), Some(working_set)) = (c.usage, c.working_set) else {
                continue;
            };
            let sample = CgroupSample {
                at_unix_nano: at,
                usage,
                working_set,
            };
            match self.cgroups.get_mut(&c.path) {
                Some(ring) => {
                    push_spaced(&mut ring.samples, sample, CGROUP_SAMPLES, CGROUP_SPACING);
                    ring.updated = seq;
                }
                None => {
                    if self.cgroups.len() >= MAX_CGROUPS {
                        self.evict_stalest();
                    }
                    let mut ring = Ring {
                        samples: VecDeque::new(),
                        updated: seq,
                    };
                    push_spaced(&mut ring.samples, sample, CGROUP_SAMPLES, CGROUP_SPACING);
                    self.cgroups.insert(c.path.clone(), ring);
                }
            }
        }
        // A ring whose cgroup is gone is kept a while: a kill's lead-up is
        // read after the kill, when a container's cgroup may be gone.
        let oldest = at.saturating_sub(CGROUP_MAX_AGE);
        self.cgroups.retain(|_, ring| {
            while ring
                .samples
                .front()
                .is_some_and(|s| s.at_unix_nano < oldest)
            {
                ring.samples.pop_front();
            }
            !ring.samples.is_empty()
        });
        if let Some(system) = scrape.system {
            push_system(&mut self.system, system);
        }
        scrape.cgroups.sort_by(nearest_first);
        scrape.cgroups.truncate(SNAPSHOT_ROWS);
        scrape.processes.truncate(SNAPSHOT_ROWS);
        self.latest = Some(scrape);
    }

    fn evict_stalest(&mut self) {
        let stalest = self
            .cgroups
            .iter()
            .min_by_key(|(_, r)| r.updated)
            .map(|(p, _)| p.clone());
        if let Some(path) = stalest {
            self.cgroups.remove(&path);
        }
    }

    /// The samples of `path`'s ring taken at or before `until`, oldest first.
    pub fn cgroup_samples(&self, path: &str, until_unix_nano: u64) -> Vec<CgroupSample> {
        self.cgroups
            .get(path)
            .map(|r| {
                r.samples
                    .iter()
                    .filter(|s| s.at_unix_nano <= until_unix_nano)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a ring is kept for `path`.
    pub fn has_cgroup(&self, path: &str) -> bool {
        self.cgroups.contains_key(path)
    }

    pub fn cgroup_count(&self) -> usize {
        self.cgroups.len()
    }

    /// The system ring, oldest first.
    pub fn system(&self) -> impl Iterator<Item = &SystemSample> {
        self.system.iter()
    }

    pub fn latest(&self) -> Option<&Scrape> {
        self.latest.as_ref()
    }
}

/// Nearest to its limit first: least headroom, then cgroups with a limit
/// before those without, then the largest.
fn nearest_first(a: &CgroupState, b: &CgroupState) -> std::cmp::Ordering {
    match (a.headroom, b.headroom) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.usage.cmp(&a.usage),
    }
    .then_with(|| a.path.cmp(&b.path))
}

fn push_spaced(ring: &mut VecDeque<CgroupSample>, s: CgroupSample, cap: usize, spacing: u64) {
    push_spaced_by(ring, s, cap, spacing, |s| s.at_unix_nano);
}

fn push_system(ring: &mut VecDeque<SystemSample>, s: SystemSample) {
    push_spaced_by(ring, s, SYSTEM_SAMPLES, SYSTEM_SPACING, |s| s.at_unix_nano);
}

/// Appends `s`, or replaces the newest sample with it while the one before
/// that is less than `spacing` older than `s`: the newest sample is always
/// the latest value, and the older ones stay about `spacing` apart.
fn push_spaced_by<T>(
    ring: &mut VecDeque<T>,
    s: T,
    cap: usize,
    spacing: u64,
    at: impl Fn(&T) -> u64,
) {
    let t = at(&s);
    if ring.back().is_some_and(|last| t < at(last)) {
        // The clock went back: start over rather than keep a ring out of
        // order.
        ring.clear();
    }
    let n = ring.len();
    if n >= 2 && t - at(&ring[n - 2]) < spacing {
        ring[n - 1] = s;
        return;
    }
    ring.push_back(s);
    while ring.len() > cap {
        ring.pop_front();
    }
}

/// Growth of the working set over about `window_ns` before the last
/// sample, bytes per second: against the sample nearest to `window_ns`
/// before it, among those between half and twice that far back (samples
/// come at the receiver's interval, not exactly `window_ns` apart).
pub fn growth_rate(samples: &[CgroupSample], window_ns: u64) -> Option<f64> {
    let last = samples.last()?;
    let target = last.at_unix_nano.checked_sub(window_ns)?;
    let reference = samples
        .iter()
        .filter(|s| {
            let back = last.at_unix_nano - s.at_unix_nano;
            back >= window_ns / 2 && back <= window_ns.saturating_mul(2)
        })
        .min_by_key(|s| s.at_unix_nano.abs_diff(target))?;
    let dt = (last.at_unix_nano - reference.at_unix_nano) as f64 / 1e9;
    (dt > 0.0).then(|| (last.working_set as f64 - reference.working_set as f64) / dt)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn state(path: &str, usage: u64, headroom: Option<i64>) -> CgroupState {
        CgroupState {
            path: path.to_owned(),
            usage: Some(usage),
            working_set: Some(usage),
            limit: headroom.map(|h| {
                u64::try_from(i64::try_from(usage).expect("test fixture") + h).unwrap_or(0)
            }),
            headroom,
            time_to_limit: None,
            container_id: None,
            container_name: None,
            pod_name: None,
        }
    }

    fn scrape(at: u64, cgroups: Vec<CgroupState>) -> Scrape {
        Scrape {
            at_unix_nano: at,
            cgroups,
            ..Scrape::default()
        }
    }

    #[test]
    fn a_ring_spans_at_least_its_spacing_times_its_size_however_fast_it_is_fed() {
        let mut h = History::default();
        // Ten samples a second for five minutes.
        for i in 0..3000u64 {
            h.record(scrape(i * S / 10, vec![state("/a", i, None)]));
        }
        let samples = h.cgroup_samples("/a", u64::MAX);
        assert!(samples.len() <= CGROUP_SAMPLES);
        let span = samples.last().expect("test fixture").at_unix_nano - samples[0].at_unix_nano;
        assert!(span >= 80 * S, "{span}");
        // The newest sample is always the latest value.
        assert_eq!(samples.last().expect("test fixture").usage, 2999);
    }

    #[test]
    fn rings_are_bounded_in_number_and_the_stalest_goes_first() {
        let mut h = History::default();
        let many: Vec<_> = (0..MAX_CGROUPS + 500)
            .map(|i| state(&format!("/c{i}"), 1, None))
            .collect();
        h.record(scrape(S, many));
        assert!(h.cgroup_count() <= MAX_CGROUPS);
        // A later scrape of one new cgroup evicts an old one, not it.
        h.record(scrape(2 * S, vec![state("/new", 1, None)]));
        assert!(h.has_cgroup("/new"));
        assert!(h.cgroup_count() <= MAX_CGROUPS);
    }

    #[test]
    fn a_gone_cgroup_keeps_its_ring_for_a_while_then_loses_it() {
        let mut h = History::default();
        h.record(scrape(S, vec![state("/gone", 5, Some(10))]));
        h.record(scrape(20 * S, vec![]));
        assert_eq!(h.cgroup_samples("/gone", u64::MAX).len(), 1);
        h.record(scrape(S + CGROUP_MAX_AGE + S, vec![]));
        assert!(!h.has_cgroup("/gone"));
    }

    #[test]
    fn the_snapshot_lists_the_cgroups_nearest_their_limit_first() {
        let mut h = History::default();
        h.record(scrape(
            S,
            vec![
                state("/unlimited-big", 900, None),
                state("/far", 10, Some(1000)),
                state("/near", 10, Some(5)),
                state("/over", 10, Some(-3)),
            ],
        ));
        let order: Vec<_> = h
            .latest()
            .expect("test fixture")
            .cgroups
            .iter()
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(order, ["/over", "/near", "/far", "/unlimited-big"]);
    }

    #[test]
    fn growth_is_measured_against_the_sample_nearest_the_window() {
        let samples: Vec<_> = [(0, 0), (10, 100), (20, 300), (30, 600), (40, 1000)]
            .iter()
            .map(|&(t, ws)| CgroupSample {
                at_unix_nano: t * S,
                usage: ws,
                working_set: ws,
            })
            .collect();
        assert_eq!(growth_rate(&samples, 10 * S), Some(40.0));
        assert_eq!(growth_rate(&samples, 40 * S), Some(25.0));
        // Nothing between half and twice the window back.
        assert_eq!(growth_rate(&samples[3..], 60 * S), None);
        assert_eq!(growth_rate(&samples[..1], 10 * S), None);
    }

    #[test]
    fn the_system_ring_holds_an_hour() {
        let mut h = History::default();
        for i in 0..2000u64 {
            h.record(Scrape {
                at_unix_nano: i * 5 * S,
                system: Some(SystemSample {
                    at_unix_nano: i * 5 * S,
                    ..SystemSample::default()
                }),
                ..Scrape::default()
            });
        }
        let ring: Vec<_> = h.system().collect();
        assert_eq!(ring.len(), SYSTEM_SAMPLES);
        let span = ring.last().expect("test fixture").at_unix_nano - ring[0].at_unix_nano;
        assert!(span >= 3595 * S, "{span}");
    }
}
