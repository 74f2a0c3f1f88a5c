//! The `memory` receiver's scrape against the recorded cgroup2 host root
//! (tests/fixtures/memory-root, through `root_path`) and against this
//! machine's real /proc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, ResourceMetrics};

use super::*;

/// One data point, flattened.
#[derive(Debug, Clone)]
struct Pt {
    resource: BTreeMap<String, String>,
    metric: String,
    attrs: BTreeMap<String, String>,
    value: f64,
    start: u64,
    time: u64,
}

fn kv_map(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn flatten(rms: &[ResourceMetrics]) -> Vec<Pt> {
    let mut out = Vec::new();
    for rm in rms {
        let resource = rm
            .resource
            .as_ref()
            .map(|r| kv_map(&r.attributes))
            .unwrap_or_default();
        for sm in &rm.scope_metrics {
            assert_eq!(sm.scope.as_ref().map(|s| s.name.as_str()), Some(SCOPE_NAME));
            for m in &sm.metrics {
                let points = match &m.data {
                    Some(metric::Data::Gauge(g)) => &g.data_points,
                    Some(metric::Data::Sum(s)) => &s.data_points,
                    other => panic!("unexpected data {other:?}"),
                };
                for p in points {
                    let value = match p.value {
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        None => panic!("point without value"),
                    };
                    out.push(Pt {
                        resource: resource.clone(),
                        metric: m.name.clone(),
                        attrs: kv_map(&p.attributes),
                        value,
                        start: p.start_time_unix_nano,
                        time: p.time_unix_nano,
                    });
                }
            }
        }
    }
    out
}

/// The points of `metric` whose attributes include all of `attrs`.
fn find<'a>(pts: &'a [Pt], metric: &str, attrs: &[(&str, &str)]) -> Vec<&'a Pt> {
    pts.iter()
        .filter(|p| p.metric == metric)
        .filter(|p| {
            attrs
                .iter()
                .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The single value of `metric` with `attrs`.
fn one(pts: &[Pt], metric: &str, attrs: &[(&str, &str)]) -> f64 {
    let found = find(pts, metric, attrs);
    assert_eq!(found.len(), 1, "{metric} {attrs:?}: {found:#?}");
    found[0].value
}

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/memory-root")
}

fn fixture_config() -> MemoryReceiverConfig {
    MemoryReceiverConfig {
        root_path: fixture_root(),
        ..MemoryReceiverConfig::default()
    }
}

const KIB: f64 = 1024.0;

#[test]
fn fixture_system_memory_and_pressure() {
    let mut s = Scraper::new(&fixture_config()).expect("scraper");
    let pts = flatten(&s.scrape());
    let host: Vec<Pt> = pts
        .iter()
        .filter(|p| p.resource.is_empty())
        .cloned()
        .collect();

    let total = 8039204.0 * KIB;
    let usage = find(&host, "system.memory.usage", &[]);
    assert_eq!(usage.len(), 6);
    assert_eq!(
        usage.iter().map(|p| p.value).sum::<f64>(),
        total,
        "states sum to MemTotal"
    );
    assert_eq!(
        one(
            &host,
            "system.memory.usage",
            &[("system.memory.state", "used")]
        ),
        (8039204.0 - 611424.0 - 120112.0 - 3021500.0 - 298804.0 - 159736.0) * KIB
    );
    assert_eq!(
        one(
            &host,
            "system.memory.usage",
            &[("system.memory.state", "cached")]
        ),
        3021500.0 * KIB
    );
    assert_eq!(
        one(
            &host,
            "system.memory.usage",
            &[("system.memory.state", "slab_unreclaimable")]
        ),
        159736.0 * KIB
    );
    let utilization: f64 = find(&host, "system.memory.utilization", &[])
        .iter()
        .map(|p| p.value)
        .sum();
    assert!((utilization - 1.0).abs() < 1e-9);
    assert_eq!(one(&host, "system.memory.limit", &[]), total);
    assert_eq!(
        one(&host, "system.memory.linux.available", &[]),
        3811208.0 * KIB
    );
    assert_eq!(
        one(
            &host,
            "system.paging.usage",
            &[("system.paging.state", "used")]
        ),
        (2097148.0 - 1835004.0) * KIB
    );
    assert_eq!(
        one(
            &host,
            "system.paging.faults",
            &[("system.paging.fault.type", "major")]
        ),
        41233.0
    );
    assert_eq!(
        one(
            &host,
            "system.paging.faults",
            &[("system.paging.fault.type", "minor")]
        ),
        1038842211.0 - 41233.0
    );
    assert_eq!(
        one(
            &host,
            "system.paging.operations",
            &[("system.paging.direction", "out")]
        ),
        66821.0
    );
    assert_eq!(one(&host, "system.memory.linux.oom_kills", &[]), 7.0);
    assert_eq!(
        one(&host, "system.memory.linux.allocation_stalls", &[]),
        252.0
    );
    assert_eq!(
        one(
            &host,
            "system.memory.linux.reclaim.scanned",
            &[("system.memory.linux.reclaimer", "direct")]
        ),
        30112.0
    );
    assert_eq!(
        one(
            &host,
            "system.memory.linux.reclaim.reclaimed",
            &[("system.memory.linux.reclaimer", "kswapd")]
        ),
        4812231.0
    );
    let psi = one(
        &host,
        "system.memory.psi.avg",
        &[("psi.type", "some"), ("psi.window", "10s")],
    );
    assert!((psi - 0.0231).abs() < 1e-12, "{psi}");
    let stall = one(
        &host,
        "system.memory.psi.stall_time",
        &[("psi.type", "full")],
    );
    assert!((stall - 412.345678).abs() < 1e-9, "{stall}");
    assert_eq!(find(&host, "system.memory.psi.avg", &[]).len(), 6);

    // Kernel counters start at boot, levels at the receiver's start.
    let boot = find(&host, "system.memory.linux.oom_kills", &[])[0].start;
    let started = find(&host, "system.memory.limit", &[])[0].start;
    assert!(boot > 0 && boot < started, "{boot} {started}");
    assert_eq!(find(&host, "system.memory.utilization", &[])[0].start, 0);
    // One scrape, one timestamp.
    assert!(pts.iter().all(|p| p.time == pts[0].time && p.time > 0));
    assert_eq!(s.warnings(), 0, "{:?}", s.warned());
}

#[test]
fn sections_can_be_turned_off() {
    let mut cfg = fixture_config();
    cfg.system.enabled = false;
    cfg.pressure.enabled = false;
    assert!(Scraper::new(&cfg).expect("scraper").scrape().is_empty());
}

/// A missing root: nothing to report, each problem said once, no panic.
#[test]
fn a_root_without_proc_or_cgroups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MemoryReceiverConfig {
        root_path: dir.path().to_path_buf(),
        ..MemoryReceiverConfig::default()
    };
    let mut s = Scraper::new(&cfg).expect("scraper");
    assert!(s.scrape().is_empty());
    let n = s.warnings();
    assert!(n >= 3, "meminfo, vmstat, pressure: {n}");
    s.scrape();
    assert_eq!(s.warnings(), n);
}

fn load(receiver: &str, signal: &str) -> Result<MemoryReceiverConfig, String> {
    let text = format!(
        "receivers:\n  memory:\n{receiver}exporters:\n  debug:\nservice:\n  pipelines:\n    {signal}:\n      receivers: [memory]\n      exporters: [debug]\n"
    );
    let config = crate::config::load_str("c.yaml", &text).map_err(|e| e.to_string())?;
    match config
        .receivers
        .get(&crate::config::ComponentId::new("memory", None))
    {
        Some(crate::receivers::ReceiverConfig::Memory(c)) => Ok(c.clone()),
        other => Err(format!("not a memory receiver: {other:?}")),
    }
}

#[test]
fn config_decodes_and_checks() {
    let cfg = load(
        "    collection_interval: 5s
    root_path: /hostfs
    pressure:
      trigger: null
",
        "metrics",
    )
    .expect("valid");
    assert_eq!(cfg.collection_interval, GoDuration::from_secs(5));
    assert_eq!(cfg.root_path, PathBuf::from("/hostfs"));
    assert_eq!(cfg.pressure.trigger, None);
    assert!(cfg.pressure.enabled);
    assert_eq!(
        load("", "metrics").expect("defaults"),
        MemoryReceiverConfig::default()
    );

    let err = load("    system: { enabld: true }\n", "metrics").expect_err("unknown key");
    assert!(err.contains("enabld"), "{err}");
    let err = load("", "logs").expect_err("metrics only");
    assert!(err.contains("does not support the logs signal"), "{err}");

    let d = MemoryReceiverConfig::default();
    assert!(d.validate().is_ok());
    assert_eq!(d.collection_interval, GoDuration::from_secs(10));
    for (cfg, key) in [
        (
            MemoryReceiverConfig {
                collection_interval: GoDuration::ZERO,
                ..d.clone()
            },
            "collection_interval",
        ),
        (
            MemoryReceiverConfig {
                pressure: PressureConfig {
                    enabled: true,
                    trigger: Some(TriggerConfig {
                        stall: GoDuration::from_secs(2),
                        ..TriggerConfig::default()
                    }),
                },
                ..d.clone()
            },
            "pressure::trigger::stall",
        ),
        (
            MemoryReceiverConfig {
                pressure: PressureConfig {
                    enabled: true,
                    trigger: Some(TriggerConfig {
                        window: GoDuration::from_secs(11),
                        ..TriggerConfig::default()
                    }),
                },
                ..d.clone()
            },
            "pressure::trigger::window",
        ),
    ] {
        let err = cfg.validate().expect_err(key);
        assert!(err.starts_with(key), "{err}");
    }
}

/// This machine's system figures: the states sum to the MemTotal read here.
#[test]
fn live_system_states_sum_to_memtotal() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let total: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    let cfg = MemoryReceiverConfig::default();
    let pts = flatten(&Scraper::new(&cfg).expect("scraper").scrape());
    let sum: f64 = find(&pts, "system.memory.usage", &[])
        .iter()
        .map(|p| p.value)
        .sum();
    assert_eq!(sum, total * KIB);
    if Path::new("/proc/pressure/memory").exists() {
        assert_eq!(find(&pts, "system.memory.psi.avg", &[]).len(), 6);
    }
}
