//! `oomscope top` end to end, as a person uses it: the real binary in a
//! tmux pane against a running agent, while a real Java program in a memory
//! cgroup prints `OutOfMemoryError` and is then OOM-killed by the kernel.
//! The incidents table shows the victim; Tab, arrows and Enter open it; the
//! detail shows the lead-up and the runtime's message; `q` ends it. Needs
//! root, tmux and java; skips with a printed reason where the host lacks one.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use common::java::{agent_config, incident_setup, AgentPorts, JavaIncident, JAVA_LIMIT_BYTES};
use common::oomscope::Oomscope;
use common::otlp::{attr_str, FileContents};
use common::skip;

/// Generous: a loaded machine compiles and runs a JVM meanwhile.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Between two looks at the pane (a poll, not a wait for something).
const POLL: Duration = Duration::from_millis(200);

/// A tmux server of the test's own (its socket in the test's directory),
/// killed with everything in it however the test ends.
struct Tmux {
    socket: PathBuf,
    session: &'static str,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-f", "/dev/null", "-S"])
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// Starts `command` in a detached 200x50 session.
    fn start(socket: PathBuf, session: &'static str, command: &str) -> Tmux {
        let tmux = Tmux { socket, session };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "200",
            "-y",
            "50",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    /// The pane's text; None once the session has ended.
    fn capture(&self) -> Option<String> {
        let out = self.run(&["capture-pane", "-p", "-t", self.session]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.session];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", self.session])
            .status
            .success()
    }

    /// Polls the pane until `done` holds; panics with the pane and `why`
    /// after [`TIMEOUT`].
    fn wait_for(
        &self,
        why: &str,
        context: &dyn Fn() -> String,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let Some(pane) = self.capture() else {
                panic!(
                    "`oomscope top` ended while waiting for {why}; {}",
                    context()
                );
            };
            if done(&pane) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "no {why} within {TIMEOUT:?}; the pane:\n{pane}\n{}",
                context()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_usable(test: &str) -> bool {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            skip(test, format!("`tmux -V` failed: {}", out.status));
            false
        }
        Err(e) => {
            skip(test, format!("tmux is not usable: {e}"));
            false
        }
    }
}

/// The pane's row marked selected (`> `) in the focused table.
fn selected_row(pane: &str) -> Option<&str> {
    pane.lines().find(|l| l.starts_with("│> "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_a_real_java_incident_and_opens_it() {
    const TEST: &str = "top_shows_a_real_java_incident_and_opens_it";
    let Some(setup) = incident_setup(TEST, tmux_usable).await else {
        return;
    };
    let (dir, cgroup) = (&setup.dir, &setup.cgroup);
    let out = dir.path().join("out.jsonl");
    let (events, health) = (free_port(), free_port());
    let mut agent = Oomscope::start(
        &agent_config(
            dir.path(),
            &out,
            &AgentPorts {
                events,
                health,
                status: None,
            },
            &[cgroup.cgroup_path()],
            true,
        ),
        &[],
    );
    agent.wait_healthy(health, TIMEOUT);

    let stderr = dir.path().join("top.stderr");
    let command = format!(
        "exec '{}' top --endpoint 127.0.0.1:{events} 2>'{}'",
        env!("CARGO_BIN_EXE_oomscope"),
        stderr.display()
    );
    let tmux = Tmux::start(dir.path().join("tmux.sock"), "oomscope-top", &command);
    let top_stderr = || {
        format!(
            "top's stderr: {:?}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    };

    // Connected, and the memory receiver's samples are there.
    tmux.wait_for("a sampled snapshot", &top_stderr, |pane| {
        pane.contains("oomscope top") && pane.contains("sampled ") && pane.contains("memory total")
    });

    let mut java = JavaIncident::start(dir.path(), cgroup);
    let java_pid = java.pid;
    // The runtime's message reached the agent: then the kill.
    let got = FileContents::wait_for(&out, TIMEOUT, |c| {
        c.logs
            .iter()
            .any(|r| attr_str(r, "oom.runtime").as_deref() == Some("java"))
    });
    assert!(
        got.logs
            .iter()
            .any(|r| attr_str(r, "oom.runtime").as_deref() == Some("java")),
        "no java record; the log has:\n{}\nthe agent said:\n{}",
        java.log_text(),
        agent.output()
    );
    java.wait_sampled(events, &cgroup.cgroup_path()).await;
    java.release();
    java.wait_killed();

    // The incidents table shows the victim with its runtime message.
    let pid = java_pid.to_string();
    let is_victim_row = |l: &str| {
        // With its kill joined: the victim's comm, not "(no kill)".
        l.contains(&format!(" {pid} "))
            && l.contains(" java ")
            && l.contains("java.heap_space")
            && !l.contains("(no kill)")
    };
    let tables = tmux.wait_for("the java incident row", &top_stderr, |pane| {
        pane.lines().any(is_victim_row)
    });
    // Shown by the harness when the test fails (and with --nocapture).
    println!("the tables:\n{tables}");

    // Focus the incidents table, select the victim's row, open it.
    tmux.keys(&["Tab"]);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let pane = tmux.wait_for("a selected row", &top_stderr, |p| selected_row(p).is_some());
        let row = selected_row(&pane).unwrap_or_default();
        if is_victim_row(row) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the victim's row was never selected; the pane:\n{pane}"
        );
        // Another incident of this machine is above it: one down, and
        // wait for the marker to move before looking again.
        tmux.keys(&["Down"]);
        tmux.wait_for("the selection to move", &top_stderr, |p| {
            selected_row(p).is_some_and(|r| r != row)
        });
    }
    tmux.keys(&["Enter"]);

    let limit = format!(
        "limit                 {:.1} MiB",
        JAVA_LIMIT_BYTES as f64 / 1048576.0
    );
    let cgroup_path = cgroup.cgroup_path();
    let expected = [
        format!("victim                pid {pid}  java"),
        format!("Lead-up of {cgroup_path}"),
        "usage at the kill".to_owned(),
        "growth                10s ".to_owned(),
        limit,
        "PSI (avg10)".to_owned(),
        "Kernel task table".to_owned(),
        "Runtime messages (1)".to_owned(),
    ];
    // The whole view, not a capture taken while its frame is half drawn.
    let detail = tmux.wait_for("the incident's detail", &top_stderr, |pane| {
        pane.contains("at the last sample") && expected.iter().all(|e| pane.contains(e.as_str()))
    });
    println!("the detail:\n{detail}");
    for expected in &expected {
        assert!(
            detail.contains(expected.as_str()),
            "{expected:?} not in the detail:\n{detail}"
        );
    }
    // The lead-up's last sample has values (the cgroup was sampled before
    // the kill), not "no sample".
    let last_sample = detail
        .lines()
        .find(|l| l.contains("at the last sample"))
        .unwrap_or_default();
    assert!(
        last_sample.contains("usage ")
            && last_sample.contains("working set ")
            && last_sample.contains("MiB"),
        "{last_sample}"
    );
    let events_line = detail
        .lines()
        .find(|l| l.contains("  events  "))
        .unwrap_or_default();
    if cgroup.version() == common::oom::CgroupVersion::V2 {
        assert!(events_line.contains("oom_kill "), "{events_line}\n{detail}");
    } else {
        assert!(events_line.contains("failcnt "), "{events_line}\n{detail}");
    }
    // The runtime's message: on screen, or a few lines further down.
    let has_message = |pane: &str| {
        pane.contains("java.lang.OutOfMemoryError") && pane.contains("java  java.heap_space")
    };
    if !has_message(&detail) {
        tmux.keys(&["PageDown"]);
        tmux.wait_for(
            "the OutOfMemoryError in the detail",
            &top_stderr,
            has_message,
        );
    }

    // Esc goes back to the tables; q ends the program and the session.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the tables again", &top_stderr, |pane| {
        pane.contains("cgroups nearest their limit") && pane.contains("largest processes")
    });
    tmux.keys(&["q"]);
    let deadline = Instant::now() + TIMEOUT;
    while tmux.alive() {
        assert!(Instant::now() < deadline, "`q` did not end `oomscope top`");
        std::thread::sleep(POLL);
    }
    assert_eq!(
        std::fs::read_to_string(&stderr).unwrap_or_default(),
        "",
        "top's stderr"
    );
    let _ = agent.stop(Duration::from_secs(30));
}
