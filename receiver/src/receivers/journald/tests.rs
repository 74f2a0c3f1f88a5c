//! The receiver on real journal files, written by systemd's own
//! `systemd-journal-remote` from export-format input (binary-safe, any
//! trusted field: a unit, a pid, the kernel transport, a container). The
//! tests with a real `systemd-journald` are end to end, in
//! tests/journald_receiver.rs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, ResourceMetrics};
use tokio::sync::mpsc::UnboundedReceiver;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::component::{BuildContext, ComponentConfig as _};
use crate::config::ComponentId;
use crate::extensions::file_storage::{FileStorage, FileStorageConfig};
use crate::extensions::Extensions;
use crate::pipeline::consumer::testing::Collect;
use crate::pipeline::{Batch, Payload};
use crate::pipeline::{Consumer, DeliveryStatus};
use crate::receivers::ReceiverOutputs;
use crate::telemetry::Telemetry;
use crate::test_support::WAIT;

/// systemd-journal-remote, where Debian and Fedora put it.
fn journal_remote() -> Option<PathBuf> {
    [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// The tool, or a printed reason to skip: the set-up installs it
/// (scripts/setup.sh), so only a host without it skips.
fn tool(test: &str) -> Option<PathBuf> {
    let found = journal_remote();
    if found.is_none() {
        println!("SKIPPED: {test}: systemd-journal-remote is not installed (scripts/setup.sh installs it: apt-get install systemd-journal-remote)");
    }
    found
}

/// One journal entry: fields in order (values may be binary).
#[derive(Clone, Debug)]
struct Entry(Vec<(String, Vec<u8>)>);

static CLOCK: AtomicU64 = AtomicU64::new(0);
const BOOT_ID: &str = "6c7c6013a8894ec7a7bd0ba48ae3a0ba";

impl Entry {
    /// An entry of `unit`'s process `pid`, as journald writes one from a
    /// service's stdout.
    fn unit(unit: &str, pid: u32, message: &str) -> Entry {
        Entry::bare(message)
            .with("_SYSTEMD_UNIT", unit)
            .with("_SYSTEMD_CGROUP", &format!("/system.slice/{unit}"))
            .with("_PID", &pid.to_string())
            .with("_UID", "1000")
            .with("_COMM", "java")
            .with("_EXE", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java")
            .with("_CMDLINE", "java -Xmx16m --db-password=hunter2 Grow")
            .with("_TRANSPORT", "stdout")
            .with("SYSLOG_IDENTIFIER", "java")
            .with("PRIORITY", "6")
    }

    /// An entry with only the journal's own fields and the message.
    fn bare(message: &str) -> Entry {
        let n = CLOCK.fetch_add(1, Ordering::Relaxed);
        let now = crate::clock::unix_now_nanos() / 1000;
        Entry(vec![
            (
                "__REALTIME_TIMESTAMP".into(),
                (now + n).to_string().into_bytes(),
            ),
            (
                "__MONOTONIC_TIMESTAMP".into(),
                (1_000_000 + n).to_string().into_bytes(),
            ),
            ("_BOOT_ID".into(), BOOT_ID.as_bytes().to_vec()),
            ("MESSAGE".into(), message.as_bytes().to_vec()),
        ])
    }

    fn with(mut self, name: &str, value: &str) -> Entry {
        self.0.retain(|(n, _)| n != name);
        self.0.push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    fn with_bytes(mut self, name: &str, value: &[u8]) -> Entry {
        self.0.retain(|(n, _)| n != name);
        self.0.push((name.to_owned(), value.to_vec()));
        self
    }

    /// Journal export format: `NAME=value`, or for binary values `NAME`, a
    /// little-endian 64-bit length and the bytes.
    fn export(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.0 {
            let binary = value
                .iter()
                .any(|&b| b == b'\n' || b < 0x20 && b != b'\t' || b >= 0x7f);
            out.extend_from_slice(name.as_bytes());
            if binary && !name.starts_with("__") {
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            } else {
                out.push(b'=');
            }
            out.extend_from_slice(value);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

/// Appends `entries` to the journal file `path` (created if missing) with
/// systemd-journal-remote.
fn write_journal(remote: &Path, path: &Path, entries: &[Entry]) {
    let mut input = Vec::new();
    for e in entries {
        e.export(&mut input);
    }
    let mut child = Command::new(remote)
        .arg("-o")
        .arg(path)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run systemd-journal-remote");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write the export stream");
    let output = child
        .wait_with_output()
        .expect("systemd-journal-remote ends");
    assert!(
        output.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn config(dir: &Path) -> JournaldReceiverConfig {
    JournaldReceiverConfig {
        directory: Some(dir.to_owned()),
        start_at: StartAt::Beginning,
        batch_wait: crate::config::GoDuration::from_millis(20),
        force_flush_period: crate::config::GoDuration::from_millis(200),
        poll_interval: crate::config::GoDuration::from_millis(50),
        metrics_interval: crate::config::GoDuration::from_millis(100),
        ..JournaldReceiverConfig::default()
    }
}

/// A receiver under test; shut down when dropped (a failed assertion must
/// not leave its reading thread running, which would keep the test's
/// runtime from ending).
struct Running {
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    logs: UnboundedReceiver<Batch>,
    metrics: UnboundedReceiver<Batch>,
    received: Vec<(Vec<KeyValue>, LogRecord)>,
}

async fn run_with(
    cfg: &JournaldReceiverConfig,
    storage: Option<&Path>,
    receiver_types: &[&str],
    logs: Arc<dyn Consumer>,
    logs_rx: UnboundedReceiver<Batch>,
) -> Running {
    let mut extensions = Extensions::default();
    if let Some(dir) = storage {
        let id = ComponentId::new("file_storage", None);
        let fs = FileStorage::open(
            &FileStorageConfig {
                directory: dir.to_path_buf(),
                ..Default::default()
            },
            &id,
        )
        .expect("storage");
        extensions.storages.insert(id, fs);
    }
    let (metrics, metrics_rx) = Collect::new(Some(DeliveryStatus::Delivered));
    let ctx = BuildContext {
        id: ComponentId::new("journald", None),
        telemetry: Telemetry::noop(),
        extensions: Arc::new(extensions),
        shutdown: CancellationToken::new(),
    };
    let shutdown = ctx.shutdown.clone();
    let types = receiver_types.iter().map(|t| (*t).to_owned()).collect();
    let task = start(
        cfg,
        ctx,
        ReceiverOutputs {
            logs: Some(logs),
            metrics: Some(metrics),
        },
        types,
    )
    .await
    .expect("starts");
    Running {
        shutdown,
        task: Some(task),
        logs: logs_rx,
        metrics: metrics_rx,
        received: Vec::new(),
    }
}

async fn run(cfg: &JournaldReceiverConfig, storage: Option<&Path>) -> Running {
    let (collect, rx) = Collect::new(Some(DeliveryStatus::Delivered));
    run_with(cfg, storage, &[], collect, rx).await
}

fn records(batch: &Batch) -> Vec<(Vec<KeyValue>, LogRecord)> {
    let Payload::Logs(rl) = batch.payload.as_ref() else {
        return Vec::new();
    };
    rl.iter()
        .flat_map(|r: &ResourceLogs| {
            let resource = r
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            r.scope_logs
                .iter()
                .flat_map(|s| s.log_records.iter())
                .map(move |l| (resource.clone(), l.clone()))
        })
        .collect()
}

impl Running {
    /// Receives until `n` records came in all (panics after [`WAIT`]).
    async fn until(&mut self, n: usize) -> &[(Vec<KeyValue>, LogRecord)] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.received.len() < n {
            match tokio::time::timeout_at(deadline, self.logs.recv()).await {
                Ok(Some(b)) => self.received.extend(records(&b)),
                _ => panic!(
                    "{} records within {WAIT:?}, {n} expected: {:#?}",
                    self.received.len(),
                    self.bodies()
                ),
            }
        }
        &self.received
    }

    /// What else arrives within a few batch periods (this checks that
    /// something does not happen, so there is no event to wait for).
    async fn quiet(&mut self) {
        while let Ok(Some(b)) =
            tokio::time::timeout(Duration::from_millis(700), self.logs.recv()).await
        {
            self.received.extend(records(&b));
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.received.iter().map(|(_, r)| body(r)).collect()
    }

    /// A counter's latest value, waiting until it is at least `min`.
    async fn counter_at_least(&mut self, name: &str, min: i64) -> i64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let batch = tokio::time::timeout_at(deadline, self.metrics.recv())
                .await
                .unwrap_or_else(|_| panic!("{name} did not reach {min} within {WAIT:?}"))
                .expect("metrics");
            if let Payload::Metrics(rm) = batch.payload.as_ref() {
                if let Some(v) = counter(rm, name) {
                    if v >= min {
                        return v;
                    }
                }
            }
        }
    }

    async fn stop(mut self) -> Vec<(Vec<KeyValue>, LogRecord)> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let ended = tokio::time::timeout(WAIT, task).await;
            assert!(
                matches!(ended, Ok(Ok(()))),
                "the receiver did not end: {ended:?}"
            );
        }
        let mut received = std::mem::take(&mut self.received);
        while let Ok(b) = self.logs.try_recv() {
            received.extend(records(&b));
        }
        received
    }

    /// [`Running::stop`], then waits until its checkpoint writer (detached)
    /// is done too: the runtime is this test's own, so that is when no task
    /// is left. Only for a receiver running alone.
    async fn stop_and_settle(self) -> Vec<(Vec<KeyValue>, LogRecord)> {
        let received = self.stop().await;
        crate::test_support::wait_until_async("the receiver's tasks ending", || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
                == 0
        })
        .await;
        received
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn counter(rm: &[ResourceMetrics], name: &str) -> Option<i64> {
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .find_map(|m| match &m.data {
            Some(metric::Data::Sum(sum)) => sum.data_points.iter().find_map(|p| match p.value {
                Some(number_data_point::Value::AsInt(v)) => Some(v),
                _ => None,
            }),
            _ => None,
        })
}

fn body(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<any_value::Value> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.clone())
}

fn s(v: &str) -> Option<any_value::Value> {
    Some(any_value::Value::StringValue(v.to_owned()))
}

fn i(v: i64) -> Option<any_value::Value> {
    Some(any_value::Value::IntValue(v))
}

const JAVA_HEAD: &str = "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space";

fn java_frames(n: usize) -> Vec<String> {
    (0..n)
        .map(|k| format!("\tat com.example.Grow.level{k}(Grow.java:{})", 10 + k))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_trace_from_a_units_stdout_is_one_record_amid_other_units() {
    let Some(remote) = tool("a_java_trace_from_a_units_stdout_is_one_record_amid_other_units")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("remote.journal");
    let mut entries = vec![Entry::unit("web.service", 4242, "starting")];
    entries.push(Entry::unit("web.service", 4242, JAVA_HEAD));
    for (k, frame) in java_frames(30).iter().enumerate() {
        // Another unit's lines in between neither join nor end the trace.
        if k % 7 == 0 {
            entries.push(Entry::unit("db.service", 77, &format!("checkpoint {k}")));
        }
        entries.push(Entry::unit("web.service", 4242, frame));
    }
    entries.push(Entry::unit("web.service", 4242, "service stopped"));
    write_journal(&remote, &file, &entries);

    let mut r = run(&config(dir.path()), None).await;
    r.until(1).await;
    r.quiet().await;
    let got = r.stop().await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let (resource, record) = &got[0];
    let text = body(record);
    assert!(text.starts_with(JAVA_HEAD), "{text}");
    assert_eq!(text.lines().count(), 31, "{text}");
    assert!(text.ends_with("(Grow.java:39)"), "{text}");
    assert_eq!(attr(&record.attributes, "oom.runtime"), s("java"));
    // The semantic conventions' exception attributes, the trace as grouped.
    assert_eq!(
        attr(&record.attributes, "exception.type"),
        s("java.lang.OutOfMemoryError")
    );
    assert_eq!(
        attr(&record.attributes, "exception.message"),
        s("Java heap space")
    );
    assert_eq!(attr(&record.attributes, "exception.stacktrace"), s(&text));
    assert_eq!(
        attr(&record.attributes, "oom.java.error"),
        s("Java heap space")
    );
    assert_eq!(
        attr(&record.attributes, "journald._SYSTEMD_UNIT"),
        s("web.service")
    );
    assert_eq!(attr(&record.attributes, "syslog.identifier"), s("java"));
    assert_eq!(attr(&record.attributes, "journald._TRANSPORT"), s("stdout"));
    assert_eq!(attr(&record.attributes, "journald._BOOT_ID"), s(BOOT_ID));
    assert_eq!(attr(resource, "process.pid"), i(4242));
    assert_eq!(attr(resource, "process.real_user.id"), i(1000));
    assert_eq!(attr(resource, "process.executable.name"), s("java"));
    assert_eq!(
        attr(resource, "process.executable.path"),
        s("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")
    );
    assert_eq!(
        attr(resource, "process.command_line"),
        s("java -Xmx16m --db-password=*** Grow")
    );
    assert!(record.time_unix_nano > 0);
    assert!(record.severity_number >= 17, "{record:?}");
    // Every other field as journald.<FIELD>; the command line only redacted.
    assert_eq!(
        attr(&record.attributes, "journald._SYSTEMD_CGROUP"),
        s("/system.slice/web.service")
    );
    assert_eq!(attr(&record.attributes, "journald._COMM"), s("java"));
    for absent in ["journald._CMDLINE", "journald.MESSAGE", "journald._PID"] {
        assert_eq!(attr(&record.attributes, absent), None, "{absent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_and_python_out_of_memory_are_one_record_each() {
    let Some(remote) = tool("go_and_python_out_of_memory_are_one_record_each") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let go = [
        "fatal error: runtime: out of memory",
        "",
        "runtime stack:",
        "runtime.throw({0x4b0a1e?, 0x400000?})",
        "\t/usr/lib/go-1.19/src/runtime/panic.go:1047 +0x5d fp=0x7ffd3b8c0a08 sp=0x7ffd3b8c09d8 pc=0x434a1d",
        "",
        "goroutine 1 [running]:",
        "main.main()",
        "\t/tmp/grow.go:9 +0x45 fp=0xc00006af70 sp=0xc00006af28 pc=0x45a2c5",
    ];
    let python = [
        "Traceback (most recent call last):",
        "  File \"/srv/grow.py\", line 4, in <module>",
        "    a.append(bytearray(10 * 1024 * 1024))",
        "MemoryError",
    ];
    let mut entries = Vec::new();
    for line in go {
        entries.push(Entry::unit("gosvc.service", 11, line).with("_COMM", "grow"));
        entries.push(Entry::unit("other.service", 12, "tick"));
    }
    entries.push(Entry::unit("gosvc.service", 11, "restarting"));
    for line in python {
        entries.push(Entry::unit("py.service", 13, line).with("_COMM", "python3"));
    }
    write_journal(&remote, &dir.path().join("remote.journal"), &entries);
    let mut r = run(&config(dir.path()), None).await;
    r.until(2).await;
    r.quiet().await;
    let got = r.stop().await;
    assert_eq!(got.len(), 2, "{got:#?}");
    let go_body = body(&got[0].1);
    assert!(
        go_body.starts_with("fatal error: runtime: out of memory"),
        "{go_body}"
    );
    assert!(
        go_body.contains("goroutine 1 [running]:\nmain.main()"),
        "{go_body}"
    );
    assert!(go_body.ends_with("pc=0x45a2c5"), "{go_body}");
    assert_eq!(attr(&got[0].1.attributes, "oom.runtime"), s("go"));
    assert_eq!(attr(&got[0].0, "process.pid"), i(11));
    assert_eq!(body(&got[1].1), python.join("\n"));
    assert_eq!(
        attr(&got[1].1.attributes, "oom.pattern"),
        s("python.memory_error")
    );
    assert_eq!(attr(&got[1].0, "process.pid"), i(13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_in_one_native_entry_is_one_record() {
    let Some(remote) = tool("a_trace_in_one_native_entry_is_one_record") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut text = vec![JAVA_HEAD.to_owned()];
    text.extend(java_frames(5));
    let message = text.join("\n");
    let entries = vec![
        Entry::unit("web.service", 5, &message).with("_TRANSPORT", "journal"),
        Entry::unit("web.service", 5, "next"),
    ];
    write_journal(&remote, &dir.path().join("remote.journal"), &entries);
    let mut r = run(&config(dir.path()), None).await;
    r.until(1).await;
    r.quiet().await;
    let got = r.stop().await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(body(&got[0].1), message);
    assert_eq!(
        attr(&got[0].1.attributes, "journald._TRANSPORT"),
        s("journal")
    );
}

fn kernel_oom_line() -> Entry {
    Entry::bare("Out of memory: Killed process 4242 (java) total-vm:9000kB, anon-rss:8000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:100kB oom_score_adj:0")
        .with("_TRANSPORT", "kernel")
        .with("SYSLOG_IDENTIFIER", "kernel")
        .with("PRIORITY", "3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_entries_are_left_to_the_kmsg_and_oom_receivers() {
    let Some(remote) = tool("kernel_entries_are_left_to_the_kmsg_and_oom_receivers") else {
        return;
    };
    assert!(skips_kernel_entries(
        KernelTransport::Auto,
        &["oom".into(), "journald".into()]
    ));
    assert!(skips_kernel_entries(
        KernelTransport::Auto,
        &["kmsg".into()]
    ));
    assert!(!skips_kernel_entries(
        KernelTransport::Auto,
        &["filelog".into()]
    ));
    assert!(skips_kernel_entries(KernelTransport::Skip, &[]));
    assert!(!skips_kernel_entries(
        KernelTransport::Read,
        &["oom".into()]
    ));

    let dir = tempfile::tempdir().unwrap();
    let entries = vec![
        kernel_oom_line(),
        Entry::unit(
            "web.service",
            5,
            "java.lang.OutOfMemoryError: Java heap space",
        ),
        Entry::unit("web.service", 5, "next"),
    ];
    write_journal(&remote, &dir.path().join("remote.journal"), &entries);
    // Beside an oom receiver (auto): the kernel's line is skipped.
    let (collect, rx) = Collect::new(Some(DeliveryStatus::Delivered));
    let mut r = run_with(&config(dir.path()), None, &["oom", "journald"], collect, rx).await;
    r.until(1).await;
    r.quiet().await;
    let got = r.stop().await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(attr(&got[0].1.attributes, "oom.runtime"), s("java"));
    // Alone (auto): read like any other entry.
    let mut r = run(&config(dir.path()), None).await;
    r.until(2).await;
    r.quiet().await;
    let got = r.stop().await;
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(attr(&got[0].1.attributes, "oom.runtime"), s("kernel"));
    assert_eq!(
        attr(&got[0].1.attributes, "journald._TRANSPORT"),
        s("kernel")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_after_the_acknowledged_entry() {
    let Some(remote) = tool("a_restart_resumes_after_the_acknowledged_entry") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let state = dir.path().join("state");
    let file = journal.join("remote.journal");
    let oom = |k: usize| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space #{k}"),
        )
    };
    write_journal(&remote, &file, &(0..3).map(oom).collect::<Vec<_>>());
    let mut cfg = config(&journal);
    cfg.storage = Some("file_storage".parse().unwrap());
    let mut r = run(&cfg, Some(&state)).await;
    r.until(3).await;
    // Followed: appended entries arrive while it runs.
    write_journal(&remote, &file, &(3..5).map(oom).collect::<Vec<_>>());
    r.until(5).await;
    let first = r.stop_and_settle().await;
    assert_eq!(first.len(), 5);
    write_journal(&remote, &file, &(5..8).map(oom).collect::<Vec<_>>());
    let mut r = run(&cfg, Some(&state)).await;
    r.until(3).await;
    r.quiet().await;
    let second: Vec<String> = r.stop().await.iter().map(|(_, rec)| body(rec)).collect();
    assert_eq!(
        second,
        (5..8)
            .map(|k| format!("java.lang.OutOfMemoryError: Java heap space #{k}"))
            .collect::<Vec<_>>(),
        "no loss, no repeat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_batch_is_read_again_after_a_restart() {
    let Some(remote) = tool("an_undelivered_batch_is_read_again_after_a_restart") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let state = dir.path().join("state");
    let oom = |k: usize| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space #{k}"),
        )
    };
    write_journal(
        &remote,
        &journal.join("remote.journal"),
        &(0..4).map(oom).collect::<Vec<_>>(),
    );
    let mut cfg = config(&journal);
    cfg.storage = Some("file_storage".parse().unwrap());
    // The backend fails everything: nothing may be checkpointed.
    let (failing, rx) = Collect::new(Some(DeliveryStatus::Failed));
    let mut r = run_with(&cfg, Some(&state), &[], failing, rx).await;
    r.until(4).await;
    r.stop_and_settle().await;
    let mut r = run(&cfg, Some(&state)).await;
    r.until(4).await;
    r.quiet().await;
    assert_eq!(r.stop().await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_reads_only_new_entries_and_checkpoints_the_end() {
    let Some(remote) = tool("start_at_end_reads_only_new_entries_and_checkpoints_the_end") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let state = dir.path().join("state");
    let file = journal.join("remote.journal");
    let oom = |k: usize| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space #{k}"),
        )
    };
    write_journal(&remote, &file, &[oom(0)]);
    let mut cfg = config(&journal);
    cfg.start_at = StartAt::End;
    cfg.storage = Some("file_storage".parse().unwrap());
    let r = run(&cfg, Some(&state)).await;
    // Stopped before anything new: the end was stored...
    assert!(r.stop_and_settle().await.is_empty());
    // ...so what came while it was down is read at the next start.
    write_journal(&remote, &file, &[oom(1)]);
    let mut r = run(&cfg, Some(&state)).await;
    r.until(1).await;
    r.quiet().await;
    let got = r.stop().await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        body(&got[0].1),
        "java.lang.OutOfMemoryError: Java heap space #1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_new_files_are_followed() {
    let Some(remote) = tool("rotation_and_new_files_are_followed") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let oom = |k: usize| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space #{k}"),
        )
    };
    let live = dir.path().join("remote.journal");
    write_journal(&remote, &live, &(0..2).map(oom).collect::<Vec<_>>());
    let mut r = run(&config(dir.path()), None).await;
    r.until(2).await;
    // Rotated as journald does: the file renamed to its archived name, a
    // new one started.
    std::fs::rename(
        &live,
        dir.path()
            .join("remote@0000000000000001-0000000000000001.journal"),
    )
    .unwrap();
    write_journal(&remote, &live, &(2..4).map(oom).collect::<Vec<_>>());
    r.until(4).await;
    // A machine-id subdirectory that appears later.
    let sub = dir.path().join("3d1219c7c4c5404aaa1f6d2a48adfda4");
    std::fs::create_dir(&sub).unwrap();
    write_journal(&remote, &sub.join("system.journal"), &[oom(4)]);
    r.until(5).await;
    r.quiet().await;
    let bodies = r.bodies();
    let mut sorted = bodies.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "each once: {bodies:#?}");
    assert_eq!(r.stop().await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_does_not_exist_yet_is_waited_for() {
    let Some(remote) = tool("a_directory_that_does_not_exist_yet_is_waited_for") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("later");
    let mut r = run(&config(&journal), None).await;
    std::fs::create_dir(&journal).unwrap();
    write_journal(
        &remote,
        &journal.join("remote.journal"),
        &[Entry::unit(
            "web.service",
            5,
            "java.lang.OutOfMemoryError: Java heap space",
        )],
    );
    r.until(1).await;
    // start_at: end, and no journal at the start: what appears later is new.
    let mut cfg = config(&dir.path().join("later2"));
    cfg.start_at = StartAt::End;
    let mut r2 = run(&cfg, None).await;
    std::fs::create_dir(dir.path().join("later2")).unwrap();
    write_journal(
        &remote,
        &dir.path().join("later2/remote.journal"),
        &[Entry::unit(
            "web.service",
            5,
            "java.lang.OutOfMemoryError: Java heap space",
        )],
    );
    r2.until(1).await;
    r.stop().await;
    r2.stop().await;
}

/// The system journal under a host root (the container config) that has
/// no journal directory yet: the receiver starts, and reads the journal
/// once journald creates it (here /run/log/journal, then /var/log/journal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_journal_is_read_once_it_appears_under_root_path() {
    let Some(remote) = tool("the_system_journal_is_read_once_it_appears_under_root_path") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let cfg = JournaldReceiverConfig {
        directory: None,
        root_path: Some(root.path().to_owned()),
        start_at: StartAt::End,
        ..config(root.path())
    };
    let mut r = run(&cfg, None).await;
    let machine = "3d1219c7c4c5404aaa1f6d2a48adfda4";
    let oom = |k: &str| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space {k}"),
        )
    };
    let runtime = root.path().join("run/log/journal").join(machine);
    std::fs::create_dir_all(&runtime).unwrap();
    write_journal(&remote, &runtime.join("system.journal"), &[oom("runtime")]);
    r.until(1).await;
    let persistent = root.path().join("var/log/journal").join(machine);
    std::fs::create_dir_all(&persistent).unwrap();
    write_journal(
        &remote,
        &persistent.join("system.journal"),
        &[oom("persistent")],
    );
    r.until(2).await;
    r.quiet().await;
    let mut bodies: Vec<String> = r.stop().await.iter().map(|(_, rec)| body(rec)).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            "java.lang.OutOfMemoryError: Java heap space persistent",
            "java.lang.OutOfMemoryError: Java heap space runtime"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuumed_checkpoint_gives_a_warning_record() {
    let Some(remote) = tool("a_vacuumed_checkpoint_gives_a_warning_record") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let state = dir.path().join("state");
    let oom = |k: usize| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space #{k}"),
        )
    };
    let old = journal.join("old.journal");
    write_journal(&remote, &old, &[oom(0)]);
    let mut cfg = config(&journal);
    cfg.storage = Some("file_storage".parse().unwrap());
    let mut r = run(&cfg, Some(&state)).await;
    r.until(1).await;
    r.stop_and_settle().await;
    // While it is down: newer entries, and the file of the checkpoint removed.
    write_journal(&remote, &journal.join("new.journal"), &[oom(1)]);
    std::fs::remove_file(&old).unwrap();
    let mut r = run(&cfg, Some(&state)).await;
    r.until(2).await;
    let lost = r
        .counter_at_least("oomscope.journald.entries.lost", 1)
        .await;
    r.quiet().await;
    let got = r.stop().await;
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        body(&got[0].1).starts_with("journal entries were removed"),
        "{got:#?}"
    );
    assert_eq!(got[0].1.severity_text, "WARN");
    assert!(attr(&got[0].1.attributes, "oomscope.journald.gap.from_cursor").is_some());
    assert_eq!(
        body(&got[1].1),
        "java.lang.OutOfMemoryError: Java heap space #1"
    );
    // Another writer's sequence: how many is not known.
    assert_eq!(lost, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_what_journalctl_selects() {
    let Some(remote) = tool("filters_select_what_journalctl_selects") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    let units = [
        "web.service",
        "db.service",
        "ssh.service",
        "user-1000.slice",
    ];
    for k in 0..64usize {
        let unit = units[k % units.len()];
        let mut e = Entry::unit(unit, 100 + (k % 3) as u32, &format!("message {k}"))
            .with("PRIORITY", &(k % 8).to_string())
            .with("SYSLOG_IDENTIFIER", ["java", "sshd", "postgres"][k % 3]);
        if unit.ends_with(".slice") {
            e = e
                .with("_SYSTEMD_UNIT", "session-1.scope")
                .with("_SYSTEMD_SLICE", unit);
        }
        if k % 5 == 0 {
            e = e.with("CUSTOM", "x");
        }
        if k % 11 == 0 {
            e.0.retain(|(n, _)| n != "PRIORITY");
        }
        entries.push(e);
    }
    // systemd's own message about a unit, and a coredump of one.
    entries.push(
        Entry::bare("message 64")
            .with("_PID", "1")
            .with("UNIT", "web.service")
            .with("PRIORITY", "6"),
    );
    entries.push(
        Entry::bare("message 65")
            .with("MESSAGE_ID", "fc2e22bc6ee647b6b90729ab34a250b1")
            .with("_UID", "0")
            .with("COREDUMP_UNIT", "db.service")
            .with("PRIORITY", "2"),
    );
    write_journal(&remote, &dir.path().join("remote.journal"), &entries);
    let cases: Vec<(JournaldReceiverConfig, Vec<String>)> = {
        let base = || JournaldReceiverConfig {
            include_all: true,
            ..config(dir.path())
        };
        let mut cases = Vec::new();
        let mut c = base();
        c.units = vec!["web".into(), "db.service".into()];
        cases.push((
            c,
            vec![
                "--unit=web".to_owned(),
                "--unit=db.service".into(),
                "--priority=info".into(),
            ],
        ));
        let mut c = base();
        c.units = vec!["user-1000.slice".into()];
        c.priority = PriorityRange::parse("debug").unwrap();
        cases.push((c, vec!["--unit=user-1000.slice".into()]));
        let mut c = base();
        c.units = vec!["s*.service".into()];
        c.priority = PriorityRange::parse("debug").unwrap();
        cases.push((c, vec!["--unit=s*.service".into()]));
        let mut c = base();
        c.identifiers = vec!["sshd".into()];
        c.priority = PriorityRange::parse("err..warning").unwrap();
        cases.push((
            c,
            vec!["--identifier=sshd".into(), "--priority=err..warning".into()],
        ));
        let mut c = base();
        c.matches = vec![
            BTreeMap::from([
                ("CUSTOM".to_owned(), "x".to_owned()),
                ("_PID".into(), "101".into()),
            ]),
            BTreeMap::from([("SYSLOG_IDENTIFIER".to_owned(), "postgres".to_owned())]),
        ];
        c.priority = PriorityRange::parse("debug").unwrap();
        cases.push((
            c,
            vec![
                "CUSTOM=x".into(),
                "_PID=101".into(),
                "+".into(),
                "SYSLOG_IDENTIFIER=postgres".into(),
            ],
        ));
        cases.push((base(), vec!["--priority=info".into()]));
        cases
    };
    for (cfg, args) in cases {
        let output = Command::new("journalctl")
            .arg("-D")
            .arg(dir.path())
            .args(["-o", "cat", "--no-pager"])
            .args(&args)
            .output()
            .expect("journalctl runs");
        assert!(
            output.status.success(),
            "journalctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut expected: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        // A batch groups records by resource (process): compared as sets.
        expected.sort();
        assert!(
            !expected.is_empty(),
            "journalctl {args:?} selected nothing: the case tests nothing"
        );
        let mut r = run(&cfg, None).await;
        r.until(expected.len()).await;
        r.quiet().await;
        let mut got: Vec<String> = r.stop().await.iter().map(|(_, rec)| body(rec)).collect();
        got.sort();
        assert_eq!(got, expected, "journalctl {args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_entries_carry_the_container_on_the_resource() {
    let Some(remote) = tool("container_entries_carry_the_container_on_the_resource") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    // As podman's and docker's journald log driver write them.
    let entry = Entry::bare("java.lang.OutOfMemoryError: Java heap space")
        .with("CONTAINER_ID", &id[..12])
        .with("CONTAINER_ID_FULL", id)
        .with("CONTAINER_NAME", "web")
        .with("CONTAINER_TAG", "web")
        .with("CODE_LINE", "42")
        .with("SYSLOG_PID", "900")
        .with("SYSLOG_IDENTIFIER", "web")
        .with("_PID", "900")
        .with("_TRANSPORT", "journal")
        .with("PRIORITY", "3");
    write_journal(&remote, &dir.path().join("remote.journal"), &[entry]);
    let mut r = run(&config(dir.path()), None).await;
    r.until(1).await;
    let got = r.stop().await;
    assert_eq!(attr(&got[0].0, "container.id"), s(id));
    assert_eq!(attr(&got[0].0, "container.name"), s("web"));
    assert_eq!(attr(&got[0].1.attributes, "syslog.identifier"), s("web"));
    assert_eq!(
        attr(&got[0].1.attributes, "journald.CONTAINER_TAG"),
        s("web")
    );
    assert_eq!(attr(&got[0].1.attributes, "code.line.number"), i(42));
    assert_eq!(attr(&got[0].1.attributes, "syslog.pid"), i(900));
    assert_eq!(
        attr(&got[0].1.attributes, "journald.CONTAINER_ID_FULL"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_and_a_binary_message_are_cut_and_decoded() {
    let Some(remote) = tool("a_huge_and_a_binary_message_are_cut_and_decoded") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut huge = b"java.lang.OutOfMemoryError: Java heap space ".to_vec();
    huge.resize(10 * 1024 * 1024, b'x');
    let mut binary = b"java.lang.OutOfMemoryError: Java heap space \xff\xfe\x00bin".to_vec();
    binary.extend_from_slice(&[0x80, 0x81]);
    let entries = vec![
        Entry::unit("web.service", 5, "").with_bytes("MESSAGE", &huge),
        Entry::unit("web.service", 6, "").with_bytes("MESSAGE", &binary),
        Entry::unit(
            "web.service",
            7,
            "java.lang.OutOfMemoryError: Java heap space after",
        ),
    ];
    write_journal(&remote, &dir.path().join("remote.journal"), &entries);
    let mut cfg = config(dir.path());
    cfg.max_log_size = crate::receivers::filelog::ByteSize(64 * 1024);
    let mut r = run(&cfg, None).await;
    r.until(3).await;
    let got = r.stop().await;
    // Each waits for a stack trace on its own: found by pid, not by order.
    let of = |pid: i64| {
        got.iter()
            .find(|(res, _)| attr(res, "process.pid") == i(pid))
            .map(|(_, rec)| rec.clone())
            .unwrap_or_else(|| panic!("no record of pid {pid}: {got:#?}"))
    };
    let first = body(&of(5));
    assert!(
        first.len() <= 64 * 1024 && first.len() > 60 * 1024,
        "{}",
        first.len()
    );
    assert_eq!(
        attr(&of(5).attributes, "oomscope.log.truncated"),
        Some(any_value::Value::BoolValue(true))
    );
    let second = body(&of(6));
    assert!(
        second.starts_with("java.lang.OutOfMemoryError: Java heap space \u{fffd}\u{fffd}\0bin"),
        "{second:?}"
    );
    assert_eq!(
        body(&of(7)),
        "java.lang.OutOfMemoryError: Java heap space after"
    );
}

/// Copies of a real journal file, damaged: truncated (libsystemd ignores
/// the whole file), overwritten in the middle, not a journal at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_reported_and_the_others_read() {
    let Some(remote) = tool("damaged_files_are_reported_and_the_others_read") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let oom = |k: usize| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space #{k}"),
        )
    };
    let source = scratch.path().join("source.journal");
    write_journal(&remote, &source, &(0..200).map(oom).collect::<Vec<_>>());
    let len = std::fs::metadata(&source).unwrap().len();
    let used = {
        // The arena's end is the part written; cut inside it.
        let bytes = std::fs::read(&source).unwrap();
        let tail = u64::from_le_bytes(bytes[136..144].try_into().unwrap());
        tail.min(len)
    };
    let truncated = dir
        .path()
        .join("truncated@0000000000000001-0000000000000001.journal");
    std::fs::copy(&source, &truncated).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(used / 2)
        .unwrap();
    let scribbled = dir
        .path()
        .join("scribbled@0000000000000001-0000000000000002.journal");
    let mut bytes = std::fs::read(&source).unwrap();
    let at = usize::try_from(used / 2).unwrap();
    for (k, b) in bytes[at..at + 200].iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(151).wrapping_add(7);
    }
    std::fs::write(&scribbled, &bytes).unwrap();
    std::fs::write(
        dir.path().join("garbage.journal"),
        b"this is not a journal file at all",
    )
    .unwrap();
    write_journal(
        &remote,
        &dir.path().join("good.journal"),
        &[Entry::unit(
            "ok.service",
            9,
            "java.lang.OutOfMemoryError: Java heap space good",
        )],
    );

    let mut r = run(&config(dir.path()), None).await;
    // The good file is read whatever the others hold.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !r.bodies().iter().any(|b| b.ends_with(" good")) {
        match tokio::time::timeout_at(deadline, r.logs.recv()).await {
            Ok(Some(b)) => r.received.extend(records(&b)),
            _ => panic!("the good file was not read: {:?}", r.bodies()),
        }
    }
    let failed = r
        .counter_at_least("oomscope.journald.files.failed", 2)
        .await;
    r.quiet().await;
    let got = r.stop().await;
    assert!(failed >= 2, "the truncated and the garbage file: {failed}");
    // Nothing is read twice, whatever of the scribbled file was readable.
    let mut bodies: Vec<String> = got.iter().map(|(_, rec)| body(rec)).collect();
    let n = bodies.len();
    bodies.sort();
    bodies.dedup();
    assert!(bodies.len() <= n);
}

/// A consumer that takes `open` batches, then holds the next one until
/// released: the reader stops in the middle of a file.
struct Gate {
    inner: Arc<Collect>,
    permits: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl Consumer for Gate {
    async fn consume(&self, batch: Batch) -> Result<(), crate::pipeline::ConsumeError> {
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
        self.inner.consume(batch).await
    }
}

/// A file truncated while the reader has it mapped: the SIGBUS guard turns
/// the fault into a warning, and the reader goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_truncated_while_read_does_not_kill_the_agent() {
    let Some(remote) = tool("a_file_truncated_while_read_does_not_kill_the_agent") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let big = "y".repeat(2000);
    let file = dir
        .path()
        .join("live@0000000000000001-0000000000000001.journal");
    write_journal(
        &remote,
        &file,
        &(0..3000)
            .map(|k| {
                Entry::unit(
                    "web.service",
                    5,
                    &format!("java.lang.OutOfMemoryError: Java heap space #{k} {big}"),
                )
            })
            .collect::<Vec<_>>(),
    );
    let mut cfg = config(dir.path());
    cfg.max_batch_records = 1;
    cfg.max_unacknowledged_batches = 1;
    let (collect, rx) = Collect::new(Some(DeliveryStatus::Delivered));
    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let gate = Arc::new(Gate {
        inner: collect,
        permits: Arc::clone(&permits),
    });
    let faults_before = sigbus::faults();
    let mut r = run_with(&cfg, None, &[], gate, rx).await;
    r.until(1).await;
    // The reader now waits with the file mapped, near its start.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(64 * 1024)
        .unwrap();
    permits.add_permits(100_000);
    let failed = r
        .counter_at_least("oomscope.journald.files.failed", 1)
        .await;
    assert!(failed >= 1);
    assert!(sigbus::faults() > faults_before, "no SIGBUS was repaired");
    // Still reading: a new file's entry arrives.
    write_journal(
        &remote,
        &dir.path().join("next.journal"),
        &[Entry::unit(
            "ok.service",
            9,
            "java.lang.OutOfMemoryError: Java heap space after",
        )],
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !r.bodies().iter().any(|b| b.ends_with(" after")) {
        match tokio::time::timeout_at(deadline, r.logs.recv()).await {
            Ok(Some(b)) => r.received.extend(records(&b)),
            _ => panic!("nothing read after the truncation"),
        }
    }
    let got = r.stop().await;
    let mut bodies: Vec<String> = got.iter().map(|(_, rec)| body(rec)).collect();
    let n = bodies.len();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), n, "an entry was read twice after the reopen");
}

/// A file replaced (renamed over) while it is open: the new file is read,
/// what was read is not read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_while_open_is_read_anew() {
    let Some(remote) = tool("a_file_replaced_while_open_is_read_anew") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let oom = |k: &str| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space {k}"),
        )
    };
    let file = dir.path().join("system.journal");
    write_journal(&remote, &file, &[oom("old 0"), oom("old 1")]);
    let mut r = run(&config(dir.path()), None).await;
    r.until(2).await;
    let replacement = scratch.path().join("replacement.journal");
    write_journal(
        &remote,
        &replacement,
        &[oom("new 0"), oom("new 1"), oom("new 2")],
    );
    std::fs::rename(&replacement, &file).unwrap();
    r.until(5).await;
    r.quiet().await;
    let mut bodies: Vec<String> = r.stop().await.iter().map(|(_, rec)| body(rec)).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        ["new 0", "new 1", "new 2", "old 0", "old 1"]
            .iter()
            .map(|k| format!("java.lang.OutOfMemoryError: Java heap space {k}"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_read_and_polled() {
    let Some(remote) = tool("files_are_read_and_polled") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let oom = |k: usize| {
        Entry::unit(
            "web.service",
            5,
            &format!("java.lang.OutOfMemoryError: Java heap space #{k}"),
        )
    };
    write_journal(&remote, &dir.path().join("a.journal"), &[oom(0)]);
    let cfg = JournaldReceiverConfig {
        directory: None,
        files: vec![format!("{}/*.journal", dir.path().display())],
        ..config(dir.path())
    };
    let mut r = run(&cfg, None).await;
    r.until(1).await;
    write_journal(&remote, &dir.path().join("b.journal"), &[oom(1)]);
    r.until(2).await;
    // Appended to a file already open (no inotify here: polled).
    write_journal(&remote, &dir.path().join("a.journal"), &[oom(2)]);
    r.until(3).await;
    r.quiet().await;
    assert_eq!(r.stop().await.len(), 3);
}

#[test]
fn units_are_mangled_as_journalctl_does() {
    assert_eq!(journal::mangle_unit("ssh"), "ssh.service");
    assert_eq!(journal::mangle_unit("user-1000.slice"), "user-1000.slice");
    assert_eq!(journal::mangle_unit("s*"), "s*");
}

#[test]
fn config_errors_name_the_key() {
    let err = JournaldReceiverConfig {
        files: vec!["relative/*.journal".into()],
        ..JournaldReceiverConfig::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("files"));
}

/// The kernel's OOM report on this project's machine (tests/data, as read
/// from /dev/kmsg) as journald stores it: one kernel-transport entry per
/// record, with the record's level and kernel time.
fn kernel_report_entries() -> (Vec<Entry>, Vec<crate::kernel_log::KmsgRecord>) {
    let sample = include_str!("../../../../tests/data/kmsg-memcg-oom.txt");
    let kmsg: Vec<_> = sample
        .lines()
        .map(|l| crate::kernel_log::KmsgRecord::parse(l.as_bytes()).unwrap())
        .collect();
    let entries = kmsg
        .iter()
        .map(|r| {
            Entry::bare(&r.message)
                .with("_TRANSPORT", "kernel")
                .with("SYSLOG_IDENTIFIER", "kernel")
                .with("SYSLOG_FACILITY", "0")
                .with("PRIORITY", &r.level.to_string())
                .with("_SOURCE_MONOTONIC_TIMESTAMP", &r.monotonic_us.to_string())
        })
        .collect();
    (entries, kmsg)
}

/// Issue 13 item 3: a kernel OOM report read from the journal is one record
/// per kill, by default, with the attributes (names, values and types) of
/// the `kmsg` receiver's report record for the same report; its lines are
/// not sent again on their own, and other programs' entries between them
/// neither break it nor are lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_oom_report_is_one_record_with_the_kmsg_receivers_attributes() {
    let Some(remote) = tool("a_kernel_oom_report_is_one_record_with_the_kmsg_receivers_attributes")
    else {
        return;
    };
    let (mut entries, mut kmsg) = kernel_report_entries();
    // The first report, through its "Killed process" line (the sample goes
    // on with the start of the next one).
    let killed = kmsg
        .iter()
        .position(|r| r.message.contains("Killed process"))
        .unwrap();
    entries.truncate(killed + 1);
    kmsg.truncate(killed + 1);
    // Another program's OOM message in the middle of the report (its
    // lines arrive between the kernel's), and one after it.
    entries.insert(entries.len() / 2, Entry::unit("web.service", 5, JAVA_HEAD));
    entries.push(Entry::unit("web.service", 5, "next"));
    let dir = tempfile::tempdir().unwrap();
    write_journal(&remote, &dir.path().join("remote.journal"), &entries);
    let mut r = run(&config(dir.path()), None).await;
    r.until(2).await;
    r.quiet().await;
    let got = r.stop().await;
    assert_eq!(
        got.len(),
        2,
        "{:#?}",
        got.iter().map(|(_, r)| body(r)).collect::<Vec<_>>()
    );
    let kernel = |r: &LogRecord| attr(&r.attributes, "oom.runtime") == s("kernel");
    let (reports, others): (Vec<_>, Vec<_>) = got.iter().map(|(_, r)| r).partition(|r| kernel(r));
    let (java, report) = (others[0], reports[0]);
    assert_eq!(attr(&java.attributes, "oom.runtime"), s("java"));
    // What the kmsg receiver assembles from the same records.
    let mut assembler = crate::kernel_log::OomReportAssembler::new();
    let from_kmsg = kmsg
        .iter()
        .find_map(|r| assembler.push(r))
        .expect("the kmsg sample is a complete report");
    let want = crate::kernel_log::report_record::report_attributes(&from_kmsg, Vec::new());
    let own = |k: &str| k.starts_with("journald.") || k.starts_with("syslog.");
    let got_attributes: Vec<&KeyValue> =
        report.attributes.iter().filter(|a| !own(&a.key)).collect();
    assert_eq!(
        got_attributes,
        want.iter().collect::<Vec<_>>(),
        "the kmsg receiver's report attributes"
    );
    assert_eq!(attr(&report.attributes, "process.pid"), i(11976));
    assert_eq!(
        attr(&report.attributes, "oom.pattern"),
        s("kernel.oom_report")
    );
    assert_eq!(attr(&report.attributes, "journald._TRANSPORT"), s("kernel"));
    assert_eq!(report.severity_text, "ERROR");
    let text = body(report);
    assert!(text.starts_with("python3 invoked oom-killer: "), "{text}");
    assert!(text.contains("Killed process 11976 (python3)"), "{text}");
    assert!(!text.contains("OutOfMemoryError"), "{text}");
    // The time is the journal's of the entry that completed the report.
    assert_ne!(report.time_unix_nano, 0);
}

/// A report the journal holds only the start of is sent with what it has
/// (WARN, with the note) once no kernel entry came for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_report_cut_short_in_the_journal_is_sent_with_a_note() {
    let Some(remote) = tool("a_kernel_report_cut_short_in_the_journal_is_sent_with_a_note") else {
        return;
    };
    let (mut entries, _) = kernel_report_entries();
    entries.truncate(40);
    let dir = tempfile::tempdir().unwrap();
    write_journal(&remote, &dir.path().join("remote.journal"), &entries);
    let mut r = run(&config(dir.path()), None).await;
    // Not at shutdown: while the receiver runs.
    let got = r.until(1).await.to_vec();
    let report = &got[0].1;
    assert_eq!(report.severity_text, "WARN");
    assert!(
        matches!(
            attr(&report.attributes, "oom.report.incomplete"),
            Some(any_value::Value::StringValue(_))
        ),
        "{report:#?}"
    );
    assert_eq!(attr(&report.attributes, "oom.trigger.comm"), s("python3"));
    assert_eq!(
        attr(&report.attributes, "process.pid"),
        None,
        "no victim known"
    );
    r.quiet().await;
    assert_eq!(r.stop().await.len(), 1);
}

/// With `include_all` a report's entries are sent on their own too, but
/// `oom.log.matches` counts the kill once (as `kernel.oom_report`), not
/// again for each of its lines a kernel pattern matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_all_sends_a_reports_entries_but_counts_the_kill_once() {
    let Some(remote) = tool("include_all_sends_a_reports_entries_but_counts_the_kill_once") else {
        return;
    };
    let (mut entries, kmsg) = kernel_report_entries();
    let killed = kmsg
        .iter()
        .position(|r| r.message.contains("Killed process"))
        .unwrap();
    entries.truncate(killed + 1);
    let dir = tempfile::tempdir().unwrap();
    write_journal(&remote, &dir.path().join("remote.journal"), &entries);
    let mut cfg = config(dir.path());
    cfg.include_all = true;
    cfg.priority = PriorityRange { min: 0, max: 7 };
    let mut r = run(&cfg, None).await;
    // The report's record, and the Killed line's own record.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let have = |p: &str| {
            r.received
                .iter()
                .any(|(_, rec)| attr(&rec.attributes, "oom.pattern") == s(p))
        };
        let killed_line = r
            .received
            .iter()
            .any(|(_, rec)| body(rec).starts_with("Memory cgroup out of memory: Killed process"));
        if have("kernel.oom_report") && killed_line {
            break;
        }
        let n = r.received.len() + 1;
        assert!(tokio::time::Instant::now() < deadline, "{:#?}", r.bodies());
        r.until(n).await;
    }
    // The counters once they hold the report: only it among the kernel's.
    let deadline = tokio::time::Instant::now() + WAIT;
    let kernel_points = loop {
        let batch = tokio::time::timeout_at(deadline, r.metrics.recv())
            .await
            .expect("the report counted within WAIT")
            .expect("metrics");
        let Payload::Metrics(rm) = batch.payload.as_ref() else {
            continue;
        };
        let points: Vec<(String, i64)> = rm
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "oom.log.matches")
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(sum)) => Some(sum.data_points.clone()),
                _ => None,
            })
            .flatten()
            .filter(|p| attr(&p.attributes, "oom.runtime") == s("kernel"))
            .map(|p| {
                let pattern = match attr(&p.attributes, "oom.pattern") {
                    Some(any_value::Value::StringValue(v)) => v,
                    _ => String::new(),
                };
                let value = match p.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    _ => 0,
                };
                (pattern, value)
            })
            .collect();
        if points.iter().any(|(p, _)| p == "kernel.oom_report") {
            break points;
        }
    };
    assert_eq!(kernel_points, [("kernel.oom_report".to_owned(), 1)]);
    r.stop().await;
}

/// A missing journal directory's arrival is watched on its nearest existing
/// ancestor, one level at a time, as journald makes `/run/log/journal`.
#[test]
fn the_arrival_of_a_missing_journal_directory_is_reported() {
    let root = tempfile::tempdir().unwrap();
    if !crate::receivers::filelog::watch::is_local(root.path()) {
        eprintln!("skipped: the temporary directory is not on a local file system");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let missing = vec![
        root.path().join("run/log/journal"),
        root.path().join("var/log/journal"),
    ];
    for level in ["run", "run/log", "run/log/journal"] {
        let arrivals = journal::Arrivals::new(&missing, rt.handle()).expect("watched");
        assert!(
            !arrivals.reported_within(Duration::ZERO),
            "{level}: nothing came yet"
        );
        std::fs::create_dir(root.path().join(level)).unwrap();
        assert!(
            arrivals.reported_within(WAIT),
            "{level}: its creation was not reported"
        );
    }
    // Not on a local file system: not watched (the reader then polls).
    if std::path::Path::new("/proc/self").is_dir() {
        assert!(
            journal::Arrivals::new(&[PathBuf::from("/proc/self/nope/journal")], rt.handle())
                .is_none()
        );
    }
}
