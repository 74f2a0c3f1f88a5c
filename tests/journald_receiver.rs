//! The `journald` receiver end to end: the real oomscope binary reading the
//! journal of a real `systemd-journald` (started by the test in private
//! namespaces, see common/journald.rs), written by real programs through
//! journald's own sockets:
//! - Java, Python and Go running out of memory in units (their stdout and
//!   stderr a journald stream, as systemd connects a service's): one record
//!   each, with the whole stack trace, the unit and the process;
//! - rotation while reading: every OOM line once;
//! - SIGKILL while the backend is down, then a restart: nothing lost, nothing
//!   acknowledged repeated;
//! - a checkpoint whose entry was vacuumed meanwhile: a warning record with
//!   the exact count, and the first entry left delivered.
//!
//! Needs root (namespaces, cgroups); skips with a printed reason where the
//! host lacks systemd-journald (scripts/setup.sh installs it) or a runtime.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use common::journald::{Journald, UnitCgroup};
use common::oomscope::{start_checkpointed_logs_agent, wait_for_own_metric, Oomscope};
use common::otlp::{attr_str, json_attr, FileContents};
use common::rotel::Rotel;
use common::skip;

const TIMEOUT: Duration = Duration::from_secs(60);

/// journald, or the reason it cannot run here (printed as a skip).
fn journald(test: &str, extra: &str) -> Option<Journald> {
    match Journald::start(extra) {
        Ok(j) => Some(j),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

/// An agent reading `journal` into `<dir>/out.jsonl`, checkpointed in
/// `<dir>/state`.
struct Agent {
    agent: Oomscope,
    out: PathBuf,
}

fn start_agent(journal: &Path, dir: &Path, extra: &str) -> Agent {
    let (health, metrics) = (free_port(), free_port());
    let out = dir.join("out.jsonl");
    // Its own counters on the metrics port; the receiver's go to the file.
    let config = format!(
        r#"
receivers:
  journald:
    directory: "{journal}"
    start_at: beginning
    storage: file_storage
{extra}
processors:
  batch: {{ timeout: 100ms }}
exporters:
  file: {{ path: "{out}", flush_interval: 100ms }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [journald], processors: [batch], exporters: [file] }}
    metrics: {{ receivers: [journald], processors: [batch], exporters: [file] }}
"#,
        journal = journal.display(),
        out = out.display(),
        state = dir.join("state").display(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    Agent { agent, out }
}

fn resource_attr(resource: &serde_json::Value, key: &str) -> Option<String> {
    let v = json_attr(&resource["attributes"], key)?;
    v["stringValue"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| v["intValue"].as_str().map(str::to_owned))
        .or_else(|| v["intValue"].as_i64().map(|n| n.to_string()))
}

/// Whether `tool` runs; prints why not.
fn tool(test: &str, tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(test, format!("{tool} is not usable here"));
    }
    ok
}

/// Each runtime's out-of-memory output reaches journald as a service's
/// stdout and stderr would (one entry per line, other units writing in
/// between); each becomes one record with its whole trace, its unit and
/// its process.
#[test]
fn runtimes_running_out_of_memory_in_units_are_one_record_each() {
    const TEST: &str = "runtimes_running_out_of_memory_in_units_are_one_record_each";
    let Some(journald) = journald(TEST, "") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    // A runtime slowed down mid-trace (a JVM collecting its full heap
    // between two lines) must not outlast the period: the test is about
    // grouping, not about how fast a loaded machine prints.
    let agent = start_agent(
        &journald.journal_dir(),
        work.path(),
        "    force_flush_period: 5s",
    );

    // A noisy neighbour: another unit logging all along.
    let mut noise = UnitCgroup::create("noise").expect("cgroup");
    noise.run_logged(
        &journald,
        "noise",
        "i=0; while [ $i -lt 400 ]; do echo \"tick $i\"; i=$((i+1)); done",
    );

    // (unit name, runtime, the patterns of its records (the first one's
    // carries the trace), program)
    let mut programs: Vec<(&str, &str, &[&str], String)> = Vec::new();
    programs.push((
        "python",
        "python",
        &["python.memory_error"],
        "ulimit -v 200000; exec python3 -c 'def grow():\n    return bytearray(1 << 30)\n\ngrow()\n'".into(),
    ));
    if tool(TEST, "java", "-version") {
        let source = work.path().join("Grow.java");
        std::fs::write(
            &source,
            "import java.util.ArrayList;\nimport java.util.List;\n\npublic class Grow {\n    static final List<long[]> KEPT = new ArrayList<>();\n\n    static void grow() {\n        while (true) {\n            KEPT.add(new long[1 << 16]);\n        }\n    }\n\n    public static void main(String[] args) {\n        grow();\n    }\n}\n",
        )
        .expect("write Grow.java");
        programs.push((
            "java",
            "java",
            &["java.heap_space"],
            format!("exec java -Xmx16m -Xss1m {}", source.display()),
        ));
    }
    if tool(TEST, "go", "version") {
        let source = work.path().join("grow.go");
        std::fs::write(
            &source,
            "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tkept := make([]byte, 1<<40)\n\tfmt.Println(len(kept))\n}\n",
        )
        .expect("write grow.go");
        let binary = work.path().join("grow");
        let built = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .env("GOCACHE", work.path().join("gocache"))
            .env("GO111MODULE", "off")
            .output()
            .expect("go build");
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        programs.push((
            "go",
            "go",
            // Go writes "runtime: out of memory: cannot allocate N-byte
            // block" and then "fatal error: out of memory" with the trace.
            &["go.fatal_out_of_memory", "go.cannot_allocate"],
            format!("ulimit -v 1000000; exec {}", binary.display()),
        ));
    }
    let mut units = Vec::new();
    for (name, runtime, patterns, program) in &programs {
        let mut unit = UnitCgroup::create(name).expect("cgroup");
        let pid = unit.run_logged(&journald, name, program);
        units.push((unit, pid, *runtime, *patterns));
    }

    let contents = FileContents::wait_for(&agent.out, TIMEOUT, |c| {
        units.iter().all(|(_, _, _, patterns)| {
            patterns.iter().all(|p| {
                c.logs
                    .iter()
                    .any(|r| attr_str(r, "oom.pattern").as_deref() == Some(*p))
            })
        })
    });
    for (unit, pid, runtime, patterns) in &units {
        let records: Vec<usize> = (0..contents.logs.len())
            .filter(|&i| {
                attr_str(&contents.logs[i], "journald._SYSTEMD_UNIT").as_deref()
                    == Some(unit.unit.as_str())
            })
            .collect();
        let found: Vec<Option<String>> = records
            .iter()
            .map(|&i| attr_str(&contents.logs[i], "oom.pattern"))
            .collect();
        assert_eq!(
            records.len(),
            patterns.len(),
            "{runtime}: {patterns:?} for {}, got {found:?}: {:#?}",
            unit.unit,
            records
                .iter()
                .map(|&i| &contents.logs[i])
                .collect::<Vec<_>>(),
        );
        let traced = records
            .iter()
            .copied()
            .find(|&i| attr_str(&contents.logs[i], "oom.pattern").as_deref() == Some(patterns[0]))
            .unwrap_or_else(|| panic!("{runtime}: no {} record: {found:?}", patterns[0]));
        for &i in &records {
            let record = &contents.logs[i];
            assert_eq!(
                attr_str(record, "oom.runtime").as_deref(),
                Some(*runtime),
                "{record:#}"
            );
            assert!(found.contains(&attr_str(record, "oom.pattern")));
            assert_eq!(
                attr_str(record, "journald._TRANSPORT").as_deref(),
                Some("stdout")
            );
            assert_eq!(
                resource_attr(&contents.log_resources[i], "process.pid"),
                Some(pid.to_string()),
                "{:#}",
                contents.log_resources[i]
            );
        }
        let body = &contents.log_bodies[traced];
        // Every line the program wrote that belongs to the trace is in it.
        match *runtime {
            "java" => {
                assert!(
                    body.contains("java.lang.OutOfMemoryError: Java heap space\n\tat "),
                    "{body}"
                );
                let frames = journald
                    .messages()
                    .iter()
                    .filter(|m| m.starts_with("\tat "))
                    .count();
                assert_eq!(body.matches("\n\tat ").count(), frames, "{body}");
            }
            "python" => {
                assert!(
                    body.starts_with("Traceback (most recent call last):"),
                    "{body}"
                );
                assert!(body.contains("in grow\n"), "{body}");
                assert!(body.ends_with("\nMemoryError"), "{body}");
            }
            "go" => {
                assert!(body.starts_with("fatal error: "), "{body}");
                assert!(body.contains("\ngoroutine 1 [running]:\n"), "{body}");
                assert!(body.contains("main.main()"), "{body}");
            }
            _ => unreachable!(),
        }
    }
    assert!(
        !contents.log_bodies.iter().any(|b| b.starts_with("tick ")),
        "unmatched lines are not records"
    );
    drop(agent);
}

/// OOM lines written while journald rotates its file again and again (and
/// rotates by size): every one arrives once; the archived files vacuumed
/// while followed, and what comes after still arrives, once.
#[test]
fn rotation_while_reading_loses_and_repeats_nothing() {
    const TEST: &str = "rotation_while_reading_loses_and_repeats_nothing";
    let Some(journald) = journald(TEST, "RuntimeMaxFileSize=512K\nRuntimeMaxUse=64M") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let agent = start_agent(&journald.journal_dir(), work.path(), "");
    let run = format!("{:08x}", rand::random::<u32>());
    let mut expected = Vec::new();
    for i in 0..20_000 {
        let message = if i % 1000 == 999 {
            let m = format!(
                "java.lang.OutOfMemoryError: Java heap space {run} #{}",
                i / 1000
            );
            expected.push(m.clone());
            m
        } else {
            format!(
                "request {run} {i} served in {}ms status=200 path=/api/items/{}",
                i % 97,
                i * 31
            )
        };
        journald.send(&[
            ("MESSAGE", &message),
            ("PRIORITY", "6"),
            ("SYSLOG_IDENTIFIER", "app"),
        ]);
        if i % 2500 == 1234 {
            journald.rotate();
        }
    }
    let contents = FileContents::wait_for(&agent.out, TIMEOUT, |c| {
        expected.iter().all(|m| c.log_bodies.contains(m))
    });
    let _ = contents;
    let archived = journald.archived_files().len();
    assert!(archived >= 8, "rotated: {:?}", journald.files());
    // Vacuumed while followed: every archived file removed under the
    // reader (journalctl's own vacuum); the reader goes on.
    journald.rotate();
    let vacuum = Command::new("journalctl")
        .arg("-D")
        .arg(journald.journal_dir())
        .arg("--vacuum-files=1")
        .output()
        .expect("journalctl --vacuum-files");
    assert!(
        vacuum.status.success(),
        "{}",
        String::from_utf8_lossy(&vacuum.stderr)
    );
    assert!(
        journald.archived_files().len() <= 1,
        "vacuumed: {:?}",
        journald.files()
    );
    // A fence after everything: once it is there, any repeat is too.
    let fence = format!("java.lang.OutOfMemoryError: Java heap space {run} fence");
    journald.rotate();
    journald.send(&[("MESSAGE", &fence), ("PRIORITY", "6")]);
    let got =
        FileContents::wait_for(&agent.out, TIMEOUT, |c| c.log_bodies.contains(&fence)).log_bodies;
    for m in &expected {
        assert_eq!(
            got.iter().filter(|b| *b == m).count(),
            1,
            "{m}: {:?}",
            got.iter().filter(|b| b.contains(&run)).collect::<Vec<_>>()
        );
    }
    drop(agent);
}

/// The agent (journald -> rotel over OTLP, checkpointed in `state`) and the
/// port of its own metrics.
fn start_exporting_agent(rotel: &Rotel, journal: &Path, state: &Path) -> (Oomscope, u16) {
    let directory = format!("directory: \"{}\"", journal.display());
    start_checkpointed_logs_agent(
        rotel,
        "journald",
        &[&directory, "start_at: beginning", "storage: file_storage"],
        state,
        TIMEOUT,
    )
}

/// The collector checkpoints a cursor before the entry is handed on
/// (contrib input.go), so a crash loses it; here the cursor moves only on
/// acknowledgement: SIGKILL while the backend is down, a restart, and
/// every line arrives; none that was acknowledged before the crash repeats.
#[test]
fn kill_9_while_the_backend_is_down_loses_no_entry() {
    const TEST: &str = "kill_9_while_the_backend_is_down_loses_no_entry";
    const LINES: usize = 150;
    let Some(journald) = journald(TEST, "") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let state = work.path().join("state");
    let mut rotel = Rotel::start();
    let (mut agent, metrics) = start_exporting_agent(&rotel, &journald.journal_dir(), &state);
    let run = format!("{:08x}", rand::random::<u32>());
    let lines: Vec<String> = (0..3 * LINES)
        .map(|i| {
            format!("journald-e2e {run} line-{i:04} java.lang.OutOfMemoryError: Java heap space")
        })
        .collect();
    let send = |range: std::ops::Range<usize>| {
        for l in &lines[range] {
            journald.send(&[
                ("MESSAGE", l),
                ("PRIORITY", "3"),
                ("SYSLOG_IDENTIFIER", "app"),
            ]);
        }
    };

    // Delivered (and checkpointed) before anything breaks.
    send(0..LINES);
    rotel.wait_for(TIMEOUT, |r| {
        r.body_counts(&lines[..LINES]).values().all(|&n| n >= 1)
    });
    let deadline = Instant::now() + TIMEOUT;
    while !checkpoint_is_at(&state, &journald, &lines[LINES - 1]) {
        assert!(
            Instant::now() < deadline,
            "the checkpoint did not reach the first part\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Read and sent while the backend is down (a rotation in the middle),
    // never acknowledged; then the agent is killed.
    rotel.stop();
    send(LINES..LINES + LINES / 2);
    journald.rotate();
    send(LINES + LINES / 2..2 * LINES);
    wait_for_own_metric(
        metrics,
        "otelcol_receiver_accepted_log_records_total",
        &[("receiver", "journald")],
        (2 * LINES) as f64,
        TIMEOUT,
    );
    agent.wait_for_output("Exporting failed", TIMEOUT);
    agent.kill();

    // Written while the agent is down.
    send(2 * LINES..3 * LINES);
    let (mut agent, _) = start_exporting_agent(&rotel, &journald.journal_dir(), &state);
    rotel.restart();
    let received = rotel.wait_for(TIMEOUT, |r| r.body_counts(&lines).values().all(|&n| n >= 1));
    let counts = received.body_counts(&lines);
    let lost: Vec<&String> = counts
        .iter()
        .filter(|(_, &n)| n == 0)
        .map(|(l, _)| l)
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} entries, first {:?}\n{}",
        lost.len(),
        lost.first(),
        agent.output()
    );
    let repeated = counts
        .iter()
        .filter(|(l, &n)| n > 1 && lines[..LINES].contains(l))
        .count();
    assert_eq!(repeated, 0, "acknowledged entries were sent again");
    agent.stop(Duration::from_secs(10));
}

/// The stored checkpoint (a journal cursor, and whether its entry is read
/// again).
fn checkpoint(state: &Path) -> Option<(String, String)> {
    let v = common::stored_json(state, "receiver_journald_", "journald_checkpoint")?;
    Some((
        v["cursor"].as_str()?.to_owned(),
        v["resume"].as_str()?.to_owned(),
    ))
}

/// Whether the checkpoint is the entry whose message is `message`.
fn checkpoint_is_at(state: &Path, journald: &Journald, message: &str) -> bool {
    let Some((cursor, _)) = checkpoint(state) else {
        return false;
    };
    let output = Command::new("journalctl")
        .arg("-D")
        .arg(journald.journal_dir())
        .args(["-o", "cat", "--no-pager", "-n", "1", "--cursor"])
        .arg(&cursor)
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&output.stdout).lines().next() == Some(message)
}

/// Entries written while the agent is down and vacuumed before it comes
/// back: a warning record says how many at most (here exactly: the gap is
/// within one writer's sequence), and the first entry left is delivered
/// (journalctl --after-cursor would skip it).
#[test]
fn a_vacuumed_checkpoint_gives_the_exact_gap_and_keeps_the_first_entry_left() {
    const TEST: &str = "a_vacuumed_checkpoint_gives_the_exact_gap_and_keeps_the_first_entry_left";
    let Some(journald) = journald(TEST, "") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let state = work.path().join("state");
    let run = format!("{:08x}", rand::random::<u32>());
    let oom = |k: &str| format!("java.lang.OutOfMemoryError: Java heap space {run} {k}");
    journald.send(&[("MESSAGE", &oom("before")), ("PRIORITY", "3")]);
    let mut agent = start_agent(&journald.journal_dir(), work.path(), "");
    FileContents::wait_for(&agent.out, TIMEOUT, |c| {
        c.log_bodies.contains(&oom("before"))
    });
    let deadline = Instant::now() + TIMEOUT;
    while !checkpoint_is_at(&state, &journald, &oom("before")) {
        assert!(
            Instant::now() < deadline,
            "no checkpoint at the first entry\n{}",
            agent.agent.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.agent.stop(Duration::from_secs(10));
    let (cursor, _) = checkpoint(&state).expect("checkpoint");

    // While it is down: entries after the checkpoint, then a rotation, the
    // first entry of the new file, and the old file vacuumed.
    for k in 0..7 {
        journald.send(&[("MESSAGE", &oom(&format!("lost {k}"))), ("PRIORITY", "3")]);
    }
    // In the file before it is rotated away.
    journald.wait_written(&oom("lost 6"));
    // How many entries follow the checkpoint's in its file (journald's own
    // ones too): what will be lost.
    let after = Command::new("journalctl")
        .arg("-D")
        .arg(journald.journal_dir())
        .args(["-o", "cat", "--no-pager", "--after-cursor"])
        .arg(&cursor)
        .output()
        .expect("journalctl");
    let lost = String::from_utf8_lossy(&after.stdout).lines().count();
    assert!(
        lost >= 7,
        "journalctl after {cursor}: {}",
        String::from_utf8_lossy(&after.stderr)
    );
    journald.rotate();
    journald.send(&[("MESSAGE", &oom("first left")), ("PRIORITY", "3")]);
    journald.wait_written(&oom("first left"));
    let vacuum = Command::new("journalctl")
        .arg("-D")
        .arg(journald.journal_dir())
        .arg("--vacuum-size=1")
        .output()
        .expect("journalctl --vacuum-size");
    assert!(
        vacuum.status.success(),
        "{}",
        String::from_utf8_lossy(&vacuum.stderr)
    );
    assert!(
        journald.archived_files().is_empty(),
        "vacuumed: {:?}",
        journald.files()
    );

    let mut agent = start_agent(&journald.journal_dir(), work.path(), "");
    let contents = FileContents::wait_for(&agent.out, TIMEOUT, |c| {
        c.log_bodies.contains(&oom("first left"))
    });
    let gap = contents
        .logs
        .iter()
        .find(|r| {
            r["body"]["stringValue"]
                .as_str()
                .is_some_and(|b| b.starts_with("journal entries were removed"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no gap record: {:#?}\n{}",
                contents.log_bodies,
                agent.agent.output()
            )
        });
    assert_eq!(gap["severityText"], "WARN");
    assert_eq!(
        attr_str(gap, "oomscope.journald.gap.entries_max"),
        Some(lost.to_string()),
        "{gap:#}"
    );
    assert_eq!(
        attr_str(gap, "oomscope.journald.gap.from_cursor"),
        Some(cursor)
    );
    assert!(
        !contents.log_bodies.iter().any(|b| b.contains(" lost ")),
        "vacuumed entries cannot be read"
    );
    let counted = FileContents::wait_for(&agent.out, TIMEOUT, |c| {
        c.points.iter().any(|(name, p)| {
            name == "oomscope.journald.entries.lost"
                && common::otlp::point_int(p) == Some(lost as i64)
        })
    });
    assert!(
        counted
            .points
            .iter()
            .any(|(name, p)| name == "oomscope.journald.entries.lost"
                && common::otlp::point_int(p) == Some(lost as i64)),
        "oomscope.journald.entries.lost: {:?}",
        counted
            .points
            .iter()
            .filter(|(n, _)| n == "oomscope.journald.entries.lost")
            .collect::<Vec<_>>()
    );
    agent.agent.stop(Duration::from_secs(10));
}

/// Whether the agent has libsystemd mapped.
fn maps_libsystemd(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("the agent's maps")
        .contains("libsystemd")
}

/// On a host with no journal (no journald, or not yet started), the
/// receiver leaves libsystemd and its libraries unloaded, and reads the
/// journal, from its start, once journald writes one.
#[test]
fn libsystemd_is_loaded_only_once_a_journal_exists() {
    const TEST: &str = "libsystemd_is_loaded_only_once_a_journal_exists";
    let Some(journald) = journald(TEST, "") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let journal = work.path().join("journal");
    std::fs::create_dir(&journal).expect("mkdir");
    let mut agent = start_agent(&journal, work.path(), "");
    agent
        .agent
        .wait_for_output("no journal to read yet", TIMEOUT);
    assert!(
        !maps_libsystemd(agent.agent.pid()),
        "libsystemd loaded with no journal to read"
    );

    // journald's archived file, moved in whole with its machine-id
    // directory, as a journald starting up would make it.
    let run = format!("{:08x}", rand::random::<u32>());
    let oom = format!("java.lang.OutOfMemoryError: Java heap space {run}");
    journald.send(&[("MESSAGE", &oom), ("PRIORITY", "3")]);
    journald.wait_written(&oom);
    journald.rotate();
    let staged = work.path().join("staging/0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&staged).expect("mkdir");
    for file in journald.archived_files() {
        let name = file.file_name().expect("a file name");
        std::fs::copy(&file, staged.join(name)).expect("copy the journal file");
    }
    std::fs::rename(&staged, journal.join("0123456789abcdef0123456789abcdef"))
        .expect("move the machine-id directory in");

    FileContents::wait_for(&agent.out, TIMEOUT, |c| c.log_bodies.contains(&oom));
    assert!(maps_libsystemd(agent.agent.pid()));
    agent.agent.stop(Duration::from_secs(10));
}
