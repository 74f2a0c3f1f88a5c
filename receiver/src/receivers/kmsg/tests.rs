use std::io::Write as _;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, ResourceMetrics};
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::extensions::file_storage::{FileStorage, FileStorageConfig};
use crate::extensions::Extensions;
use crate::metric_catalog::checks::assert_emitted_per_catalog;
use crate::pipeline::consumer::testing::Collect;
use crate::telemetry::Telemetry;
use crate::test_support::wait_until_async;

const SAMPLE: &str = include_str!("../../../../tests/data/kmsg-memcg-oom.txt");
const TIMEOUT: Duration = crate::test_support::WAIT;

struct Harness {
    _dir: tempfile::TempDir,
    dump: PathBuf,
    boot_id: PathBuf,
    storage: Arc<FileStorage>,
}

impl Harness {
    fn new(dump: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let dump_path = dir.path().join("kmsg.txt");
        std::fs::write(&dump_path, dump).unwrap();
        let boot_id = dir.path().join("boot_id");
        std::fs::write(&boot_id, "boot-a\n").unwrap();
        let storage = FileStorage::open(
            &FileStorageConfig {
                directory: dir.path().join("state"),
                ..FileStorageConfig::default()
            },
            &"file_storage".parse().unwrap(),
        )
        .unwrap();
        Harness {
            _dir: dir,
            dump: dump_path,
            boot_id,
            storage,
        }
    }

    fn append(&self, lines: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.dump)
            .unwrap();
        file.write_all(lines.as_bytes()).unwrap();
    }

    fn config(&self, include_all: bool) -> KmsgReceiverConfig {
        KmsgReceiverConfig {
            path: self.dump.clone(),
            start_at: StartAtConfig::Beginning,
            storage: Some("file_storage".parse().unwrap()),
            include_all,
            ..KmsgReceiverConfig::default()
        }
    }

    fn stored(&self) -> Option<u64> {
        let kv = self
            .storage
            .kv("receiver", &"kmsg".parse().unwrap())
            .unwrap();
        checkpoint::load(&kv, "boot-a").unwrap()
    }

    fn store(&self, boot_id: &str, seq: u64) {
        let kv = self
            .storage
            .kv("receiver", &"kmsg".parse().unwrap())
            .unwrap();
        checkpoint::store(
            &kv,
            &checkpoint::Checkpoint {
                boot_id: boot_id.into(),
                seq,
            },
        )
        .unwrap();
    }

    /// Runs the receiver over the dump until a record with sequence number
    /// `until` (or, with `None`, `records` log records) came out; then shuts
    /// it down and waits until every acknowledgement was written. Returns
    /// every log record and the last metrics.
    async fn run(
        &self,
        cfg: &KmsgReceiverConfig,
        settle: DeliveryStatus,
        until: Until,
    ) -> (Vec<LogRecord>, Option<ResourceMetrics>) {
        let mut extensions = Extensions::default();
        extensions
            .storages
            .insert("file_storage".parse().unwrap(), Arc::clone(&self.storage));
        let shutdown = CancellationToken::new();
        let ctx = BuildContext {
            id: "kmsg".parse().unwrap(),
            telemetry: Telemetry::noop(),
            extensions: Arc::new(extensions),
            shutdown: shutdown.clone(),
        };
        let (logs, mut logs_rx) = Collect::new(Some(settle));
        let (metrics, mut metrics_rx) = Collect::new(Some(DeliveryStatus::Delivered));
        let receiver = launch(
            cfg,
            ctx,
            ReceiverOutputs {
                logs: Some(logs),
                metrics: Some(metrics),
            },
            &self.boot_id,
        )
        .await
        .unwrap();
        let mut records = Vec::new();
        tokio::time::timeout(TIMEOUT, async {
            while !until.reached(&records) {
                let batch = logs_rx.recv().await.expect("the receiver ended early");
                records.extend(log_records(&batch));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {until:?} within {TIMEOUT:?}: {records:#?}"));
        shutdown.cancel();
        tokio::time::timeout(TIMEOUT, receiver)
            .await
            .unwrap()
            .unwrap();
        // The checkpoint writer is detached: it ends once every batch was
        // settled and the last checkpoint written. The runtime is this
        // test's own, so once no task is alive it is done.
        wait_until_async("the receiver's tasks ending", || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
                == 0
        })
        .await;
        records.extend(drain(&mut logs_rx).iter().flat_map(log_records));
        let last_metrics = drain(&mut metrics_rx)
            .last()
            .map(|batch| match &*batch.payload {
                Payload::Metrics(rm) => rm[0].clone(),
                Payload::Logs(_) => panic!("logs on the metrics output"),
            });
        if let Some(rm) = &last_metrics {
            assert_emitted_per_catalog(std::slice::from_ref(rm), metrics::ALL);
        }
        (records, last_metrics)
    }
}

#[derive(Debug, Clone, Copy)]
enum Until {
    Seq(u64),
    Records(usize),
    /// A record whose body contains this text.
    Body(&'static str),
}

impl Until {
    fn reached(self, records: &[LogRecord]) -> bool {
        match self {
            Until::Seq(seq) => records
                .iter()
                .any(|r| int_attr(r, "oomscope.kmsg.sequence") == Some(seq as i64)),
            Until::Records(n) => records.len() >= n,
            Until::Body(text) => records.iter().any(|r| body(r).contains(text)),
        }
    }
}

fn drain(rx: &mut UnboundedReceiver<Batch>) -> Vec<Batch> {
    let mut batches = Vec::new();
    while let Ok(batch) = rx.try_recv() {
        batches.push(batch);
    }
    batches
}

fn log_records(batch: &Batch) -> Vec<LogRecord> {
    match &*batch.payload {
        Payload::Logs(rl) => rl
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| sl.log_records.clone())
            .collect(),
        Payload::Metrics(_) => panic!("metrics on the logs output"),
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn int_attr(record: &LogRecord, key: &str) -> Option<i64> {
    match attr(&record.attributes, key) {
        Some(any_value::Value::IntValue(v)) => Some(*v),
        _ => None,
    }
}

fn str_attr<'a>(record: &'a LogRecord, key: &str) -> Option<&'a str> {
    match attr(&record.attributes, key) {
        Some(any_value::Value::StringValue(v)) => Some(v),
        _ => None,
    }
}

fn body(record: &LogRecord) -> &str {
    match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(v)) => v,
        other => panic!("body {other:?}"),
    }
}

fn seqs(records: &[LogRecord]) -> Vec<u64> {
    records
        .iter()
        .filter(|r| str_attr(r, "oom.pattern").is_none())
        .filter_map(|r| int_attr(r, "oomscope.kmsg.sequence"))
        .map(|seq| seq as u64)
        .collect()
}

/// A cumulative point of `name` (with `oom.pattern` = `pattern` when given).
fn counter(metrics: &ResourceMetrics, name: &str, pattern: Option<&str>) -> Option<i64> {
    let metric = metrics.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)?;
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        panic!("{name} is not a Sum");
    };
    assert!(sum.is_monotonic);
    sum.data_points
        .iter()
        .find(|p| {
            pattern.is_none_or(|pattern| {
                matches!(attr(&p.attributes, "oom.pattern"), Some(any_value::Value::StringValue(v)) if v == pattern)
            })
        })
        .and_then(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        })
}

/// Two estimates of boot time agree (they differ by the time between two
/// clock reads; a second is generous).
fn assert_close(a: u64, b: u64) {
    assert!(a.abs_diff(b) < 1_000_000_000, "{a} vs {b}");
}

/// `count` plain records from `first_seq` on.
fn plain_lines(first_seq: u64, count: u64) -> String {
    (first_seq..first_seq + count)
        .map(|seq| {
            format!(
                "6,{seq},{},-;plain line {seq}\n SUBSYSTEM=test\n",
                500_000_000 + seq
            )
        })
        .collect()
}

/// The sample up to and including its complete report (seq 341..=418).
fn sample_report() -> String {
    SAMPLE
        .lines()
        .take_while(|line| !line.starts_with("4,419,"))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[tokio::test]
async fn the_oom_report_is_one_record_with_its_fields() {
    let harness = Harness::new(SAMPLE);
    let cfg = KmsgReceiverConfig {
        storage: None,
        ..harness.config(false)
    };
    let (records, metrics) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Records(1))
        .await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let report = &records[0];
    assert_eq!(str_attr(report, "oom.pattern"), Some("kernel.oom_report"));
    assert_eq!(str_attr(report, "oom.runtime"), Some("kernel"));
    assert_eq!(report.severity_text, "ERROR");
    assert_eq!(int_attr(report, "oomscope.kmsg.sequence"), Some(418));
    assert_eq!(int_attr(report, "oomscope.kmsg.sequence.first"), Some(341));
    assert_eq!(int_attr(report, "oomscope.kmsg.priority"), Some(3));
    assert_eq!(int_attr(report, "oomscope.kmsg.facility"), Some(0));
    assert_eq!(
        int_attr(report, "oomscope.kmsg.timestamp_monotonic_us"),
        Some(391799786)
    );
    assert_eq!(str_attr(report, "oom.trigger.comm"), Some("python3"));
    assert_eq!(int_attr(report, "oom.trigger.pid"), Some(11976));
    assert_eq!(str_attr(report, "oom.gfp_mask"), Some("0xcc0(GFP_KERNEL)"));
    assert_eq!(int_attr(report, "oom.order"), Some(0));
    assert_eq!(str_attr(report, "oom.constraint"), Some("CONSTRAINT_MEMCG"));
    assert_eq!(str_attr(report, "oom.memcg"), Some("/oomtest"));
    assert_eq!(str_attr(report, "oom.victim.cgroup"), Some("/oomtest"));
    assert_eq!(str_attr(report, "oom.trigger_type"), Some("cgroup"));
    assert_eq!(int_attr(report, "process.pid"), Some(11976));
    assert_eq!(str_attr(report, "oom.victim.comm"), Some("python3"));
    assert_eq!(int_attr(report, "oom.victim.anon_rss"), Some(50816 * 1024));
    assert_eq!(int_attr(report, "oom.victim.total_vm"), Some(67784 * 1024));
    assert_eq!(int_attr(report, "oom.memcg.limit"), Some(51200 * 1024));
    assert_eq!(int_attr(report, "oom.memcg.usage"), Some(51200 * 1024));
    assert_eq!(int_attr(report, "oom.tasks.count"), Some(1));
    match attr(&report.attributes, "oom.tasks.largest") {
        Some(any_value::Value::ArrayValue(rows)) => {
            assert_eq!(rows.values.len(), 1);
            assert!(
                format!("{:?}", rows.values[0]).contains("pid=11976"),
                "{rows:?}"
            );
        }
        other => panic!("oom.tasks.largest {other:?}"),
    }
    // The body is the whole block, first line to "Killed process".
    let text = body(report);
    assert!(text.starts_with("python3 invoked oom-killer:"), "{text}");
    assert!(
        text.contains("\nTasks state (memory values in pages):\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("Memory cgroup out of memory: Killed process 11976"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 78);
    // Monotonic time turned into wall-clock time.
    assert_close(report.time_unix_nano, Clock::now().unix_nano(391799786));

    let metrics = metrics.expect("metrics at shutdown");
    assert_eq!(
        counter(&metrics, "oom.log.matches", Some("kernel.oom_report")),
        Some(1)
    );
    assert_eq!(
        counter(&metrics, "oomscope.kmsg.records.lost", None),
        Some(0)
    );
}

/// `oom_reports: false` (an `oom` receiver reports kills): neither the
/// assembled report nor a lone kill line is sent, other memory trouble is.
#[tokio::test]
async fn with_oom_reports_off_kills_are_left_to_the_oom_receiver() {
    let dump = format!(
        "{}{}{}{}",
        sample_report(),
        "3,419,400000000,-;Out of memory: Killed process 999 (x) total-vm:1000kB, anon-rss:500kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:10kB oom_score_adj:0\n",
        // A kill-report line no report is assembled from (older kernels).
        "3,420,400000001,-;Task in /app killed as a result of limit of /app\n",
        "4,421,400000002,-;worker: page allocation failure: order:4, mode:0x40dc0(GFP_KERNEL|__GFP_COMP|__GFP_ZERO), nodemask=(null)\n",
    );
    let harness = Harness::new(&dump);
    let cfg = KmsgReceiverConfig {
        storage: None,
        oom_reports: false,
        ..harness.config(false)
    };
    let (records, metrics) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Seq(421))
        .await;
    let patterns: Vec<_> = records.iter().map(|r| str_attr(r, "oom.pattern")).collect();
    assert_eq!(patterns, [Some("kernel.page_allocation_failure")]);
    // Captures are typed as in the oom receiver's record.
    assert_eq!(int_attr(&records[0], "oom.order"), Some(4));
    assert_eq!(str_attr(&records[0], "oom.trigger.comm"), Some("worker"));
    assert_eq!(
        str_attr(&records[0], "oom.gfp_mask"),
        Some("0x40dc0(GFP_KERNEL|__GFP_COMP|__GFP_ZERO)")
    );
    let metrics = metrics.expect("metrics at shutdown");
    assert_eq!(
        counter(&metrics, "oom.log.matches", Some("kernel.oom_report")),
        None
    );

    // The same dump with the default: the report, the lone kill line (a
    // report whose header the kernel's rate limit ate) and the rest.
    let (records, _) = harness
        .run(
            &KmsgReceiverConfig {
                storage: None,
                ..harness.config(false)
            },
            DeliveryStatus::Delivered,
            Until::Seq(421),
        )
        .await;
    let patterns: Vec<_> = records.iter().map(|r| str_attr(r, "oom.pattern")).collect();
    assert_eq!(
        patterns,
        [
            Some("kernel.oom_report"),
            Some("kernel.oom_report"),
            Some("kernel.memcg_limit_legacy"),
            Some("kernel.page_allocation_failure")
        ]
    );
}

#[tokio::test]
async fn every_record_with_include_all_and_gaps_are_reported() {
    let harness = Harness::new("4,10,1000,-;first\n SUBSYSTEM=net\n DEVICE=n2\n6,11,2000,c;second\n6,15,3000,-;after the gap\n");
    let cfg = KmsgReceiverConfig {
        storage: None,
        ..harness.config(true)
    };
    let (records, metrics) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Seq(15))
        .await;
    assert_eq!(records.len(), 4, "{records:#?}");
    assert_eq!(body(&records[0]), "first");
    assert_eq!(records[0].severity_text, "WARN");
    assert_eq!(int_attr(&records[0], "oomscope.kmsg.priority"), Some(4));
    assert_eq!(
        str_attr(&records[0], "oomscope.kmsg.subsystem"),
        Some("net")
    );
    assert_eq!(str_attr(&records[0], "oomscope.kmsg.device"), Some("n2"));
    assert_eq!(records[1].severity_text, "INFO");
    assert_eq!(
        attr(&records[1].attributes, "oomscope.kmsg.continuation"),
        Some(&any_value::Value::BoolValue(true))
    );
    assert_eq!(records[2].severity_text, "WARN");
    assert_eq!(int_attr(&records[2], "oomscope.kmsg.gap.missed"), Some(3));
    assert_eq!(body(&records[3]), "after the gap");
    assert_eq!(
        counter(
            &metrics.expect("metrics"),
            "oomscope.kmsg.records.lost",
            None
        ),
        Some(3)
    );
}

#[tokio::test]
async fn delivered_records_advance_the_checkpoint_and_a_restart_repeats_nothing() {
    let harness = Harness::new(&format!("{}{}", sample_report(), plain_lines(419, 5)));
    let cfg = harness.config(true);
    let (first, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Seq(423))
        .await;
    assert_eq!(seqs(&first), (341..=423).collect::<Vec<_>>());
    assert_eq!(
        first
            .iter()
            .filter(|r| str_attr(r, "oom.pattern") == Some("kernel.oom_report"))
            .count(),
        1
    );
    assert_eq!(harness.stored(), Some(423));

    harness.append(&plain_lines(424, 5));
    let (second, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Seq(428))
        .await;
    assert_eq!(
        seqs(&second),
        (424..=428).collect::<Vec<_>>(),
        "{second:#?}"
    );
    assert_eq!(harness.stored(), Some(428));
}

#[tokio::test]
async fn failed_records_do_not_advance_the_checkpoint_and_are_read_again() {
    let harness = Harness::new(&plain_lines(1, 5));
    let cfg = harness.config(true);
    let (first, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Seq(5))
        .await;
    assert_eq!(seqs(&first), (1..=5).collect::<Vec<_>>());
    assert_eq!(harness.stored(), Some(5));

    harness.append(&plain_lines(6, 5));
    let (failed, _) = harness
        .run(&cfg, DeliveryStatus::Failed, Until::Seq(10))
        .await;
    assert_eq!(seqs(&failed), (6..=10).collect::<Vec<_>>());
    assert_eq!(
        harness.stored(),
        Some(5),
        "a failed batch moved the checkpoint"
    );

    let (again, _) = harness
        .run(&cfg, DeliveryStatus::Rejected, Until::Seq(10))
        .await;
    assert_eq!(seqs(&again), (6..=10).collect::<Vec<_>>());
    // Rejected for good: retrying would not help, so it counts as done.
    assert_eq!(harness.stored(), Some(10));
}

#[tokio::test]
async fn the_checkpoint_waits_for_an_oom_report_still_being_assembled() {
    // The sample ends two records into a second report.
    let harness = Harness::new(SAMPLE);
    let cfg = harness.config(false);
    let (records, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Records(1))
        .await;
    assert_eq!(records.len(), 1);
    assert_eq!(harness.stored(), Some(418));
    // The rest of that report arrives after a restart: it is whole.
    harness.append(
        &SAMPLE
            .lines()
            .skip(2)
            .take(76)
            .map(|line| {
                // Renumber the first report's lines 343..=418 as 421..=496.
                let (head, message) = line.split_once(';').unwrap();
                let mut fields = head.split(',');
                let prefix = fields.next().unwrap();
                let seq: u64 = fields.next().unwrap().parse().unwrap();
                format!("{prefix},{},465071900,-;{message}\n", seq + 78)
            })
            .collect::<String>(),
    );
    let (records, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Records(1))
        .await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(
        int_attr(&records[0], "oomscope.kmsg.sequence.first"),
        Some(419)
    );
    assert_eq!(int_attr(&records[0], "oom.trigger.pid"), Some(12574));
    assert_eq!(harness.stored(), Some(496));
}

#[tokio::test]
async fn a_checkpoint_from_another_boot_is_ignored() {
    let harness = Harness::new(&plain_lines(1, 5));
    harness.store("boot-before", 3);
    let cfg = harness.config(true);
    let (records, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Seq(5))
        .await;
    // start_at: beginning, not after 3.
    assert_eq!(seqs(&records), (1..=5).collect::<Vec<_>>());
    assert_eq!(harness.stored(), Some(5));

    // From this boot it counts.
    harness.store("boot-a", 3);
    let (records, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Seq(5))
        .await;
    assert_eq!(seqs(&records), vec![4, 5]);
}

#[test]
fn config_defaults_and_checks() {
    let cfg: KmsgReceiverConfig = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(cfg, KmsgReceiverConfig::default());
    assert_eq!(cfg.start_at, StartAtConfig::End);
    assert_eq!(cfg.batch_wait.get(), Duration::from_millis(200));
    assert_eq!(cfg.max_unacknowledged_batches, 64);
    assert!(cfg.validate().is_ok());
    let cfg: KmsgReceiverConfig = serde_json::from_value(serde_json::json!({
        "path": "/tmp/k", "start_at": "beginning", "storage": "file_storage/kmsg",
        "include_all": true, "batch_wait": "1s", "max_batch_records": 10,
        "max_unacknowledged_batches": 2, "metrics_interval": "1m",
        "patterns": [{"name": "mine", "regex": "xyz(?P<y>.)", "runtime": "other"}],
    }))
    .unwrap();
    assert!(cfg.validate().is_ok());
    assert_eq!(cfg.start_at, StartAtConfig::Beginning);
    assert!(
        serde_json::from_value::<KmsgReceiverConfig>(serde_json::json!({"start": "end"})).is_err()
    );
    assert!(serde_json::from_value::<KmsgReceiverConfig>(
        serde_json::json!({"start_at": "middle"})
    )
    .is_err());
    for bad in [
        serde_json::json!({"max_batch_records": 0}),
        serde_json::json!({"max_unacknowledged_batches": 0}),
        serde_json::json!({"metrics_interval": "0s"}),
        serde_json::json!({"batch_wait": "2m"}),
        serde_json::json!({"path": ""}),
    ] {
        let cfg: KmsgReceiverConfig = serde_json::from_value(bad.clone()).unwrap();
        assert!(cfg.validate().is_err(), "{bad}");
    }
}

/// Whether this test can use the real /dev/kmsg (root, readable).
fn dev_kmsg_usable(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED {test}: not root (writing /dev/kmsg needs root)");
        return false;
    }
    if let Err(err) = std::fs::File::open("/dev/kmsg") {
        eprintln!("SKIPPED {test}: /dev/kmsg is not readable: {err}");
        return false;
    }
    true
}

#[tokio::test]
async fn dev_kmsg_records_arrive_with_their_kmsg_fields() {
    if !dev_kmsg_usable("dev_kmsg_records_arrive_with_their_kmsg_fields") {
        return;
    }
    let shutdown = CancellationToken::new();
    let ctx = BuildContext {
        id: "kmsg".parse().unwrap(),
        telemetry: Telemetry::noop(),
        extensions: Arc::new(Extensions::default()),
        shutdown: shutdown.clone(),
    };
    let cfg = KmsgReceiverConfig {
        include_all: true,
        batch_wait: GoDuration::from_millis(20),
        ..KmsgReceiverConfig::default()
    };
    let (logs, mut rx) = Collect::new(Some(DeliveryStatus::Delivered));
    let handle = start(
        &cfg,
        ctx,
        ReceiverOutputs {
            logs: Some(logs),
            metrics: None,
        },
    )
    .await
    .unwrap();
    // The kernel log is shared with everything else on the machine: a
    // burst from another writer may overwrite the line before the receiver
    // reads it (the receiver then reports a gap). Write another line then,
    // until one arrives, within a generous bound.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let (token, record) = 'arrived: loop {
        let token = format!("{:016x}", rand::random::<u64>());
        let line = format!(
            "<3>oomscope-kmsg-recv-test {token} page allocation failure: order:4, mode:0x40cc0\n"
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        loop {
            let batch = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("the record arrives")
                .expect("receiver ended");
            let records = log_records(&batch);
            if let Some(record) = records.into_iter().find(|r| body(r).contains(&token)) {
                break 'arrived (token, record);
            }
            let gap = log_records(&batch).iter().any(|r| {
                int_attr(r, "oomscope.kmsg.sequence").is_none()
                    && body(r).ends_with("were overwritten before they were read")
            });
            if gap {
                continue 'arrived;
            }
        }
    };
    shutdown.cancel();
    tokio::time::timeout(TIMEOUT, handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        body(&record),
        format!("oomscope-kmsg-recv-test {token} page allocation failure: order:4, mode:0x40cc0")
    );
    assert_eq!(int_attr(&record, "oomscope.kmsg.priority"), Some(3));
    // Written from user space: LOG_USER.
    assert_eq!(int_attr(&record, "oomscope.kmsg.facility"), Some(1));
    // The pattern library recognises the page allocation failure: its
    // severity (WARN) wins over the record's level.
    assert_eq!(record.severity_text, "WARN");
    assert!(
        record.attributes.iter().any(|kv| kv.key == "oom.pattern"
            && kv.value.as_ref().and_then(|v| v.value.as_ref())
                == Some(
                    &opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        "kernel.page_allocation_failure".into()
                    )
                )),
        "{record:?}"
    );
    assert!(int_attr(&record, "oomscope.kmsg.sequence").is_some());
    let monotonic_us = int_attr(&record, "oomscope.kmsg.timestamp_monotonic_us").unwrap();
    assert_close(
        record.time_unix_nano,
        Clock::now().unix_nano(monotonic_us as u64),
    );
}

/// Started at the end with no checkpoint, the receiver stores the end as
/// its first checkpoint: stopped before any new record and started again,
/// it reads what was logged while it was down (it used to start at the end
/// again and skip it).
#[tokio::test]
async fn a_first_start_at_the_end_is_checkpointed_so_a_restart_misses_nothing() {
    const TEST: &str = "a_first_start_at_the_end_is_checkpointed_so_a_restart_misses_nothing";
    if !dev_kmsg_usable(TEST) {
        return;
    }
    let harness = Harness::new("");
    let cfg = KmsgReceiverConfig {
        path: "/dev/kmsg".into(),
        start_at: StartAtConfig::End,
        batch_wait: GoDuration::from_millis(20),
        ..harness.config(false)
    };
    // Up and down again before anything new is logged.
    let shutdown = CancellationToken::new();
    let mut extensions = Extensions::default();
    extensions.storages.insert(
        "file_storage".parse().unwrap(),
        Arc::clone(&harness.storage),
    );
    let ctx = BuildContext {
        id: "kmsg".parse().unwrap(),
        telemetry: Telemetry::noop(),
        extensions: Arc::new(extensions),
        shutdown: shutdown.clone(),
    };
    let (logs, _logs_rx) = Collect::new(Some(DeliveryStatus::Delivered));
    let receiver = launch(
        &cfg,
        ctx,
        ReceiverOutputs {
            logs: Some(logs),
            metrics: None,
        },
        &harness.boot_id,
    )
    .await
    .unwrap();
    wait_until_async("the first checkpoint is stored", || {
        harness.stored().is_some()
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(TIMEOUT, receiver)
        .await
        .unwrap()
        .unwrap();
    wait_until_async("the receiver's tasks ending", || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            == 0
    })
    .await;

    // Logged while the receiver is down.
    const TOKEN: &str = "oomscope-kmsg-first-checkpoint-test";
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .unwrap()
        .write_all(
            format!("<3>{TOKEN} page allocation failure: order:4, mode:0x40cc0\n").as_bytes(),
        )
        .unwrap();
    let (records, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Body(TOKEN))
        .await;
    assert!(records.iter().any(|r| body(r).contains(TOKEN)));
}

/// A report that ends without its "Killed process" line (the kernel let an
/// exiting victim go; a report cut by the next one) is still sent, with
/// what it had and a note, as a warning.
#[tokio::test]
async fn reports_without_a_kill_are_sent_with_a_note() {
    let dump = "\
4,1,1000,-;java invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
4,2,1001,-;CPU: 1 UID: 0 PID: 77 Comm: java Not tainted 6.1.0 #1
3,3,1002,-;Memory cgroup out of memory: OOM victim 77 (java) is already exiting. Skip killing the task
4,4,2000,-;bash invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
4,5,3000,-;bash invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
3,6,3001,-;Memory cgroup out of memory: Killed process 88 (bash) total-vm:10kB, anon-rss:5kB, file-rss:1kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0
";
    let harness = Harness::new(dump);
    let cfg = KmsgReceiverConfig {
        storage: None,
        ..harness.config(false)
    };
    let (records, _) = harness
        .run(&cfg, DeliveryStatus::Delivered, Until::Records(3))
        .await;
    let summary: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.severity_text.as_str(),
                str_attr(r, "oom.report.incomplete")
                    .map(|n| n.split(':').next().unwrap_or(n).to_owned()),
                body(r).lines().count(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("WARN", Some("no process was killed".to_owned()), 3),
            (
                "WARN",
                Some("the report has no \"Killed process\" line".to_owned()),
                1
            ),
            ("ERROR", None, 2),
        ],
        "{records:#?}"
    );
    assert_eq!(
        attr(&records[0].attributes, "oom.selected.pid"),
        Some(&any_value::Value::IntValue(77))
    );
}
