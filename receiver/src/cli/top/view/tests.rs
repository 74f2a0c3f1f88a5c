use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use super::*;
use crate::api::v1::{
    CgroupSample, MemoryEvents, RuntimeMessage, Scope, SystemMemory, Task, Trigger, Victim,
};

const MIB_U: u64 = 1024 * 1024;
/// 2026-05-17 06:40:00 UTC.
const T0: u64 = 1_778_999_999_999_000_000 + 1_000_000;
const EVIL: &str = "/evil\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m.slice";

fn samples(from: u64, step: u64, n: u64) -> Vec<CgroupSample> {
    (0..n)
        .map(|i| CgroupSample {
            time_unix_nano: T0 - (n - i) * 1_000_000_000,
            usage_bytes: (from + i * step) * MIB_U,
            working_set_bytes: (from + i * step) * MIB_U - MIB_U,
        })
        .collect()
}

fn snapshot() -> HostSnapshot {
    HostSnapshot {
        time_unix_nano: T0,
        system: Some(SystemMemory {
            total_bytes: Some(16 * 1024 * MIB_U),
            available_bytes: Some(4 * 1024 * MIB_U),
            pressure: Some(Pressure {
                some_avg10: Some(1.5),
                full_avg10: Some(0.25),
            }),
            psi_some_avg60: Some(0.75),
            psi_full_avg60: Some(0.125),
        }),
        cgroups: vec![
            CgroupState {
                path: "/system.slice/java-app.service".into(),
                usage_bytes: Some(180 * MIB_U),
                working_set_bytes: Some(179 * MIB_U),
                limit_bytes: Some(192 * MIB_U),
                headroom_bytes: Some(12 * MIB_U as i64),
                time_to_limit_seconds: Some(6.0),
                samples: samples(100, 8, 11),
                ..Default::default()
            },
            CgroupState {
                path: EVIL.into(),
                usage_bytes: Some(900 * MIB_U),
                working_set_bytes: Some(800 * MIB_U),
                limit_bytes: Some(1024 * MIB_U),
                headroom_bytes: Some(124 * MIB_U as i64),
                time_to_limit_seconds: None,
                samples: samples(900, 0, 3),
                ..Default::default()
            },
            CgroupState {
                path: "/kubepods/burstable/pod-x/cri-abc".into(),
                usage_bytes: Some(50 * MIB_U),
                working_set_bytes: Some(40 * MIB_U),
                limit_bytes: Some(512 * MIB_U),
                headroom_bytes: Some(462 * MIB_U as i64),
                time_to_limit_seconds: Some(3.0),
                container_name: "web".into(),
                ..Default::default()
            },
        ],
        processes: vec![
            ProcessState {
                pid: 4242,
                name: "java".into(),
                rss_bytes: 170 * MIB_U,
                cgroup: "/system.slice/java-app.service".into(),
            },
            ProcessState {
                pid: 77,
                name: "bad\u{1b}[31mcomm".into(),
                rss_bytes: 20 * MIB_U,
                cgroup: "/".into(),
            },
        ],
        history: Vec::new(),
    }
}

fn incident() -> Incident {
    let kill = OomKill {
        time_unix_nano: T0,
        kernel_time_ns: 1,
        source: "ebpf".into(),
        victim: Some(Victim {
            pid: 4242,
            comm: "java".into(),
            command_line: "java -Xmx1g Leak".into(),
            anon_rss_bytes: 170 * MIB_U,
            total_vm_bytes: 2048 * MIB_U,
            cgroup: "/system.slice/java-app.service".into(),
            container_name: "java-app".into(),
            k8s_pod_name: "java-app-5c7d".into(),
            k8s_namespace_name: "shop".into(),
            ..Default::default()
        }),
        trigger: Some(Trigger {
            pid: 4243,
            comm: "GC Thread#0".into(),
            gfp_mask: "GFP_KERNEL".into(),
            order: 0,
        }),
        scope: Some(Scope {
            constraint: "CONSTRAINT_MEMCG".into(),
            memcg: "/system.slice/java-app.service".into(),
            memcg_limit_bytes: 192 * MIB_U,
            trigger_type: "cgroup".into(),
            memcg_usage_bytes: Some(192 * MIB_U),
        }),
        incident_id: "0123456789abcdef0123456789abcdef".into(),
        lead_up: Some(LeadUp {
            cgroup: "/system.slice/java-app.service".into(),
            samples: samples(100, 8, 11),
            growth_rate_10s: Some(8.0 * MIB_U as f64),
            growth_rate_60s: Some(2.0 * MIB_U as f64),
            limit_bytes: Some(192 * MIB_U),
            usage_at_kill_bytes: Some(191 * MIB_U),
            events: Some(MemoryEvents {
                max: Some(40),
                oom: Some(1),
                oom_kill: Some(1),
                ..Default::default()
            }),
            failcnt: None,
            cgroup_pressure: Some(Pressure {
                some_avg10: Some(12.5),
                full_avg10: Some(10.0),
            }),
            system_pressure: Some(Pressure {
                some_avg10: Some(1.5),
                full_avg10: Some(0.25),
            }),
            tasks: vec![Task {
                pid: 4242,
                name: "java".into(),
                rss_bytes: 170 * MIB_U,
                oom_score_adj: 0,
            }],
            task_count: 3,
        }),
    };
    Incident {
        id: "0123456789abcdef0123456789abcdef".into(),
        start_time_unix_nano: T0 - 2_000_000_000,
        kill: Some(kill),
        messages: vec![RuntimeMessage {
            time_unix_nano: T0 - 2_000_000_000,
            runtime: "java".into(),
            pattern: "java.heap_space".into(),
            source: "/var/log/app/app.log".into(),
            pid: 4242,
            text: "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\
                   \tat Leak.main(Leak.java:9)\u{1b}[2J"
                .into(),
        }],
        messages_dropped: 0,
        pids: vec![4242],
        container_id: String::new(),
        cgroup: "/system.slice/java-app.service".into(),
    }
}

/// A runtime message no kill has joined, in a cgroup with an escape
/// sequence in its name.
fn lonely_incident() -> Incident {
    Incident {
        id: "fedcba9876543210fedcba9876543210".into(),
        start_time_unix_nano: T0 - 60_000_000_000,
        kill: None,
        messages: vec![RuntimeMessage {
            time_unix_nano: T0 - 60_000_000_000,
            runtime: "go".into(),
            pattern: "go.out_of_memory".into(),
            text: "fatal error: runtime: out of memory".into(),
            ..Default::default()
        }],
        pids: vec![99],
        cgroup: EVIL.into(),
        ..Default::default()
    }
}

fn app() -> App {
    let mut app = App::new("127.0.0.1:4320");
    app.update(snapshot(), vec![incident(), lonely_incident()]);
    app
}

/// The screen as text, one string per row.
fn draw(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|f| render(f, app)).expect("draw");
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

fn screen(lines: &[String]) -> String {
    lines.join("\n")
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{}", screen(lines)))
}

#[test]
fn main_screen_shows_system_cgroups_incidents_and_processes() {
    let lines = draw(&app(), 160, 48);
    let text = screen(&lines);
    assert!(text.contains("oomscope top  127.0.0.1:4320"), "{text}");
    assert!(text.contains("sampled 06:40:00 UTC"), "{text}");
    let system = line_with(&lines, "memory total");
    for expected in [
        "total 16.0 GiB",
        "available 4.0 GiB (25%)",
        "some avg10 1.50% avg60 0.75%",
        "full avg10 0.25% avg60 0.12%",
    ] {
        assert!(system.contains(expected), "{expected:?} in {system:?}");
    }
    // The cgroup table, least headroom first, with chart, headroom and
    // time to limit.
    let java = line_with(&lines, "/system.slice/java-app.service  ");
    for expected in [
        "180.0 MiB",
        "179.0 MiB",
        "192.0 MiB",
        "12.0 MiB",
        "6s",
        "▅▅▅▆▆▆▆▇▇▇█",
    ] {
        assert!(java.contains(expected), "{expected:?} in {java:?}");
    }
    assert!(java.contains("> "), "selected first row: {java:?}");
    let pod = line_with(&lines, "cri-abc (web)");
    assert!(pod.contains("462.0 MiB") && pod.contains("3s"), "{pod:?}");
    // The incidents: victim, cgroup, runtime message, id prefix.
    let row = line_with(&lines, "4242  ");
    let row = if row.contains("java.heap_space") {
        row
    } else {
        line_with(&lines, "java.heap_space")
    };
    for expected in [
        "06:39:58",
        "4242",
        "java",
        "/system.slice/java-app.service",
        "java.heap_space",
        "01234567",
    ] {
        assert!(row.contains(expected), "{expected:?} in {row:?}");
    }
    let lonely = line_with(&lines, "go.out_of_memory");
    assert!(lonely.contains("(no kill)") && lonely.contains("99") && lonely.contains("fedcba98"));
    // The processes.
    let process = line_with(&lines, "170.0 MiB  ");
    assert!(
        process.contains("4242") && process.contains("java"),
        "{process:?}"
    );
}

#[test]
fn escape_sequences_in_untrusted_strings_are_drawn_as_text() {
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("terminal");
    let app = app();
    terminal.draw(|f| render(f, &app)).expect("draw");
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert!(
            !cell.symbol().chars().any(char::is_control),
            "a control character reached the screen: {:?}",
            cell.symbol()
        );
    }
    let lines = draw(&app, 160, 48);
    // ESC, BEL and the 8-bit CSI each became a '?': the name is readable
    // and inert.
    let evil = "/evil?]0;pwned??[2J?31m.slice";
    assert!(line_with(&lines, evil).contains("900.0 MiB"));
    assert!(
        screen(&lines).matches(evil).count() >= 2,
        "cgroup table and incidents"
    );
    assert!(line_with(&lines, "bad?[31mcomm").contains("20.0 MiB"));
}

#[test]
fn printable_replaces_control_and_invisible_characters() {
    assert_eq!(printable("plain /a/b.slice"), "plain /a/b.slice");
    assert_eq!(printable("a\u{1b}[2Jb"), "a?[2Jb");
    assert_eq!(printable("\u{9b}31m"), "?31m");
    assert_eq!(printable("tab\there\nnl\r\u{7f}"), "tab here?nl??");
    assert_eq!(printable("rtl\u{202e}txt.exe\u{200b}"), "rtl?txt.exe?");
    // Other scripts are text, not control.
    assert_eq!(printable("Größe-日本"), "Größe-日本");
}

#[test]
fn sort_cycles_through_headroom_usage_and_time_to_limit() {
    let mut app = app();
    let order = |app: &App| -> Vec<String> {
        app.sorted_cgroups()
            .iter()
            .map(|c| c.path.clone())
            .collect()
    };
    assert_eq!(order(&app)[0], "/system.slice/java-app.service");
    app.on_key(key(KeyCode::Char('s')));
    assert_eq!(app.sort, CgroupSort::Usage);
    assert_eq!(order(&app)[0], EVIL);
    app.on_key(key(KeyCode::Char('s')));
    assert_eq!(app.sort, CgroupSort::TimeToLimit);
    let by_time = order(&app);
    assert_eq!(by_time[0], "/kubepods/burstable/pod-x/cri-abc");
    assert_eq!(by_time[2], EVIL, "no time to limit: last");
    assert!(screen(&draw(&app, 160, 48)).contains("by time to limit"));
    app.on_key(key(KeyCode::Char('s')));
    assert_eq!(app.sort, CgroupSort::Headroom);
}

#[test]
fn enter_opens_the_selected_incident_and_esc_goes_back() {
    let mut app = app();
    // Enter outside the incidents table opens nothing.
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.open_incident(), None);
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.focus, Focus::Incidents);
    app.on_key(key(KeyCode::Char('j')));
    app.on_key(key(KeyCode::Down)); // stays on the last row
    app.on_key(key(KeyCode::Up));
    app.on_key(key(KeyCode::Enter));
    assert_eq!(
        app.open_incident(),
        Some("0123456789abcdef0123456789abcdef")
    );

    let lines = draw(&app, 160, 60);
    let text = screen(&lines);
    for expected in [
        "victim                pid 4242  java",
        "java -Xmx1g Leak",
        "anon-rss 170.0 MiB",
        "container             java-app",
        "pod                   shop/java-app-5c7d",
        "trigger               pid 4243  GC Thread#0  gfp GFP_KERNEL",
        "cgroup  CONSTRAINT_MEMCG  memcg /system.slice/java-app.service  limit 192.0 MiB",
        "Lead-up of /system.slice/java-app.service",
        "usage 180.0 MiB  working set 179.0 MiB  (1.0 s before the kill)",
        "usage at the kill     191.0 MiB",
        "10s +8.0 MiB/s  60s +2.0 MiB/s",
        "limit                 192.0 MiB",
        "max 40  oom 1  oom_kill 1",
        "cgroup some 12.50% full 10.00%  system some 1.50% full 0.25%",
        "Kernel task table (largest 1 of 3)",
        "4242   170.0 MiB              0  java",
        "Runtime messages (1)",
        "java  java.heap_space  pid 4242  /var/log/app/app.log",
        "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
        "        at Leak.main(Leak.java:9)?[2J",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains('\u{1b}'));

    // A refresh with a newer incident keeps the detail on this one.
    let mut newer = lonely_incident();
    newer.id = "aaaa".into();
    app.update(snapshot(), vec![newer, incident(), lonely_incident()]);
    assert_eq!(
        app.open_incident(),
        Some("0123456789abcdef0123456789abcdef")
    );
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.open_incident(), None);
    assert_eq!(
        app.incident_index(),
        Some(1),
        "the selection follows the incident"
    );
    assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
}

#[test]
fn an_incident_without_kill_opens_too() {
    let mut app = app();
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::End));
    app.on_key(key(KeyCode::Enter));
    let text = screen(&draw(&app, 120, 40));
    assert!(
        text.contains("no kill has joined this incident (yet)"),
        "{text}"
    );
    assert!(
        text.contains("fatal error: runtime: out of memory"),
        "{text}"
    );
    assert!(text.contains("/evil?]0;pwned??[2J?31m.slice"), "{text}");
}

#[test]
fn unreachable_and_no_memory_receiver_are_said_plainly() {
    let mut app = App::new("127.0.0.1:4320");
    assert!(screen(&draw(&app, 120, 30)).contains("connecting to the agent at 127.0.0.1:4320"));
    app.unreachable("transport error: Connection refused (os error 111)");
    let text = screen(&draw(&app, 160, 30));
    assert!(
        text.contains(
            "agent unreachable at 127.0.0.1:4320: transport error: Connection refused (os error 111); retrying every second"
        ),
        "{text}"
    );
    // An agent without a memory receiver: snapshot time 0.
    app.update(HostSnapshot::default(), vec![incident()]);
    let text = screen(&draw(&app, 160, 30));
    assert!(
        text.contains("no memory samples: the agent has no `memory` receiver"),
        "{text}"
    );
    assert!(
        text.contains("java.heap_space"),
        "incidents still show: {text}"
    );
    // The agent goes away: the last answer stays, marked.
    app.unreachable("Snapshot timed out");
    let text = screen(&draw(&app, 160, 30));
    assert!(text.contains("Snapshot timed out; retrying every second (showing the last answer)"));
}

#[test]
fn small_terminals_and_empty_answers_do_not_panic() {
    let mut app = App::new("unix:/run/oomscope/events.sock");
    for (w, h) in [(1, 1), (20, 5), (80, 24)] {
        draw(&app, w, h);
    }
    app.update(HostSnapshot::default(), Vec::new());
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.open_incident(), None);
    let mut full = self::app();
    full.on_key(key(KeyCode::Tab));
    full.on_key(key(KeyCode::Enter));
    for (w, h) in [(1, 1), (20, 5), (80, 24)] {
        draw(&full, w, h);
    }
}

#[test]
fn formatting() {
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(1536), "1.5 KiB");
    assert_eq!(signed_bytes(-(3 * MIB_U as i64)), "-3.0 MiB");
    assert_eq!(time_to_limit(Some(42.4)), "42s");
    assert_eq!(time_to_limit(Some(600.0)), "10m");
    assert_eq!(time_to_limit(Some(7200.0)), "2.0h");
    assert_eq!(time_to_limit(Some(1e9)), ">1d");
    assert_eq!(time_to_limit(Some(f64::NAN)), "-");
    assert_eq!(rate(Some(-(MIB_U as f64))), "-1.0 MiB/s");
    assert_eq!(shorten_left("/a/very/long/path", 8), "…ng/path");
    assert_eq!(spark([0, 50, 100].into_iter(), 100, 10), "▁▅█");
    assert_eq!(spark([1, 2, 3, 4].into_iter(), 4, 2), "▆█", "newest kept");
    assert_eq!(spark([5].into_iter(), 0, 2), "");
}
