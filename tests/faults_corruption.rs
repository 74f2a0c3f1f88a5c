//! State corrupted or truncated while the agent is down: a persistent queue
//! item, the filelog checkpoint, the kmsg checkpoint. Each restart must warn
//! naming the bad file, skip the bad item (or fall back to `start_at`), and
//! keep serving: healthy, no crash loop, no panic, and a further restart is
//! clean. Against the real binary and rotel.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::faults::{
    has_panic, healthy, lines_with, logs_client, occurrences, send_once, wait_until,
};
use common::oomscope::Oomscope;
use common::rotel::Rotel;
use common::{free_port, skip};

const TIMEOUT: Duration = Duration::from_secs(90);

/// A `file_storage` frame: `OSQ1`, body length and CRC-32 (little endian),
/// body. A valid frame around a bad body gets past the CRC check.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = b"OSQ1".to_vec();
    out.extend_from_slice(&u32::try_from(body.len()).expect("len").to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
}

fn flip_last_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(path, bytes).expect("write");
}

fn start(config: &str, health: u16) -> Oomscope {
    let mut agent = Oomscope::start(config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    agent
}

/// Checks that the agent stays up and healthy and did not panic.
fn assert_serving(agent: &mut Oomscope, health: u16) {
    assert!(agent.try_status().is_none(), "exited:\n{}", agent.output());
    assert!(healthy(health), "not healthy:\n{}", agent.output());
    assert!(!has_panic(&agent.output()), "{}", agent.output());
}

/// Warnings whose `file` field names `path`.
fn warnings_naming(output: &str, needle: &str, path: &Path) -> usize {
    lines_with(output, needle)
        .iter()
        .filter(|l| l.level == "WARN")
        .filter(|l| {
            l.field("file")
                .is_some_and(|f| f.contains(&*path.to_string_lossy()))
        })
        .count()
}

fn elapsed(test: &str, started: Instant) {
    let _ = writeln!(std::io::stderr(), "{test}: took {:?}", started.elapsed());
}

#[test]
fn corrupt_or_truncated_queue_items_are_skipped_with_a_warning() {
    const TEST: &str = "corrupt_or_truncated_queue_items_are_skipped_with_a_warning";
    let started = Instant::now();
    let state = tempfile::tempdir().expect("tempdir");
    let mut rotel = Rotel::start();
    rotel.stop();
    let (grpc, health) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  otlp:
    endpoint: "{backend}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
    sending_queue: {{ storage: file_storage }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ logs: {{ encoding: json }}, metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp] }}
"#,
        backend = rotel.grpc_addr(),
        state = state.path().display(),
    );
    let mut agent = start(&config, health);
    let run = format!("{:08x}", rand::random::<u32>());
    let requests: Vec<Vec<String>> = (0..6)
        .map(|r| {
            (0..5)
                .map(|i| format!("corrupt-queue {run} request-{r} record-{i}"))
                .collect()
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // One at a time, so item order is request order.
    for bodies in &requests {
        rt.block_on(async {
            let mut client = logs_client(grpc, Duration::from_secs(30));
            send_once(&mut client, bodies).await
        })
        .unwrap_or_else(|e| panic!("not acknowledged: {e}\n{}", agent.output()));
    }
    agent.kill();

    let queue = state.path().join("exporter_otlp_/queue");
    let mut items: Vec<PathBuf> = std::fs::read_dir(&queue)
        .expect("queue dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "item"))
        .collect();
    items.sort();
    assert_eq!(items.len(), 6, "one item per acknowledged request");
    let len = std::fs::metadata(&items[1]).expect("item").len();
    truncate(&items[1], len / 2);
    flip_last_byte(&items[3]);
    truncate(&items[4], 0);
    // A frame that checks out around a body that is not a request.
    std::fs::write(&items[5], frame(b"\x01this is not protobuf\xff\xff")).expect("write");
    let bad = [&items[1], &items[3], &items[4], &items[5]];

    rotel.restart();
    let mut agent = start(&config, health);
    let good: Vec<String> = [&requests[0], &requests[2]]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let all: Vec<String> = requests.iter().flatten().cloned().collect();
    rotel.wait_for(TIMEOUT, |r| {
        occurrences(&good, &r.log_bodies())
            .values()
            .all(|&n| n >= 1)
    });
    wait_until(
        TIMEOUT,
        || format!("bad items not all reported:\n{}", agent.output()),
        || bad.iter().all(|p| !p.exists()),
    );
    let output = agent.output();
    for path in &bad[..3] {
        assert_eq!(
            warnings_naming(&output, "skipping a corrupt queue item", path),
            1,
            "{}:\n{output}",
            path.display()
        );
    }
    assert_eq!(
        warnings_naming(
            &output,
            "skipping an undecodable persistent queue item",
            bad[3]
        ),
        1,
        "{output}"
    );
    assert_serving(&mut agent, health);
    // Only the good items' records arrived; the bad ones are gone for good.
    let counts = occurrences(&all, &rotel.received().log_bodies());
    for (body, n) in &counts {
        let expected = usize::from(good.contains(body));
        assert_eq!(*n, expected, "{body}: {counts:?}");
    }

    // The next start has nothing left to complain about.
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
    let mut agent = start(&config, health);
    assert!(lines_with(&agent.output(), "corrupt").is_empty());
    assert_serving(&mut agent, health);
    elapsed(TEST, started);
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    for l in lines {
        writeln!(f, "{l}").expect("write log");
    }
}

/// Returns once the agent tails `app` from where it is now: with
/// `start_at: end` and no checkpoint, lines appended before its first poll
/// are skipped, so marker lines are appended until one arrives.
fn tailing(app: &Path, rotel: &Rotel, run: &str) {
    // Markers are new on every call: one an earlier agent delivered must not
    // count for this one (it would return before this agent tails the file).
    static CALL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + TIMEOUT;
    for i in 0.. {
        let marker = format!("corrupt-filelog {run} marker-{call}-{i}");
        append(app, std::slice::from_ref(&marker));
        let seen = Instant::now() + Duration::from_secs(2);
        while Instant::now() < seen {
            if rotel.received().log_bodies().contains(&marker) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            Instant::now() < deadline,
            "the agent does not tail {}",
            app.display()
        );
    }
}

#[test]
fn a_corrupt_filelog_checkpoint_falls_back_to_start_at() {
    const TEST: &str = "a_corrupt_filelog_checkpoint_falls_back_to_start_at";
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    let state = dir.path().join("state");
    std::fs::create_dir(&logs).expect("logs");
    let app = logs.join("app.log");
    let rotel = Rotel::start();
    let health = free_port();
    let config = format!(
        r#"
receivers:
  filelog:
    include: ["{logs}/*.log"]
    start_at: end
    include_all: true
    poll_interval: 50ms
    storage: file_storage
exporters:
  otlp:
    endpoint: "{backend}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ logs: {{ encoding: json }}, metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [filelog], exporters: [otlp] }}
"#,
        logs = logs.display(),
        backend = rotel.grpc_addr(),
        state = state.display(),
    );
    let run = format!("{:08x}", rand::random::<u32>());
    let lines = |part: &str| -> Vec<String> {
        (0..20)
            .map(|i| format!("corrupt-filelog {run} {part} line-{i:02}"))
            .collect()
    };
    let checkpoint = state.join("receiver_filelog_/kv/file_offsets");
    let wait_lines = |want: &[String]| {
        rotel.wait_for(TIMEOUT, |r| {
            occurrences(want, &r.log_bodies()).values().all(|&n| n >= 1)
        });
    };

    // Run 1: lines delivered, checkpoint saved.
    let first = lines("first");
    let agent = start(&config, health);
    tailing(&app, &rotel, &run);
    append(&app, &first);
    wait_lines(&first);
    let len = std::fs::metadata(&app).expect("log").len();
    wait_until(
        TIMEOUT,
        || format!("checkpoint not saved:\n{}", agent.output()),
        || common::filelog_offset(&state, "receiver_filelog_") == Some(len),
    );
    drop(agent); // SIGKILL

    // While down: more lines, and the checkpoint is truncated.
    let while_down = lines("while-down");
    append(&app, &while_down);
    truncate(&checkpoint, 7);
    let mut agent = start(&config, health);
    let after = lines("after-truncation");
    wait_until(
        TIMEOUT,
        || format!("no warning naming the checkpoint:\n{}", agent.output()),
        || {
            warnings_naming(
                &agent.output(),
                "ignoring a corrupt stored value",
                &checkpoint,
            ) == 1
        },
    );
    tailing(&app, &rotel, &run);
    append(&app, &after);
    wait_lines(&after);
    assert_serving(&mut agent, health);
    // start_at: end, as on a first start: what was written while the agent
    // was down is not read (the checkpoint that said where to resume is gone).
    let counts = occurrences(&while_down, &rotel.received().log_bodies());
    assert!(counts.values().all(|&n| n == 0), "{counts:?}");
    let len = std::fs::metadata(&app).expect("log").len();
    wait_until(
        TIMEOUT,
        || format!("checkpoint not saved again:\n{}", agent.output()),
        || common::filelog_offset(&state, "receiver_filelog_") == Some(len),
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());

    // A checkpoint whose frame checks out but whose content is not offsets.
    std::fs::write(&checkpoint, frame(b"{\"files\": 42}")).expect("write");
    let mut agent = start(&config, health);
    wait_until(
        TIMEOUT,
        || format!("no warning naming the checkpoint:\n{}", agent.output()),
        || {
            warnings_naming(
                &agent.output(),
                "ignoring unreadable file offsets",
                &checkpoint,
            ) == 1
        },
    );
    tailing(&app, &rotel, &run);
    let last = lines("after-garbage");
    append(&app, &last);
    wait_lines(&last);
    assert_serving(&mut agent, health);
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());

    // And the next start is clean.
    let mut agent = start(&config, health);
    assert!(lines_with(&agent.output(), "ignoring").is_empty());
    assert_serving(&mut agent, health);
    let body = common::stored_value(&checkpoint).expect("checkpoint");
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    elapsed(TEST, started);
}

#[test]
fn a_corrupt_kmsg_checkpoint_falls_back_to_start_at() {
    const TEST: &str = "a_corrupt_kmsg_checkpoint_falls_back_to_start_at";
    if !common::is_root() {
        skip(TEST, "not root (writing /dev/kmsg needs root)");
        return;
    }
    if let Err(e) = std::fs::File::open("/dev/kmsg") {
        skip(TEST, format!("/dev/kmsg is not readable: {e}"));
        return;
    }
    // Its records must not be overrun by another test while it reads them.
    let _kernel_log = common::kernel_log::kernel_log_lock(common::LockMode::Shared);
    let started = Instant::now();
    let state = tempfile::tempdir().expect("tempdir");
    let rotel = Rotel::start();
    let health = free_port();
    let config = format!(
        r#"
receivers:
  kmsg:
    include_all: true
    start_at: end
    storage: file_storage
    batch_wait: 50ms
exporters:
  otlp:
    endpoint: "{backend}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ logs: {{ encoding: json }}, metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [kmsg], exporters: [otlp] }}
"#,
        backend = rotel.grpc_addr(),
        state = state.path().display(),
    );
    let run = format!("{:08x}", rand::random::<u32>());
    let tokens = |part: &str| -> Vec<String> {
        (0..5)
            .map(|i| format!("oomscope-corrupt-kmsg {run} {part} token-{i}"))
            .collect()
    };
    let arrived = |want: &[String]| {
        let bodies: Vec<String> = rotel
            .received()
            .log_bodies()
            .into_iter()
            .filter_map(|b| want.iter().find(|t| b.ends_with(t.as_str())).cloned())
            .collect();
        occurrences(want, &bodies)
    };
    let checkpoint = state.path().join("receiver_kmsg_/kv/kmsg_checkpoint");

    let agent = start(&config, health);
    let first = tokens("first");
    for t in &first {
        common::kernel_log::write_kmsg(&format!("<5>{t}\n"));
    }
    wait_until(
        TIMEOUT,
        || format!("first tokens not delivered:\n{}", agent.output()),
        || arrived(&first).values().all(|&n| n >= 1),
    );
    wait_until(
        TIMEOUT,
        || format!("no checkpoint:\n{}", agent.output()),
        || common::kmsg_checkpoint(state.path()).is_some(),
    );
    drop(agent); // SIGKILL

    let while_down = tokens("while-down");
    for t in &while_down {
        common::kernel_log::write_kmsg(&format!("<5>{t}\n"));
    }
    flip_last_byte(&checkpoint);
    let mut agent = start(&config, health);
    wait_until(
        TIMEOUT,
        || format!("no warning naming the checkpoint:\n{}", agent.output()),
        || {
            warnings_naming(
                &agent.output(),
                "ignoring a corrupt stored value",
                &checkpoint,
            ) == 1
        },
    );
    let after = tokens("after");
    for t in &after {
        common::kernel_log::write_kmsg(&format!("<5>{t}\n"));
    }
    wait_until(
        TIMEOUT,
        || {
            format!(
                "tokens after the restart not delivered:\n{}",
                agent.output()
            )
        },
        || arrived(&after).values().all(|&n| n >= 1),
    );
    assert_serving(&mut agent, health);
    // start_at: end, as on a first start: records written while the agent
    // was down are not read.
    let counts = arrived(&while_down);
    assert!(counts.values().all(|&n| n == 0), "{counts:?}");
    wait_until(
        TIMEOUT,
        || format!("checkpoint not written again:\n{}", agent.output()),
        || common::kmsg_checkpoint(state.path()).is_some(),
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());

    let mut agent = start(&config, health);
    assert!(lines_with(&agent.output(), "ignoring").is_empty());
    assert_serving(&mut agent, health);
    elapsed(TEST, started);
}
