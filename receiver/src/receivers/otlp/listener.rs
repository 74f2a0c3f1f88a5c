//! Accepting connections with a cap on how many are open at once, and TCP
//! keepalive so connections to vanished peers do not pile up.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{TCP_KEEPALIVE_INTERVAL, TCP_KEEPALIVE_RETRIES, TCP_KEEPALIVE_TIME};

/// Pause after a failed `accept` (out of file descriptors, ...), so the loop
/// does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// An accepted connection holding one of the listener's connection slots
/// until it is dropped.
pub(super) struct LimitedConn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

/// Accepts connections while fewer than the limit are open.
pub(super) struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
}

impl Acceptor {
    pub(super) fn new(
        listener: TcpListener,
        max_connections: usize,
        stop: CancellationToken,
    ) -> Self {
        Acceptor {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            stop,
        }
    }

    /// The next connection; `None` once `stop` is cancelled.
    pub(super) async fn accept(&self) -> Option<LimitedConn> {
        loop {
            let slot = tokio::select! {
                _ = self.stop.cancelled() => return None,
                slot = Arc::clone(&self.slots).acquire_owned() => slot.ok()?,
            };
            let accepted = tokio::select! {
                _ = self.stop.cancelled() => return None,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _peer)) => {
                    configure(&stream);
                    return Some(LimitedConn {
                        stream,
                        _slot: slot,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    drop(slot);
                    tokio::select! {
                        _ = self.stop.cancelled() => return None,
                        _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                    }
                }
            }
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub(super) fn into_stream(self) -> impl futures::Stream<Item = Result<LimitedConn, io::Error>> {
        futures::stream::unfold(self, |acceptor| async move {
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
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
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
