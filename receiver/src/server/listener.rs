//! The accept loop: a cap on open connections (beyond it, connections are
//! closed at once), and backoff on accept errors.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{AcceptedSocket, LimitedConn};

/// First pause after a failed `accept` (out of file descriptors, ...), so the
/// loop does not spin; doubled on each further failure up to the maximum.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
const ACCEPT_ERROR_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one "connection limit reached" warning per this period.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Time a new connection has to send its first bytes, unless a server sets
/// its own.
const DEFAULT_FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may stay open with no request in flight, unless a
/// server sets its own.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Bounds on the connections of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Time a connection has to send its first bytes (TLS: to finish its
    /// handshake).
    pub first_bytes_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// `max_connections` with the default timeouts.
    pub(crate) const fn with_max_connections(max_connections: usize) -> Self {
        ConnectionLimits {
            max_connections,
            first_bytes_timeout: DEFAULT_FIRST_BYTES_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Where connections come from: a TCP or Unix listener, or a fake in tests.
pub(crate) trait AcceptSource: Send + Sync + 'static {
    type Socket: AcceptedSocket;

    fn accept_socket(&self) -> impl Future<Output = io::Result<Self::Socket>> + Send;
}

impl AcceptSource for TcpListener {
    type Socket = TcpStream;

    async fn accept_socket(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(stream, _peer)| stream)
    }
}

impl AcceptSource for UnixListener {
    type Socket = UnixStream;

    async fn accept_socket(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(stream, _peer)| stream)
    }
}

/// Accepts connections while fewer than the limit are open.
pub(crate) struct Acceptor<L = TcpListener> {
    listener: L,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
    stop: CancellationToken,
    /// Connections refused since the last warning, and when that was.
    refused: u64,
    last_refusal_log: Option<Instant>,
}

impl<L: AcceptSource> Acceptor<L> {
    pub(crate) fn new(listener: L, limits: ConnectionLimits, stop: CancellationToken) -> Self {
        Acceptor {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            stop,
            refused: 0,
            last_refusal_log: None,
        }
    }

    /// The next connection; `None` once `stop` is cancelled. Connections
    /// beyond the limit are closed at once (TCP: reset), so their clients
    /// fail fast instead of waiting in the listen backlog.
    pub(crate) async fn accept(&mut self) -> Option<LimitedConn<L::Socket>> {
        let mut backoff = ACCEPT_ERROR_BACKOFF;
        loop {
            let accepted = tokio::select! {
                _ = self.stop.cancelled() => return None,
                accepted = self.listener.accept_socket() => accepted,
            };
            match accepted {
                Ok(socket) => {
                    backoff = ACCEPT_ERROR_BACKOFF;
                    match Arc::clone(&self.slots).try_acquire_owned() {
                        Ok(slot) => {
                            socket.configure();
                            return Some(LimitedConn::new(socket, slot, &self.limits));
                        }
                        Err(_) => self.refuse(socket),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "accepting a connection failed");
                    tokio::select! {
                        _ = self.stop.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_ERROR_BACKOFF_MAX);
                }
            }
        }
    }

    fn refuse(&mut self, socket: L::Socket) {
        socket.refuse();
        self.refused += 1;
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_PERIOD)
        {
            tracing::warn!(
                limit = self.limits.max_connections,
                refused = self.refused,
                "connection limit reached; closing new connections"
            );
            self.refused = 0;
            self.last_refusal_log = Some(now);
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub(crate) fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<LimitedConn<L::Socket>, io::Error>> {
        futures::stream::unfold(self, |mut acceptor| async move {
            let conn = acceptor.accept().await?;
            Some((Ok(conn), acceptor))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinHandle;

    /// A listener whose every accept fails, counting the attempts.
    struct Failing(Arc<AtomicU64>);

    impl AcceptSource for Failing {
        type Socket = TcpStream;

        async fn accept_socket(&self) -> io::Result<TcpStream> {
            self.0.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        }
    }

    /// Out of file descriptors, the accept loop backs off (100 ms doubling
    /// to 1 s) instead of spinning.
    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off() {
        let attempts = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let mut acceptor = Acceptor::new(
            Failing(Arc::clone(&attempts)),
            ConnectionLimits::with_max_connections(8),
            stop.clone(),
        );
        let task = tokio::spawn(async move { acceptor.accept().await.is_none() });
        // 0.1 + 0.2 + 0.4 + 0.8 + 1 + 1 + ... : 10 s of failures are at most 14 attempts.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let n = attempts.load(Ordering::Relaxed);
        assert!((5..=14).contains(&n), "{n} accept attempts in 10 s");
        stop.cancel();
        assert!(task.await.expect("task"), "stopped");
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        (l, addr)
    }

    /// An echo server (it echoes the first bytes, as a server would answer)
    /// behind an acceptor with `limits`.
    async fn echo_server(
        limits: ConnectionLimits,
    ) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
        let (l, addr) = listener().await;
        let stop = CancellationToken::new();
        let mut acceptor = Acceptor::new(l, limits, stop.clone());
        let server = tokio::spawn(async move {
            while let Some(mut conn) = acceptor.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 16];
                    if let Ok(n) = conn.read(&mut buf).await {
                        let _ = conn.write_all(&buf[..n]).await;
                    }
                });
            }
        });
        (addr, stop, server)
    }

    /// Over the limit, a connection is closed at once instead of waiting in
    /// the backlog; a silent connection gives its slot back after the
    /// first-bytes timeout.
    #[tokio::test]
    async fn over_the_limit_is_refused_at_once_and_silent_connections_time_out() {
        let wait = crate::test_support::WAIT;
        // With a first-bytes timeout beyond any wait here, only the limit
        // can close the second connection.
        let (addr, stop, server) = echo_server(ConnectionLimits {
            max_connections: 1,
            first_bytes_timeout: wait * 2,
            idle_timeout: wait * 2,
        })
        .await;
        // Both wait in the backlog, which the server accepts from in order:
        // the silent one takes the only slot, however late the server runs.
        let _silent = TcpStream::connect(addr).await.expect("connect");
        // The other one is closed at once: before its connect completes
        // when the server runs first (the connect fails with the reset),
        // or after (reads see the close).
        if let Ok(mut refused) = TcpStream::connect(addr).await {
            let mut buf = [0u8; 4];
            let r = tokio::time::timeout(wait, refused.read(&mut buf))
                .await
                .expect("refused promptly, not left hanging");
            assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        }
        stop.cancel();
        server.await.expect("server");

        let (addr, stop, server) = echo_server(ConnectionLimits {
            max_connections: 1,
            first_bytes_timeout: Duration::from_millis(300),
            idle_timeout: wait * 2,
        })
        .await;
        // A silent connection is closed by the server (read returns EOF or
        // reset).
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 4];
        let r = tokio::time::timeout(wait, silent.read(&mut buf))
            .await
            .expect("the silent connection is closed");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        // Its slot is free again (once the server let go of it): a talking
        // client is served.
        let served = tokio::time::timeout(wait, async {
            loop {
                if let Ok(mut c) = TcpStream::connect(addr).await {
                    if c.write_all(b"ping").await.is_ok() {
                        let mut buf = [0u8; 4];
                        if c.read_exact(&mut buf).await.is_ok() {
                            return buf;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("served");
        assert_eq!(&served, b"ping");
        stop.cancel();
        server.await.expect("server");
    }

    /// A connection that has no request in flight for the idle timeout is
    /// closed; one with a request in flight is kept.
    #[tokio::test]
    async fn idle_connections_are_closed_busy_ones_kept() {
        let (l, addr) = listener().await;
        let limits = ConnectionLimits {
            max_connections: 4,
            first_bytes_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(300),
        };
        let mut acceptor = Acceptor::new(l, limits, CancellationToken::new());
        let mut client_idle = TcpStream::connect(addr).await.expect("connect");
        let mut idle = acceptor.accept().await.expect("conn");
        let mut client_busy = TcpStream::connect(addr).await.expect("connect");
        let mut busy = acceptor.accept().await.expect("conn");
        client_idle.write_all(b"x").await.expect("write");
        client_busy.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 1];
        idle.read_exact(&mut buf).await.expect("first byte");
        busy.read_exact(&mut buf).await.expect("first byte");
        let _in_flight = busy.activity().request();
        let r = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(
            r.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::TimedOut),
            "{r:?}"
        );
        let still = tokio::time::timeout(Duration::from_millis(900), busy.read(&mut buf)).await;
        assert!(
            still.is_err(),
            "a connection with a request in flight stays open: {still:?}"
        );
    }

    /// Unix sockets go through the same cap: beyond it, a connection is
    /// closed at once (the client reads EOF), and a freed slot serves again.
    #[tokio::test]
    async fn unix_connections_share_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).expect("bind");
        let wait = crate::test_support::WAIT;
        let limits = ConnectionLimits {
            max_connections: 1,
            first_bytes_timeout: wait * 2,
            idle_timeout: wait * 2,
        };
        let mut acceptor = Acceptor::new(l, limits, CancellationToken::new());
        let _first = UnixStream::connect(&path).await.expect("connect");
        let held = acceptor.accept().await.expect("first connection");
        let mut refused = UnixStream::connect(&path).await.expect("connect");
        let accept_next = tokio::spawn(async move {
            let conn = acceptor.accept().await;
            (acceptor, conn.is_some())
        });
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(wait, refused.read(&mut buf))
            .await
            .expect("refused promptly");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        drop(held);
        let _third = UnixStream::connect(&path).await.expect("connect");
        let (_acceptor, accepted) = tokio::time::timeout(wait, accept_next)
            .await
            .expect("accepted once a slot is free")
            .expect("task");
        assert!(accepted);
    }
}
