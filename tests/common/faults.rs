//! Helpers of the fault tests (`tests/faults_*.rs`): a small tmpfs, the
//! agent's JSON log lines and Prometheus metrics, its memory from /proc, a
//! TCP endpoint that misbehaves on purpose (never answers, answers late) in
//! front of a real backend, OTLP requests whose answers are recorded, and
//! the state the agent keeps in `file_storage`.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use tonic::transport::{Channel, Endpoint};

use super::otlp::logs_request;

/// A tmpfs of a given size mounted on a fresh directory; unmounted on drop.
/// Needs root (CAP_SYS_ADMIN).
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_kib` KiB.
    pub fn mount(size_kib: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).map_err(|e| format!("mkdir: {e}"))?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_kib}k,mode=0755"))
            .arg("tmpfs")
            .arg(&path))?;
        Ok(Tmpfs { path, _dir: dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the size (space "returns" when it grows).
    pub fn resize(&self, size_kib: u64) {
        run(Command::new("mount")
            .arg("-o")
            .arg(format!("remount,size={size_kib}k"))
            .arg(&self.path))
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Writes a filler file until the file system is full; returns the
    /// bytes written.
    pub fn fill(&self, name: &str) -> u64 {
        let mut f = std::fs::File::create(self.path.join(name)).expect("create filler");
        let block = vec![0x5a_u8; 4096];
        let mut written = 0u64;
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", self.path.display()),
            }
        }
        written
    }

    /// Bytes free, as statvfs says.
    pub fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: statvfs writes into the zeroed struct; the path is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.path.display());
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily if something still holds a file there (a killed child being
        // reaped): the mount goes away once it is free.
        if run(Command::new("umount").arg(&self.path)).is_err() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.path));
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One line of the agent's log (`service.telemetry.logs.encoding: json`).
#[derive(Debug, Clone)]
pub struct LogLine {
    pub level: String,
    pub message: String,
    /// Every field, the message included.
    pub fields: serde_json::Value,
}

impl LogLine {
    /// The text of field `key` (strings unquoted).
    pub fn field(&self, key: &str) -> Option<String> {
        match self.fields.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// The agent's JSON log lines (other lines are skipped).
pub fn log_lines(output: &str) -> Vec<LogLine> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let fields = v.get("fields")?.clone();
            Some(LogLine {
                level: v.get("level")?.as_str()?.to_owned(),
                message: fields.get("message")?.as_str()?.to_owned(),
                fields,
            })
        })
        .collect()
}

/// Log lines whose message contains `needle`.
pub fn lines_with(output: &str, needle: &str) -> Vec<LogLine> {
    log_lines(output)
        .into_iter()
        .filter(|l| l.message.contains(needle))
        .collect()
}

/// Whether the text contains "panicked" (a Rust panic message).
pub fn has_panic(output: &str) -> bool {
    output.contains("panicked at")
}

/// What a [`Proxy`] does with new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Pass bytes both ways.
    Forward,
    /// Accept and hold the connection; never read, never answer.
    Blackhole,
    /// Pass the request on at once, hold every answer this long.
    DelayAnswers(Duration),
}

/// A TCP endpoint in front of a real backend that fails the way a broken
/// network or server does. The mode applies to connections accepted after
/// it is set; switching to another mode closes the held (blackholed) ones.
pub struct Proxy {
    addr: SocketAddr,
    mode: Arc<Mutex<ProxyMode>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let proxy = Proxy {
            addr,
            mode: Arc::new(Mutex::new(mode)),
            held: Arc::default(),
            accepted: Arc::default(),
            stop: Arc::default(),
        };
        let (mode, held, accepted, stop) = (
            Arc::clone(&proxy.mode),
            Arc::clone(&proxy.held),
            Arc::clone(&proxy.accepted),
            Arc::clone(&proxy.stop),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = client.set_nonblocking(false);
                accepted.fetch_add(1, Ordering::Relaxed);
                let current = *mode.lock().unwrap_or_else(|p| p.into_inner());
                match current {
                    ProxyMode::Blackhole => {
                        held.lock().unwrap_or_else(|p| p.into_inner()).push(client)
                    }
                    ProxyMode::Forward => forward(client, upstream, Duration::ZERO),
                    ProxyMode::DelayAnswers(d) => forward(client, upstream, d),
                }
            }
        });
        proxy
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn set_mode(&self, mode: ProxyMode) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
        if mode != ProxyMode::Blackhole {
            for s in self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
            {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.set_mode(ProxyMode::Forward);
    }
}

/// Copies both ways on two threads; answers are held `delay` after they
/// arrive from upstream.
fn forward(client: TcpStream, upstream: SocketAddr, delay: Duration) {
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(mut client_r), Ok(mut server_w)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let _ = io::copy(&mut client_r, &mut server_w);
        let _ = server_w.shutdown(Shutdown::Write);
    });
    let (mut server_r, mut client_w) = (server, client);
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !delay.is_zero() {
                thread::sleep(delay);
            }
            if client_w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_w.shutdown(Shutdown::Both);
        let _ = server_r.shutdown(Shutdown::Both);
    });
}

/// A lazily connecting OTLP/gRPC logs client whose calls give up after
/// `timeout` (so a request to a killed agent ends).
pub fn logs_client(port: u16, timeout: Duration) -> LogsServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .connect_lazy();
    LogsServiceClient::new(channel).max_encoding_message_size(64 << 20)
}

/// Sends one request with these bodies; `Ok` when the agent answered OK
/// (the records are acknowledged).
pub async fn send_once(
    client: &mut LogsServiceClient<Channel>,
    bodies: &[String],
) -> Result<(), tonic::Status> {
    client.export(logs_request(bodies)).await.map(|_| ())
}

/// How often each of `wanted` occurs among `got` (bodies at the backend).
pub fn occurrences<'a>(
    wanted: impl IntoIterator<Item = &'a String>,
    got: &[String],
) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = wanted.into_iter().map(|w| (w.clone(), 0)).collect();
    for body in got {
        if let Some(n) = counts.get_mut(body) {
            *n += 1;
        }
    }
    counts
}

/// (missing, duplicates) in a count map.
pub fn missing_and_duplicates(counts: &BTreeMap<String, usize>) -> (Vec<&String>, usize) {
    let missing = counts
        .iter()
        .filter(|(_, &n)| n == 0)
        .map(|(k, _)| k)
        .collect();
    let duplicates = counts.values().map(|&n| n.saturating_sub(1)).sum();
    (missing, duplicates)
}

/// Waits until `done` holds, or panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {}", what());
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the health_check on `port` answers 200 now.
pub fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
