//! The live OOM event feed: a bounded in-process hub that receivers publish
//! kills into, and the `oomscope.v1.OomEvents` gRPC server that streams them
//! to local tools over TCP (`127.0.0.1:PORT`) or a Unix socket
//! (`unix:/path/to.sock`).
//!
//! Slow subscribers: the hub is a bounded broadcast ring. A subscriber that
//! falls more than [`HUB_CAPACITY`] kills behind loses the oldest ones it has
//! not read; its stream then goes on with the next kill instead of ending
//! with `DATA_LOSS`. This is a live view for people and scripts: ending the
//! stream would make the client reconnect and miss even more, and the
//! complete record of every kill is the OTLP pipeline, not this feed. The
//! loss is logged (a warning once per subscriber, debug afterwards) with the
//! number of kills skipped.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::v1::oom_events_client::OomEventsClient;
use super::v1::oom_events_server::{OomEvents, OomEventsServer};
use super::v1::{
    HostSnapshot, ListIncidentsRequest, ListIncidentsResponse, OomKill, SnapshotRequest,
    SubscribeRequest,
};
use crate::incidents::IncidentHub;
use crate::server::{Acceptor, ConnInfo, ConnectionLimits, RequestGuard, TrackRequestsLayer};
use crate::tls::incoming::tls_incoming;
use crate::tls::{ServerTls, TlsDialer};

/// Kills the hub holds for subscribers that have not read them yet.
pub const HUB_CAPACITY: usize = 1024;
/// Subscribers served at once; more get `RESOURCE_EXHAUSTED`.
pub const MAX_SUBSCRIBERS: usize = 64;
/// The endpoint `oomscope events` connects to by default.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:4320";
/// Mode of the Unix socket unless configured: owner and group may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;
/// Connections open at once (beyond, new ones are closed at once): twice
/// [`MAX_SUBSCRIBERS`], so that while the subscriber slots are taken a
/// further client still gets its `RESOURCE_EXHAUSTED` rather than a reset.
const CONNECTION_LIMITS: ConnectionLimits =
    ConnectionLimits::with_max_connections(2 * MAX_SUBSCRIBERS);
/// HTTP/2 pings find subscribers that vanished without closing the
/// connection, so their slot is freed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one connection may open; each subscription also takes a slot of
/// [`MAX_SUBSCRIBERS`].
const MAX_STREAMS_PER_CONNECTION: u32 = 8;

/// The in-process fan-out of OOM kills: receivers publish, API subscribers
/// read. Cloning is cheap (it shares one channel).
#[derive(Clone, Debug)]
pub struct OomEventHub {
    sender: broadcast::Sender<Arc<OomKill>>,
    /// What `ListIncidents` and `Snapshot` read.
    incidents: Arc<IncidentHub>,
}

impl Default for OomEventHub {
    fn default() -> Self {
        Self::new(HUB_CAPACITY)
    }
}

impl OomEventHub {
    /// A hub keeping up to `capacity` unread kills per subscriber (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            incidents: Arc::new(IncidentHub::default()),
        }
    }

    /// The same hub, answering `ListIncidents` and `Snapshot` from
    /// `incidents`.
    #[must_use]
    pub fn with_incidents(mut self, incidents: Arc<IncidentHub>) -> Self {
        self.incidents = incidents;
        self
    }

    /// Hands a kill to every current subscriber and returns how many there
    /// are. Never blocks; with no subscriber the kill is simply dropped.
    pub fn publish(&self, kill: OomKill) -> usize {
        self.sender.send(Arc::new(kill)).unwrap_or(0)
    }

    /// A receiver of every kill published from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<OomKill>> {
        self.sender.subscribe()
    }

    /// How many subscribers are attached right now.
    #[must_use]
    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// Where the API listens or where a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventsEndpoint {
    /// `IP:PORT`.
    Tcp(SocketAddr),
    /// `unix:/path/to.sock`.
    Unix(PathBuf),
}

impl FromStr for EventsEndpoint {
    type Err = String;

    /// Accepts `IP:PORT`, `localhost:PORT`, `unix:/path` and `unix:///path`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let invalid = |why: &str| {
            format!(
                "invalid endpoint {text:?}: {why}; expected IP:PORT (e.g. {DEFAULT_ENDPOINT}) \
                 or unix:/path/to.sock"
            )
        };
        if let Some(rest) = text.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid("the socket path is empty"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(port) = text.strip_prefix("localhost:") {
            let port = port
                .parse::<u16>()
                .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
            return Ok(Self::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            )));
        }
        text.parse::<SocketAddr>()
            .map(Self::Tcp)
            .map_err(|_| invalid("not an address"))
    }
}

impl fmt::Display for EventsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound, not yet serving, API socket. Binding first lets a caller learn
/// the actual port of `127.0.0.1:0` and report a bind error before starting.
#[derive(Debug)]
pub struct EventsListener {
    socket: BoundSocket,
    endpoint: EventsEndpoint,
}

#[derive(Debug)]
enum BoundSocket {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        file: SocketFile,
    },
}

/// Who may connect to the API's Unix socket: its mode and group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixSocketOptions {
    /// Permission bits of the socket file (default 0660).
    pub mode: u32,
    /// Group of the socket file (default: the agent's).
    pub group: Option<u32>,
}

impl Default for UnixSocketOptions {
    fn default() -> Self {
        UnixSocketOptions {
            mode: DEFAULT_SOCKET_MODE,
            group: None,
        }
    }
}

/// How the API is served besides its endpoint.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Mode and group of a Unix socket.
    pub unix_socket: UnixSocketOptions,
    /// TLS on a TCP endpoint.
    pub tls: Option<Arc<ServerTls>>,
}

impl EventsListener {
    /// Binds the endpoint (a Unix socket with mode 0660, see [`Self::bind_with`]).
    pub async fn bind(endpoint: &EventsEndpoint) -> anyhow::Result<Self> {
        Self::bind_with(endpoint, UnixSocketOptions::default()).await
    }

    /// Binds the endpoint. A Unix socket replaces a stale socket file (one no
    /// process listens on) and gets the mode and group of `unix`; a live one
    /// is an error, as is any other kind of file at that path.
    pub async fn bind_with(
        endpoint: &EventsEndpoint,
        unix: UnixSocketOptions,
    ) -> anyhow::Result<Self> {
        match endpoint {
            EventsEndpoint::Tcp(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the OOM events API on {endpoint}"))?;
                let local = listener.local_addr().with_context(|| {
                    format!("local address of the OOM events API on {endpoint}")
                })?;
                if !local.ip().is_loopback() {
                    tracing::warn!(
                        endpoint = %local,
                        "the OOM events API listens on a non-loopback address: anyone who can \
                         reach it sees process names and command lines of OOM victims"
                    );
                }
                Ok(Self {
                    socket: BoundSocket::Tcp(listener),
                    endpoint: EventsEndpoint::Tcp(local),
                })
            }
            EventsEndpoint::Unix(path) => {
                let (listener, file) = bind_unix(path, unix)
                    .await
                    .with_context(|| format!("binding the OOM events API on {endpoint}"))?;
                Ok(Self {
                    socket: BoundSocket::Unix { listener, file },
                    endpoint: endpoint.clone(),
                })
            }
        }
    }

    /// The bound endpoint (for TCP, with the actual port).
    #[must_use]
    pub fn local_endpoint(&self) -> &EventsEndpoint {
        &self.endpoint
    }
}

/// The Unix socket file this process created; removed again on drop if it is
/// still the same file (another agent may have replaced it meanwhile).
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| meta.dev() == self.dev && meta.ino() == self.ino);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::debug!(path = %self.path.display(), error = %e, "cannot remove the API socket");
            }
        }
    }
}

async fn bind_unix(
    path: &Path,
    options: UnixSocketOptions,
) -> anyhow::Result<(UnixListener, SocketFile)> {
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("creating directory {}", parent.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path).await {
            Ok(_) => bail!(
                "{} is in use: another process (another oomscope agent?) listens on it",
                path.display()
            ),
            // No listener: left behind by a process that did not clean up.
            // The rename below replaces it atomically.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "replacing a stale API socket");
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("probing existing socket {}", path.display()))
            }
        },
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
    // Bind under a temporary name, restrict it, then rename it into place, so
    // the socket is never reachable with the looser mode the umask gives.
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", temporary.display())),
    }
    let listener = UnixListener::bind(&temporary)
        .with_context(|| format!("binding {}", temporary.display()))?;
    let mode = options.mode;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", temporary.display()))
        .and_then(|()| match options.group {
            Some(gid) => std::os::unix::fs::chown(&temporary, None, Some(gid))
                .with_context(|| format!("setting group {gid} on {}", temporary.display())),
            None => Ok(()),
        })
        .and_then(|()| {
            std::fs::rename(&temporary, path)
                .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("inspecting {}", path.display()))?;
    Ok((
        listener,
        SocketFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        },
    ))
}

/// Binds `endpoint` (`IP:PORT` or `unix:/path`) and serves the API on it
/// until `shutdown` is cancelled; open streams then end and the task returns.
/// The error names the endpoint.
pub async fn serve(
    endpoint: &str,
    hub: OomEventHub,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    serve_with(endpoint, ServeOptions::default(), hub, shutdown).await
}

/// [`serve`] with a Unix socket's mode and group, or TLS on TCP.
pub async fn serve_with(
    endpoint: &str,
    options: ServeOptions,
    hub: OomEventHub,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let endpoint: EventsEndpoint = endpoint.parse().map_err(anyhow::Error::msg)?;
    if options.tls.is_some() && matches!(endpoint, EventsEndpoint::Unix(_)) {
        bail!("TLS applies to a TCP endpoint; a Unix socket is guarded by its mode and group");
    }
    let listener = EventsListener::bind_with(&endpoint, options.unix_socket).await?;
    Ok(serve_with_limits(
        listener,
        hub,
        shutdown,
        CONNECTION_LIMITS,
        options.tls,
    ))
}

/// Serves the API on an already bound listener (see [`serve`]).
pub fn serve_listener(
    listener: EventsListener,
    hub: OomEventHub,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    serve_with_limits(listener, hub, shutdown, CONNECTION_LIMITS, None)
}

/// Serves through the shared acceptor (`crate::server`): connection cap,
/// accept-error backoff, first-bytes and idle timeouts, on TCP and Unix
/// sockets alike.
fn serve_with_limits(
    listener: EventsListener,
    hub: OomEventHub,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
    tls: Option<Arc<ServerTls>>,
) -> JoinHandle<()> {
    let EventsListener { socket, endpoint } = listener;
    let service = EventsService {
        hub,
        subscribers: Arc::new(Semaphore::new(MAX_SUBSCRIBERS)),
        shutdown: shutdown.clone(),
    };
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .layer(TrackRequestsLayer)
        .add_service(OomEventsServer::new(service));
    tokio::spawn(async move {
        tracing::info!(%endpoint, "OOM events API listening");
        let result = match socket {
            BoundSocket::Tcp(listener) => {
                let acceptor = Acceptor::new(listener, limits, shutdown.clone());
                match tls {
                    Some(tls) => {
                        let incoming = tls_incoming(acceptor, tls, limits.first_bytes_timeout);
                        router
                            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                            .await
                    }
                    None => {
                        router
                            .serve_with_incoming_shutdown(
                                acceptor.into_stream(),
                                shutdown.cancelled_owned(),
                            )
                            .await
                    }
                }
            }
            BoundSocket::Unix { listener, file } => {
                let incoming = Acceptor::new(listener, limits, shutdown.clone()).into_stream();
                let result = router
                    .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                    .await;
                drop(file);
                result
            }
        };
        match result {
            Ok(()) => tracing::info!(%endpoint, "OOM events API stopped"),
            Err(e) => tracing::error!(%endpoint, error = %e, "OOM events API failed"),
        }
    })
}

struct EventsService {
    hub: OomEventHub,
    subscribers: Arc<Semaphore>,
    shutdown: CancellationToken,
}

type KillStream = Pin<Box<dyn Stream<Item = Result<OomKill, Status>> + Send>>;

#[tonic::async_trait]
impl OomEvents for EventsService {
    type SubscribeStream = KillStream;

    async fn list_incidents(
        &self,
        request: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsResponse>, Status> {
        Ok(Response::new(super::incidents::list(
            &self.hub.incidents,
            request.get_ref(),
        )))
    }

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<HostSnapshot>, Status> {
        Ok(Response::new(super::incidents::snapshot(
            &self.hub.incidents,
            request.get_ref(),
        )))
    }

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let permit = Arc::clone(&self.subscribers)
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "{MAX_SUBSCRIBERS} subscribers are already connected; try again later"
                ))
            })?;
        let connection = request.extensions().get::<ConnInfo>();
        let peer = connection
            .and_then(|info| info.peer)
            .map_or_else(|| "local socket".to_owned(), |addr| addr.to_string());
        // The stream outlives this call: it keeps its connection busy, so
        // the idle timeout does not cut a subscriber waiting for kills.
        let in_flight = connection.map(|info| info.activity.request());
        let cgroup_prefix = request.into_inner().cgroup_prefix;
        tracing::debug!(%peer, %cgroup_prefix, "OOM events subscriber connected");
        let subscription = Subscription {
            kills: self.hub.subscribe(),
            cgroup_prefix,
            shutdown: self.shutdown.clone(),
            peer,
            skipped: 0,
            _permit: permit,
            _in_flight: in_flight,
        };
        Ok(Response::new(Box::pin(futures::stream::unfold(
            subscription,
            Subscription::next,
        ))))
    }
}

/// One subscriber's position in the hub.
struct Subscription {
    kills: broadcast::Receiver<Arc<OomKill>>,
    cgroup_prefix: String,
    shutdown: CancellationToken,
    peer: String,
    /// Kills lost to lagging so far.
    skipped: u64,
    /// The subscriber slot, freed when the stream is dropped.
    _permit: OwnedSemaphorePermit,
    /// Marks the subscription as a request in flight on its connection.
    _in_flight: Option<RequestGuard>,
}

impl Subscription {
    fn wants(&self, kill: &OomKill) -> bool {
        self.cgroup_prefix.is_empty()
            || kill
                .victim
                .as_ref()
                .is_some_and(|victim| victim.cgroup.starts_with(&self.cgroup_prefix))
    }

    async fn next(mut self) -> Option<(Result<OomKill, Status>, Self)> {
        loop {
            let received = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return None,
                received = self.kills.recv() => received,
            };
            match received {
                Ok(kill) if self.wants(&kill) => return Some((Ok(OomKill::clone(&kill)), self)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    if self.skipped == 0 {
                        tracing::warn!(
                            peer = %self.peer,
                            missed,
                            "an OOM events subscriber reads too slowly and skipped kills; \
                             its stream goes on with the next one"
                        );
                    } else {
                        tracing::debug!(peer = %self.peer, missed, "OOM events subscriber skipped kills");
                    }
                    self.skipped = self.skipped.saturating_add(missed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Connects a client to the API at `endpoint`.
pub async fn connect(
    endpoint: &EventsEndpoint,
) -> Result<OomEventsClient<Channel>, tonic::transport::Error> {
    connect_with(endpoint, None).await
}

/// [`connect`], over TLS when `tls` is given (TCP endpoints only; a Unix
/// endpoint ignores it).
pub async fn connect_with(
    endpoint: &EventsEndpoint,
    tls: Option<&TlsDialer>,
) -> Result<OomEventsClient<Channel>, tonic::transport::Error> {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    let channel = match (endpoint, tls) {
        (EventsEndpoint::Tcp(addr), Some(tls)) => {
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_with_connector(tls.connector(false))
                .await?
        }
        (EventsEndpoint::Tcp(addr), None) => {
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect()
                .await?
        }
        (EventsEndpoint::Unix(path), _) => {
            let path = path.clone();
            // The URI is required by the API but unused: the connector
            // ignores it and dials the socket.
            Endpoint::from_static("http://localhost")
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                    let path = path.clone();
                    async move { UnixStream::connect(path).await.map(TokioIo::new) }
                }))
                .await?
        }
    };
    Ok(OomEventsClient::new(channel))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::v1::{Scope, Trigger, Victim};

    const TIMEOUT: Duration = crate::test_support::WAIT;

    /// A kill of `pid` in cgroup `cgroup`, as a receiver would publish it.
    pub(crate) fn kill(pid: i32, cgroup: &str) -> OomKill {
        OomKill {
            time_unix_nano: 1_779_000_000_123_000_000,
            kernel_time_ns: 42,
            source: "ebpf".into(),
            victim: Some(Victim {
                pid,
                comm: "python3".into(),
                anon_rss_bytes: 50 * 1024 * 1024,
                cgroup: cgroup.into(),
                ..Victim::default()
            }),
            trigger: Some(Trigger {
                pid: pid + 1,
                comm: "stress".into(),
                ..Trigger::default()
            }),
            scope: Some(Scope {
                constraint: "CONSTRAINT_MEMCG".into(),
                memcg: cgroup.into(),
                trigger_type: "cgroup".into(),
                ..Scope::default()
            }),
            ..OomKill::default()
        }
    }

    /// Waits until the server has registered `n` subscribers with the hub.
    pub(crate) async fn wait_for_subscribers(hub: &OomEventHub, n: usize) {
        tokio::time::timeout(TIMEOUT, async {
            while hub.subscriber_count() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("subscriber registered");
    }

    async fn filtered_stream_over(endpoint: &EventsEndpoint) {
        let hub = OomEventHub::default();
        let shutdown = CancellationToken::new();
        let listener = EventsListener::bind(endpoint).await.expect("bind");
        let bound = listener.local_endpoint().clone();
        let server = serve_listener(listener, hub.clone(), shutdown.clone());

        let mut client = connect(&bound).await.expect("connect");
        let mut stream = client
            .subscribe(SubscribeRequest {
                cgroup_prefix: "/kubepods/".into(),
            })
            .await
            .expect("subscribe")
            .into_inner();
        wait_for_subscribers(&hub, 1).await;

        hub.publish(kill(1, "/kubepods/pod-a/c1"));
        hub.publish(kill(2, "/system.slice/cron.service"));
        hub.publish(kill(3, "/kubepods/pod-b/c2"));

        let mut pids = Vec::new();
        for _ in 0..2 {
            let next = tokio::time::timeout(TIMEOUT, stream.message())
                .await
                .expect("kill in time")
                .expect("stream ok")
                .expect("stream open");
            pids.push(next.victim.expect("victim").pid);
        }
        assert_eq!(pids, [1, 3]);

        // Shutdown ends the open stream and the server.
        shutdown.cancel();
        let end = tokio::time::timeout(TIMEOUT, stream.message())
            .await
            .expect("stream ends in time");
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
        tokio::time::timeout(TIMEOUT, server)
            .await
            .expect("server stops in time")
            .expect("server task");
    }

    #[tokio::test]
    async fn streams_filtered_kills_over_tcp() {
        filtered_stream_over(&"127.0.0.1:0".parse().expect("endpoint")).await;
    }

    #[tokio::test]
    async fn streams_filtered_kills_over_a_unix_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/oomscope/events.sock");
        filtered_stream_over(&EventsEndpoint::Unix(path.clone())).await;
        // The socket file is removed when the server stops.
        assert!(!path.exists(), "socket file left behind");
    }

    /// A subscription over a Unix socket, served through the shared
    /// acceptor: beyond its connection cap a client is refused, the
    /// subscription outlives the idle timeout (it is a request in flight),
    /// and its slot serves again once it closes.
    #[tokio::test]
    async fn unix_socket_goes_through_the_shared_acceptor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoint = EventsEndpoint::Unix(dir.path().join("events.sock"));
        let hub = OomEventHub::default();
        let shutdown = CancellationToken::new();
        let listener = EventsListener::bind(&endpoint).await.expect("bind");
        let limits = ConnectionLimits {
            max_connections: 1,
            first_bytes_timeout: TIMEOUT,
            idle_timeout: Duration::from_millis(300),
        };
        let _server = serve_with_limits(listener, hub.clone(), shutdown.clone(), limits, None);
        let subscribe = || async {
            let mut client = connect(&endpoint).await.ok()?;
            let stream = client
                .subscribe(SubscribeRequest::default())
                .await
                .ok()?
                .into_inner();
            Some((client, stream))
        };

        let (first_client, mut first) = subscribe().await.expect("first subscriber");
        wait_for_subscribers(&hub, 1).await;
        let refused = tokio::time::timeout(TIMEOUT, subscribe())
            .await
            .expect("refused promptly");
        assert!(refused.is_none(), "served beyond the connection cap");

        // Well past the idle timeout, the subscription still gets kills.
        tokio::time::sleep(Duration::from_millis(800)).await;
        hub.publish(kill(7, "/a"));
        let next = tokio::time::timeout(TIMEOUT, first.message())
            .await
            .expect("kill in time")
            .expect("stream ok")
            .expect("stream open");
        assert_eq!(next.victim.map(|v| v.pid), Some(7));

        drop((first, first_client));
        let again = tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(subscribed) = subscribe().await {
                    return subscribed;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(again.is_ok(), "served again once the slot is free");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn unix_socket_is_0660_and_replaces_a_stale_one_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sock");
        // A stale socket: bound, then its listener closed without removal.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
        let endpoint = EventsEndpoint::Unix(path.clone());

        let first = EventsListener::bind(&endpoint)
            .await
            .expect("replaces stale");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);

        // A live one is refused, and the error names the endpoint.
        let err = EventsListener::bind(&endpoint).await.expect_err("in use");
        let text = format!("{err:#}");
        assert!(
            text.contains(&endpoint.to_string()) && text.contains("in use"),
            "{text}"
        );
        drop(first);
        assert!(!path.exists());

        // Any other file is left alone.
        std::fs::write(&path, b"data").expect("regular file");
        let err = EventsListener::bind(&endpoint)
            .await
            .expect_err("not a socket");
        assert!(format!("{err:#}").contains("not a socket"), "{err:#}");
        assert_eq!(std::fs::read(&path).expect("still there"), b"data");
    }

    #[tokio::test]
    async fn bind_error_names_the_endpoint() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let err = serve(&addr, OomEventHub::default(), CancellationToken::new())
            .await
            .expect_err("address in use");
        assert!(format!("{err:#}").contains(&addr), "{err:#}");

        let err = serve("nonsense", OomEventHub::default(), CancellationToken::new())
            .await
            .expect_err("bad endpoint");
        assert!(format!("{err:#}").contains("\"nonsense\""), "{err:#}");
    }

    #[tokio::test]
    async fn a_lagging_subscriber_skips_and_goes_on() {
        let hub = OomEventHub::new(2);
        let shutdown = CancellationToken::new();
        let listener = EventsListener::bind(&"127.0.0.1:0".parse().expect("endpoint"))
            .await
            .expect("bind");
        let bound = listener.local_endpoint().clone();
        let _server = serve_listener(listener, hub.clone(), shutdown.clone());
        let mut stream = connect(&bound)
            .await
            .expect("connect")
            .subscribe(SubscribeRequest::default())
            .await
            .expect("subscribe")
            .into_inner();
        wait_for_subscribers(&hub, 1).await;
        // Far more than the ring holds before the subscriber reads anything.
        // The server task may forward a few before lagging; whatever it
        // forwards, the stream stays open and ends with the newest kills.
        for pid in 1..=50 {
            hub.publish(kill(pid, "/a"));
        }
        let mut last = 0;
        while last != 50 {
            let next = tokio::time::timeout(TIMEOUT, stream.message())
                .await
                .expect("kill in time")
                .expect("stream ok")
                .expect("stream open");
            let pid = next.victim.expect("victim").pid;
            assert!(pid > last, "out of order: {pid} after {last}");
            last = pid;
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn subscribers_are_bounded() {
        let hub = OomEventHub::default();
        let service = EventsService {
            hub: hub.clone(),
            subscribers: Arc::new(Semaphore::new(1)),
            shutdown: CancellationToken::new(),
        };
        let first = service
            .subscribe(Request::new(SubscribeRequest::default()))
            .await
            .expect("first subscriber");
        match service
            .subscribe(Request::new(SubscribeRequest::default()))
            .await
        {
            Err(status) => assert_eq!(status.code(), tonic::Code::ResourceExhausted),
            Ok(_) => panic!("a second subscriber was accepted beyond the bound"),
        }
        drop(first);
        service
            .subscribe(Request::new(SubscribeRequest::default()))
            .await
            .expect("slot freed when the stream is dropped");
    }

    #[test]
    fn endpoints_parse_and_print() {
        assert_eq!(
            "127.0.0.1:4320".parse::<EventsEndpoint>(),
            Ok(EventsEndpoint::Tcp(SocketAddr::from((
                [127, 0, 0, 1],
                4320
            ))))
        );
        assert_eq!(
            "localhost:4320".parse::<EventsEndpoint>(),
            Ok(EventsEndpoint::Tcp(SocketAddr::from((
                [127, 0, 0, 1],
                4320
            ))))
        );
        for text in [
            "unix:/run/oomscope/events.sock",
            "unix:///run/oomscope/events.sock",
        ] {
            let endpoint = text.parse::<EventsEndpoint>().expect(text);
            assert_eq!(
                endpoint,
                EventsEndpoint::Unix("/run/oomscope/events.sock".into())
            );
            assert_eq!(endpoint.to_string(), "unix:/run/oomscope/events.sock");
        }
        for bad in ["", "unix:", "4320", "example.com:4320", "127.0.0.1:99999"] {
            assert!(bad.parse::<EventsEndpoint>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn publishing_without_subscribers_is_fine() {
        let hub = OomEventHub::default();
        assert_eq!(hub.publish(kill(1, "/")), 0);
        let mut receiver = hub.subscribe();
        assert_eq!(hub.clone().publish(kill(2, "/")), 1);
        assert_eq!(
            receiver
                .try_recv()
                .expect("kill")
                .victim
                .as_ref()
                .map(|v| v.pid),
            Some(2)
        );
    }
}
