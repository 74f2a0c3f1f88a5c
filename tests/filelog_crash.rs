//! The `filelog` receiver across a crash: lines go to rotel over OTLP; the
//! backend stops, more lines are written (and rotated), the agent is killed
//! with SIGKILL, restarted, rotel comes back: every line arrives, once.
//! Checkpoints advance only on acknowledgement, so nothing is lost (the
//! collector saves offsets on read and loses these, contrib#31074).

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::oomscope::{start_checkpointed_logs_agent, wait_for_own_metric, Oomscope};
use common::rotel::Rotel;

const TIMEOUT: Duration = Duration::from_secs(60);
const LINES: usize = 200;

/// The agent (filelog -> rotel, checkpointed in `state`) and the port of its
/// own metrics.
fn start_agent(rotel: &Rotel, logs: &Path, state: &Path) -> (Oomscope, u16) {
    let include = format!("include: [\"{}/*.log\"]", logs.display());
    start_checkpointed_logs_agent(
        rotel,
        "filelog",
        &[
            &include,
            "start_at: beginning",
            "include_all: true",
            "poll_interval: 50ms",
            "storage: file_storage",
        ],
        state,
        TIMEOUT,
    )
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

#[test]
fn kill_9_while_the_backend_is_down_loses_no_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let mut rotel = Rotel::start();
    let (mut agent, metrics) = start_agent(&rotel, &logs, &state);
    let run = format!("{:08x}", rand::random::<u32>());
    let lines: Vec<String> = (0..3 * LINES)
        .map(|i| {
            format!("filelog-e2e {run} line-{i:04} java.lang.OutOfMemoryError: Java heap space")
        })
        .collect();
    let app = logs.join("app.log");

    // First part: delivered before anything breaks.
    append(&app, &lines[..LINES]);
    rotel.wait_for(TIMEOUT, |r| {
        r.body_counts(&lines[..LINES]).values().all(|&n| n >= 1)
    });
    // The acknowledgement reaches the checkpoint.
    let first_part_end = std::fs::metadata(&app).expect("stat the log").len();
    let deadline = Instant::now() + TIMEOUT;
    while common::filelog_offset(&state, "receiver_filelog_").is_none_or(|o| o < first_part_end) {
        assert!(
            Instant::now() < deadline,
            "the checkpoint did not reach {first_part_end}: {:?}\n{}",
            common::filelog_offset(&state, "receiver_filelog_"),
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Second part while the backend is down, with a rotation in the middle
    // (rename + create): read and sent, never acknowledged.
    rotel.stop();
    append(&app, &lines[LINES..LINES + LINES / 2]);
    std::fs::rename(&app, logs.join("app.log.1")).expect("rotate");
    // The rotated file stays matched by the glob only through its old handle.
    std::fs::rename(logs.join("app.log.1"), logs.join("app-1.log")).expect("rename into the glob");
    append(&app, &lines[LINES + LINES / 2..2 * LINES]);
    // The agent has read all of it and fails to export it.
    wait_for_own_metric(
        metrics,
        "otelcol_receiver_accepted_log_records_total",
        &[("receiver", "filelog")],
        (2 * LINES) as f64,
        TIMEOUT,
    );
    agent.wait_for_output("Exporting failed", TIMEOUT);
    agent.kill();

    // Third part while the agent is down.
    append(&app, &lines[2 * LINES..]);

    let (mut agent, _) = start_agent(&rotel, &logs, &state);
    rotel.restart();
    rotel.wait_for(TIMEOUT, |r| r.body_counts(&lines).values().all(|&n| n >= 1));
    // Fences: each file is read in order, so once a line appended to both
    // files after everything has arrived, repeats read before it have too.
    let fences: Vec<String> = ["app.log", "app-1.log"]
        .iter()
        .map(|f| format!("filelog-e2e {run} fence {f} java.lang.OutOfMemoryError: Java heap space"))
        .collect();
    append(&app, &fences[..1]);
    append(&logs.join("app-1.log"), &fences[1..]);
    let received = rotel.wait_for(TIMEOUT, |r| {
        r.body_counts(&fences).values().all(|&n| n >= 1)
    });
    let counts = received.body_counts(&lines);
    let lost: Vec<&String> = counts
        .iter()
        .filter(|(_, &n)| n == 0)
        .map(|(l, _)| l)
        .collect();
    let duplicates: usize = counts.values().map(|&n| n.saturating_sub(1)).sum();
    let _ = writeln!(
        std::io::stderr(),
        "kill_9_while_the_backend_is_down_loses_no_line: {} lines, {} lost, {duplicates} duplicates",
        lines.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} lines, first {:?}\n{}",
        lost.len(),
        lost.first(),
        agent.output()
    );
    // The first part was acknowledged before the crash: it must not repeat.
    let first_repeated = counts
        .iter()
        .filter(|(l, &n)| n > 1 && lines[..LINES].contains(l))
        .count();
    assert_eq!(first_repeated, 0, "acknowledged lines were sent again");
    agent.stop(Duration::from_secs(10));
}
