//! Runs Python scripts with the peers' venv (OpenTelemetry SDK senders).

use std::{process::Output, time::Duration};

use super::venv_python;

/// Runs `script` (Python source) with `args` under the venv python; the
/// child is killed if it runs longer than `timeout`.
pub async fn run_python(script: &str, args: &[&str], timeout: Duration) -> Output {
    let child = tokio::process::Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(timeout, child)
        .await
        .unwrap_or_else(|_| panic!("python script did not finish within {timeout:?}"))
        .expect("run the venv python")
}

/// Like [`run_python`], and panics with its output unless it exits 0.
pub async fn run_python_ok(script: &str, args: &[&str], timeout: Duration) -> Output {
    let output = run_python(script, args, timeout).await;
    assert!(
        output.status.success(),
        "python script failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `script` (a Python program) with `OTEL_EXPORTER_OTLP_HEADERS` set from
/// its first argument, which is taken off `sys.argv` (the SDK's own way of
/// configuring headers; values are URL-encoded).
pub fn with_otlp_headers_argument(script: &str) -> String {
    format!("import os, sys\nos.environ['OTEL_EXPORTER_OTLP_HEADERS'] = sys.argv.pop(1)\n{script}")
}
