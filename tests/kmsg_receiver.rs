//! The `kmsg` receiver end to end, against the real `/dev/kmsg`: records go
//! to rotel over OTLP; a crash (`kill -9`) while rotel is down loses nothing
//! and, because the checkpoint moves only on acknowledgement, repeats
//! nothing. Needs root; skips with a printed reason otherwise.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::kernel_log::{kernel_log_lock, write_kmsg};
use common::oomscope::{own_metric, start_checkpointed_logs_agent, wait_for_own_metric, Oomscope};
use common::rotel::{Received, Rotel};
use common::skip;
use common::{free_port, LockMode};

const TIMEOUT: Duration = Duration::from_secs(60);
const TOKENS: usize = 20;

fn dev_kmsg_usable(test: &str) -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "not root (writing /dev/kmsg needs root)");
        return false;
    }
    if let Err(err) = std::fs::File::open("/dev/kmsg") {
        skip(test, format!("/dev/kmsg is not readable: {err}"));
        return false;
    }
    true
}

/// The agent (kmsg -> rotel, checkpointed in `state`) and the port of its
/// own metrics.
fn start_agent(rotel: &Rotel, state: &Path) -> (Oomscope, u16) {
    start_checkpointed_logs_agent(
        rotel,
        "kmsg",
        &[
            "include_all: true",
            "storage: file_storage",
            "batch_wait: 50ms",
        ],
        state,
        TIMEOUT,
    )
}

/// Log records the kmsg receiver has handed to its pipeline so far.
fn accepted(metrics: u16) -> f64 {
    own_metric(
        metrics,
        "otelcol_receiver_accepted_log_records_total",
        &[("receiver", "kmsg")],
    )
    .unwrap_or(0.0)
}

/// How many times each token's record arrived (whole, with its sequence
/// number), and the highest kmsg sequence number among them.
fn tokens_seen(received: &Received, tokens: &[String]) -> (BTreeMap<String, usize>, Option<u64>) {
    let mut counts: BTreeMap<String, usize> = tokens.iter().map(|t| (t.clone(), 0)).collect();
    let mut highest = None;
    for record in &received.logs {
        let Some(body) = &record.body else { continue };
        for token in tokens {
            // Counted once its sequence number is there: rotel prints a
            // record line by line, and the last one may still be half out.
            let seq = record
                .attributes
                .get("oomscope.kmsg.sequence")
                .and_then(|seq| seq.parse::<u64>().ok());
            if body.text.ends_with(token.as_str()) && seq.is_some() {
                *counts.entry(token.clone()).or_default() += 1;
                highest = highest.max(seq);
            }
        }
    }
    (counts, highest)
}

#[test]
fn kill_9_while_the_backend_is_down_delivers_every_record_once() {
    let test = "kill_9_while_the_backend_is_down_delivers_every_record_once";
    if !dev_kmsg_usable(test) {
        return;
    }
    // Shared: other tests on the machine may write to the kernel log, but
    // none may overrun it while this agent is down.
    let _kernel_log = kernel_log_lock(LockMode::Shared);
    let state = tempfile::tempdir().expect("tempdir");
    let mut rotel = Rotel::start();
    let (mut agent, metrics) = start_agent(&rotel, state.path());
    let run = format!("{:08x}", rand::random::<u32>());
    let token = |i: usize| format!("oomscope-kmsg-e2e {run} token-{i:03}");
    let tokens: Vec<String> = (0..2 * TOKENS).map(token).collect();

    // First half: delivered and acknowledged before anything breaks.
    for t in &tokens[..TOKENS] {
        write_kmsg(&format!("<5>{t}\n"));
    }
    let received = rotel.wait_for(TIMEOUT, |r| {
        tokens_seen(r, &tokens[..TOKENS])
            .0
            .values()
            .all(|&n| n >= 1)
    });
    let (_, first_half_seq) = tokens_seen(&received, &tokens[..TOKENS]);
    let first_half_seq = first_half_seq.expect("oomscope.kmsg.sequence on the records");
    let deadline = Instant::now() + TIMEOUT;
    while common::kmsg_checkpoint(state.path()).is_none_or(|seq| seq < first_half_seq) {
        assert!(
            Instant::now() < deadline,
            "the checkpoint did not reach {first_half_seq}: {:?}\n{}",
            common::kmsg_checkpoint(state.path()),
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Second half while the backend is down: read, sent, never acknowledged.
    rotel.stop();
    let accepted_before = accepted(metrics);
    for t in &tokens[TOKENS..] {
        write_kmsg(&format!("<5>{t}\n"));
    }
    // The agent has read them and fails to export them.
    wait_for_own_metric(
        metrics,
        "otelcol_receiver_accepted_log_records_total",
        &[("receiver", "kmsg")],
        accepted_before + TOKENS as f64,
        TIMEOUT,
    );
    agent.wait_for_output("Exporting failed", TIMEOUT);
    let checkpoint_before_kill = common::kmsg_checkpoint(state.path());
    agent.kill();

    let (mut agent, _) = start_agent(&rotel, state.path());
    rotel.restart();
    rotel.wait_for(TIMEOUT, |r| {
        tokens_seen(r, &tokens).0.values().all(|&n| n >= 1)
    });
    // A fence: the receiver reads the kernel log in order, so once a record
    // written after everything has arrived, repeats read before it have too.
    let fence = format!("oomscope-kmsg-e2e {run} fence");
    write_kmsg(&format!("<5>{fence}\n"));
    let received = rotel.wait_for(TIMEOUT, |r| {
        r.log_bodies().iter().any(|b| b.ends_with(fence.as_str()))
    });
    let (counts, _) = tokens_seen(&received, &tokens);
    let duplicates: usize = counts.values().map(|&n| n.saturating_sub(1)).sum();
    let _ = writeln!(
        std::io::stderr(),
        "{test}: {} tokens, {duplicates} duplicates (checkpoint before kill: {checkpoint_before_kill:?}, first half up to seq {first_half_seq})",
        tokens.len()
    );
    assert!(counts.values().all(|&n| n >= 1), "lost: {counts:?}");
    assert_eq!(duplicates, 0, "repeated: {counts:?}\n{}", agent.output());
    agent.stop(Duration::from_secs(10));
}

/// The kernel ring buffer is overrun while the agent is stopped: the records
/// after its checkpoint are gone, and on restart the receiver reports the gap
/// (a WARN record with `oomscope.kmsg.gap.missed`) and goes on reading.
#[test]
fn records_overwritten_while_stopped_are_reported_as_a_gap() {
    const TEST: &str = "records_overwritten_while_stopped_are_reported_as_a_gap";
    if !dev_kmsg_usable(TEST) {
        return;
    }
    // Exclusive: this test overruns the ring buffer every other test reads.
    let _kernel_log = kernel_log_lock(LockMode::Exclusive);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let state = dir.path().join("state");
    let health = free_port();
    let config = format!(
        r#"
receivers:
  kmsg:
    include_all: true
    storage: file_storage
    batch_wait: 50ms
exporters:
  file: {{ path: "{out}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [kmsg], exporters: [file] }}
"#,
        out = out.display(),
        state = state.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    let token = format!("oomscope-gap-test-{}", std::process::id());
    write_kmsg(&format!("<6>{token} before\n"));
    let seen = common::otlp::FileContents::wait_for(&out, TIMEOUT, |c| {
        c.log_bodies.iter().any(|b| b.contains(&token))
    });
    assert!(
        seen.log_bodies.iter().any(|b| b.contains(&token)),
        "{}",
        agent.output()
    );
    // The checkpoint is written once the batch is acknowledged.
    let token_seq: u64 = seen
        .logs
        .iter()
        .find(|r| {
            r["body"]["stringValue"]
                .as_str()
                .is_some_and(|b| b.contains(&token))
        })
        .and_then(|r| common::otlp::attr_str(r, "oomscope.kmsg.sequence"))
        .and_then(|s| s.parse().ok())
        .expect("oomscope.kmsg.sequence on the record");
    let deadline = Instant::now() + TIMEOUT;
    while common::kmsg_checkpoint(&state).is_none_or(|seq| seq < token_seq) {
        assert!(
            Instant::now() < deadline,
            "the checkpoint did not reach {token_seq}: {:?}\n{}",
            common::kmsg_checkpoint(&state),
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());

    // More than the whole ring buffer (log_buf_len; SYSLOG_ACTION_SIZE_BUFFER).
    // SAFETY: klogctl with a null buffer only returns a size.
    let buffer =
        usize::try_from(unsafe { libc::klogctl(10, std::ptr::null_mut(), 0) }).unwrap_or(1 << 20);
    let filler = "x".repeat(800);
    let mut written = 0;
    let mut i = 0;
    while written < 2 * buffer {
        // A fresh descriptor per record: user writes are rate-limited per
        // open file (printk_devkmsg=ratelimit).
        write_kmsg(&format!("<7>{token} flood {i} {filler}\n"));
        written += filler.len() + 40;
        i += 1;
    }

    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    let gap = loop {
        let c = common::otlp::FileContents::read(&out);
        if let Some(r) = c
            .logs
            .iter()
            .find(|r| common::otlp::attr_str(r, "oomscope.kmsg.gap.missed").is_some())
        {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no gap record after the overrun:\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(gap["severityText"], "WARN", "{gap:#}");
    let missed: u64 = common::otlp::attr_str(&gap, "oomscope.kmsg.gap.missed")
        .and_then(|m| m.parse().ok())
        .expect("oomscope.kmsg.gap.missed is a number");
    assert!(missed > 0, "{gap:#}");
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}
