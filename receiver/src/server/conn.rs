//! One accepted connection: the socket kinds a server can accept (TCP or
//! Unix), the connection slot it holds, and the timeouts that close it when
//! it sends nothing or sits idle.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use super::ConnectionLimits;

/// TCP keepalive, so connections to vanished peers are closed.
const TCP_KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 4;

/// A connected socket a server accepts: what differs between TCP and Unix.
pub(crate) trait AcceptedSocket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Sets the options of an accepted connection (best effort).
    fn configure(&self) {}

    /// Closes a connection refused for lack of a slot, so that its client
    /// notices at once.
    fn refuse(self)
    where
        Self: Sized,
    {
        drop(self);
    }

    /// The client's address, where the socket kind has one.
    fn peer(&self) -> Option<SocketAddr> {
        None
    }
}

impl AcceptedSocket for TcpStream {
    fn configure(&self) {
        // Best effort: a socket option that cannot be set is not worth
        // refusing the client for.
        let _ = self.set_nodelay(true);
        let keepalive = TcpKeepalive::new()
            .with_time(TCP_KEEPALIVE_TIME)
            .with_interval(TCP_KEEPALIVE_INTERVAL)
            .with_retries(TCP_KEEPALIVE_RETRIES);
        if let Err(e) = SockRef::from(self).set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, "cannot set TCP keepalive");
        }
    }

    fn refuse(self) {
        // Linger 0: close with a reset, which the client sees at once
        // (a plain close could leave it waiting for an answer).
        let _ = SockRef::from(&self).set_linger(Some(Duration::ZERO));
        drop(self);
    }

    fn peer(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
}

/// Local peers: no keepalive needed (the kernel knows when one goes away),
/// and a close is seen at once without a reset.
impl AcceptedSocket for UnixStream {}

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
/// extensions): the handle to mark requests in flight, and the client's
/// address (TCP only).
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    pub activity: Arc<ConnActivity>,
    pub peer: Option<SocketAddr>,
}

/// An accepted connection holding one of the listener's connection slots
/// until it is dropped. Reads fail with `TimedOut` when no byte arrived
/// within the first-bytes timeout, or when no request has been in flight for
/// the idle timeout; the server then closes the connection.
pub(crate) struct LimitedConn<S = TcpStream> {
    socket: S,
    _slot: OwnedSemaphorePermit,
    activity: Arc<ConnActivity>,
    /// Next time to check the timeouts.
    timer: Pin<Box<Sleep>>,
    received_any: bool,
    idle_timeout: Duration,
}

impl<S: AcceptedSocket> LimitedConn<S> {
    pub(super) fn new(socket: S, slot: OwnedSemaphorePermit, limits: &ConnectionLimits) -> Self {
        LimitedConn {
            socket,
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

    /// The client's address (TCP only).
    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.socket.peer()
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

impl<S: AcceptedSocket> Connected for LimitedConn<S> {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            activity: Arc::clone(&self.activity),
            peer: self.socket.peer(),
        }
    }
}

impl<S: AcceptedSocket> AsyncRead for LimitedConn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.socket).poll_read(cx, buf) {
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

impl<S: AcceptedSocket> AsyncWrite for LimitedConn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}
