//! Accepting connections with a cap on how many are open at once, TCP
//! keepalive so connections to vanished peers do not pile up, and timeouts so
//! that connections that send nothing, or sit idle, give their slot back.
//!
//! Also used by the agent's own Prometheus endpoint (`service.rs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::{TCP_KEEPALIVE_INTERVAL, TCP_KEEPALIVE_RETRIES, TCP_KEEPALIVE_TIME};

/// First pause after a failed `accept` (out of file descriptors, ...), so the
/// loop does not spin; doubled on each further failure up to the maximum.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
const ACCEPT_ERROR_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one "connection limit reached" warning per this period.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Bounds on the connections of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Time a connection has to send its first bytes.
    pub first_bytes_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Time an HTTP client has to send a request body.
    pub body_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: super::MAX_CONNECTIONS,
            first_bytes_timeout: super::FIRST_BYTES_TIMEOUT,
            idle_timeout: super::CONNECTION_IDLE_TIMEOUT,
            body_read_timeout: super::BODY_READ_TIMEOUT,
        }
    }
}

/// Where connections come from: a `TcpListener`, or a fake in tests.
pub(crate) trait AcceptSource: Send + Sync + 'static {
    fn accept_stream(&self) -> impl Future<Output = io::Result<TcpStream>> + Send;
}

impl AcceptSource for TcpListener {
    async fn accept_stream(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(stream, _peer)| stream)
    }
}

/// Requests in flight on one connection, and since when it has had none.
#[derive(Debug)]
pub(crate) struct ConnActivity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl ConnActivity {
    fn new() -> Self {
        ConnActivity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    /// Marks a request in flight until the guard is dropped.
    pub(crate) fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(Arc::clone(self))
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request in flight on a connection (see [`ConnActivity::request`]).
pub(crate) struct RequestGuard(Arc<ConnActivity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a server learns about a connection (tonic puts it in each request's
/// extensions): the handle to mark requests in flight.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    pub activity: Arc<ConnActivity>,
}

/// An accepted connection holding one of the listener's connection slots
/// until it is dropped. Reads fail with `TimedOut` when no byte arrived
/// within the first-bytes timeout, or when no request has been in flight for
/// the idle timeout; the server then closes the connection.
pub(crate) struct LimitedConn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    activity: Arc<ConnActivity>,
    /// Next time to check the timeouts.
    timer: Pin<Box<Sleep>>,
    received_any: bool,
    idle_timeout: Duration,
}

impl LimitedConn {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, limits: &ConnectionLimits) -> Self {
        LimitedConn {
            stream,
            _slot: slot,
            activity: Arc::new(ConnActivity::new()),
            timer: Box::pin(tokio::time::sleep(limits.first_bytes_timeout)),
            received_any: false,
            idle_timeout: limits.idle_timeout,
        }
    }

    /// The connection's request tracker.
    pub(crate) fn activity(&self) -> Arc<ConnActivity> {
        Arc::clone(&self.activity)
    }

    /// `Some(error)` once a timeout has expired; otherwise arms the timer
    /// so that the reader is woken when one may.
    fn poll_timeouts(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            if !self.received_any {
                return Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing in time",
                ));
            }
            let now = Instant::now();
            let next = if self.activity.in_flight.load(Ordering::Acquire) > 0 {
                now + self.idle_timeout
            } else {
                let until = self.activity.idle_since() + self.idle_timeout;
                if until <= now {
                    return Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection was idle for too long",
                    ));
                }
                until
            };
            self.timer.as_mut().reset(next);
        }
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
    /// beyond the limit are closed at once (reset), so their clients fail
    /// fast instead of waiting in the listen backlog.
    pub(crate) async fn accept(&mut self) -> Option<LimitedConn> {
        let mut backoff = ACCEPT_ERROR_BACKOFF;
        loop {
            let accepted = tokio::select! {
                _ = self.stop.cancelled() => return None,
                accepted = self.listener.accept_stream() => accepted,
            };
            match accepted {
                Ok(stream) => {
                    backoff = ACCEPT_ERROR_BACKOFF;
                    match Arc::clone(&self.slots).try_acquire_owned() {
                        Ok(slot) => {
                            configure(&stream);
                            return Some(LimitedConn::new(stream, slot, &self.limits));
                        }
                        Err(_) => self.refuse(stream),
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

    fn refuse(&mut self, stream: TcpStream) {
        // Linger 0: close with a reset, which the client sees at once.
        let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        drop(stream);
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
    pub(crate) fn into_stream(self) -> impl futures::Stream<Item = Result<LimitedConn, io::Error>> {
        futures::stream::unfold(self, |mut acceptor| async move {
            let conn = acceptor.accept().await?;
            Some((Ok(conn), acceptor))
        })
    }
}

fn configure(stream: &TcpStream) {
    // Best effort: a socket option that cannot be set is not worth refusing
    // the client for.
    let _ = stream.set_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_TIME)
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            activity: Arc::clone(&self.activity),
        }
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !this.received_any && buf.filled().len() > before {
                    // The first-bytes deadline is met: from now on the timer
                    // watches for idleness.
                    this.received_any = true;
                    let next = Instant::now() + this.idle_timeout;
                    this.timer.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_timeouts(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A tower layer that marks each gRPC call in flight on its connection, so
/// idle connections (no call, only HTTP/2 pings) can be told apart.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TrackRequestsLayer;

impl<S> tower::Layer<S> for TrackRequestsLayer {
    type Service = TrackRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackRequests(inner)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TrackRequests<S>(S);

impl<S, B> tower::Service<http::Request<B>> for TrackRequests<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guard = request
            .extensions()
            .get::<ConnInfo>()
            .map(|info| info.activity.request());
        Tracked {
            inner: Box::pin(self.0.call(request)),
            _guard: guard,
        }
    }
}

/// A response future holding its request's in-flight mark.
pub(crate) struct Tracked<F> {
    inner: Pin<Box<F>>,
    _guard: Option<RequestGuard>,
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU64;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinHandle;

    /// A listener whose every accept fails, counting the attempts.
    struct Failing(Arc<AtomicU64>);

    impl AcceptSource for Failing {
        async fn accept_stream(&self) -> io::Result<TcpStream> {
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
            ConnectionLimits::default(),
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
            ..ConnectionLimits::default()
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
            ..ConnectionLimits::default()
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
            ..ConnectionLimits::default()
        };
        let mut acceptor = Acceptor::new(l, limits, CancellationToken::new());
        let _client_idle = TcpStream::connect(addr).await.expect("connect");
        let mut idle = acceptor.accept().await.expect("conn");
        let _client_busy = TcpStream::connect(addr).await.expect("connect");
        let mut busy = acceptor.accept().await.expect("conn");
        let mut c1 = _client_idle;
        c1.write_all(b"x").await.expect("write");
        let mut c2 = _client_busy;
        c2.write_all(b"x").await.expect("write");
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
}
