//! The `memory` receiver's scrape against the recorded cgroup2 host root
//! (tests/fixtures/memory-root, through `root_path`) and against this
//! machine's real /proc.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, ResourceMetrics};

use super::*;
use crate::metric_catalog::checks::assert_emitted_per_catalog;

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

/// The points of a scrape, checked against the catalog on the way.
fn flatten(rms: &[ResourceMetrics]) -> Vec<Pt> {
    assert_emitted_per_catalog(rms, metrics::ALL);
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

/// `process.pid` of each process Resource, in order.
fn resource_pids(rms: &[ResourceMetrics]) -> Vec<String> {
    rms.iter()
        .filter_map(|rm| rm.resource.as_ref())
        .filter_map(|r| kv_map(&r.attributes).get("process.pid").cloned())
        .collect()
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
/// `pgpgin` of the fixture's /proc/vmstat (KiB).
const PGPGIN_KIB: f64 = 48213388.0;
const CONTAINER_ID: &str = "8a3f9d2c4b1e6f70a9b8c7d6e5f40312a1b2c3d4e5f60718293a4b5c6d7e8f90";
const POD_UID: &str = "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

fn container_cgroup() -> String {
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d1c2b3a_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice/cri-containerd-{CONTAINER_ID}.scope"
    )
}

fn pod_cgroup() -> String {
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d1c2b3a_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice".to_string()
}

fn page_size() -> f64 {
    crate::sysconf::page_size() as f64
}

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
    // The registry's states and meanings (model/system/registry.yaml):
    // used = MemTotal - MemAvailable; slab and shmem have metrics of their own.
    let usage = find(&host, "system.memory.usage", &[]);
    let states: Vec<&str> = usage
        .iter()
        .map(|p| p.attrs["system.memory.state"].as_str())
        .collect();
    assert_eq!(states, ["used", "free", "buffers", "cached"]);
    let state = |s: &str| one(&host, "system.memory.usage", &[("system.memory.state", s)]);
    assert_eq!(state("used"), (8039204.0 - 3811208.0) * KIB);
    assert_eq!(state("free"), 611424.0 * KIB);
    assert_eq!(state("buffers"), 120112.0 * KIB);
    assert_eq!(state("cached"), 3021500.0 * KIB);
    let used_fraction = one(
        &host,
        "system.memory.utilization",
        &[("system.memory.state", "used")],
    );
    assert!((used_fraction - (8039204.0 - 3811208.0) / 8039204.0).abs() < 1e-12);
    for (slab, kib) in [("reclaimable", 298804.0), ("unreclaimable", 159736.0)] {
        assert_eq!(
            one(
                &host,
                "system.memory.linux.slab.usage",
                &[("system.memory.linux.slab.state", slab)]
            ),
            kib * KIB
        );
    }
    assert_eq!(one(&host, "system.memory.linux.shared", &[]), 92316.0 * KIB);
    assert_eq!(one(&host, "system.memory.limit", &[]), total);
    assert_eq!(
        one(&host, "system.memory.linux.available", &[]),
        3811208.0 * KIB
    );
    assert_eq!(
        one(
            &host,
            "system.paging.usage",
            &[
                ("system.paging.state", "used"),
                ("system.device", "/dev/dm-1")
            ]
        ),
        262144.0 * KIB
    );
    assert_eq!(
        one(
            &host,
            "system.paging.utilization",
            &[
                ("system.paging.state", "free"),
                ("system.device", "/dev/dm-1")
            ]
        ),
        (2097148.0 - 262144.0) / 2097148.0
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
            &[
                ("system.paging.direction", "out"),
                ("system.paging.fault.type", "major")
            ]
        ),
        66821.0
    );
    // pgpgin is in KiB: pages of the machine's size.
    assert_eq!(
        one(
            &host,
            "system.paging.operations",
            &[
                ("system.paging.direction", "in"),
                ("system.paging.fault.type", "minor")
            ]
        ),
        (PGPGIN_KIB * KIB / page_size()).floor()
    );
    assert_eq!(one(&host, "oomscope.system.memory.oom_kills", &[]), 7.0);
    assert_eq!(
        one(&host, "oomscope.system.memory.allocation_stalls", &[]),
        252.0
    );
    assert_eq!(
        one(
            &host,
            "oomscope.system.memory.reclaim.scanned",
            &[("oomscope.system.memory.reclaimer", "direct")]
        ),
        30112.0
    );
    assert_eq!(
        one(
            &host,
            "oomscope.system.memory.reclaim.reclaimed",
            &[("oomscope.system.memory.reclaimer", "kswapd")]
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
    let boot = find(&host, "oomscope.system.memory.oom_kills", &[])[0].start;
    let started = find(&host, "system.memory.limit", &[])[0].start;
    assert!(boot > 0 && boot < started, "{boot} {started}");
    assert_eq!(find(&host, "system.memory.utilization", &[])[0].start, 0);
    // One scrape, one timestamp.
    assert!(pts.iter().all(|p| p.time == pts[0].time && p.time > 0));
    assert_eq!(s.warnings(), 0, "{:?}", s.warned());
}

#[test]
fn fixture_cgroup_v2_tree() {
    let mut s = Scraper::new(&fixture_config()).expect("scraper");
    let pts = flatten(&s.scrape());
    let ctr = container_cgroup();
    let pod = pod_cgroup();

    // Reported: the root and every cgroup with a limit or processes.
    let reported: BTreeSet<&str> = pts
        .iter()
        .filter_map(|p| p.attrs.get("oomscope.cgroup.path").map(String::as_str))
        .collect();
    let expected: BTreeSet<&str> = [
        "/",
        "/init.scope",
        "/kubepods.slice",
        pod.as_str(),
        ctr.as_str(),
        "/system.slice/containerd.service",
    ]
    .into();
    assert_eq!(reported, expected);

    let c = [("oomscope.cgroup.path", ctr.as_str())];
    // A container's cgroup: the registry's container.* names where it has
    // them (model/container/metrics.yaml), oomscope.cgroup.* for the rest.
    assert_eq!(one(&pts, "container.memory.usage", &c), 251658240.0);
    assert!(find(&pts, "oomscope.cgroup.memory.usage", &c).is_empty());
    assert_eq!(
        one(&pts, "container.memory.available", &c),
        268435456.0 - (251658240.0 - 8500000.0),
        "limit - working set"
    );
    assert_eq!(one(&pts, "container.memory.rss", &c), 230686720.0);
    assert_eq!(one(&pts, "oomscope.cgroup.memory.limit", &c), 268435456.0);
    assert_eq!(
        one(&pts, "oomscope.cgroup.memory.headroom", &c),
        268435456.0 - 251658240.0
    );
    assert_eq!(one(&pts, "oomscope.cgroup.memory.high", &c), 201326592.0);
    assert_eq!(
        one(&pts, "oomscope.cgroup.memory.swap.usage", &c),
        12582912.0
    );
    assert!(
        find(&pts, "oomscope.cgroup.memory.swap.limit", &c).is_empty(),
        "max = no limit"
    );
    assert_eq!(
        one(&pts, "container.memory.working_set", &c),
        251658240.0 - 8500000.0
    );
    let ev = |e: &str| {
        one(
            &pts,
            "oomscope.cgroup.memory.events",
            &[
                ("oomscope.cgroup.path", ctr.as_str()),
                ("oomscope.cgroup.memory.event", e),
            ],
        )
    };
    assert_eq!(ev("oom_kill"), 1.0);
    assert_eq!(ev("oom"), 1.0);
    assert_eq!(ev("high"), 120.0);
    assert_eq!(ev("max"), 3.0);
    assert_eq!(ev("oom_group_kill"), 0.0);
    assert_eq!(
        one(
            &pts,
            "oomscope.cgroup.memory.breakdown",
            &[
                ("oomscope.cgroup.path", ctr.as_str()),
                ("oomscope.cgroup.memory.type", "anon")
            ]
        ),
        230686720.0
    );
    assert_eq!(
        one(
            &pts,
            "container.paging.faults",
            &[
                ("oomscope.cgroup.path", ctr.as_str()),
                ("system.paging.fault.type", "major")
            ]
        ),
        321.0
    );
    let psi = one(
        &pts,
        "oomscope.cgroup.memory.psi.avg",
        &[
            ("oomscope.cgroup.path", ctr.as_str()),
            ("psi.type", "full"),
            ("psi.window", "60s"),
        ],
    );
    assert!((psi - 0.009).abs() < 1e-12, "{psi}");
    // Container and pod are the resource: ids from the path, names from
    // the recorded kubelet log directories (var/log/pods, var/log/containers).
    let usage = find(&pts, "container.memory.usage", &c)[0];
    assert_eq!(
        usage.attrs.get("container.id"),
        None,
        "not a point attribute"
    );
    let r = |k: &str| usage.resource.get(k).map(String::as_str);
    assert_eq!(r("container.id"), Some(CONTAINER_ID));
    assert_eq!(r("k8s.pod.uid"), Some(POD_UID));
    assert_eq!(r("k8s.pod.name"), Some("cart-7d9f"));
    assert_eq!(r("k8s.namespace.name"), Some("shop"));
    assert_eq!(r("k8s.container.name"), Some("app"));
    // A pod's cgroup: k8s.pod.* (model/k8s/metrics.yaml).
    let pod_usage = find(
        &pts,
        "k8s.pod.memory.usage",
        &[("oomscope.cgroup.path", pod.as_str())],
    )[0];
    assert_eq!(pod_usage.resource.get("container.id"), None);
    assert_eq!(
        pod_usage.resource.get("k8s.pod.uid").map(String::as_str),
        Some(POD_UID)
    );
    assert_eq!(
        pod_usage.resource.get("k8s.pod.name").map(String::as_str),
        Some("cart-7d9f")
    );
    // A cgroup of no container or pod stays on the host's resource.
    let svc = find(
        &pts,
        "oomscope.cgroup.memory.usage",
        &[("oomscope.cgroup.path", "/system.slice/containerd.service")],
    )[0];
    assert!(svc.resource.is_empty(), "{:?}", svc.resource);

    // No limit: no limit, headroom or estimate; the v2 root has no usage.
    let svc = [("oomscope.cgroup.path", "/system.slice/containerd.service")];
    assert_eq!(one(&pts, "oomscope.cgroup.memory.usage", &svc), 98304000.0);
    assert!(find(&pts, "oomscope.cgroup.memory.limit", &svc).is_empty());
    assert!(find(&pts, "oomscope.cgroup.memory.headroom", &svc).is_empty());
    let root = [("oomscope.cgroup.path", "/")];
    assert!(find(&pts, "oomscope.cgroup.memory.usage", &root).is_empty());
    assert_eq!(
        one(
            &pts,
            "oomscope.cgroup.memory.breakdown",
            &[
                ("oomscope.cgroup.path", "/"),
                ("oomscope.cgroup.memory.type", "file")
            ]
        ),
        3216793600.0
    );
    assert!(
        find(&pts, "oomscope.cgroup.memory.time_to_limit", &[]).is_empty(),
        "one sample only"
    );
    assert_eq!(s.warnings(), 0, "{:?}", s.warned());
}

#[test]
fn cgroup_include_exclude_and_max() {
    let mut cfg = fixture_config();
    cfg.cgroups.include = vec!["/kubepods.slice/**".into()];
    cfg.cgroups.exclude = vec!["**/*.scope".into()];
    let pts = flatten(&Scraper::new(&cfg).expect("scraper").scrape());
    let reported: BTreeSet<&str> = pts
        .iter()
        .filter_map(|p| p.attrs.get("oomscope.cgroup.path").map(String::as_str))
        .collect();
    let pod = pod_cgroup();
    assert_eq!(reported, [pod.as_str()].into());

    let mut cfg = fixture_config();
    cfg.cgroups.max_cgroups = 2;
    let mut s = Scraper::new(&cfg).expect("scraper");
    let pts = flatten(&s.scrape());
    let reported: BTreeSet<&str> = pts
        .iter()
        .filter_map(|p| p.attrs.get("oomscope.cgroup.path").map(String::as_str))
        .collect();
    assert_eq!(reported, ["/", "/init.scope"].into(), "depth first, sorted");
    assert_eq!(s.warnings(), 1, "the cut is reported");
    s.scrape();
    assert_eq!(s.warnings(), 1, "once");
}

/// A copy of the fixture tree under a temporary directory (to change it).
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(fixture_root().join("."))
        .arg(dir.path())
        .status()
        .expect("cp");
    assert!(status.success());
    dir
}

fn cgroup_file(root: &Path, cgroup: &str, file: &str) -> PathBuf {
    root.join("sys/fs/cgroup")
        .join(cgroup.trim_start_matches('/'))
        .join(file)
}

/// A container without a limit of its own is OOM-killed at its pod's (or
/// any ancestor's) limit: its headroom and estimate follow the tightest
/// ancestor; its own `limit` stays absent.
#[test]
fn headroom_follows_the_tightest_ancestor_limit() {
    let dir = fixture_copy();
    let ctr = container_cgroup();
    std::fs::write(cgroup_file(dir.path(), &ctr, "memory.max"), "max\n").expect("write");
    let cfg = MemoryReceiverConfig {
        root_path: dir.path().to_path_buf(),
        ..MemoryReceiverConfig::default()
    };
    let mut s = Scraper::new(&cfg).expect("scraper");
    let pts = flatten(&s.scrape());
    let c = [("oomscope.cgroup.path", ctr.as_str())];
    assert!(find(&pts, "oomscope.cgroup.memory.limit", &c).is_empty());
    // The pod: 536870912 - 253755392; kubepods.slice has far more room.
    assert_eq!(
        one(&pts, "oomscope.cgroup.memory.headroom", &c),
        536870912.0 - 253755392.0
    );
    // With a limit of its own that is looser than the pod's room, the pod's
    // room still binds.
    std::fs::write(cgroup_file(dir.path(), &ctr, "memory.max"), "1073741824\n").expect("write");
    let pts = flatten(&s.scrape());
    assert_eq!(one(&pts, "oomscope.cgroup.memory.limit", &c), 1073741824.0);
    assert_eq!(
        one(&pts, "oomscope.cgroup.memory.headroom", &c),
        536870912.0 - 253755392.0
    );
    // A cgroup with neither an own nor an ancestor limit has no headroom.
    let svc = [("oomscope.cgroup.path", "/system.slice/containerd.service")];
    assert!(find(&pts, "oomscope.cgroup.memory.headroom", &svc).is_empty());
}

/// Counter start times: cgroups of the first scrape count from boot; one
/// first seen later starts with a true reset point (start = its first
/// point's time), since its counters may predate it; one that drops out of
/// the report for a scrape and comes back keeps its series.
#[test]
fn cgroup_series_start_times() {
    let dir = fixture_copy();
    let cfg = MemoryReceiverConfig {
        root_path: dir.path().to_path_buf(),
        ..MemoryReceiverConfig::default()
    };
    let mut s = Scraper::new(&cfg).expect("scraper");
    let boot = crate::clock::boot_unix_nanos();
    let events_start = |pts: &[Pt], path: &str| -> (u64, u64) {
        let found = find(
            pts,
            "oomscope.cgroup.memory.events",
            &[
                ("oomscope.cgroup.path", path),
                ("oomscope.cgroup.memory.event", "oom_kill"),
            ],
        );
        assert_eq!(found.len(), 1, "{path}: {found:#?}");
        (found[0].start, found[0].time)
    };
    let ctr = container_cgroup();
    let (ctr_start, _) = events_start(&flatten(&s.scrape()), &ctr);
    assert!(
        ctr_start.abs_diff(boot) < 1_000_000_000,
        "{ctr_start} vs boot {boot}"
    );

    // A new cgroup with processes appears (with an old oom_kill count).
    let late = "/system.slice/late.service";
    let late_dir = cgroup_file(dir.path(), late, "");
    std::fs::create_dir_all(&late_dir).expect("mkdir");
    for (file, text) in [
        ("memory.current", "1048576\n"),
        ("memory.max", "max\n"),
        ("cgroup.procs", "4242\n"),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 0\noom 2\noom_kill 2\noom_group_kill 0\n",
        ),
    ] {
        std::fs::write(late_dir.join(file), text).expect("write");
    }
    let pts = flatten(&s.scrape());
    let (start, time) = events_start(&pts, late);
    assert_eq!(start, time, "a true reset point");
    assert_eq!(events_start(&pts, &ctr).0, ctr_start, "unchanged");

    // It loses its processes (not reported), then gets one back.
    std::fs::write(late_dir.join("cgroup.procs"), "").expect("write");
    let pts = flatten(&s.scrape());
    assert!(find(
        &pts,
        "oomscope.cgroup.memory.usage",
        &[("oomscope.cgroup.path", late)]
    )
    .is_empty());
    std::fs::write(late_dir.join("cgroup.procs"), "4242\n").expect("write");
    let pts = flatten(&s.scrape());
    let (again, time_again) = events_start(&pts, late);
    assert_eq!(again, start, "the same series");
    assert!(time_again > start);
}

/// A cgroup removed while it is read: its `memory.stat` is a FIFO, which
/// holds the scraper inside that cgroup until the test has removed the
/// cgroup's directory and then fed the FIFO. None of the cgroup is reported
/// (not half of it), nothing is warned about (cgroups come and go), every
/// other cgroup is reported as from an untouched tree, and the next scrape
/// goes on without it.
#[test]
fn a_cgroup_removed_mid_read_is_left_out_whole_without_a_warning() {
    use std::io::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let untouched = flatten(&Scraper::new(&fixture_config()).expect("scraper").scrape());
    let dir = fixture_copy();
    let ctr = container_cgroup();
    let ctr_dir = cgroup_file(dir.path(), &ctr, "");
    let stat = ctr_dir.join("memory.stat");
    let stat_text = std::fs::read(&stat).expect("read memory.stat");
    std::fs::remove_file(&stat).expect("remove memory.stat");
    let fifo = std::ffi::CString::new(stat.as_os_str().as_bytes()).expect("a path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");

    let scraped = Arc::new(AtomicBool::new(false));
    let remover = {
        let scraped = Arc::clone(&scraped);
        std::thread::spawn(move || -> bool {
            // A non-blocking open for writing succeeds once the scraper has
            // the FIFO open for reading (ENXIO before).
            let mut writer = loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&stat)
                {
                    Ok(w) => break w,
                    Err(_) if scraped.load(Ordering::SeqCst) => return false,
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            };
            std::fs::remove_dir_all(&ctr_dir).expect("remove the cgroup");
            writer.write_all(&stat_text).expect("feed memory.stat");
            true
        })
    };
    let cfg = MemoryReceiverConfig {
        root_path: dir.path().to_path_buf(),
        ..MemoryReceiverConfig::default()
    };
    let mut s = Scraper::new(&cfg).expect("scraper");
    let pts = flatten(&s.scrape());
    scraped.store(true, Ordering::SeqCst);
    assert!(
        remover.join().expect("the remover"),
        "the scraper never read the cgroup's memory.stat"
    );

    let of = |pts: &[Pt], path: &str| -> BTreeSet<(String, String)> {
        pts.iter()
            .filter(|p| p.attrs.get("oomscope.cgroup.path").map(String::as_str) == Some(path))
            .map(|p| (p.metric.clone(), format!("{:?}", p.attrs)))
            .collect()
    };
    assert!(of(&pts, &ctr).is_empty(), "{:#?}", of(&pts, &ctr));
    assert_eq!(s.warnings(), 0, "{:?}", s.warned());
    let paths = |pts: &[Pt]| -> BTreeSet<String> {
        pts.iter()
            .filter_map(|p| p.attrs.get("oomscope.cgroup.path").cloned())
            .collect()
    };
    let mut others = paths(&untouched);
    assert!(
        others.remove(&ctr),
        "the untouched tree reports the container"
    );
    assert_eq!(paths(&pts), others);
    for path in &others {
        assert_eq!(of(&pts, path), of(&untouched, path), "{path}");
    }
    let pts = flatten(&s.scrape());
    assert_eq!(paths(&pts), others);
    assert_eq!(s.warnings(), 0, "{:?}", s.warned());
}

/// A copy of the fixture whose container's usage grows between scrapes:
/// `time_to_limit` appears and is what the growth implies; flat usage has none.
#[test]
fn time_to_limit_follows_growth() {
    let dir = fixture_copy();
    let cfg = MemoryReceiverConfig {
        root_path: dir.path().to_path_buf(),
        ..MemoryReceiverConfig::default()
    };
    let ctr = container_cgroup();
    let current = cgroup_file(dir.path(), &ctr, "memory.current");
    let mut s = Scraper::new(&cfg).expect("scraper");
    let mut last = Vec::new();
    let started = std::time::Instant::now();
    for step in 0..4u64 {
        std::fs::write(&current, format!("{}\n", 200_000_000 + step * 10_000_000)).expect("write");
        last = flatten(&s.scrape());
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = [("oomscope.cgroup.path", ctr.as_str())];
    let t = one(&last, "oomscope.cgroup.memory.time_to_limit", &c);
    // 38.4 MB to go at 10 MB per scrape interval: about 3.84 intervals,
    // whatever this machine's speed (bounded by the whole run, generously).
    let elapsed = started.elapsed().as_secs_f64();
    assert!(t > 0.0 && t < 10.0 * elapsed, "{t} after {elapsed}s");
    // The flat cgroups have none.
    assert!(find(
        &last,
        "oomscope.cgroup.memory.time_to_limit",
        &[("oomscope.cgroup.path", "/kubepods.slice")]
    )
    .is_empty());
}

/// Page cache filling a cgroup (usage and inactive_file growing together)
/// is reclaimed at the limit, not killed for: no estimate.
#[test]
fn growing_page_cache_is_not_a_coming_oom() {
    let dir = fixture_copy();
    let ctr = container_cgroup();
    let current = cgroup_file(dir.path(), &ctr, "memory.current");
    let stat_path = cgroup_file(dir.path(), &ctr, "memory.stat");
    let stat = std::fs::read_to_string(&stat_path).expect("memory.stat");
    let cfg = MemoryReceiverConfig {
        root_path: dir.path().to_path_buf(),
        ..MemoryReceiverConfig::default()
    };
    let mut s = Scraper::new(&cfg).expect("scraper");
    let mut last = Vec::new();
    for step in 0..4u64 {
        let grown = step * 3_000_000;
        std::fs::write(&current, format!("{}\n", 200_000_000 + grown)).expect("write");
        let stat: String = stat
            .lines()
            .map(|l| match l.strip_prefix("inactive_file ") {
                Some(_) => format!("inactive_file {}\n", 8_500_000 + grown),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&stat_path, stat).expect("write");
        last = flatten(&s.scrape());
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = [("oomscope.cgroup.path", ctr.as_str())];
    assert_eq!(
        one(&last, "container.memory.usage", &c),
        209_000_000.0,
        "usage did grow"
    );
    assert!(find(&last, "oomscope.cgroup.memory.time_to_limit", &c).is_empty());
}

#[test]
fn fixture_processes() {
    let mut s = Scraper::new(&fixture_config()).expect("scraper");
    let rms = s.scrape();
    let pts = flatten(&rms);
    let pids = resource_pids(&rms);
    assert_eq!(
        pids,
        ["4242", "812"],
        "largest first; kthreadd has no memory"
    );

    let java: Vec<Pt> = pts
        .iter()
        .filter(|p| p.resource.get("process.pid").map(String::as_str) == Some("4242"))
        .cloned()
        .collect();
    let r = &java[0].resource;
    let attr = |k: &str| r.get(k).map(String::as_str);
    assert_eq!(attr("process.parent_pid"), Some("4180"));
    assert_eq!(attr("process.executable.name"), Some("java"));
    assert_eq!(
        attr("process.executable.path"),
        Some("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")
    );
    assert_eq!(
        attr("process.command_line"),
        Some("/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xmx256m -Dspring.datasource.password=*** -jar /app/app.jar --api-key ***")
    );
    assert_eq!(attr("process.owner"), Some("app"));
    assert_eq!(
        attr("process.linux.cgroup"),
        Some(container_cgroup().as_str())
    );
    assert_eq!(attr("container.id"), Some(CONTAINER_ID));
    assert_eq!(attr("k8s.pod.uid"), Some(POD_UID));
    assert_eq!(attr("k8s.pod.name"), Some("cart-7d9f"));
    assert_eq!(attr("k8s.container.name"), Some("app"));
    assert_eq!(
        one(&java, "process.memory.usage", &[]),
        98304.0 * page_size()
    );
    assert_eq!(
        one(&java, "process.memory.virtual", &[]),
        1212416.0 * page_size()
    );
    assert_eq!(
        one(&java, "oomscope.process.memory.swap", &[]),
        12288.0 * KIB
    );
    assert_eq!(one(&java, "oomscope.process.oom_score", &[]), 1021.0);
    assert_eq!(one(&java, "oomscope.process.oom_score_adj", &[]), 969.0);
    assert_eq!(
        one(
            &java,
            "process.paging.faults",
            &[("system.paging.fault.type", "minor")]
        ),
        912345.0
    );
    assert_eq!(
        one(
            &java,
            "process.paging.faults",
            &[("system.paging.fault.type", "major")]
        ),
        321.0
    );
    // Counters of a process start when it started (boot + 3456789 ticks).
    let faults = find(&java, "process.paging.faults", &[])[0];
    assert!(faults.start > 0 && faults.start < faults.time);

    let containerd: Vec<&Pt> = pts
        .iter()
        .filter(|p| p.resource.get("process.pid").map(String::as_str) == Some("812"))
        .collect();
    assert_eq!(
        containerd[0]
            .resource
            .get("process.owner")
            .map(String::as_str),
        Some("root")
    );
    assert_eq!(containerd[0].resource.get("container.id"), None);
    assert_eq!(s.warnings(), 0, "{:?}", s.warned());
}

/// `cgroups.include`/`exclude` select processes by their memory cgroup
/// too (a simulated node reports only its own subtree's processes).
#[test]
fn processes_follow_the_cgroup_filter() {
    let pids = |include: &[&str], exclude: &[&str]| -> Vec<String> {
        let mut cfg = fixture_config();
        cfg.system.enabled = false;
        cfg.pressure.enabled = false;
        cfg.cgroups.include = include.iter().map(|s| s.to_string()).collect();
        cfg.cgroups.exclude = exclude.iter().map(|s| s.to_string()).collect();
        resource_pids(&Scraper::new(&cfg).expect("scraper").scrape())
    };
    assert_eq!(pids(&[], &[]), ["4242", "812"]);
    assert_eq!(pids(&["/kubepods.slice/**"], &[]), ["4242"]);
    assert_eq!(pids(&[], &["/kubepods.slice/**"]), ["812"]);
    assert!(pids(&["/nowhere/**"], &[]).is_empty());
}

#[test]
fn process_top_and_name_filters() {
    let pids = |cfg: &MemoryReceiverConfig| -> Vec<String> {
        Scraper::new(cfg)
            .expect("scraper")
            .scrape()
            .iter()
            .filter_map(|rm| rm.resource.as_ref())
            .filter_map(|r| kv_map(&r.attributes).get("process.pid").cloned())
            .collect()
    };
    let mut cfg = fixture_config();
    cfg.processes.top = 1;
    assert_eq!(pids(&cfg), ["4242"]);
    let mut cfg = fixture_config();
    cfg.processes.include = Some(NameMatchConfig {
        names: vec!["containerd".into()],
        match_type: MatchType::Strict,
    });
    assert_eq!(pids(&cfg), ["812"]);
    let mut cfg = fixture_config();
    cfg.processes.exclude = Some(NameMatchConfig {
        names: vec!["^ja".into()],
        match_type: MatchType::Regexp,
    });
    cfg.processes.top = 1;
    assert_eq!(
        pids(&cfg),
        ["812"],
        "the excluded one does not take a place"
    );
}

#[test]
fn sections_can_be_turned_off() {
    let mut cfg = fixture_config();
    cfg.system.enabled = false;
    cfg.pressure.enabled = false;
    cfg.cgroups.enabled = false;
    let pts = flatten(&Scraper::new(&cfg).expect("scraper").scrape());
    assert!(
        pts.iter()
            .all(|p| p.metric.starts_with("process.") || p.metric.starts_with("oomscope.process.")),
        "{pts:#?}"
    );
    cfg.processes.enabled = false;
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
    assert!(n >= 4, "meminfo, vmstat, pressure, /proc, cgroups: {n}");
    s.scrape();
    assert_eq!(s.warnings(), n);
}

fn load(receiver: &str, signal: &str) -> Result<MemoryReceiverConfig, String> {
    let text = format!(
        "receivers:\n  memory:\n{receiver}exporters:\n  debug:\nservice:\n  pipelines:\n    {signal}:\n      receivers: [memory]\n      exporters: [debug]\n"
    );
    let config = crate::config::load_str(crate::components::registry(), "c.yaml", &text)
        .map_err(|e| e.to_string())?;
    let receiver = config
        .receivers
        .get(&crate::config::ComponentId::new("memory", None))
        .ok_or("no memory receiver")?;
    (receiver.as_ref() as &dyn std::any::Any)
        .downcast_ref::<MemoryReceiverConfig>()
        .cloned()
        .ok_or_else(|| format!("not a memory receiver: {receiver:?}"))
}

#[test]
fn config_decodes_and_checks() {
    let cfg = load(
        "    collection_interval: 5s
    root_path: /hostfs
    pressure:
      trigger: null
    processes:
      top: 5
      include: { names: ['^java'], match_type: regexp }
    cgroups:
      max_cgroups: 50
      exclude: ['/system.slice/**']
",
        "metrics",
    )
    .expect("valid");
    assert_eq!(cfg.collection_interval, GoDuration::from_secs(5));
    assert_eq!(cfg.root_path, PathBuf::from("/hostfs"));
    assert_eq!(cfg.pressure.trigger, None);
    assert!(cfg.pressure.enabled);
    assert_eq!(cfg.processes.top, 5);
    assert_eq!(cfg.cgroups.max_cgroups, 50);
    assert_eq!(
        load("", "metrics").expect("defaults"),
        MemoryReceiverConfig::default()
    );

    let err = load("    processes: { topp: 5 }\n", "metrics").expect_err("unknown key");
    assert!(err.contains("topp"), "{err}");
    let err = load("    processes: { top: 0 }\n", "metrics").expect_err("top 0");
    assert!(err.contains("processes::top"), "{err}");
    let err = load("", "logs").expect_err("metrics only");
    assert!(err.contains("does not support the logs signal"), "{err}");

    let d = MemoryReceiverConfig::default();
    assert!(d.validate().is_ok());
    assert_eq!(d.collection_interval, GoDuration::from_secs(10));
    assert_eq!(d.processes.top, 20);
    assert_eq!(d.cgroups.max_cgroups, 500);
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
                processes: ProcessesConfig {
                    top: 0,
                    ..ProcessesConfig::default()
                },
                ..d.clone()
            },
            "processes::top",
        ),
        (
            MemoryReceiverConfig {
                processes: ProcessesConfig {
                    include: Some(NameMatchConfig {
                        names: vec!["(".into()],
                        match_type: MatchType::Regexp,
                    }),
                    ..ProcessesConfig::default()
                },
                ..d.clone()
            },
            "processes::include",
        ),
        (
            MemoryReceiverConfig {
                cgroups: CgroupsConfig {
                    include: vec!["[".into()],
                    ..CgroupsConfig::default()
                },
                ..d.clone()
            },
            "cgroups::include",
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
        assert_eq!(err.key.as_deref(), Some(key), "{err}");
    }
}

// ---- this machine's /proc ----

/// A python3 child that sets its comm to `name`, allocates and touches
/// `mib` MiB (a bounded allocation), says "ready" and sleeps.
struct Hog {
    child: Child,
}

impl Hog {
    fn spawn(name: &str, mib: usize, extra_args: &[&str]) -> Option<Hog> {
        let script = format!(
            "import ctypes, sys, time
ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)
a = bytearray({mib} << 20)
for i in range(0, len(a), 4096): a[i] = 1
print('ready', flush=True)
time.sleep(120)"
        );
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(extra_args)
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take()?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).ok()?;
        (line.trim() == "ready").then_some(Hog { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn vm_rss(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kb * KIB
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn live_config(include_regex: &str, top: usize) -> MemoryReceiverConfig {
    MemoryReceiverConfig {
        processes: ProcessesConfig {
            top,
            include: Some(NameMatchConfig {
                names: vec![include_regex.to_string()],
                match_type: MatchType::Regexp,
            }),
            ..ProcessesConfig::default()
        },
        cgroups: CgroupsConfig {
            enabled: false,
            ..CgroupsConfig::default()
        },
        ..MemoryReceiverConfig::default()
    }
}

/// Three children of 16, 48 and 96 MiB: top 2 are the two largest, largest
/// first, and each one's RSS is exactly its VmRSS.
#[test]
fn top_processes_of_this_machine_with_their_rss() {
    // Anchored at both ends: another test binary's children (tag omt1234
    // against omt12345) must not match.
    let tag = format!("omt{}", std::process::id() % 100_000);
    let (Some(small), Some(medium), Some(large)) = (
        Hog::spawn(&format!("{tag}s"), 16, &[]),
        Hog::spawn(&format!("{tag}m"), 48, &[]),
        Hog::spawn(
            &format!("{tag}l"),
            96,
            &["--password=hunter2", "--token", "t0k"],
        ),
    ) else {
        eprintln!("SKIPPED top_processes_of_this_machine_with_their_rss: cannot run python3");
        return;
    };
    let mut s = Scraper::new(&live_config(&format!("^{tag}[sml]$"), 2)).expect("scraper");
    // A child that said "ready" may still be on its way into its sleep
    // (faulting pages in), so its RSS may change under a scrape: scrape
    // until the RSS of both held still across one.
    let deadline = std::time::Instant::now() + crate::test_support::WAIT;
    let (rms, stable_rss) = loop {
        let rss_before = [large.vm_rss(), medium.vm_rss()];
        let rms = s.scrape();
        let rss_after = [large.vm_rss(), medium.vm_rss()];
        if rss_before == rss_after {
            break (rms, rss_after);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the children's RSS never held still: {rss_before:?} -> {rss_after:?}"
        );
    };
    let pts = flatten(&rms);
    let pids = resource_pids(&rms);
    assert_eq!(pids, [large.pid().to_string(), medium.pid().to_string()]);
    for (hog, vm_rss) in [&large, &medium].into_iter().zip(stable_rss) {
        let mine: Vec<Pt> = pts
            .iter()
            .filter(|p| p.resource.get("process.pid") == Some(&hog.pid().to_string()))
            .cloned()
            .collect();
        let rss = one(&mine, "process.memory.usage", &[]);
        assert_eq!(rss, vm_rss, "pid {}", hog.pid());
        assert!(rss >= 48.0 * KIB * KIB);
        assert!(one(&mine, "process.memory.virtual", &[]) > rss);
        // SAFETY: no preconditions.
        let me = unsafe { libc::getpid() }.to_string();
        assert_eq!(mine[0].resource.get("process.parent_pid"), Some(&me));
        assert!(mine[0]
            .resource
            .get("process.executable.path")
            .is_some_and(|p| p.contains("python")));
    }
    let large_cmd = rms
        .iter()
        .filter_map(|rm| rm.resource.as_ref())
        .map(|r| kv_map(&r.attributes))
        .find(|r| r["process.pid"] == large.pid().to_string())
        .and_then(|r| r.get("process.command_line").cloned())
        .expect("command line");
    assert!(
        large_cmd.ends_with("--password=*** --token ***"),
        "{large_cmd}"
    );
    assert!(!large_cmd.contains("hunter2") && !large_cmd.contains("t0k"));
    drop(small);
    assert_eq!(s.warnings(), 0, "{:?}", s.warned());
}

/// Processes that exit between the listing and the reads are skipped
/// without a word: scrape everything (top 10000) while a thread starts and
/// kills short-lived processes as fast as it can. Problems of the processes
/// that stay (here: pid 1's `exe` may be unreadable even to root) are those
/// of a scrape before the churn.
///
/// What is counted is controlled, not the machine's speed: the scrapes go
/// on until the churn has started and reaped `CHURNED` processes during
/// them and at least `SCRAPES` scrapes ran, whichever comes last (a fast
/// machine scrapes faster than it churns, a slow one the other way round).
/// Cgroups are not scraped: the machine's cgroup tree is shared with
/// whatever else runs, and is not what this test is about.
#[test]
fn vanishing_processes_are_skipped_silently() {
    const CHURNED: u32 = 200;
    const SCRAPES: usize = 100;
    let cfg = MemoryReceiverConfig {
        processes: ProcessesConfig {
            top: MAX_TOP,
            ..ProcessesConfig::default()
        },
        cgroups: CgroupsConfig {
            enabled: false,
            ..CgroupsConfig::default()
        },
        ..MemoryReceiverConfig::default()
    };
    let mut s = Scraper::new(&cfg).expect("scraper");
    s.scrape();
    let before: BTreeSet<String> = s.warned().into_iter().map(str::to_string).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Processes started and reaped so far.
    let reaped = Arc::new(AtomicU32::new(0));
    let churn = {
        let (stop, reaped) = (Arc::clone(&stop), Arc::clone(&reaped));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut children: Vec<Child> = (0..8)
                    .filter_map(|_| Command::new("sleep").arg("0.005").spawn().ok())
                    .collect();
                for (i, c) in children.iter_mut().enumerate() {
                    if i % 2 == 0 {
                        let _ = c.kill();
                    }
                    if c.wait().is_ok() {
                        reaped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let deadline = std::time::Instant::now() + crate::test_support::WAIT;
    let reaped_at_start = reaped.load(Ordering::Relaxed);
    let churned = || reaped.load(Ordering::Relaxed) - reaped_at_start;
    let (mut scrapes, mut described) = (0, 0);
    while scrapes < SCRAPES || churned() < CHURNED {
        assert!(
            std::time::Instant::now() < deadline,
            "{scrapes} scrapes and {} processes churned in {:?}",
            churned(),
            crate::test_support::WAIT
        );
        described += s.scrape().len();
        scrapes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("churn thread");
    assert!(described > 100, "processes were described: {described}");
    let after: BTreeSet<String> = s.warned().into_iter().map(str::to_string).collect();
    assert_eq!(after, before, "a vanished process is not a problem");
}

/// This machine's system figures: `used` is MemTotal - MemAvailable as read
/// here (give or take what changed between the two reads).
#[test]
fn live_system_used_is_total_less_available() {
    let field = |meminfo: &str, name: &str| -> f64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .expect(name)
            * KIB
    };
    let before = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let mut cfg = live_config("^none$", 1);
    cfg.processes.enabled = false;
    let pts = flatten(&Scraper::new(&cfg).expect("scraper").scrape());
    let after = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let used = one(
        &pts,
        "system.memory.usage",
        &[("system.memory.state", "used")],
    );
    let [a, b] = [&before, &after].map(|m| field(m, "MemTotal:") - field(m, "MemAvailable:"));
    // Other tests allocate meanwhile: a margin of 5% of the machine.
    let margin = 0.05 * field(&after, "MemTotal:");
    assert!(
        used >= a.min(b) - margin && used <= a.max(b) + margin,
        "used {used} vs MemTotal - MemAvailable {a} .. {b}"
    );
    if Path::new("/proc/pressure/memory").exists() {
        assert_eq!(find(&pts, "system.memory.psi.avg", &[]).len(), 6);
    }
}
