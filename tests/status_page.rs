//! The `status` extension end to end: a real Java program in a memory
//! cgroup prints `OutOfMemoryError` (read by `filelog`), then the kernel
//! OOM-kills it (the `oom` receiver) while the `memory` receiver samples
//! its cgroup. `/api/status.json` lists the incident (the kill of the JVM
//! and its message); headless Chromium (Debian's `chromium`) loads the
//! page: its DOM has the victim, the incident id, the lead-up values and
//! the message, and its screenshot is kept as
//! `target/test-artifacts/status-page.png`. Cgroups named
//! `<script>alert(1)</script>` and with terminal escapes show as text.
//! Needs root, java and chromium; skips with a printed reason where the
//! host lacks one.

mod common;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use common::java::{agent_config, incident_setup, AgentPorts, JavaIncident, JAVA_LIMIT_BYTES};
use common::oom::MemoryCgroup;
use common::oomscope::Oomscope;
use common::skip;

const TIMEOUT: Duration = Duration::from_secs(120);

/// `GET path` on the status port: (status code, body); `None` when the
/// server does not answer.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Waits until `/api/status.json` gives `Some` through `find`; returns it.
fn wait_for_status(
    agent: &mut Oomscope,
    port: u16,
    what: &str,
    find: impl Fn(&serde_json::Value) -> Option<serde_json::Value>,
) -> serde_json::Value {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = String::new();
    loop {
        if let Some((200, body)) = get(port, "/api/status.json") {
            if let Some(found) = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .as_ref()
                .and_then(&find)
            {
                return found;
            }
            last = body;
        }
        if let Some(status) = agent.try_status() {
            panic!("oomscope exited: {status}\noutput:\n{}", agent.output());
        }
        assert!(
            Instant::now() < deadline,
            "status.json had no {what} within {TIMEOUT:?}:\n{last}\nthe agent said:\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `/api/status.json` has an incident for which `pred` holds;
/// returns that incident.
fn wait_for_incident(
    agent: &mut Oomscope,
    port: u16,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for_status(agent, port, what, |v| {
        v["incidents"]
            .as_array()
            .and_then(|all| all.iter().find(|i| pred(i)).cloned())
    })
}

fn chromium_usable(test: &str) -> bool {
    match Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => true,
        Ok(s) => {
            skip(test, format!("`chromium --version` failed: {s}"));
            false
        }
        Err(e) => {
            skip(
                test,
                format!("chromium is not usable ({e}); scripts/setup.sh --with-peers installs it"),
            );
            false
        }
    }
}

/// Runs headless Chromium with `args` then `url`; its output. A fresh
/// profile each time (runs do not share state or locks).
fn chromium(profile: &Path, args: &[&str], url: &str) -> Output {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    // Read both pipes while it runs (a full pipe would stall it).
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// `target/test-artifacts` (beside `target/tmp`, wherever the target
/// directory is).
fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_real_java_incident_in_headless_chromium() {
    const TEST: &str = "the_status_page_shows_a_real_java_incident_in_headless_chromium";
    let Some(setup) = incident_setup(TEST, chromium_usable).await else {
        return;
    };
    let (dir, cgroup) = (&setup.dir, &setup.cgroup);
    // Cgroups named to attack the page: HTML, and terminal escapes. Made
    // after the parent (dropped, so removed, before it).
    let parent_name = format!("oomscope-test-status-{}", std::process::id());
    let hostile_parent = MemoryCgroup::create_at(&parent_name, None)
        .expect("create the parent of the hostile cgroups")
        .expect("a memory controller");
    let _html_group = MemoryCgroup::create_at(&format!("{parent_name}/<script>alert(1)<"), None)
        .expect("create a cgroup named <script>alert(1)<")
        .expect("a memory controller");
    let html_cgroup = MemoryCgroup::create_at(
        &format!("{parent_name}/<script>alert(1)</script>"),
        Some(64 << 20),
    )
    .expect("create a cgroup named <script>alert(1)</script>")
    .expect("a memory controller");
    let terminal_cgroup = MemoryCgroup::create_at(
        &format!("{parent_name}/\x1b[31mred\x1b]0;pwned\x07"),
        Some(64 << 20),
    )
    .expect("create a cgroup named with terminal escapes")
    .expect("a memory controller");

    let out = dir.path().join("out.jsonl");
    let (events, health, status) = (free_port(), free_port(), free_port());
    let mut agent = Oomscope::start(
        &agent_config(
            dir.path(),
            &out,
            &AgentPorts {
                events,
                health,
                status: Some(status),
            },
            &[
                cgroup.cgroup_path(),
                format!("{}/**", hostile_parent.cgroup_path()),
            ],
            true,
        ),
        &[],
    );
    agent.wait_healthy(health, TIMEOUT);
    let hostile = [html_cgroup.cgroup_path(), terminal_cgroup.cgroup_path()];
    wait_for_status(&mut agent, status, "hostile cgroups", |v| {
        let cgroups = v["snapshot"]["cgroups"].as_array()?;
        hostile
            .iter()
            .all(|h| cgroups.iter().any(|c| c["path"] == h.as_str()))
            .then(|| v.clone())
    });

    let mut java = JavaIncident::start(dir.path(), cgroup);
    let pid = java.pid;
    let has_java_message = |i: &serde_json::Value| {
        i["messages"].as_array().is_some_and(|m| {
            m.iter().any(|m| {
                m["runtime"] == "java"
                    && m["pid"] == pid
                    && m["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("java.lang.OutOfMemoryError"))
            })
        })
    };
    // The runtime's message first (an incident without a kill yet), then
    // the kill joins it.
    let first = wait_for_incident(&mut agent, status, "the JVM's message", has_java_message);
    java.wait_sampled(events, &cgroup.cgroup_path()).await;
    java.release();
    java.wait_killed();
    let incident = wait_for_incident(&mut agent, status, "the JVM's kill", |i| {
        i["kill"]["victim"]["pid"] == pid
    });
    let id = incident["id"].as_str().expect("an id").to_string();
    assert_eq!(id.len(), 32, "{incident:#}");
    assert_eq!(
        first["id"],
        id.as_str(),
        "one incident: {first:#}\n{incident:#}"
    );
    assert!(has_java_message(&incident), "{incident:#}");
    assert_eq!(incident["kill"]["victim"]["comm"], "java", "{incident:#}");
    // The JSON is `ListIncidents`' answer: the kill as `oomscope.v1` has it.
    assert_eq!(incident["kill"]["incident_id"], id.as_str(), "{incident:#}");
    assert!(
        incident["kill"]["victim"]["executable_path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/java")),
        "{incident:#}"
    );
    let lead_up = &incident["kill"]["lead_up"];
    assert_eq!(
        lead_up["cgroup"],
        cgroup.cgroup_path().as_str(),
        "{incident:#}"
    );
    assert_eq!(lead_up["limit_bytes"], JAVA_LIMIT_BYTES, "{incident:#}");
    let last = lead_up["samples"]
        .as_array()
        .and_then(|s| s.last())
        .unwrap_or_else(|| panic!("no lead-up sample: {incident:#}"));
    let last_usage = last["usage_bytes"].as_u64().expect("usage");
    let last_working_set = last["working_set_bytes"].as_u64().expect("working set");
    assert!(
        last_usage > 0 && last_usage <= JAVA_LIMIT_BYTES,
        "{last_usage}"
    );

    // The page in a real browser.
    let url = format!("http://127.0.0.1:{status}/");
    let profile = tempfile::tempdir().expect("profile dir");
    let dumped = chromium(profile.path(), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dumped.stdout).into_owned();
    assert!(
        dumped.status.success() && dom.contains("<main id=\"status\""),
        "chromium --dump-dom: {}\nstdout:\n{dom}\nstderr:\n{}",
        dumped.status,
        String::from_utf8_lossy(&dumped.stderr)
    );
    for needle in [
        format!("data-incident-id=\"{id}\""),
        format!("<span data-field=\"incident-id\">{id}</span>"),
        "<span class=\"victim\" data-field=\"victim-comm\">java</span>".to_string(),
        format!("<span data-field=\"victim-pid\">{pid}</span>"),
        format!("data-field=\"leadup-limit\" data-bytes=\"{JAVA_LIMIT_BYTES}\""),
        format!("data-usage-bytes=\"{last_usage}\" data-working-set-bytes=\"{last_working_set}\""),
        format!("id=\"leadup-{id}\""),
        "java.lang.OutOfMemoryError".to_string(),
        "id=\"chart-memory\"".to_string(),
        "id=\"chart-psi\"".to_string(),
    ] {
        assert!(dom.contains(&needle), "the DOM lacks {needle}:\n{dom}");
    }
    // The hostile names are text, never markup or escapes: the only script
    // is the page's own, and the terminal escapes are spelled out.
    assert!(
        dom.contains("/&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the DOM lacks the escaped cgroup name:\n{dom}"
    );
    assert!(!dom.contains("<script>alert"), "{dom}");
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    assert!(
        dom.contains("/\\x1b[31mred\\x1b]0;pwned\\x07"),
        "the DOM lacks the spelled-out escapes:\n{dom}"
    );
    assert!(
        !dom.contains('\x1b') && !dom.contains('\x07'),
        "a raw escape reached the DOM"
    );

    let png = artifacts_dir().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let shot = chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
        ],
        &url,
    );
    assert!(
        shot.status.success(),
        "chromium --screenshot: {}\n{}",
        shot.status,
        String::from_utf8_lossy(&shot.stderr)
    );
    let image = std::fs::read(&png).expect("the screenshot");
    println!(
        "status page screenshot: {} ({} bytes)",
        png.display(),
        image.len()
    );
    assert!(
        image.starts_with(b"\x89PNG\r\n\x1a\n") && &image[12..16] == b"IHDR",
        "not a PNG"
    );
    let width = u32::from_be_bytes([image[16], image[17], image[18], image[19]]);
    let height = u32::from_be_bytes([image[20], image[21], image[22], image[23]]);
    assert_eq!((width, height), (1280, 2000));
    // A blank or near-blank page of that size compresses to a few KiB; text,
    // tables and charts make far more.
    assert!(image.len() > 40_000, "{} bytes", image.len());

    let _ = agent.stop(Duration::from_secs(30));
}
