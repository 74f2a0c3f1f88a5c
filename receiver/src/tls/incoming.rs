//! TLS handshakes of accepted connections. Each handshake runs in its own
//! task and is bounded by the listener's first-bytes timeout, so a client
//! that stalls in its handshake neither holds up other clients nor keeps
//! its connection slot.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::server::Connected;

use super::ServerTls;
use crate::server::{AcceptSource, AcceptedSocket, Acceptor, ConnInfo, LimitedConn};

/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 16;

/// A connection after its TLS handshake. For tonic it is the plain
/// connection's [`ConnInfo`] (so request tracking works the same).
pub(crate) struct TlsConn<S: AcceptedSocket>(tokio_rustls::server::TlsStream<LimitedConn<S>>);

/// Runs the handshake of `conn` with the current config of `tls`, within
/// `timeout`. A failure is logged (debug: clients that cannot connect see
/// the reason themselves) and gives `None`.
pub(crate) async fn handshake<S: AcceptedSocket>(
    conn: LimitedConn<S>,
    tls: &ServerTls,
    timeout: Duration,
) -> Option<TlsConn<S>> {
    let peer = conn.peer();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    match tokio::time::timeout(timeout, acceptor.accept(conn)).await {
        Ok(Ok(stream)) => Some(TlsConn(stream)),
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake not finished in time");
            None
        }
    }
}

/// Aborts the accept task when the stream is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The connections of `acceptor` after their handshakes, as a stream for
/// tonic's `serve_with_incoming`. Handshakes run concurrently; only
/// finished ones are yielded.
pub(crate) fn tls_incoming<L: AcceptSource>(
    mut acceptor: Acceptor<L>,
    tls: Arc<ServerTls>,
    timeout: Duration,
) -> impl futures::Stream<Item = Result<TlsConn<L::Socket>, io::Error>> {
    let (ready_tx, ready_rx) = mpsc::channel(READY_QUEUE);
    let task = tokio::spawn(async move {
        // Aborted with this task.
        let mut handshakes = JoinSet::new();
        loop {
            tokio::select! {
                conn = acceptor.accept() => {
                    let Some(conn) = conn else { break };
                    let tls = Arc::clone(&tls);
                    let ready = ready_tx.clone();
                    handshakes.spawn(async move {
                        if let Some(conn) = handshake(conn, &tls, timeout).await {
                            // The server is gone when this fails: drop it.
                            let _ = ready.send(conn).await;
                        }
                    });
                }
                Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            }
        }
    });
    let guard = Arc::new(AbortOnDrop(task));
    futures::stream::unfold((ready_rx, guard), |(mut rx, guard)| async move {
        let conn = rx.recv().await?;
        Some((Ok(conn), (rx, guard)))
    })
}

impl<S: AcceptedSocket> Connected for TlsConn<S> {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl<S: AcceptedSocket> AsyncRead for TlsConn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AcceptedSocket> AsyncWrite for TlsConn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
