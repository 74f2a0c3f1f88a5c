//! Tests against real files in temporary directories.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use opentelemetry_proto::tonic::common::v1::any_value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{ComponentId, GoDuration};
use crate::extensions::file_storage::{FileStorage, FileStorageConfig};
use crate::extensions::Extensions;
use crate::pipeline::consumer::testing::Collect;
use crate::pipeline::{Batch, DeliveryStatus};
use crate::telemetry::Telemetry;
use crate::test_support::{holds_open, wait_until, wait_until_async, WAIT};

fn config(dir: &Path, include: &str) -> FilelogReceiverConfig {
    FilelogReceiverConfig {
        include: vec![dir.join(include).to_string_lossy().into_owned()],
        include_all: true,
        start_at: StartAt::Beginning,
        poll_interval: GoDuration::from_millis(20),
        force_flush_period: GoDuration::from_millis(100),
        ..Default::default()
    }
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    rx: UnboundedReceiver<Batch>,
}

impl Running {
    async fn stop(self) -> UnboundedReceiver<Batch> {
        self.shutdown.cancel();
        // Ended means the last offsets were saved: a run after this one
        // must see them.
        let ended = tokio::time::timeout(WAIT, self.task).await;
        assert!(
            matches!(ended, Ok(Ok(()))),
            "the receiver did not end: {ended:?}"
        );
        self.rx
    }
}

async fn run(
    cfg: &FilelogReceiverConfig,
    settle: Option<DeliveryStatus>,
    storage: Option<&Path>,
) -> Running {
    run_in(cfg, settle, storage, Extensions::default()).await
}

async fn run_in(
    cfg: &FilelogReceiverConfig,
    settle: Option<DeliveryStatus>,
    storage: Option<&Path>,
    mut extensions: Extensions,
) -> Running {
    if let Some(dir) = storage {
        let id = ComponentId::new("file_storage", None);
        let storage_cfg = FileStorageConfig {
            directory: dir.to_path_buf(),
            ..Default::default()
        };
        let fs = FileStorage::open(&storage_cfg, &id).expect("storage");
        extensions.storages.insert(id, fs);
    }
    let (collect, rx) = Collect::new(settle);
    let ctx = BuildContext {
        id: ComponentId::new("filelog", None),
        telemetry: Telemetry::noop(),
        extensions: Arc::new(extensions),
        shutdown: CancellationToken::new(),
    };
    let shutdown = ctx.shutdown.clone();
    let outputs = ReceiverOutputs {
        logs: Some(collect),
        metrics: None,
    };
    let task = start(cfg, ctx, outputs).await.expect("starts");
    Running { shutdown, task, rx }
}

fn bodies(batch: &Batch) -> Vec<String> {
    let Payload::Logs(rl) = batch.payload.as_ref() else {
        return Vec::new();
    };
    rl.iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .filter_map(|r| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Receives until `n` lines came (or the generous timeout passed).
async fn lines(rx: &mut UnboundedReceiver<Batch>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(b)) => got.extend(bodies(&b)),
            _ => break,
        }
    }
    got
}

/// The tailer's first poll is done once it holds `path` open: with
/// `start_at: end` only what is appended after that is read (a duration
/// slept instead would not do on a slow or loaded machine).
async fn wait_first_poll(path: &Path) {
    wait_until_async("the tailer opened the file", || holds_open(path)).await;
}

/// No more lines arrive within a few polls (nothing to wait for instead:
/// this checks that something does not happen).
async fn quiet(rx: &mut UnboundedReceiver<Batch>) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(Some(b)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        got.extend(bodies(&b));
    }
    got
}

fn append(path: &Path, text: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text).expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_lines_are_read_with_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    append(&path, b"first\r\n");
    let mut r = run(
        &config(dir.path(), "*.log"),
        Some(DeliveryStatus::Delivered),
        None,
    )
    .await;
    assert_eq!(lines(&mut r.rx, 1).await, ["first"]);
    append(&path, b"second\nbad \xff byte\n");
    let b = tokio::time::timeout(WAIT, r.rx.recv())
        .await
        .expect("batch")
        .expect("open");
    let Payload::Logs(rl) = b.payload.as_ref() else {
        panic!("logs")
    };
    let rec = &rl[0].scope_logs[0].log_records[0];
    assert_eq!(rec.attributes[0].key, "log.file.name");
    let mut got = bodies(&b);
    got.extend(lines(&mut r.rx, 2 - got.len()).await);
    assert_eq!(got, ["second", "bad \u{fffd} byte"]);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_skips_what_is_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    append(&path, b"old\n");
    let mut cfg = config(dir.path(), "*.log");
    cfg.start_at = StartAt::End;
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    wait_first_poll(&path).await;
    append(&path, b"new\n");
    // A file created after the first poll is read from its start.
    append(&dir.path().join("late.log"), b"late\n");
    let mut got = lines(&mut r.rx, 2).await;
    got.sort();
    assert_eq!(got, ["late", "new"]);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_truncated_and_odd_paths_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("adir.log")).expect("mkdir");
    let fifo = dir.path().join("fifo.log");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let path = dir.path().join("app.log");
    let mut content = vec![b'x'; 10 * 1024 * 1024];
    content.extend_from_slice(b"\nafter\n");
    append(&path, &content);
    let mut cfg = config(dir.path(), "*.log");
    cfg.max_log_size = ByteSize(1024);
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let got = lines(&mut r.rx, 2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].len(), 1024);
    assert_eq!(got[1], "after");
    r.stop().await;
}

/// The same with only matching lines sent (lines skipped unread): a 10 MB
/// line without a match costs nothing, one with a match is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_on_the_skipping_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    let oom = line_text(1, Some(1));
    let mut content = vec![b'x'; 10 * 1024 * 1024];
    content.push(b'\n');
    content.extend_from_slice(oom.as_bytes());
    content.extend(std::iter::repeat_n(b'y', 10 * 1024 * 1024));
    content.push(b'\n');
    content.extend_from_slice(format!("{oom}\n").as_bytes());
    append(&path, &content);
    let mut cfg = config(dir.path(), "*.log");
    cfg.include_all = false;
    cfg.max_log_size = ByteSize(1024);
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let mut got = lines(&mut r.rx, 2).await;
    got.extend(quiet(&mut r.rx).await);
    assert_eq!(
        got.len(),
        2,
        "{:?}",
        got.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert_eq!(got[0].len(), 1024);
    assert!(got[0].starts_with(&oom));
    assert_eq!(got[1], oom);
    r.stop().await;
}

/// Line `i` as the rotation tests write it; with `oom_every`, every
/// `oom_every`-th line is a kernel OOM line (the others match no pattern).
/// Open descriptors of this process on files in `dir`.
fn open_in(dir: &Path) -> usize {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return 0;
    };
    std::fs::read_dir("/proc/self/fd")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|target| target.starts_with(&dir))
                .count()
        })
        .unwrap_or(0)
}

/// More files than `max_concurrent_files`: every one is read, and followed
/// as it grows, with at most that many open at once (files read to their
/// end are closed to make room and opened again when written to). Before,
/// the first 1,024 files stayed open forever and the others were never
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_files_than_max_concurrent_files_are_all_read_and_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), "*.log");
    cfg.max_concurrent_files = 3;
    let n = 12;
    let path = |f: usize| dir.path().join(format!("f{f:02}.log"));
    for f in 0..n {
        append(
            &path(f),
            format!("file {f} line 0\nfile {f} line 1\n").as_bytes(),
        );
    }
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let want: Vec<String> = (0..n)
        .flat_map(|f| (0..2).map(move |l| format!("file {f} line {l}")))
        .collect();
    let got = lines(&mut r.rx, want.len()).await;
    assert_exactly_once(got, want);
    assert!(open_in(dir.path()) <= 3, "more than 3 files open");
    // Each file grows, the ones closed to make room too.
    for f in 0..n {
        append(&path(f), format!("file {f} line 2\n").as_bytes());
    }
    let want: Vec<String> = (0..n).map(|f| format!("file {f} line 2")).collect();
    let got = lines(&mut r.rx, want.len()).await;
    assert_exactly_once(got, want);
    // A file rewritten with other content of the same length while
    // closed: read from its start.
    std::fs::write(path(0), "FILE 0 LINE 0\nFILE 0 LINE 1\nFILE 0 LINE 2\n").expect("rewrite");
    let got = lines(&mut r.rx, 3).await;
    assert_eq!(got, ["FILE 0 LINE 0", "FILE 0 LINE 1", "FILE 0 LINE 2"]);
    // Nothing is read twice while nothing is written.
    assert_eq!(quiet(&mut r.rx).await, Vec::<String>::new());
    assert!(open_in(dir.path()) <= 3, "more than 3 files open");
    r.stop().await;
}

fn line_text(i: usize, oom_every: Option<usize>) -> String {
    match oom_every {
        Some(k) if i.is_multiple_of(k) => format!(
            "line {i:06} Out of memory: Killed process {i} (app) total-vm:1024kB, anon-rss:512kB, file-rss:0kB"
        ),
        _ => format!("line {i:06}"),
    }
}

/// Writes `n` numbered lines; `rotate(i)` runs every `every` lines, once a
/// line of the generation it rotates away was received (`received` is one
/// more than the highest line number received): a file rotated out of
/// `include` before any poll saw it is not read (by the collector either),
/// so a generation must live until the tailer has it open, however slow
/// the machine. The short pauses only spread the writing over several
/// polls.
fn write_lines(
    path: &Path,
    n: usize,
    every: usize,
    oom_every: Option<usize>,
    received: &AtomicUsize,
    rotate: impl Fn(usize),
) {
    for i in 0..n {
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        if i > 0 && i % every == 0 {
            wait_until(
                &format!("a line from {i} - {every} on was received"),
                || received.load(Ordering::SeqCst) > i - every,
            );
            rotate(i / every);
        }
        append(path, format!("{}\n", line_text(i, oom_every)).as_bytes());
    }
}

/// `lines`, noting in `received` one more than the highest line number
/// received so far (for `write_lines`).
async fn lines_noting(
    rx: &mut UnboundedReceiver<Batch>,
    n: usize,
    received: &AtomicUsize,
) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(b)) => {
                for line in bodies(&b) {
                    let number = line
                        .strip_prefix("line ")
                        .and_then(|l| l.get(..6))
                        .and_then(|d| d.parse::<usize>().ok());
                    if let Some(i) = number {
                        received.fetch_max(i + 1, Ordering::SeqCst);
                    }
                    got.push(line);
                }
            }
            _ => break,
        }
    }
    got
}

/// Every line in `want` was received once, and nothing else.
fn assert_exactly_once(mut got: Vec<String>, mut want: Vec<String>) {
    got.sort();
    want.sort();
    let dups = got.windows(2).filter(|w| w[0] == w[1]).count();
    got.dedup();
    let missing: Vec<&String> = want
        .iter()
        .filter(|w| got.binary_search(w).is_err())
        .collect();
    let first_missing = missing.first().map(|s| s.to_string());
    let missing = missing.len();
    let unexpected = got
        .iter()
        .filter(|g| want.binary_search(g).is_err())
        .count();
    assert_eq!(first_missing, None, "first missing line");
    assert_eq!(
        (missing, dups, unexpected),
        (0, 0, 0),
        "missing, duplicated and unexpected lines"
    );
}

/// Rotation by rename+create while a writer appends. `oom_every`: only OOM
/// lines are sent (the fast path that skips other lines unread).
async fn rename_rotation(oom_every: Option<usize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    let mut cfg = config(dir.path(), "app.log");
    cfg.include_all = oom_every.is_none();
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let n = 20_000;
    let want: Vec<String> = (0..n)
        .filter(|i: &usize| oom_every.is_none_or(|k| i.is_multiple_of(k)))
        .map(|i| line_text(i, oom_every))
        .collect();
    let (p, d) = (path.clone(), dir.path().to_path_buf());
    let received = Arc::new(AtomicUsize::new(0));
    let noted = Arc::clone(&received);
    let writer = std::thread::spawn(move || {
        write_lines(&p, n, 2_000, oom_every, &noted, |gen| {
            std::fs::rename(&p, d.join(format!("app.log.{gen}"))).expect("rename");
        })
    });
    let mut got = lines_noting(&mut r.rx, want.len(), &received).await;
    writer.join().expect("writer");
    got.extend(quiet(&mut r.rx).await);
    assert_exactly_once(got, want);
    r.stop().await;
}

/// Rotation by copytruncate while a writer appends (see `rename_rotation`).
async fn copytruncate_rotation(oom_every: Option<usize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    let mut cfg = config(dir.path(), "app.log*");
    cfg.include_all = oom_every.is_none();
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let n = 20_000;
    let want: Vec<String> = (0..n)
        .filter(|i: &usize| oom_every.is_none_or(|k| i.is_multiple_of(k)))
        .map(|i| line_text(i, oom_every))
        .collect();
    let (p, d) = (path.clone(), dir.path().to_path_buf());
    let received = Arc::new(AtomicUsize::new(0));
    let noted = Arc::clone(&received);
    let writer = std::thread::spawn(move || {
        // The writer pauses while the file is copied and truncated: lines
        // written in between are lost by copytruncate itself.
        write_lines(&p, n, 2_000, oom_every, &noted, |gen| {
            let tmp = d.join(format!(".copy.{gen}"));
            std::fs::copy(&p, &tmp).expect("copy");
            std::fs::rename(&tmp, d.join(format!("app.log.{gen}"))).expect("rename");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(0))
                .expect("truncate");
        })
    });
    let mut got = lines_noting(&mut r.rx, want.len(), &received).await;
    writer.join().expect("writer");
    got.extend(quiet(&mut r.rx).await);
    assert_exactly_once(got, want);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_create_rotation_loses_and_repeats_nothing() {
    rename_rotation(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_create_rotation_loses_no_oom_line_when_others_are_skipped() {
    rename_rotation(Some(7)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_rotation_loses_and_repeats_nothing() {
    copytruncate_rotation(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_rotation_loses_no_oom_line_when_others_are_skipped() {
    copytruncate_rotation(Some(7)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_advance_only_when_delivered_and_restart_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    let mut cfg = config(dir.path(), "*.log");
    cfg.storage = Some(ComponentId::new("file_storage", None));
    cfg.start_at = StartAt::End;

    // Run 1: "a" delivered, then "b" failed downstream.
    append(&path, b"before\n");
    let mut r = run(&cfg, None, Some(storage.path())).await;
    wait_first_poll(&path).await;
    append(&path, b"a\n");
    let b = tokio::time::timeout(WAIT, r.rx.recv())
        .await
        .expect("batch")
        .expect("open");
    assert_eq!(bodies(&b), ["a"]);
    b.finalizers.settle(DeliveryStatus::Delivered);
    append(&path, b"b\n");
    let b = tokio::time::timeout(WAIT, r.rx.recv())
        .await
        .expect("batch")
        .expect("open");
    assert_eq!(bodies(&b), ["b"]);
    drop(b); // unsettled: Failed
    append(&path, b"c\n");
    let b = tokio::time::timeout(WAIT, r.rx.recv())
        .await
        .expect("batch")
        .expect("open");
    assert_eq!(bodies(&b), ["c"]);
    b.finalizers.settle(DeliveryStatus::Delivered);
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.stop().await;

    // Run 2: resumes after "a" ("b" failed, so "c" is read again too);
    // "before" is not read (start_at end at the first run); a file that
    // appeared while the agent was down is read from its start.
    append(&path, b"d\n");
    append(&dir.path().join("new.log"), b"while down\n");
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), Some(storage.path())).await;
    let mut got = lines(&mut r.rx, 4).await;
    got.extend(quiet(&mut r.rx).await);
    got.sort();
    assert_eq!(got, ["b", "c", "d", "while down"]);
    r.stop().await;

    // Run 3: everything was delivered: nothing again.
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), Some(storage.path())).await;
    assert_eq!(quiet(&mut r.rx).await, Vec::<String>::new());
    r.stop().await;
}

/// With only matching lines sent, the lines skipped around them advance the
/// checkpoint only together with the records: a failed record is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_lines_advance_the_checkpoint_only_with_the_records_around_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    let mut cfg = config(dir.path(), "*.log");
    cfg.include_all = false;
    cfg.storage = Some(ComponentId::new("file_storage", None));
    let oom = |i: usize| line_text(i, Some(1));
    append(
        &path,
        format!("noise\nnoise\n{}\nnoise\n", oom(1)).as_bytes(),
    );

    // Run 1: the record fails downstream.
    let mut r = run(&cfg, None, Some(storage.path())).await;
    let b = tokio::time::timeout(WAIT, r.rx.recv())
        .await
        .expect("batch")
        .expect("open");
    assert_eq!(bodies(&b), [oom(1)]);
    drop(b); // unsettled: Failed
    append(&path, format!("noise\n{}\n", oom(2)).as_bytes());
    let b = tokio::time::timeout(WAIT, r.rx.recv())
        .await
        .expect("batch")
        .expect("open");
    assert_eq!(bodies(&b), [oom(2)]);
    b.finalizers.settle(DeliveryStatus::Delivered);
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.stop().await;

    // Run 2: both again (the first failed, so the checkpoint stayed before
    // it), then delivered.
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), Some(storage.path())).await;
    let mut got = lines(&mut r.rx, 2).await;
    got.extend(quiet(&mut r.rx).await);
    assert_eq!(got, [oom(1), oom(2)]);
    append(&path, b"noise\nnoise\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.stop().await;

    // Run 3: nothing left to send; a new OOM line is the only record.
    append(&path, format!("{}\nnoise\n", oom(3)).as_bytes());
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), Some(storage.path())).await;
    let mut got = lines(&mut r.rx, 1).await;
    got.extend(quiet(&mut r.rx).await);
    assert_eq!(got, [oom(3)]);
    r.stop().await;
}

/// Receives until `n` records came (or the generous timeout passed).
async fn records(rx: &mut UnboundedReceiver<Batch>, n: usize) -> Vec<LogRecord> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(b)) => {
                if let Payload::Logs(rl) = b.payload.as_ref() {
                    got.extend(
                        rl.iter()
                            .flat_map(|r| &r.scope_logs)
                            .flat_map(|s| s.log_records.iter().cloned()),
                    );
                }
            }
            _ => break,
        }
    }
    got
}

fn body(r: &LogRecord) -> &str {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s,
        _ => "",
    }
}

fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn string(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matched_attributes_have_the_oom_receivers_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    append(
        &dir.path().join("kern.log"),
        concat!(
            "Nov 27 05:01:02 host kernel: [ 812.123456] Memory cgroup out of memory: Killed process 4242 (java) total-vm:4475840kB, anon-rss:1913012kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:4096kB oom_score_adj:-998\n",
            "Nov 27 05:01:03 host app[7]: memory allocation of 1099511627776 bytes failed\n",
        )
        .as_bytes(),
    );
    // The line's own pattern record (with reports on, a lone "Killed
    // process" line is a report record, typed the same way).
    let cfg = FilelogReceiverConfig {
        include_all: false,
        oom_reports: false,
        ..config(dir.path(), "*.log")
    };
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let got = records(&mut r.rx, 2).await;
    r.stop().await;
    assert_eq!(got.len(), 2, "{got:#?}");
    let int = |v: i64| any_value::Value::IntValue(v);
    let kill = &got[0];
    assert_eq!(
        attr(kill, "oom.pattern"),
        Some(&string("kernel.memcg_oom_kill"))
    );
    assert_eq!(attr(kill, "process.pid"), Some(&int(4242)));
    assert_eq!(attr(kill, "process.real_user.id"), Some(&int(1000)));
    assert_eq!(attr(kill, "oom.victim.oom_score_adj"), Some(&int(-998)));
    assert_eq!(
        attr(kill, "oom.victim.anon_rss"),
        Some(&int(1913012 * 1024))
    );
    assert_eq!(attr(kill, "oom.victim.comm"), Some(&string("java")));
    assert_eq!(attr(kill, "oom.trigger_type"), Some(&string("cgroup")));
    let alloc = &got[1];
    assert_eq!(
        attr(alloc, "oom.pattern"),
        Some(&string("rust.alloc_failed"))
    );
    assert_eq!(attr(alloc, "oom.requested_bytes"), Some(&int(1 << 40)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_files_are_reassembled_with_pod_identity_and_java_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pod_dir = dir.path().join("var/log/pods/shop_cart-7d9f_uid-1/app");
    std::fs::create_dir_all(&pod_dir).expect("mkdir");
    let links = dir.path().join("var/log/containers");
    std::fs::create_dir_all(&links).expect("mkdir");
    let id = "0f".repeat(32);
    append(
        &pod_dir.join("0.log"),
        concat!(
            "2024-05-01T10:00:00.000000001Z stdout F starting\n",
            "2024-05-01T10:00:01.5Z stderr P Exception in thread \"main\" java.lang.OutOfMem\n",
            "2024-05-01T10:00:01.6Z stderr P oryError: Java hea\n",
            "2024-05-01T10:00:01.7Z stderr F p space\n",
            "2024-05-01T10:00:01.8Z stderr F \tat com.example.Cache.grow(Cache.java:42)\n",
            "2024-05-01T10:00:01.9Z stderr F \tat com.example.Main.main(Main.java:7)\n",
            "2024-05-01T10:00:02Z stdout F next\n",
        )
        .as_bytes(),
    );
    append(
        &links.join(format!("cart-7d9f_shop_side-car-{id}.log")),
        b"2024-05-01T10:00:03Z stdout F from the sidecar\n",
    );
    let mut cfg = config(dir.path(), "var/log/pods/*/*/*.log");
    cfg.include.push(
        dir.path()
            .join("var/log/containers/*.log")
            .to_string_lossy()
            .into_owned(),
    );
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let mut got = records(&mut r.rx, 4).await;
    r.stop().await;
    got.sort_by_key(|r| r.time_unix_nano);
    let bodies: Vec<&str> = got.iter().map(body).collect();
    assert_eq!(
        bodies,
        [
            "starting",
            "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\
             \tat com.example.Cache.grow(Cache.java:42)\n\
             \tat com.example.Main.main(Main.java:7)",
            "next",
            "from the sidecar",
        ]
    );
    let oom = &got[1];
    assert_eq!(oom.time_unix_nano, 1_714_557_601_500_000_000);
    assert_eq!(attr(oom, "log.iostream"), Some(&string("stderr")));
    assert_eq!(attr(&got[0], "log.iostream"), Some(&string("stdout")));
    assert!(attr(oom, "oom.pattern").is_some(), "{:?}", oom.attributes);
    assert_eq!(attr(oom, "k8s.namespace.name"), Some(&string("shop")));
    assert_eq!(attr(oom, "k8s.pod.name"), Some(&string("cart-7d9f")));
    assert_eq!(attr(oom, "k8s.pod.uid"), Some(&string("uid-1")));
    assert_eq!(attr(oom, "k8s.container.name"), Some(&string("app")));
    assert_eq!(
        attr(oom, "k8s.container.restart_count"),
        Some(&any_value::Value::IntValue(0))
    );
    let side = &got[3];
    assert_eq!(attr(side, "k8s.container.name"), Some(&string("side-car")));
    assert_eq!(attr(side, "k8s.namespace.name"), Some(&string("shop")));
    assert_eq!(attr(side, "container.id"), Some(&string(&id)));
}

/// A runtime OOM message in a kubelet log joins the kill of its container
/// (by pod uid and container name); another container's does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_oom_message_joins_the_kill_of_that_container() {
    use crate::incidents::INCIDENT_ID;
    use crate::receivers::oom::kill::{OomKill, Scope, Source, Trigger, Victim};

    let dir = tempfile::tempdir().expect("tempdir");
    // (Different times: files that start alike are one file to filelog.)
    for (container, at) in [("app", "01.5"), ("side", "01.6")] {
        let pod_dir = dir
            .path()
            .join(format!("var/log/pods/shop_cart-7d9f_uid-1/{container}"));
        std::fs::create_dir_all(&pod_dir).expect("mkdir");
        append(
            &pod_dir.join("0.log"),
            format!(
                "2024-05-01T10:00:{at}Z stderr F java.lang.OutOfMemoryError: Java heap space\n"
            )
            .as_bytes(),
        );
    }
    let extensions = Extensions::default();
    let hub = Arc::clone(&extensions.incidents);
    hub.enable(
        crate::incidents::DEFAULT_BEFORE,
        crate::incidents::DEFAULT_AFTER,
    );
    let kill = OomKill {
        // 3.5 s after the message was written.
        time_unix_nano: 1_714_557_605_000_000_000,
        kernel_time_ns: None,
        source: Source::Kmsg,
        victim: Victim {
            pid: 4242,
            comm: "java".into(),
            workload: Some(Arc::new(crate::workload::Workload {
                pod_uid: Some("uid-1".into()),
                k8s_container_name: Some("app".into()),
                ..crate::workload::Workload::default()
            })),
            ..Victim::default()
        },
        trigger: Trigger::default(),
        scope: Scope::default(),
    };
    let kill_id = hub.kill(Arc::new(kill), None);
    let cfg = config(dir.path(), "var/log/pods/*/*/*.log");
    let mut r = run_in(&cfg, Some(DeliveryStatus::Delivered), None, extensions).await;
    let got = records(&mut r.rx, 2).await;
    r.stop().await;
    let id_of = |container: &str| {
        got.iter()
            .find(|r| attr(r, "k8s.container.name") == Some(&string(container)))
            .and_then(|r| attr(r, INCIDENT_ID).cloned())
    };
    assert_eq!(id_of("app"), Some(string(&kill_id)));
    let side = id_of("side").expect("the sidecar's message has an incident of its own");
    assert_ne!(side, string(&kill_id));
    assert_eq!(hub.recent(10).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_json_files_are_decoded_and_bad_lines_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = "a1".repeat(32);
    let cdir = dir.path().join("containers").join(&id);
    std::fs::create_dir_all(&cdir).expect("mkdir");
    let long = "x".repeat(16 * 1024);
    let text = format!(
        concat!(
            r#"{{"log":"caf\u00e9 \"quoted\"\r\n","stream":"stdout","time":"2024-05-01T10:00:00.25Z"}}"#,
            "\n",
            r#"{{"log":"{long}","stream":"stderr","time":"2024-05-01T10:00:01Z"}}"#,
            "\n",
            r#"{{"log":"{long}","stream":"stderr","time":"2024-05-01T10:00:01Z"}}"#,
            "\n",
            r#"{{"log":"tail\n","stream":"stderr","time":"2024-05-01T10:00:01Z"}}"#,
            "\n",
            r#"{{"log":"broken"#,
            "\n",
            r#"{{"log":"after\n","stream":"stdout","time":"2024-05-01T10:00:02Z"}}"#,
            "\n",
        ),
        long = long
    );
    append(&cdir.join(format!("{id}-json.log")), text.as_bytes());
    let mut r = run(
        &config(dir.path(), "containers/*/*-json.log"),
        Some(DeliveryStatus::Delivered),
        None,
    )
    .await;
    let got = records(&mut r.rx, 4).await;
    r.stop().await;
    assert_eq!(
        got.len(),
        4,
        "{:?}",
        got.iter().map(body).collect::<Vec<_>>()
    );
    assert_eq!(body(&got[0]), "café \"quoted\"");
    assert_eq!(got[0].time_unix_nano, 1_714_557_600_250_000_000);
    assert_eq!(attr(&got[0], "log.iostream"), Some(&string("stdout")));
    assert_eq!(attr(&got[0], "container.id"), Some(&string(&id)));
    assert_eq!(body(&got[1]), format!("{long}{long}tail"));
    assert_eq!(attr(&got[1], "log.iostream"), Some(&string("stderr")));
    assert_eq!(body(&got[2]), r#"{"log":"broken"#);
    assert_eq!(attr(&got[2], "log.iostream"), None);
    assert_eq!(got[2].time_unix_nano, 0);
    assert_eq!(attr(&got[2], "container.id"), Some(&string(&id)));
    assert_eq!(body(&got[3]), "after");
}

/// `oom.log.matches` counts matched records per pattern and runtime, as the
/// shared catalog entry says; the last report comes at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_are_counted_per_pattern_and_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    append(
        &path,
        b"fatal error: runtime: out of memory\nplain line\nfatal error: runtime: out of memory\n",
    );
    let cfg = FilelogReceiverConfig {
        include_all: false,
        ..config(dir.path(), "*.log")
    };
    let (logs, mut logs_rx) = Collect::new(None);
    let (metrics_out, mut metrics_rx) = Collect::new(None);
    let ctx = BuildContext {
        id: ComponentId::new("filelog", None),
        telemetry: Telemetry::noop(),
        extensions: Arc::default(),
        shutdown: CancellationToken::new(),
    };
    let shutdown = ctx.shutdown.clone();
    let outputs = ReceiverOutputs {
        logs: Some(logs),
        metrics: Some(metrics_out),
    };
    let task = start(&cfg, ctx, outputs).await.expect("starts");
    assert_eq!(lines(&mut logs_rx, 2).await.len(), 2);
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the receiver ends")
        .expect("no panic");

    let mut last = None;
    while let Ok(batch) = metrics_rx.try_recv() {
        last = Some(batch);
    }
    let last = last.expect("a report at shutdown");
    let Payload::Metrics(rm) = last.payload.as_ref() else {
        panic!("logs on the metrics output");
    };
    crate::metric_catalog::checks::assert_emitted_per_catalog(rm, metrics::ALL);
    let matches = &rm[0].scope_metrics[0].metrics[0];
    assert_eq!(matches.name, "oom.log.matches");
    let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(sum)) = &matches.data
    else {
        panic!("{matches:?}");
    };
    let [point] = sum.data_points.as_slice() else {
        panic!("one series: {sum:?}");
    };
    assert_eq!(
        point.value,
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(2))
    );
    let runtime = point.attributes.iter().find(|a| a.key == "oom.runtime");
    assert_eq!(
        runtime.and_then(|a| a.value.as_ref()?.value.clone()),
        Some(any_value::Value::StringValue("go".into()))
    );
}

/// A kern.log holding a real report (an AKS node's syslog, 6 kills of one
/// memory.oom.group, see tests/data/oom-reports/new/samples.json) between
/// other lines, written in two parts: one record per kill with the report's
/// attributes (ints where the oom receiver has ints), no record per report
/// line, and the lines around it still matched on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_report_in_a_file_is_one_record_per_kill() {
    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/oom-reports/new/aks-syslog-kubepods-oom-group-bash.txt"),
    )
    .expect("sample");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kern.log");
    // Cut after the line in the middle.
    let cut = sample
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .nth(sample.lines().count() / 2)
        .expect("lines");
    append(&path, b"fatal error: runtime: out of memory\n");
    append(&path, &sample.as_bytes()[..cut]);
    let cfg = FilelogReceiverConfig {
        include_all: false,
        ..config(dir.path(), "*.log")
    };
    let running = run(&cfg, None, None).await;
    wait_first_poll(&path).await;
    // The report's rest comes later, as a tailed file's would.
    append(&path, &sample.as_bytes()[cut..]);
    append(&path, b"fatal error: runtime: out of memory\n");
    let mut rx = running.rx;
    let got = records(&mut rx, 8).await;
    let patterns: Vec<_> = got
        .iter()
        .map(|r| match attr(r, "oom.pattern") {
            Some(any_value::Value::StringValue(p)) => p.as_str(),
            _ => "",
        })
        .collect();
    assert_eq!(
        patterns,
        [
            "go.fatal_out_of_memory",
            "kernel.oom_report",
            "kernel.oom_report",
            "kernel.oom_report",
            "kernel.oom_report",
            "kernel.oom_report",
            "kernel.oom_report",
            "go.fatal_out_of_memory",
        ],
        "{got:#?}"
    );
    let first = &got[1];
    assert_eq!(
        attr(first, "process.pid"),
        Some(&any_value::Value::IntValue(7788))
    );
    assert_eq!(attr(first, "oom.victim.comm"), Some(&string("bash")));
    assert_eq!(
        attr(first, "oom.victim.anon_rss"),
        Some(&any_value::Value::IntValue(7165824 * 1024))
    );
    assert_eq!(attr(first, "oom.memcg"), Some(&string("/kubepods.slice")));
    assert_eq!(
        attr(first, "oom.memcg.limit"),
        Some(&any_value::Value::IntValue(7464436 * 1024))
    );
    assert_eq!(
        attr(first, "oom.tasks.count"),
        Some(&any_value::Value::IntValue(28))
    );
    assert_eq!(
        attr(first, "oom.trigger.pid"),
        Some(&any_value::Value::IntValue(7788))
    );
    assert_eq!(
        attr(first, "hostname"),
        Some(&string("aks-np0cas-14924781-vmss000008"))
    );
    assert_eq!(attr(first, "log.file.name"), Some(&string("kern.log")));
    assert!(
        body(first).starts_with("bash invoked oom-killer: "),
        "{}",
        body(first)
    );
    assert!(
        body(first).contains("[   7788]"),
        "the task table is in the body"
    );
    // The record's time is the syslog prefix's, read in this host's zone.
    assert_ne!(first.time_unix_nano, 0);
    let members: Vec<_> = got[2..7]
        .iter()
        .map(|r| {
            (
                attr(r, "process.pid").cloned(),
                attr(r, "oom.group").cloned(),
            )
        })
        .collect();
    assert!(
        members
            .iter()
            .all(|(_, group)| matches!(group, Some(any_value::Value::StringValue(g)) if g.ends_with(".scope"))),
        "{members:?}"
    );
    assert!(quiet(&mut rx).await.is_empty(), "nothing more");
}

/// A report cut off inside its file is sent once the file stops growing,
/// with what it has and a note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_file_ends_inside_of_is_sent_with_a_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("messages");
    append(
        &path,
        b"Mar  2 03:04:05 db1 kernel: [12345.678901] mysqld invoked oom-killer: gfp_mask=0x201da, order=0, oom_score_adj=0\n\
          Mar  2 03:04:05 db1 kernel: [12345.678950] Pid: 2602, comm: mysqld Not tainted 2.6.32-431.el6.x86_64 #1\n\
          Mar  2 03:04:05 db1 kernel: [12345.679001] Out of memory: Kill process 2602 (mysqld) score 901 or sacrifice child\n",
    );
    let cfg = FilelogReceiverConfig {
        include_all: false,
        ..config(dir.path(), "messages")
    };
    let running = run(&cfg, None, None).await;
    let mut rx = running.rx;
    let got = records(&mut rx, 1).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    assert_eq!(attr(r, "oom.pattern"), Some(&string("kernel.oom_report")));
    assert_eq!(r.severity_text, "WARN");
    assert!(
        matches!(attr(r, "oom.report.incomplete"), Some(any_value::Value::StringValue(n)) if n.contains("Killed process")),
        "{r:#?}"
    );
    assert_eq!(
        attr(r, "oom.selected.pid"),
        Some(&any_value::Value::IntValue(2602))
    );
    assert_eq!(
        attr(r, "oom.trigger.pid"),
        Some(&any_value::Value::IntValue(2602))
    );
    assert_eq!(attr(r, "process.pid"), None, "no process was killed");
    assert_eq!(body(r).lines().count(), 3);
}

/// `disable_patterns: ["kernel.*"]` (kernel lines come from kmsg): no
/// report record either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_kernel_patterns_turn_reports_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("syslog");
    append(
        &path,
        b"Mar  2 03:04:05 db1 kernel: [1.5] Out of memory: Killed process 7 (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB\n\
          fatal error: runtime: out of memory\n",
    );
    let cfg = FilelogReceiverConfig {
        include_all: false,
        disable_patterns: vec!["kernel.*".into()],
        ..config(dir.path(), "syslog")
    };
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let got = records(&mut r.rx, 1).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        attr(&got[0], "oom.pattern"),
        Some(&string("go.fatal_out_of_memory"))
    );
    assert!(quiet(&mut r.rx).await.is_empty());
    r.stop().await;
}

/// A restart while a report is half read: the saved offset stayed before
/// the report's first line, so the report is read again whole (one record
/// with its header's facts), not from its middle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_report_reads_it_whole() {
    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/oom-reports/new/aks-syslog-kubepods-cgroupv2-stress-ng.txt"),
    )
    .expect("sample");
    let lines: Vec<&str> = sample.lines().collect();
    let killed = lines
        .iter()
        .position(|l| l.contains("Killed process"))
        .expect("a kill");
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = tempfile::tempdir().expect("storage");
    let path = dir.path().join("syslog");
    // Another program's OOM line in the middle of the report shows how far
    // the first run read.
    let mut first = lines[..killed - 3].join("\n");
    first.push_str("\nMay 19 18:14:43 node app[9]: fatal error: runtime: out of memory\n");
    append(&path, first.as_bytes());
    let cfg = FilelogReceiverConfig {
        include_all: false,
        storage: Some(ComponentId::new("file_storage", None)),
        oom_report_wait: GoDuration::from_secs(3600),
        ..config(dir.path(), "syslog")
    };
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), Some(storage.path())).await;
    let got = records(&mut r.rx, 1).await;
    assert_eq!(
        got.iter()
            .map(|r| attr(r, "oom.pattern").cloned())
            .collect::<Vec<_>>(),
        [Some(string("go.fatal_out_of_memory"))]
    );
    r.stop().await;

    let mut rest = lines[killed - 3..].join("\n");
    rest.push('\n');
    append(&path, rest.as_bytes());
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), Some(storage.path())).await;
    let got = records(&mut r.rx, 2).await;
    let reports: Vec<_> = got
        .iter()
        .filter(|r| attr(r, "oom.pattern") == Some(&string("kernel.oom_report")))
        .collect();
    assert_eq!(reports.len(), 1, "{got:#?}");
    let report = reports[0];
    assert_eq!(report.severity_text, "ERROR");
    assert_eq!(
        attr(report, "oom.trigger.comm"),
        Some(&string("stress-ng-vm")),
        "{report:#?}"
    );
    assert!(attr(report, "oom.tasks.count").is_some(), "{report:#?}");
    r.stop().await;
}

/// stanza's `attributes` and `resource`: static values on every record and
/// on the records' resource (YAML numbers kept as text, as stanza does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_attributes_and_resource() {
    use crate::component::ComponentConfig;
    use config::StaticValue;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    append(&path, b"one line\n");
    let cfg = FilelogReceiverConfig {
        attributes: [
            ("team".to_string(), StaticValue::Text("db".into())),
            (
                "log.file.name".to_string(),
                StaticValue::Text("not this".into()),
            ),
        ]
        .into(),
        resource: [
            (
                "service.name".to_string(),
                StaticValue::Text("billing".into()),
            ),
            ("tier".to_string(), StaticValue::Int(2)),
        ]
        .into(),
        ..config(dir.path(), "*.log")
    };
    assert!(cfg.validate().is_ok());
    let mut r = run(&cfg, Some(DeliveryStatus::Delivered), None).await;
    let b = tokio::time::timeout(WAIT, r.rx.recv())
        .await
        .expect("batch")
        .expect("open");
    let Payload::Logs(rl) = b.payload.as_ref() else {
        panic!("logs")
    };
    let text = |attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str| {
        attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            }
        })
    };
    let resource = rl[0]
        .resource
        .as_ref()
        .expect("resource")
        .attributes
        .as_slice();
    assert_eq!(text(resource, "service.name").as_deref(), Some("billing"));
    assert_eq!(text(resource, "tier").as_deref(), Some("2"));
    let rec = &rl[0].scope_logs[0].log_records[0];
    assert_eq!(text(&rec.attributes, "team").as_deref(), Some("db"));
    // The file's own attribute wins over a static one of the same key.
    assert_eq!(
        text(&rec.attributes, "log.file.name").as_deref(),
        Some("app.log")
    );
    r.stop().await;

    let expr = FilelogReceiverConfig {
        attributes: [("x".to_string(), StaticValue::Text("EXPR(body)".into()))].into(),
        ..config(dir.path(), "*.log")
    };
    let err = expr
        .validate()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("EXPR(...) expressions are not supported"),
        "{err}"
    );
}

/// Issue 13 item 3: one real kill on this project's machine as `dmesg -T`
/// and rsyslog's kern.log wrote it (tests/data/log-prefixes) gives, from a
/// file, the attributes (names, values, types) of the `kmsg` receiver's
/// report record for the same kill read from /dev/kmsg, plus the file's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_from_a_file_has_the_kmsg_receivers_attributes() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/log-prefixes");
    let kmsg = std::fs::read_to_string(data.join("kmsg.txt")).expect("kmsg.txt");
    let mut assembler = crate::kernel_log::OomReportAssembler::new();
    let from_kmsg = kmsg
        .lines()
        .map(|l| crate::kernel_log::KmsgRecord::parse(l.as_bytes()).expect("kmsg record"))
        .find_map(|r| assembler.push(&r))
        .expect("a complete report");
    let want = crate::kernel_log::report_record::report_attributes(&from_kmsg, Vec::new());
    for name in ["dmesg-T.txt", "rsyslog-traditional-berlin.txt"] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(data.join(name), dir.path().join("kern.log")).expect("copy");
        let cfg = FilelogReceiverConfig {
            include_all: false,
            ..config(dir.path(), "kern.log")
        };
        let running = run(&cfg, None, None).await;
        let mut rx = running.rx;
        let got = records(&mut rx, 1).await;
        let report = got
            .iter()
            .find(|r| attr(r, "oom.pattern") == Some(&string("kernel.oom_report")))
            .unwrap_or_else(|| panic!("{name}: {got:#?}"));
        let own = |k: &str| k.starts_with("log.") || k == "hostname";
        let attributes: Vec<_> = report.attributes.iter().filter(|a| !own(&a.key)).collect();
        assert_eq!(attributes, want.iter().collect::<Vec<_>>(), "{name}");
        assert_eq!(
            attr(report, "process.pid"),
            Some(&any_value::Value::IntValue(28526)),
            "{name}"
        );
        assert_eq!(attr(report, "log.file.name"), Some(&string("kern.log")));
        assert_ne!(report.time_unix_nano, 0, "{name}: the prefix's time");
    }
}

/// A tailer over `cfg` driven poll by poll (no run loop), sending to
/// `logs`; the receiver keeps the tailer's acknowledgements.
fn tailer(cfg: FilelogReceiverConfig, logs: DynConsumer) -> (Tailer, mpsc::Receiver<InFlight>) {
    let library =
        Arc::new(Library::new(&cfg.patterns, &cfg.disable_patterns).expect("pattern library"));
    let (checkpoints, resumed) = Checkpoints::load(None).expect("checkpoints");
    let (ack_tx, ack_rx) = mpsc::channel(MAX_IN_FLIGHT + 1);
    let ctx = BuildContext {
        id: ComponentId::new("filelog", None),
        telemetry: Telemetry::noop(),
        extensions: Arc::new(Extensions::default()),
        shutdown: CancellationToken::new(),
    };
    let t = Tailer::new(
        cfg,
        ctx,
        library,
        None,
        Vec::new(),
        checkpoints,
        resumed,
        Some(logs),
        Arc::default(),
        ack_tx,
    );
    (t, ack_rx)
}

/// Sets `dir`'s mtime an hour back: its listing is trusted at once.
fn age(dir: &Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    File::open(dir)
        .and_then(|f| f.set_modified(old))
        .expect("setting the directory's mtime");
}

/// While no file matched, nothing changes unseen by the watches (but a
/// mount), and the idle wait is the long one; a file matched may change
/// unseen (a write through a shared mapping) and brings the short one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_wait_is_long_only_while_no_file_matched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (collect, _rx) = Collect::new(None);
    let (mut t, _acks) = tailer(config(dir.path(), "*.log"), collect);
    t.idle_poll = watch::IDLE_POLL;
    let handle = Handle::current();
    let path = dir.path().join("a.log");
    tokio::task::spawn_blocking(move || {
        t.poll_once(&handle);
        assert_eq!(t.idle_wait(), watch::IDLE_POLL_NOTHING_MATCHED);
        append(&path, b"one\n");
        t.poll_once(&handle);
        assert_eq!(t.idle_wait(), watch::IDLE_POLL, "a.log matched");
    })
    .await
    .expect("the checks");
}

/// A poll that changes nothing is a fixed point: the tailer then waits on
/// inotify watches on the directories the globs reach (and on the nearest
/// existing ancestor of what they miss) instead of polling; anything that
/// waits on time, or a match inotify cannot follow, keeps it polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_that_changes_nothing_watches_the_directories_for_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let path = logs.join("a.log");
    append(&path, b"one\n");
    age(&logs);
    let mut cfg = config(&logs, "*.log");
    cfg.include.push(
        dir.path()
            .join("later/*.log")
            .to_string_lossy()
            .into_owned(),
    );
    // A partial line is held for an hour: no flush between two polls.
    cfg.force_flush_period = GoDuration::from_secs(3600);
    let (collect, mut rx) = Collect::new(None);
    let (mut t, _acks) = tailer(cfg, collect);
    let handle = Handle::current();
    let dir_path = dir.path().to_path_buf();
    let checked = tokio::task::spawn_blocking(move || {
        t.poll_once(&handle);
        assert!(t.poll_did_work, "the first poll opens and reads");
        assert!(t.idle_watch_set().is_none());
        t.poll_once(&handle);
        assert!(!t.poll_did_work, "nothing changed");
        let wanted = t.idle_watch_set().expect("a fixed point");
        assert_eq!(wanted.get(&logs), Some(&watch::contents()));
        assert_eq!(
            wanted.get(&dir_path),
            Some(&watch::arrivals()),
            "where later/ would appear: {wanted:?}"
        );
        assert_eq!(wanted.len(), 2, "{wanted:?}");
        t.cfg.inotify = false;
        assert!(t.idle_watch_set().is_none(), "inotify: false polls");
        t.cfg.inotify = true;
        if !watch::is_local(&logs) {
            eprintln!("SKIP (watch part): the temporary directory is not on a local file system");
            return;
        }
        assert_eq!(t.watches.watch(wanted.clone()), watch::Armed::Now);
        assert_eq!(t.watches.watch(wanted), watch::Armed::Already);

        // A write is an event, and the poll after it reads the line.
        append(&path, b"two\n");
        assert!(t.watches.drain(), "a write to a watched file");
        t.poll_once(&handle);
        assert!(t.poll_did_work);
        t.poll_once(&handle);
        assert!(t.idle_watch_set().is_some(), "read to its end again");

        // A partial line waits on time (force_flush_period): no watching.
        append(&path, b"thr");
        assert!(t.watches.drain());
        t.poll_once(&handle);
        t.poll_once(&handle);
        assert!(!t.poll_did_work);
        assert!(
            t.idle_watch_set().is_none(),
            "a partial line is flushed on time"
        );
        append(&path, b"ee\n");
        t.poll_once(&handle);
        t.poll_once(&handle);
        assert!(t.idle_watch_set().is_some());

        // What the globs missed appears: an event in its ancestor.
        let later = dir_path.join("later");
        std::fs::create_dir(&later).expect("mkdir");
        assert!(
            t.watches.drain(),
            "a directory created where one is looked for"
        );
        append(&later.join("b.log"), b"four\n");
        t.poll_once(&handle);
        assert!(t.poll_did_work, "the new file is read");
        assert!(t.idle_watch_set().is_none());

        // A symbolic link to a file elsewhere: its writes would show in
        // another directory, so the tailer polls.
        let elsewhere = dir_path.join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        append(&elsewhere.join("target"), b"five\n");
        std::os::unix::fs::symlink(elsewhere.join("target"), logs.join("link.log"))
            .expect("symlink");
        age(&logs);
        age(&later);
        t.poll_once(&handle);
        t.poll_once(&handle);
        assert!(!t.poll_did_work);
        assert!(t.matched_link);
        assert!(
            t.idle_watch_set().is_none(),
            "a link is followed by polling"
        );
    });
    checked.await.expect("checks pass");
    let got = lines(&mut rx, 5).await;
    assert_eq!(got, ["one", "two", "three", "four", "five"]);
}

/// The line finder stays within Slim Teddy's literal count: past it,
/// aho-corasick scans with Fat Teddy at half the bytes a step, and the
/// whole receiver's CPU for a large file nearly doubles.
#[test]
fn the_line_finder_keeps_to_slim_teddy() {
    let library = Library::builtin();
    for reports_on in [false, true] {
        let literals = finder_literals(&library, reports_on);
        let searched = crate::patterns::minimal_literals(&literals).len();
        assert!(
            searched <= crate::patterns::SLIM_TEDDY_LITERALS,
            "{searched} literals (of {}) with reports {reports_on}",
            literals.len()
        );
    }
}
