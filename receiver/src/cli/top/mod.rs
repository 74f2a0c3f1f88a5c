//! `oomscope top`: a terminal view of a running agent, refreshed every
//! second from its `oomscope.v1.OomEvents` API (`Snapshot` and
//! `ListIncidents`; a `Subscribe` stream refreshes at once on a new kill).
//!
//! Three parts that talk through channels, so that a slow or absent agent
//! never freezes the keys: a task that asks the agent ([`poll_agent`]), a
//! thread that reads the keyboard (crossterm's reads block), and the loop
//! that applies both to the [`view::App`] and draws it.

pub mod view;

use std::io::{self, IsTerminal as _, Stdout};
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyEvent};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::api::events::connect_with;
use crate::api::v1::oom_events_client::OomEventsClient;
use crate::api::v1::{
    HostSnapshot, Incident, ListIncidentsRequest, SnapshotRequest, SubscribeRequest,
};
use crate::api::EventsEndpoint;
use crate::tls::TlsDialer;

use view::{Action, App};

/// How often the view asks the agent.
pub const REFRESH: Duration = Duration::from_secs(1);
/// An answer slower than this counts as the agent being unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the keyboard thread looks whether the view has ended.
const INPUT_POLL: Duration = Duration::from_millis(200);

/// What the agent said (or did not).
#[derive(Debug)]
pub enum Update {
    Data {
        snapshot: HostSnapshot,
        incidents: Vec<Incident>,
    },
    Unreachable(String),
}

/// What the keyboard thread hands over.
enum Input {
    Key(KeyEvent),
    /// The terminal changed size: draw again.
    Resize,
    Failed(io::Error),
}

/// Runs the view on this process's terminal until `q` (or `stop`).
pub async fn run(
    endpoint: &EventsEndpoint,
    shown_endpoint: &str,
    tls: Option<TlsDialer>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        anyhow::bail!("needs a terminal; for scripts, `oomscope events --json` streams the kills");
    }
    let (updates_tx, mut updates) = mpsc::channel(4);
    let poller = tokio::spawn(poll_agent(
        endpoint.clone(),
        tls,
        REFRESH,
        updates_tx,
        stop.child_token(),
    ));
    let (keys_tx, mut keys) = mpsc::channel(64);
    std::thread::Builder::new()
        .name("top-keys".into())
        .spawn(move || read_keys(&keys_tx))?;

    let mut screen = Screen::enter()?;
    let mut app = App::new(shown_endpoint);
    let result = loop {
        if let Err(e) = screen.terminal.draw(|frame| view::render(frame, &app)) {
            break Err(anyhow::Error::new(e).context("drawing"));
        }
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            update = updates.recv() => match update {
                Some(Update::Data { snapshot, incidents }) => app.update(snapshot, incidents),
                Some(Update::Unreachable(why)) => app.unreachable(why),
                None => break Ok(()),
            },
            input = keys.recv() => match input {
                Some(Input::Key(key)) => {
                    if app.on_key(key) == Action::Quit {
                        break Ok(());
                    }
                }
                Some(Input::Resize) => {}
                Some(Input::Failed(e)) => {
                    break Err(anyhow::Error::new(e).context("reading the keyboard"))
                }
                None => break Ok(()),
            },
        }
    };
    poller.abort();
    drop(screen);
    result
}

/// The terminal in raw mode on the alternate screen; put back on drop (also
/// when a panic unwinds through the loop).
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> anyhow::Result<Self> {
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen, cursor::Hide) {
            let _ = disable_raw_mode();
            return Err(e.into());
        }
        let terminal = match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e.into());
            }
        };
        Ok(Self { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// Forwards keys and resizes until the view is gone.
fn read_keys(keys: &mpsc::Sender<Input>) {
    while !keys.is_closed() {
        let input = match event::poll(INPUT_POLL) {
            Ok(false) => continue,
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) => Input::Key(key),
                Ok(Event::Resize(..)) => Input::Resize,
                Ok(_) => continue,
                Err(e) => Input::Failed(e),
            },
            Err(e) => Input::Failed(e),
        };
        let failed = matches!(input, Input::Failed(_));
        if keys.blocking_send(input).is_err() || failed {
            return;
        }
    }
}

/// Asks the agent every `refresh` (and at once after a kill on the
/// `Subscribe` stream) and sends each answer, or why there was none, to
/// `updates`. Reconnects for as long as the view runs.
pub async fn poll_agent(
    endpoint: EventsEndpoint,
    tls: Option<TlsDialer>,
    refresh: Duration,
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let mut client: Option<OomEventsClient<Channel>> = None;
    let mut kills: Option<tonic::Streaming<crate::api::v1::OomKill>> = None;
    // The first answer is asked for at once, not at a first tick.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let update = match client.as_mut() {
            Some(c) => ask(c).await,
            None => match connect_with(&endpoint, tls.as_ref()).await {
                Ok(mut c) => {
                    let answer = ask(&mut c).await;
                    client = Some(c);
                    answer
                }
                Err(e) => Update::Unreachable(super::events::error_chain(&e)),
            },
        };
        if matches!(update, Update::Unreachable(_)) {
            // A new connection next time: the agent may have restarted.
            client = None;
            kills = None;
        }
        if updates.send(update).await.is_err() {
            return;
        }
        if kills.is_none() {
            if let Some(c) = client.as_mut() {
                // Without a stream (e.g. all subscriber slots taken) the
                // view still refreshes every second.
                kills = subscribe(c).await;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
            kill = next_kill(&mut kills) => {
                if !kill {
                    kills = None;
                }
            }
        }
    }
}

async fn ask(client: &mut OomEventsClient<Channel>) -> Update {
    let snapshot = {
        let mut request = tonic::Request::new(SnapshotRequest {
            include_history: false,
            include_cgroup_samples: true,
        });
        request.set_timeout(CALL_TIMEOUT);
        tokio::time::timeout(CALL_TIMEOUT, client.snapshot(request)).await
    };
    let snapshot = match snapshot {
        Ok(Ok(answer)) => answer.into_inner(),
        Ok(Err(status)) => return Update::Unreachable(status_text("Snapshot", &status)),
        Err(_) => return Update::Unreachable("Snapshot timed out".to_owned()),
    };
    let incidents = {
        let mut request = tonic::Request::new(ListIncidentsRequest {
            limit: 0,
            id: String::new(),
        });
        request.set_timeout(CALL_TIMEOUT);
        tokio::time::timeout(CALL_TIMEOUT, client.list_incidents(request)).await
    };
    match incidents {
        Ok(Ok(answer)) => Update::Data {
            snapshot,
            incidents: answer.into_inner().incidents,
        },
        Ok(Err(status)) => Update::Unreachable(status_text("ListIncidents", &status)),
        Err(_) => Update::Unreachable("ListIncidents timed out".to_owned()),
    }
}

async fn subscribe(
    client: &mut OomEventsClient<Channel>,
) -> Option<tonic::Streaming<crate::api::v1::OomKill>> {
    let call = client.subscribe(SubscribeRequest {
        cgroup_prefix: String::new(),
    });
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(stream)) => Some(stream.into_inner()),
        _ => None,
    }
}

/// True when a kill came; false when the stream ended. Never ready
/// without a stream.
async fn next_kill(kills: &mut Option<tonic::Streaming<crate::api::v1::OomKill>>) -> bool {
    match kills {
        Some(stream) => matches!(stream.message().await, Ok(Some(_))),
        None => std::future::pending().await,
    }
}

fn status_text(call: &str, status: &tonic::Status) -> String {
    let message = status.message();
    if message.is_empty() {
        format!("{call}: {:?}", status.code())
    } else {
        format!("{call}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{serve_listener, EventsListener, OomEventHub};

    /// The poller reports the agent missing, then its answers once it is
    /// there, without being restarted.
    #[tokio::test]
    async fn poller_says_unreachable_then_delivers_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoint = EventsEndpoint::Unix(dir.path().join("events.sock"));
        let (tx, mut rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let poller = tokio::spawn(poll_agent(
            endpoint.clone(),
            None,
            REFRESH,
            tx,
            stop.clone(),
        ));
        let wait = crate::test_support::WAIT;
        let first = tokio::time::timeout(wait, rx.recv())
            .await
            .expect("an update in time")
            .expect("update");
        assert!(matches!(first, Update::Unreachable(_)), "{first:?}");

        let hub = OomEventHub::default();
        let shutdown = CancellationToken::new();
        let listener = EventsListener::bind(&endpoint).await.expect("bind");
        let _server = serve_listener(listener, hub.clone(), shutdown.clone());
        let data = tokio::time::timeout(wait, async {
            loop {
                match rx.recv().await {
                    Some(Update::Data {
                        snapshot,
                        incidents,
                    }) => break (snapshot, incidents),
                    Some(Update::Unreachable(_)) => {}
                    None => panic!("poller ended"),
                }
            }
        })
        .await
        .expect("data in time");
        // No memory receiver feeds this hub: the snapshot says so by time 0.
        assert_eq!(data.0.time_unix_nano, 0);
        assert!(data.1.is_empty());
        stop.cancel();
        tokio::time::timeout(wait, poller)
            .await
            .expect("poller stops")
            .expect("poller task");
        shutdown.cancel();
    }

    /// A kill on the `Subscribe` stream asks again at once: with a refresh
    /// period far beyond the test's, the second answer can only come from
    /// the kill.
    #[tokio::test]
    async fn a_kill_refreshes_at_once() {
        use crate::api::events::tests::{kill, wait_for_subscribers};
        let hub = OomEventHub::default();
        let shutdown = CancellationToken::new();
        let listener = EventsListener::bind(&"127.0.0.1:0".parse().expect("endpoint"))
            .await
            .expect("bind");
        let endpoint = listener.local_endpoint().clone();
        let _server = serve_listener(listener, hub.clone(), shutdown.clone());
        let (tx, mut rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let poller = tokio::spawn(poll_agent(
            endpoint,
            None,
            Duration::from_secs(24 * 3600),
            tx,
            stop.clone(),
        ));
        let wait = crate::test_support::WAIT;
        let first = tokio::time::timeout(wait, rx.recv())
            .await
            .expect("the first answer in time")
            .expect("update");
        assert!(matches!(first, Update::Data { .. }), "{first:?}");
        wait_for_subscribers(&hub, 1).await;
        hub.publish(kill(4242, "/kubepods/pod-a"));
        let second = tokio::time::timeout(wait, rx.recv())
            .await
            .expect("an answer after the kill")
            .expect("update");
        assert!(matches!(second, Update::Data { .. }), "{second:?}");
        stop.cancel();
        tokio::time::timeout(wait, poller)
            .await
            .expect("poller stops")
            .expect("poller task");
        shutdown.cancel();
    }
}
