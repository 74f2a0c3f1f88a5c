//! Shared helpers for the integration tests. Each test crate uses a subset.
//!
//! - [`oom`]: a contained OOM kill (memory cgroup + python3 allocator).
//! - [`rotel`]: rotel as an OTLP backend, and a parser for what it received.
//! - [`oomscope`]: runs the oomscope binary with a config file.
//! - [`otlp`]: OTLP requests to oomscope, and reading its file exporter output.
//! - [`python`]: runs Python scripts with the peers' venv (OpenTelemetry SDK).
//!
//! The peers are installed by `scripts/setup.sh --with-peers` into
//! `$OOMSCOPE_TOOLS_DIR` (default `~/.cache/oomscope`).
#![allow(dead_code)]

pub mod adversarial;
pub mod kernel_log;
pub mod oom;
pub mod oomscope;
pub mod otlp;
pub mod python;
pub mod rotel;

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
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

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
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
