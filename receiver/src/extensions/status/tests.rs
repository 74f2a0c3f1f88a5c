use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::model::{Status, MAX_INCIDENTS};
use super::page::{bytes, clip, esc, render, MAX_TEXT};
use super::*;
use crate::incidents::{
    CgroupState, Identity, IncidentHub, ProcessState, RuntimeMessage, Scrape, SystemSample,
    DEFAULT_AFTER, DEFAULT_BEFORE,
};
use crate::kernel_log::oom_report::OomTask;
use crate::receivers::oom::kill::{OomKill, Scope, Source, Trigger, Victim};

const S: u64 = 1_000_000_000;
/// 2026-05-20 10:00:00 UTC.
const T0: u64 = 1_779_271_200 * S;
const LIMIT: u64 = 192 * 1024 * 1024;
const JAVA_CGROUP: &str = "/oomscope-test/java";
const SCRIPT_NAME: &str = "/evil/<script>alert(1)</script>";
const TERMINAL_NAME: &str = "/evil/\x1b[31mred\x1b]0;pwned\x07\u{202e}cba";
const JAVA_TEXT: &str =
    "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\
\tat HeapThenNative.main(HeapThenNative.java:12)\n";

fn cgroup(path: &str, working_set: u64, limit: Option<u64>) -> CgroupState {
    CgroupState {
        path: path.to_string(),
        usage: Some(working_set + 1024 * 1024),
        working_set: Some(working_set),
        limit,
        headroom: limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX) - working_set as i64),
        time_to_limit: Some(12.0),
        container_id: None,
        container_name: Some("<b>bold</b>".to_string()),
        pod_name: None,
    }
}

/// A hub with 20 scrapes (5 s apart) of a Java cgroup climbing to its
/// limit and two cgroups with hostile names, then a Java message and the
/// kill of pid 4242 with its lead-up; `now` is the last scrape.
fn hub_with_incident() -> (Arc<IncidentHub>, String, u64) {
    let hub = Arc::new(IncidentHub::default());
    hub.enable(DEFAULT_BEFORE, DEFAULT_AFTER);
    let mut now = T0;
    for i in 0..20u64 {
        now = T0 + i * 5 * S;
        hub.record_scrape(Scrape {
            at_unix_nano: now,
            system: Some(SystemSample {
                at_unix_nano: now,
                total: Some(8 << 30),
                available: Some((6 << 30) - i * (50 << 20)),
                psi_some_avg10: Some(i as f64 * 0.5),
                psi_full_avg10: Some(i as f64 * 0.1),
            }),
            psi_some_avg60: Some(1.5),
            psi_full_avg60: Some(0.25),
            cgroups: vec![
                cgroup(JAVA_CGROUP, (100 + i * 4) << 20, Some(LIMIT)),
                cgroup(SCRIPT_NAME, 10 << 20, Some(1 << 30)),
                cgroup(TERMINAL_NAME, 20 << 20, None),
            ],
            processes: vec![
                ProcessState {
                    pid: 4242,
                    name: "java".to_string(),
                    rss: 180 << 20,
                    cgroup: Some(JAVA_CGROUP.to_string()),
                },
                ProcessState {
                    pid: 7,
                    name: "<img src=x onerror=alert(2)>".to_string(),
                    rss: 1 << 20,
                    cgroup: Some(TERMINAL_NAME.to_string()),
                },
            ],
        });
    }
    let id = hub
        .message(
            Identity {
                pids: vec![4242],
                ..Identity::default()
            },
            RuntimeMessage {
                time_unix_nano: now - 2 * S,
                runtime: "java".to_string(),
                pattern: "java.out_of_memory_error".to_string(),
                source: "/var/log/app/<java>.log".to_string(),
                pid: Some(4242),
                text: JAVA_TEXT.to_string(),
            },
        )
        .expect("incidents are on");
    let kill_at = now + S / 2;
    let mut lead_up = hub.lead_up(Some(JAVA_CGROUP), kill_at);
    lead_up.limit = Some(LIMIT);
    lead_up.usage_at_kill = Some(LIMIT - 4096);
    lead_up.tasks = vec![OomTask {
        pid: 4242,
        name: "java".to_string(),
        rss_bytes: 190 << 20,
        ..OomTask::default()
    }];
    lead_up.task_count = 3;
    let kill = OomKill {
        time_unix_nano: kill_at,
        kernel_time_ns: None,
        source: Source::Kmsg,
        victim: Victim {
            pid: 4242,
            comm: "java".to_string(),
            command_line: Some(
                "java -Xmx32m HeapThenNative </pre><script>x()</script>".to_string(),
            ),
            executable_path: Some("/usr/lib/jvm/bin/java".to_string()),
            cgroup: Some(JAVA_CGROUP.to_string()),
            anon_rss: Some(150 << 20),
            workload: Some(Arc::new(crate::workload::Workload {
                container_name: Some("api".to_string()),
                pod_name: Some("api-7d9f".to_string()),
                namespace: Some("shop".to_string()),
                ..crate::workload::Workload::default()
            })),
            ..Victim::default()
        },
        trigger: Trigger::default(),
        scope: Scope {
            trigger_type: Some("cgroup"),
            constraint: Some("CONSTRAINT_MEMCG".to_string()),
            memcg: Some(JAVA_CGROUP.to_string()),
            memcg_limit: Some(LIMIT),
            memcg_usage: Some(LIMIT - 4096),
            ..Scope::default()
        },
    };
    assert_eq!(hub.kill(Arc::new(kill), Some(Arc::new(lead_up))), id);
    (hub, id, now)
}

#[test]
fn the_page_shows_system_history_incident_lead_up_and_messages() {
    let (hub, id, now) = hub_with_incident();
    let status = Status::collect(&hub, now + S);
    let html = render(&status);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html:.100}");
    // Self-contained: nothing fetched from elsewhere.
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(external), "{external} in the page");
    }
    // System now and the last hour.
    assert!(html.contains("id=\"sys-used\""), "{html}");
    assert!(html.contains("id=\"chart-memory\""));
    assert!(html.contains("id=\"chart-psi\""));
    // The incident: victim, id, lead-up values, message.
    assert!(html.contains(&format!("data-incident-id=\"{id}\"")));
    assert!(html.contains("<span class=\"victim\" data-field=\"victim-comm\">java</span>"));
    assert!(html.contains("<span data-field=\"victim-pid\">4242</span>"));
    assert!(html.contains(&format!(
        "data-field=\"leadup-limit\" data-bytes=\"{LIMIT}\""
    )));
    let last = status.incidents[0]
        .kill
        .as_ref()
        .and_then(|k| k.lead_up.as_ref())
        .and_then(|l| l.samples.last().copied())
        .expect("a last sample");
    assert_eq!(last.working_set_bytes, 176 << 20);
    assert!(html.contains(&format!(
        "data-usage-bytes=\"{}\" data-working-set-bytes=\"{}\"",
        last.usage_bytes, last.working_set_bytes
    )));
    assert!(html.contains("usage 177.0 MiB · working set 176.0 MiB (1 s before the kill)"));
    assert!(html.contains(&format!("id=\"leadup-{id}\"")));
    let lead_up_chart = html
        .split(&format!("id=\"leadup-{id}\""))
        .nth(1)
        .and_then(|rest| rest.split("</figure>").next())
        .expect("the lead-up chart");
    assert!(lead_up_chart.contains("<polyline class=\"s0\""));
    assert!(lead_up_chart.contains("<polyline class=\"s1\""));
    assert!(lead_up_chart.contains("<line class=\"limit\""));
    assert!(lead_up_chart.contains("<line class=\"kill\""));
    assert!(html.contains("java.lang.OutOfMemoryError: Java heap space"));
    assert!(html.contains("\tat HeapThenNative.main(HeapThenNative.java:12)"));
    assert!(html.contains("CONSTRAINT_MEMCG"));
    // Who it was: the container and pod the kill record names.
    assert!(html.contains("<dd data-field=\"victim-container\">api</dd>"));
    assert!(html.contains("<dd data-field=\"victim-pod\">shop/api-7d9f</dd>"));
    assert!(html.contains("<dd data-field=\"victim-executable\">/usr/lib/jvm/bin/java</dd>"));
    // Cgroups and processes.
    assert!(html.contains(&format!("data-path=\"{JAVA_CGROUP}\"")));
    assert!(html.contains("<td class=\"n\">4242</td><td>java</td>"));
    // Only the page's own script.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
}

#[test]
fn names_and_messages_from_outside_are_escaped_never_interpreted() {
    let (hub, _, now) = hub_with_incident();
    let html = render(&Status::collect(&hub, now));
    assert_eq!(html.matches("<script").count(), 1, "only the page's own");
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>bold"));
    assert!(html.contains("/evil/&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(html.contains("&lt;/pre&gt;&lt;script&gt;x()&lt;/script&gt;"));
    assert!(html.contains("/var/log/app/&lt;java&gt;.log"));
    // Terminal escapes and a bidi override are shown, not passed on.
    assert!(html.contains("/evil/\\x1b[31mred\\x1b]0;pwned\\x07\\u{202e}cba"));
    for c in html.chars() {
        assert!(
            !c.is_control() || c == '\n' || c == '\t',
            "control character {c:?} in the page"
        );
        assert!(!('\u{202a}'..='\u{202e}').contains(&c), "bidi override");
    }
}

#[test]
fn escape_rules() {
    assert_eq!(esc("a<b>&\"'c"), "a&lt;b&gt;&amp;&quot;&#39;c");
    assert_eq!(esc("x\x1b[2J\x07\x7f\u{9b}y"), "x\\x1b[2J\\x07\\x7f\\x9by");
    assert_eq!(esc("line\n\tnext"), "line\n\tnext");
    assert_eq!(esc("\u{2066}\u{200f}é"), "\\u{2066}\\u{200f}é");
}

#[test]
fn clip_cuts_at_a_character_boundary() {
    assert_eq!(clip("short", 10), "short");
    let cut = clip(&"é".repeat(100), 11);
    assert!(cut.len() <= 11 && cut.ends_with('…'), "{cut}");
    assert_eq!(bytes(0), "0 B");
    assert_eq!(bytes(LIMIT), "192.0 MiB");
}

#[test]
fn the_json_has_the_same_data() {
    let (hub, id, now) = hub_with_incident();
    let status = Status::collect(&hub, now + S);
    let v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&status).expect("json")).expect("parse");
    assert_eq!(v["version"], 2);
    assert_eq!(v["incidents_enabled"], true);
    // `Snapshot`, with the history and the cgroups' samples.
    let snapshot = &v["snapshot"];
    assert_eq!(snapshot["time_unix_nano"], now);
    assert_eq!(snapshot["system"]["total_bytes"], 8u64 << 30);
    assert_eq!(snapshot["system"]["psi_some_avg60"], 1.5);
    assert_eq!(snapshot["system"]["pressure"]["some_avg10"], 9.5);
    assert_eq!(snapshot["history"].as_array().map(Vec::len), Some(20));
    let cgroups = snapshot["cgroups"].as_array().expect("cgroups");
    assert_eq!(cgroups.len(), 3);
    // Nearest its limit first.
    assert_eq!(cgroups[0]["path"], JAVA_CGROUP);
    assert!(cgroups[0]["samples"]
        .as_array()
        .is_some_and(|s| s.len() == 20));
    // Data as it is (JSON escapes what it must).
    assert!(cgroups.iter().any(|c| c["path"] == TERMINAL_NAME));
    assert!(cgroups.iter().any(|c| c["path"] == SCRIPT_NAME));
    assert_eq!(snapshot["processes"][0]["pid"], 4242);
    // `ListIncidents`' incidents.
    let incident = &v["incidents"][0];
    assert_eq!(incident["id"], id.as_str());
    let kill = &incident["kill"];
    assert_eq!(kill["incident_id"], id.as_str());
    assert_eq!(kill["victim"]["pid"], 4242);
    assert_eq!(kill["victim"]["comm"], "java");
    assert_eq!(kill["victim"]["executable_path"], "/usr/lib/jvm/bin/java");
    assert_eq!(kill["victim"]["container_name"], "api");
    assert_eq!(kill["victim"]["k8s_pod_name"], "api-7d9f");
    assert_eq!(kill["victim"]["k8s_namespace_name"], "shop");
    assert_eq!(kill["scope"]["trigger_type"], "cgroup");
    assert_eq!(kill["scope"]["memcg_usage_bytes"], LIMIT - 4096);
    let lead_up = &kill["lead_up"];
    assert_eq!(lead_up["limit_bytes"], LIMIT);
    assert_eq!(lead_up["usage_at_kill_bytes"], LIMIT - 4096);
    assert_eq!(lead_up["task_count"], 3);
    let samples = lead_up["samples"].as_array().expect("samples");
    // The last 60 s before the kill: 5 s apart.
    assert_eq!(samples.len(), 12, "{samples:?}");
    assert_eq!(
        samples.last().map(|s| s["working_set_bytes"].clone()),
        Some(serde_json::json!(176u64 << 20))
    );
    assert_eq!(incident["messages"][0]["runtime"], "java");
    assert_eq!(incident["messages"][0]["pid"], 4242);
    assert_eq!(incident["messages"][0]["text"], JAVA_TEXT);
}

#[test]
fn an_empty_hub_renders() {
    let hub = IncidentHub::default();
    let status = Status::collect(&hub, T0);
    let html = render(&status);
    assert!(html.contains("No sample yet"));
    assert!(html.contains("No <code>oom</code> receiver runs"));
    assert!(html.contains("<h2>Latest incidents <span class=\"mut\">(0)</span></h2>"));
    let json = serde_json::to_value(&status).expect("json");
    assert_eq!(json["snapshot"]["system"], serde_json::Value::Null);
    assert_eq!(json["incidents"], serde_json::json!([]));
}

/// The largest answer the bounds allow: a full hour of system samples,
/// 20 cgroups with long names and full rings, 20 processes, and as many
/// incidents as one `ListIncidents` answer holds, each with 8 messages of
/// 4 KiB, 60 samples and a full task table, messages of control
/// characters (6 bytes each in JSON); both forms stay below [`MAX_BODY`].
#[test]
fn the_largest_answer_is_bounded() {
    let hub = IncidentHub::default();
    hub.enable(DEFAULT_BEFORE, DEFAULT_AFTER);
    let long = |i: usize| format!("/{}{i}", "<x>".repeat(3000));
    let mut now = T0;
    for step in 0..760u64 {
        now = T0 + step * 5 * S;
        hub.record_scrape(Scrape {
            at_unix_nano: now,
            system: Some(SystemSample {
                at_unix_nano: now,
                total: Some(8 << 30),
                available: Some(1 << 30),
                psi_some_avg10: Some(55.5),
                psi_full_avg10: Some(44.4),
            }),
            cgroups: (0..40)
                .map(|i| cgroup(&long(i), 100 << 20, Some(LIMIT)))
                .collect(),
            processes: (0..40)
                .map(|i| ProcessState {
                    pid: i,
                    name: "<".repeat(5000),
                    rss: 1 << 20,
                    cgroup: Some(long(i as usize)),
                })
                .collect(),
            ..Scrape::default()
        });
    }
    for n in 0..300i32 {
        let at = now - 100 * S + u64::try_from(n).unwrap_or(0);
        for m in 0..10u64 {
            hub.message(
                Identity {
                    pids: vec![n + 1000],
                    ..Identity::default()
                },
                RuntimeMessage {
                    time_unix_nano: at + m,
                    runtime: "java".to_string(),
                    pattern: "<".repeat(5000),
                    source: "<".repeat(5000),
                    pid: Some(n + 1000),
                    text: "\x01".repeat(5000),
                },
            );
        }
        let mut lead_up = hub.lead_up(Some(&long(0)), now);
        lead_up.tasks = vec![
            OomTask {
                name: "<".repeat(100),
                ..OomTask::default()
            };
            10
        ];
        hub.kill(
            Arc::new(OomKill {
                time_unix_nano: at + 20,
                kernel_time_ns: None,
                source: Source::Ebpf,
                victim: Victim {
                    pid: n + 1000,
                    comm: "<".repeat(5000),
                    // The most the oom receiver reads of a command line.
                    command_line: Some("<".repeat(32 * 1024)),
                    executable_path: Some("<".repeat(4096)),
                    cgroup: Some(long(1)),
                    ..Victim::default()
                },
                trigger: Trigger::default(),
                scope: Scope {
                    memcg: Some(long(2)),
                    ..Scope::default()
                },
            }),
            Some(Arc::new(lead_up)),
        );
    }
    let status = Status::collect(&hub, now);
    // As many incidents as `ListIncidents` puts in one answer (at least one).
    let listed: usize = status
        .incidents
        .iter()
        .map(prost::Message::encoded_len)
        .sum();
    assert!(
        (1..=MAX_INCIDENTS).contains(&status.incidents.len())
            && (status.incidents.len() == 1 || listed <= crate::api::incidents::MAX_ANSWER_BYTES),
        "{} incidents, {listed} bytes",
        status.incidents.len()
    );
    let (html, json) = render_bounded(status, MAX_BODY);
    // The page shows the first MAX_TEXT bytes of each string from outside.
    let shown = format!("{}…", "&lt;".repeat(MAX_TEXT / 3 - 1));
    assert!(html.contains(&shown));
    assert!(!html.contains(&"&lt;".repeat(MAX_TEXT)));
    println!(
        "largest page {} bytes, JSON {} bytes",
        html.len(),
        json.len()
    );
    assert!(html.len() < MAX_BODY / 2, "{}", html.len());
    // Control characters are 6 bytes each in JSON.
    assert!(json.len() < MAX_BODY * 3 / 4, "{}", json.len());
}

#[test]
fn over_the_bound_the_oldest_incidents_are_left_out() {
    let (hub, _, now) = hub_with_incident();
    let status = Status::collect(&hub, now);
    let full = render(&status).len();
    let (html, json) = render_bounded(status, full - 1);
    assert!(html.contains("Latest incidents <span class=\"mut\">(0)</span>"));
    assert!(json.contains("\"incidents\":[]"), "{json}");
}

fn load(text: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
    crate::config::load_str_with_env(crate::components::registry(), "c.yaml", text, &|_| None)
}

const CONFIG: &str = "\
receivers: {otlp: {protocols: {grpc: }}}
exporters: {debug: }
extensions:
  status:
  status/2:
    endpoint: 0.0.0.0:8080
service:
  extensions: [status, status/2]
  pipelines:
    logs: {receivers: [otlp], exporters: [debug]}
";

#[test]
fn config_defaults_decode_and_unknown_keys() {
    assert_eq!(StatusConfig::default().endpoint, "127.0.0.1:55679");
    let config = load(CONFIG).expect("valid");
    let get = |id: &str| -> StatusConfig {
        let ext = config
            .extensions
            .get(&id.parse().expect("id"))
            .expect("configured");
        let any: &dyn std::any::Any = ext.as_ref();
        any.downcast_ref::<StatusConfig>()
            .expect("a status config")
            .clone()
    };
    assert_eq!(get("status"), StatusConfig::default());
    assert_eq!(get("status/2").endpoint, "0.0.0.0:8080");

    let unknown = CONFIG.replace("endpoint: 0.0.0.0:8080", "endpont: 0.0.0.0:8080");
    let errors: Vec<String> = load(&unknown)
        .expect_err("an unknown key")
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("endpont") && e.contains("status/2")),
        "{errors:?}"
    );
    let empty = CONFIG.replace("endpoint: 0.0.0.0:8080", "endpoint: \"\"");
    assert!(load(&empty).is_err());
    assert!(StatusConfig {
        endpoint: " ".to_string()
    }
    .validate()
    .is_err());
}

/// One HTTP/1.1 request over a fresh connection: (head, body).
async fn request(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
    request_for(addr, "localhost", method, path).await
}

async fn request_for(addr: SocketAddr, host: &str, method: &str, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(crate::test_support::WAIT, s.read_to_end(&mut buf))
        .await
        .expect("answer in time (one request per connection: closed after it)")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

async fn server(
    hub: Arc<IncidentHub>,
    limits: ConnectionLimits,
    lifetime: Duration,
) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        Arc::new(Pages::new(hub, true)),
        shutdown.clone(),
        limits,
        lifetime,
    ));
    (addr, shutdown, task)
}

#[tokio::test]
async fn serves_the_page_and_the_json() {
    let (hub, id, _) = hub_with_incident();
    let (addr, shutdown, task) = server(hub, CONNECTION_LIMITS, CONNECTION_LIFETIME).await;

    let (head, body) = request(addr, "GET", "/").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-store"), "{head}");
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .expect("a CSP");
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(body.contains(&format!("data-incident-id=\"{id}\"")));

    let (head, body) = request(addr, "GET", JSON_PATH).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["incidents"][0]["id"], id.as_str());

    let (head, body) = request(addr, "HEAD", "/").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.is_empty(), "{body:.100}");
    assert!(request(addr, "GET", "/nope")
        .await
        .0
        .starts_with("HTTP/1.1 404"));
    assert!(request(addr, "POST", "/")
        .await
        .0
        .starts_with("HTTP/1.1 405"));

    shutdown.cancel();
    tokio::time::timeout(crate::test_support::WAIT, task)
        .await
        .expect("stops on shutdown")
        .expect("join");
}

#[test]
fn host_names_on_loopback() {
    let h = |s: &'static str| Some(HeaderValue::from_static(s));
    assert!(host_allowed(h("127.0.0.1:55679").as_ref(), true));
    assert!(host_allowed(h("localhost").as_ref(), true));
    assert!(host_allowed(h("[::1]:80").as_ref(), true));
    assert!(host_allowed(None, true));
    assert!(!host_allowed(h("rebind.example:55679").as_ref(), true));
    assert!(!host_allowed(h("localhost.example").as_ref(), true));
    assert!(host_allowed(h("node-1.cluster:55679").as_ref(), false));
}

/// The page's inline style and script are the ones the policy allows.
#[test]
fn the_policy_allows_exactly_the_inline_style_and_script() {
    let csp = content_security_policy();
    let hash = |s: &str| {
        let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(d.as_ref())
    };
    assert!(csp.contains(&format!("style-src 'sha256-{}'", hash(page::STYLE))));
    assert!(csp.contains(&format!("script-src 'sha256-{}'", hash(page::SCRIPT))));
    let html = render(&Status::collect(&IncidentHub::default(), T0));
    assert!(html.contains(&format!("<style>{}</style>", page::STYLE)));
    assert!(html.contains(&format!("<script>{}</script>", page::SCRIPT)));
}

/// A client that sends its request and never reads, with the only
/// connection slot: it is closed at the connection's lifetime, and the
/// next client is served; a client that sends nothing is closed too.
#[tokio::test]
async fn a_client_that_never_reads_blocks_nothing() {
    let (hub, _, _) = hub_with_incident();
    let limits = ConnectionLimits {
        max_connections: 1,
        first_bytes_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
    };
    let (addr, shutdown, _task) = server(hub, limits, Duration::from_millis(300)).await;

    // A tiny receive window: the page does not fit, the server's write
    // waits on a reader that never comes.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stuck = socket.connect(addr).await.expect("connect");
    stuck
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");

    let served = tokio::time::timeout(crate::test_support::WAIT, async {
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                let mut buf = Vec::new();
                if s.write_all(b"GET /api/status.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .await
                    .is_ok()
                    && s.read_to_end(&mut buf).await.is_ok()
                    && buf.starts_with(b"HTTP/1.1 200")
                {
                    return buf;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("another client is served while one never reads");
    assert!(!served.is_empty());

    // A silent client gives its slot back too.
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(crate::test_support::WAIT, silent.read(&mut buf))
        .await
        .expect("the silent client is closed");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    drop(stuck);
    shutdown.cancel();
}
