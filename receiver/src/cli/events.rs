//! `oomscope events`: follows the agent's live OOM event stream and prints
//! each kill as a table row or a JSON line.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::events::connect_with;
use crate::api::v1::{OomKill, SubscribeRequest};
use crate::api::EventsEndpoint;

/// First pause before reconnecting; doubled per failure up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MIB: f64 = 1024.0 * 1024.0;

/// What `oomscope events` prints.
#[derive(Clone, Debug, Default)]
pub struct EventsOptions {
    /// One JSON object per line instead of a table.
    pub json: bool,
    /// Only kills whose victim cgroup starts with this ("" = all).
    pub cgroup_prefix: String,
    /// TLS to a TCP endpoint.
    pub tls: Option<crate::tls::TlsDialer>,
}

/// Follows the stream at `endpoint` and writes every kill to `out` until
/// `stop` is cancelled (or `out` is closed, e.g. `| head`). When the agent is
/// not there or goes away, it says so once on stderr and reconnects with
/// backoff. Errors only for what retrying cannot fix.
pub async fn run<W: Write + Send>(
    endpoint: &EventsEndpoint,
    options: &EventsOptions,
    out: &mut W,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = INITIAL_BACKOFF;
    let mut said_waiting = false;
    let mut header_written = false;
    loop {
        let attempt = async {
            let mut client = connect_with(endpoint, options.tls.as_ref())
                .await
                .map_err(|e| error_chain(&e))?;
            client
                .subscribe(SubscribeRequest {
                    cgroup_prefix: options.cgroup_prefix.clone(),
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| match status.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled => status.message().to_owned(),
                    _ => format!("fatal:{}", status.message()),
                })
        };
        let subscribed = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            subscribed = attempt => subscribed,
        };
        let mut stream = match subscribed {
            Ok(stream) => stream,
            Err(reason) => {
                if let Some(reason) = reason.strip_prefix("fatal:") {
                    anyhow::bail!("the agent at {endpoint} refused the subscription: {reason}");
                }
                if !said_waiting {
                    eprintln!("waiting for the agent at {endpoint} ({reason}) ...");
                    said_waiting = true;
                }
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // Every time, on stderr (stdout stays a clean table or JSON): it
        // tells that kills from now on will show, which scripts can wait for.
        eprintln!("connected to the agent at {endpoint}");
        said_waiting = false;
        backoff = INITIAL_BACKOFF;
        if !options.json && !header_written {
            if !write_or_closed(out, |out| writeln!(out, "{}", table_header()))? {
                return Ok(());
            }
            header_written = true;
        }
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                next = stream.message() => next,
            };
            let kill = match next {
                Ok(Some(kill)) => kill,
                Ok(None) => {
                    eprintln!("the agent at {endpoint} closed the stream; reconnecting");
                    break;
                }
                Err(status) => {
                    eprintln!(
                        "lost the connection to the agent at {endpoint} ({}); reconnecting",
                        status.message()
                    );
                    break;
                }
            };
            let written = write_or_closed(out, |out| {
                if options.json {
                    serde_json::to_writer(&mut *out, &KillRecord::from(&kill))?;
                    writeln!(out)
                } else {
                    writeln!(out, "{}", table_row(&kill))
                }
            })?;
            if !written {
                return Ok(());
            }
        }
    }
}

/// An error with its causes (tonic's transport error alone says only
/// "transport error"). Also `oomscope top`'s.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their source's message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Runs `write` and flushes; `Ok(false)` when the reader has gone away.
fn write_or_closed<W: Write>(
    out: &mut W,
    write: impl FnOnce(&mut W) -> io::Result<()>,
) -> anyhow::Result<bool> {
    match write(out).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

fn table_header() -> String {
    format!(
        "{:<23}  {:>8}  {:<15}  {:>10}  {:<32}  {:<24}  {:<10}  {:<6}  INCIDENT",
        "TIME (UTC)", "PID", "COMM", "ANON-RSS", "MEMCG", "TRIGGER", "CONSTRAINT", "SOURCE"
    )
}

fn table_row(kill: &OomKill) -> String {
    let victim = kill.victim.clone().unwrap_or_default();
    let trigger = kill.trigger.clone().unwrap_or_default();
    let scope = kill.scope.clone().unwrap_or_default();
    let anon_rss = format!("{:.1} MiB", victim.anon_rss_bytes as f64 / MIB);
    let memcg = if scope.memcg.is_empty() {
        if scope.trigger_type == "system" {
            "(system)".to_owned()
        } else {
            "-".to_owned()
        }
    } else {
        printable(&scope.memcg)
    };
    let trigger = if trigger.pid == 0 && trigger.comm.is_empty() {
        "-".to_owned()
    } else {
        format!("{}/{}", trigger.pid, printable(&trigger.comm))
    };
    let constraint = scope
        .constraint
        .strip_prefix("CONSTRAINT_")
        .unwrap_or(&scope.constraint);
    let mut comm = printable(&victim.comm);
    if victim.exiting {
        comm.push_str(" (exiting)");
    }
    // The id's first 8 digits: enough to tell incidents apart on a host,
    // and to find it in `oomscope top` and the status page.
    let incident: String = kill.incident_id.chars().take(8).collect();
    format!(
        "{:<23}  {:>8}  {:<15}  {:>10}  {:<32}  {:<24}  {:<10}  {:<6}  {}",
        table_time(kill.time_unix_nano),
        victim.pid,
        comm,
        anon_rss,
        memcg,
        trigger,
        or_dash(&printable(constraint)),
        or_dash(&printable(&kill.source)),
        or_dash(&printable(&incident)),
    )
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// Replaces control characters: a process name or cgroup path is chosen by
/// whoever runs the process, and must not drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn datetime(time_unix_nano: u64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_unix_nano)).ok()
}

fn table_time(time_unix_nano: u64) -> String {
    datetime(time_unix_nano).map_or_else(
        || time_unix_nano.to_string(),
        |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        },
    )
}

/// One kill as printed by `oomscope events --json`: the `oomscope.v1`
/// message as it came (field names as in the `.proto`, lead-up included),
/// plus `time` in RFC 3339.
#[derive(Debug, Serialize)]
pub struct KillRecord<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    #[serde(flatten)]
    pub kill: &'a OomKill,
}

impl<'a> From<&'a OomKill> for KillRecord<'a> {
    fn from(kill: &'a OomKill) -> Self {
        Self {
            time: datetime(kill.time_unix_nano)
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default(),
            kill,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::api::events::tests::{kill, wait_for_subscribers};
    use crate::api::{serve_listener, EventsListener, OomEventHub};

    const TIMEOUT: Duration = crate::test_support::WAIT;

    /// A `Write` the test can read while `run` holds it.
    #[derive(Clone, Default)]
    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl SharedBuffer {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("buffer lock")).into_owned()
        }

        async fn wait_for_lines(&self, n: usize) -> Vec<String> {
            tokio::time::timeout(TIMEOUT, async {
                loop {
                    let lines: Vec<String> = self.text().lines().map(str::to_owned).collect();
                    if lines.len() >= n {
                        return lines;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{n} lines in time; got {:?}", self.text()))
        }
    }

    async fn start_server(
        hub: &OomEventHub,
        shutdown: &CancellationToken,
        endpoint: &EventsEndpoint,
    ) -> EventsEndpoint {
        let listener = EventsListener::bind(endpoint).await.expect("bind");
        let bound = listener.local_endpoint().clone();
        let _server = serve_listener(listener, hub.clone(), shutdown.clone());
        bound
    }

    #[tokio::test]
    async fn json_lines_for_published_kills() {
        let hub = OomEventHub::default();
        let shutdown = CancellationToken::new();
        let endpoint = start_server(&hub, &shutdown, &"127.0.0.1:0".parse().expect("ep")).await;
        let out = SharedBuffer::default();
        let stop = CancellationToken::new();
        let client = tokio::spawn({
            let (endpoint, mut out, stop) = (endpoint.clone(), out.clone(), stop.clone());
            async move {
                let options = EventsOptions {
                    json: true,
                    cgroup_prefix: "/kubepods".into(),
                    tls: None,
                };
                run(&endpoint, &options, &mut out, stop).await
            }
        });
        wait_for_subscribers(&hub, 1).await;
        hub.publish(kill(7, "/system.slice/x"));
        hub.publish(kill(8, "/kubepods/pod-a"));

        let lines = out.wait_for_lines(1).await;
        let value: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON line");
        assert_eq!(value["victim"]["pid"], 8);
        assert_eq!(value["victim"]["comm"], "python3");
        assert_eq!(value["victim"]["anon_rss_bytes"], 50 * 1024 * 1024);
        assert_eq!(value["victim"]["cgroup"], "/kubepods/pod-a");
        assert_eq!(value["trigger"]["pid"], 9);
        assert_eq!(value["scope"]["constraint"], "CONSTRAINT_MEMCG");
        assert_eq!(value["source"], "ebpf");
        assert_eq!(value["time"], "2026-05-17T06:40:00.123Z");
        assert!(value["time_unix_nano"].is_u64(), "{value:#}");

        stop.cancel();
        tokio::time::timeout(TIMEOUT, client)
            .await
            .expect("client stops in time")
            .expect("client task")
            .expect("client result");
        assert_eq!(out.text().lines().count(), 1, "{}", out.text());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn table_waits_for_the_agent_and_reconnects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoint = EventsEndpoint::Unix(dir.path().join("events.sock"));
        let out = SharedBuffer::default();
        let stop = CancellationToken::new();
        // The client starts before the agent.
        let client = tokio::spawn({
            let (endpoint, mut out, stop) = (endpoint.clone(), out.clone(), stop.clone());
            async move { run(&endpoint, &EventsOptions::default(), &mut out, stop).await }
        });

        for (round, pid) in [(1, 4242), (2, 4343)] {
            let hub = OomEventHub::default();
            let shutdown = CancellationToken::new();
            start_server(&hub, &shutdown, &endpoint).await;
            wait_for_subscribers(&hub, 1).await;
            hub.publish(kill(pid, "/kubepods/pod-a"));
            let lines = out.wait_for_lines(1 + round).await;
            assert!(lines[0].starts_with("TIME (UTC)"), "{lines:?}");
            let row = &lines[round];
            for expected in [
                "2026-05-17 06:40:00.123",
                &pid.to_string(),
                "python3",
                "50.0 MiB",
                "/kubepods/pod-a",
                &format!("{}/stress", pid + 1),
                "MEMCG",
                "ebpf",
            ] {
                assert!(row.contains(expected), "{expected:?} not in {row:?}");
            }
            // The agent restarts.
            shutdown.cancel();
            tokio::time::timeout(TIMEOUT, async {
                while hub.subscriber_count() > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("subscriber gone");
        }
        stop.cancel();
        tokio::time::timeout(TIMEOUT, client)
            .await
            .expect("client stops in time")
            .expect("client task")
            .expect("client result");
    }

    #[test]
    fn row_escapes_control_characters_and_shows_system_ooms() {
        let mut system_kill = kill(1, "");
        system_kill.victim.as_mut().expect("victim").comm = "evil\u{1b}[2J".into();
        let scope = system_kill.scope.as_mut().expect("scope");
        scope.memcg.clear();
        scope.trigger_type = "system".into();
        scope.constraint = "CONSTRAINT_NONE".into();
        let row = table_row(&system_kill);
        assert!(!row.contains('\u{1b}'), "{row:?}");
        assert!(row.contains("evil?[2J") && row.contains("(system)") && row.contains("NONE"));
        // A message with nothing set prints dashes, not a panic.
        let row = table_row(&OomKill::default());
        assert!(row.contains("0.0 MiB") && row.contains('-'), "{row:?}");
    }
}
