//! Shared helpers for the integration tests. Each test crate uses a subset.
//!
//! - [`alloc`]: the static allocator of the container and kernel-matrix tests.
//! - [`oom`]: a contained OOM kill (memory cgroup + python3 allocator).
//! - [`fleet`]: simulated nodes (one agent each) behind one gateway, and a backend.
//! - [`journald`]: a real systemd-journald in private namespaces, and writers for it.
//! - [`rotel`]: rotel as an OTLP backend, and a parser for what it received.
//! - [`oomscope`]: runs the oomscope binary with a config file.
//! - [`otlp`]: OTLP requests to oomscope, and reading its file exporter output.
//! - [`podman`]: real containers (images from local files, removed on drop).
//! - [`python`]: runs Python scripts with the peers' venv (OpenTelemetry SDK).
//!
//! The peers are installed by `scripts/setup.sh --with-peers` into
//! `$OOMSCOPE_TOOLS_DIR` (default `~/.cache/oomscope`).
#![allow(dead_code)]

pub mod adversarial;
pub mod alloc;
pub mod faults;
pub mod fleet;
pub mod java;
pub mod journald;
pub mod kernel_log;
pub mod oom;
pub mod oomscope;
pub mod otlp;
pub mod podman;
pub mod python;
pub mod rotel;

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// Where `scripts/setup.sh` installs tools.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OOMSCOPE_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/oomscope")
}

/// The peers' venv python; panics with the fix when it is missing.
pub fn venv_python() -> PathBuf {
    let python = tools_dir().join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} not found: run scripts/setup.sh --with-peers",
        python.display()
    );
    python
}

/// The directory of an installed Python package of the venv.
pub fn python_package_dir(package: &str) -> PathBuf {
    let output = Command::new(venv_python())
        .arg("-c")
        .arg(format!(
            "import os, {package}; print(os.path.dirname({package}.__file__))"
        ))
        .output()
        .expect("run the venv python");
    assert!(
        output.status.success(),
        "python package {package} is not installed in the venv: run scripts/setup.sh --with-peers\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The rotel-agent binary from the `rotel` Python package.
pub fn rotel_agent_bin() -> PathBuf {
    let bin = python_package_dir("rotel").join("rotel-agent");
    assert!(bin.is_file(), "{} not found", bin.display());
    bin
}

/// otelcol-contrib (killed on drop) reading `lines`, written to
/// `<dir>/<tag>.log`, with its `filelog` receiver and sending them with its
/// `otlphttp` exporter configured by `exporter` (YAML lines at the
/// exporter's indentation); its output goes to `<dir>/otelcol-<tag>.out`.
pub fn start_otelcol_filelog_to_otlphttp(
    dir: &Path,
    tag: &str,
    lines: &[String],
    exporter: &[&str],
) -> (tokio::process::Child, PathBuf) {
    let log = dir.join(format!("{tag}.log"));
    std::fs::write(&log, lines.join("\n") + "\n").expect("write log");
    let exporter: String = exporter.iter().map(|l| format!("    {l}\n")).collect();
    let config = dir.join(format!("otelcol-{tag}.yaml"));
    std::fs::write(
        &config,
        format!(
            r#"
receivers:
  filelog:
    include: ["{log}"]
    start_at: beginning
processors:
  batch: {{ timeout: 100ms }}
exporters:
  otlphttp:
{exporter}service:
  telemetry:
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [filelog], processors: [batch], exporters: [otlphttp] }}
"#,
            log = log.display()
        ),
    )
    .expect("write otelcol config");
    let output = dir.join(format!("otelcol-{tag}.out"));
    let output_file = std::fs::File::create(&output).expect("otelcol output");
    let child = tokio::process::Command::new(otelcol_contrib_bin())
        .arg("--config")
        .arg(&config)
        .stdout(output_file.try_clone().expect("clone"))
        .stderr(output_file)
        .kill_on_drop(true)
        .spawn()
        .expect("start otelcol-contrib");
    (child, output)
}

/// The otelcol-contrib binary from the `otel_collector` Python package.
pub fn otelcol_contrib_bin() -> PathBuf {
    let dir = python_package_dir("otel_collector").join("bin");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("otelcol-contrib"))
        })
        .unwrap_or_else(|| panic!("no otelcol-contrib* in {}", dir.display()))
}

/// The ports [`free_port`] hands out: below the kernel's ephemeral range
/// (`ip_local_port_range`, 32768-60999 by default), so that no outgoing
/// connection and no `bind(0)` anywhere on the machine can take one between
/// the test picking it and a server binding it.
const TEST_PORTS: std::ops::Range<u16> = 20000..32000;

/// A port on 127.0.0.1 reserved for this test process until it exits.
///
/// The reservation is an exclusive `flock` on a file per port under
/// `$TMPDIR/oomscope-test-ports`, held for the process's life, so no other
/// test, in this process or in another suite running at the same time,
/// gets the same port; the port is also checked to be unbound at the time.
pub fn free_port() -> u16 {
    use std::os::fd::AsRawFd as _;
    static RESERVED: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("oomscope-test-ports");
    std::fs::create_dir_all(&dir).expect("create the port reservation directory");
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let first = rand::random::<u16>() % span;
    for i in 0..span {
        let port = TEST_PORTS.start + (first + i) % span;
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        // SAFETY: plain syscall on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // another test holds it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // something that is not a test listens there
        }
        RESERVED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(file);
        return port;
    }
    panic!("no free port in {TEST_PORTS:?} on 127.0.0.1");
}

/// Whether a [`machine_lock`] excludes every other holder or only exclusive ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A lock on a facility that every test on the machine shares (the kernel's
/// log ring buffer, its OOM report rate limit), held until dropped. It is an
/// `flock` on `$TMPDIR/oomscope-test-<name>.lock`, so it also excludes tests
/// of other suites running at the same time, and other tests of this process
/// (each lock opens the file anew).
#[derive(Debug)]
pub struct MachineLock {
    _file: std::fs::File,
}

/// Takes the machine-wide lock `name`, waiting as long as other tests hold it
/// (with a bound of 30 minutes, so that a stuck test fails instead of hanging).
pub fn machine_lock(name: &str, mode: LockMode) -> MachineLock {
    use std::os::fd::AsRawFd as _;
    let path = std::env::temp_dir().join(format!("oomscope-test-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let op = match mode {
        LockMode::Shared => libc::LOCK_SH,
        LockMode::Exclusive => libc::LOCK_EX,
    };
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    // SAFETY: plain syscall on a descriptor this function owns.
    while unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
        assert!(
            Instant::now() < deadline,
            "{} stayed locked by another test for 30 minutes",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    MachineLock { _file: file }
}

/// Waits until `addr` accepts TCP connections, or until `timeout`; `alive`
/// is checked between attempts and stops the wait early when it returns an
/// error (e.g. the server process exited).
pub fn wait_for_port(
    addr: SocketAddr,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "{addr} did not accept connections within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` to `pid` (ignoring a process that is already gone).
pub fn signal(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: plain syscall; a stale pid at worst gets ESRCH.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Prints why a test does not run on this host (the test then returns).
/// Writes to the stderr handle directly, which the test harness does not
/// capture (unlike `eprintln!`), so the line shows in every run.
pub fn skip(test: &str, why: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Running as root (eBPF, /dev/kmsg, memory cgroups).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A value stored by a `file_storage` extension: the body of its frame
/// (`OSQ1`, length, CRC, body), unchecked.
pub fn stored_value(path: &std::path::Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    bytes.get(12..).map(<[u8]>::to_vec)
}

/// The JSON value a component keeps under `key` in a `file_storage`
/// directory (`<directory>/<namespace>/kv/<key>`, e.g. namespace
/// `receiver_kmsg_`), or `None` while there is none.
pub fn stored_json(
    directory: &std::path::Path,
    namespace: &str,
    key: &str,
) -> Option<serde_json::Value> {
    let body = stored_value(&directory.join(namespace).join("kv").join(key))?;
    serde_json::from_slice(&body).ok()
}

/// A filelog receiver's checkpoint (`namespace` e.g. `receiver_filelog_`):
/// the largest offset it stored for any file.
pub fn filelog_offset(state: &std::path::Path, namespace: &str) -> Option<u64> {
    stored_json(state, namespace, "file_offsets")?["files"]
        .as_array()?
        .iter()
        .filter_map(|f| f["offset"].as_u64())
        .max()
}

/// The `kmsg` receiver's checkpoint: the last acknowledged sequence number.
pub fn kmsg_checkpoint(state: &std::path::Path) -> Option<u64> {
    stored_json(state, "receiver_kmsg_", "kmsg_checkpoint")?
        .get("seq")?
        .as_u64()
}

/// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`: the kernel
/// prints them in kB).
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
