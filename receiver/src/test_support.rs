//! Helpers shared by the library's unit tests, so that they depend on
//! neither the machine's speed nor on what else runs on it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Generous bound on anything a test waits for: only a broken test ever
/// reaches it, however slow or loaded the machine is.
pub const WAIT: Duration = Duration::from_secs(60);

/// A local TCP address that refuses connections for as long as the
/// returned socket lives: bound but not listening, so a connection attempt
/// is reset, and (without `SO_REUSEADDR`) no other socket of this or any
/// other process can take the port meanwhile. Binding a listener and
/// dropping it leaves the port free for whatever binds next.
pub fn refused_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("local_addr");
    (socket, addr)
}

/// Whether this process holds a file descriptor open on `path` (the link
/// in /proc/self/fd names the file as it is named now).
pub fn holds_open(path: &Path) -> bool {
    // The links name files without symbolic links (say in TMPDIR).
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| target == path)
}

/// Polls `condition` (blocking) until it holds; panics naming `what` after
/// [`WAIT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls `condition` (async) until it holds; panics naming `what` after
/// [`WAIT`].
pub async fn wait_until_async(what: &str, mut condition: impl FnMut() -> bool) {
    let reached = tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{what}: not within {WAIT:?}");
}

/// Bytes received on the local TCP connection `local` <- `peer` that its
/// owner has not read yet (`rx_queue` in /proc/net/tcp); `None` while the
/// connection is not listed.
pub fn unread_bytes(local: SocketAddr, peer: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| -> Option<String> {
        match a {
            SocketAddr::V4(v4) => Some(format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(v4.ip().octets()),
                v4.port()
            )),
            SocketAddr::V6(_) => None,
        }
    };
    let (local, peer) = (hex(local)?, hex(peer)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let (l, p, _state, queues) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if l != local || p != peer {
            return None;
        }
        let (_tx, rx) = queues.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_addr_refuses_and_keeps_its_port() {
        let (_held, addr) = refused_addr();
        let err = tokio::net::TcpStream::connect(addr).await.err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(tokio::net::TcpListener::bind(addr).await.is_err());
    }

    #[tokio::test]
    async fn unread_bytes_follow_the_reader() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (mut server, peer) = listener.accept().await.expect("accept");
        let local = server.local_addr().expect("addr");
        client.write_all(b"hello").await.expect("write");
        wait_until_async("5 bytes queued", || unread_bytes(local, peer) == Some(5)).await;
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).await.expect("read");
        assert_eq!(unread_bytes(local, peer), Some(0));
    }
}
