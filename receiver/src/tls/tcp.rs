//! The TCP streams the gRPC clients dial (plain, or under TLS), with
//! an option to acknowledge what arrives at once.
//!
//! Why that option: a server that writes its answer in pieces without
//! `TCP_NODELAY` (rotel does: its response headers, then the message and
//! trailers) holds each later piece until the earlier one is acknowledged
//! (Nagle's algorithm), and Linux delays that acknowledgement by up to
//! 40 ms on a connection that looks interactive. Each OOM kill record
//! would wait that long for the server's answer. `TCP_QUICKACK` makes the
//! kernel acknowledge at once; it is not sticky (the kernel goes back to
//! delaying), so it is set again after every read. That is one
//! `setsockopt` per read, paid only on the connection of urgent requests,
//! which carries a request per kill.

use std::io;
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TCP connection, which acknowledges each read at once when
/// `quick_ack` is set.
#[derive(Debug)]
pub struct TcpStream {
    inner: tokio::net::TcpStream,
    quick_ack: bool,
}

impl TcpStream {
    /// Connects to `uri`'s host and port (`default_port` when it names
    /// none) as tonic's own connections do: through hyper's connector, which
    /// races a name's IPv6 and IPv4 addresses (happy eyeballs), with
    /// `TCP_NODELAY` (requests go out whole at once).
    pub async fn connect(uri: &http::Uri, default_port: u16, quick_ack: bool) -> io::Result<Self> {
        use tower::Service as _;
        let host = uri.host().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host"))
        })?;
        let port = uri.port_u16().unwrap_or(default_port);
        // `host` keeps an IPv6 address's brackets.
        let target: http::Uri = format!("http://{host}:{port}")
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {e}")))?;
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let io = connector.call(target).await.map_err(io::Error::other)?;
        Ok(TcpStream {
            inner: io.into_inner(),
            quick_ack,
        })
    }

    /// Asks the kernel to acknowledge received data now. A failure only
    /// means the usual delayed acknowledgement.
    fn acknowledge_now(&self) {
        let one: libc::c_int = 1;
        // SAFETY: a socket option on this stream's own fd, from a c_int
        // that outlives the call, with its size.
        unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                std::ptr::from_ref(&one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.quick_ack && matches!(read, Poll::Ready(Ok(()))) {
            self.acknowledge_now();
        }
        read
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A plain-TCP connector for tonic's `Endpoint::connect_with_connector`.
pub fn connector(
    quick_ack: bool,
) -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<TcpStream>,
    Error = io::Error,
    Future = impl std::future::Future<Output = io::Result<hyper_util::rt::TokioIo<TcpStream>>> + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |uri: http::Uri| async move {
        let tcp = TcpStream::connect(&uri, 80, quick_ack).await?;
        Ok(hyper_util::rt::TokioIo::new(tcp))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Whether the kernel is in quick-ack mode on `stream` (the option
    /// reads back as the current mode).
    fn quick_ack_mode(stream: &TcpStream) -> bool {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one c_int option into a c_int of that size.
        let rc = unsafe {
            libc::getsockopt(
                stream.inner.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                std::ptr::from_mut(&mut value).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value != 0
    }

    /// An interactive exchange over loopback (40 one-byte round trips):
    /// the quick-ack mode after each of the client's reads.
    async fn modes_after_reads(quick_ack: bool) -> Vec<bool> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let uri: http::Uri = format!("http://{addr}").parse().expect("uri");
        let server = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.expect("accept");
            let mut byte = [0u8; 1];
            for _ in 0..40 {
                peer.read_exact(&mut byte).await.expect("read");
                peer.write_all(&byte).await.expect("write");
            }
        });
        let mut client = TcpStream::connect(&uri, 80, quick_ack)
            .await
            .expect("connect");
        let mut modes = Vec::new();
        let mut byte = [0u8; 1];
        for i in 0..40u8 {
            client.write_all(&[i]).await.expect("write");
            client.read_exact(&mut byte).await.expect("read");
            assert_eq!(byte[0], i);
            modes.push(quick_ack_mode(&client));
        }
        server.await.expect("server");
        modes
    }

    /// Without the option the kernel soon delays its acknowledgements on
    /// such a connection (interactive, "ping-pong" mode); with it, it is
    /// back in quick-ack mode after every read.
    #[tokio::test]
    async fn a_quick_ack_stream_acknowledges_each_read_at_once() {
        let plain = modes_after_reads(false).await;
        assert!(
            plain.iter().any(|m| !*m),
            "the kernel never delayed acknowledgements: {plain:?}"
        );
        let quick = modes_after_reads(true).await;
        assert!(quick.iter().all(|m| *m), "{quick:?}");
    }

    /// Dials `listener` as `host` and checks that it accepted.
    async fn dial(listener: tokio::net::TcpListener, host: &str, quick_ack: bool) {
        let port = listener.local_addr().expect("addr").port();
        let uri: http::Uri = format!("http://{host}:{port}").parse().expect("uri");
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        TcpStream::connect(&uri, 80, quick_ack)
            .await
            .unwrap_or_else(|e| panic!("connect to {uri}: {e}"));
        accept.await.expect("accept task").expect("accepted");
    }

    /// A name is resolved, and an IPv6 address in brackets is dialed.
    #[tokio::test]
    async fn names_and_ipv6_addresses_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        dial(listener, "localhost", false).await;
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            eprintln!("SKIP: no IPv6 loopback on this host");
            return;
        };
        dial(listener, "[::1]", true).await;
    }

    #[tokio::test]
    async fn a_uri_without_host_is_an_error() {
        let uri: http::Uri = "/path".parse().expect("uri");
        let err = TcpStream::connect(&uri, 80, false)
            .await
            .expect_err("no host");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
