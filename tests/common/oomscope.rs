//! Runs the oomscope binary under test with a config file.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use super::rotel::Rotel;
use super::{free_port, signal, wait_for_port};

/// A running oomscope; killed (SIGKILL) on drop if still running.
#[derive(Debug)]
pub struct Oomscope {
    child: Child,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

impl Oomscope {
    /// Writes `config` (YAML) to a file and starts oomscope with `--config`
    /// on it, plus `extra_args`. stdout and stderr go to a file
    /// ([`Oomscope::output`]).
    pub fn start(config: &str, extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        Self::start_with_file(&config_path, extra_args, dir)
    }

    /// Like [`Oomscope::start`], run through `wrapper` (a command that ends
    /// by exec'ing its arguments, e.g. `setpriv ... --`), so that the pid is
    /// still the agent's.
    pub fn start_wrapped(wrapper: &[&str], config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        Self::spawn(wrapper, &config_path, &[], dir)
    }

    fn start_with_file(config_path: &Path, extra_args: &[&str], dir: tempfile::TempDir) -> Self {
        Self::spawn(&[], config_path, extra_args, dir)
    }

    fn spawn(
        wrapper: &[&str],
        config_path: &Path,
        extra_args: &[&str],
        dir: tempfile::TempDir,
    ) -> Self {
        let output = dir.path().join("oomscope.out");
        let out = File::create(&output).expect("create output file");
        let err = out.try_clone().expect("clone output file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_oomscope"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_oomscope")),
        };
        let child = command
            .arg("--config")
            .arg(config_path)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn oomscope");
        Self {
            child,
            output,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything oomscope printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits until `addr` accepts connections; panics (with oomscope's output)
    /// if it does not within `timeout` or oomscope exits.
    pub fn wait_ready(&mut self, addr: SocketAddr, timeout: Duration) {
        let result = wait_for_port(addr, timeout, || match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("oomscope exited: {status}")),
            Ok(None) => Ok(()),
            Err(e) => Err(format!("try_wait: {e}")),
        });
        if let Err(e) = result {
            panic!("oomscope not ready: {e}\noutput:\n{}", self.output());
        }
    }

    /// Waits until the `health_check` extension on `port` answers 200, which
    /// it does only once every pipeline and receiver has started (the port
    /// itself opens earlier).
    pub fn wait_healthy(&mut self, port: u16, timeout: Duration) {
        use std::io::{Read as _, Write as _};
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("oomscope exited: {status}\noutput:\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "oomscope not healthy within {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the agent's output holds `needle` (returns the output);
    /// panics with the output if it does not within `timeout` or the agent
    /// exits first.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_output_count(needle, 1, timeout)
    }

    /// Waits until `needle` occurs at least `n` times in the agent's output.
    pub fn wait_for_output_count(&mut self, needle: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if output.matches(needle).count() >= n {
                return output;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "oomscope exited ({status}) before printing {needle:?} {n} times:\n{output}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "oomscope did not print {needle:?} {n} times within {timeout:?}:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; then SIGKILL.
    /// Returns the exit status and whether it exited on SIGTERM in time.
    pub fn stop(&mut self, timeout: Duration) -> (ExitStatus, bool) {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                return (status, true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (self.kill(), false)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("wait oomscope")
    }
}

impl Drop for Oomscope {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The agent's own metrics as served on Prometheus `127.0.0.1:{port}/metrics`:
/// the sum of every sample of `name` whose labels include all of `labels`
/// (0 when there is none yet). `None` when the endpoint does not answer.
pub fn own_metric(port: u16, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    let mut total = 0.0;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    Some(total)
}

/// Waits until [`own_metric`] is at least `at_least`; returns its value.
pub fn wait_for_own_metric(
    port: u16,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
    timeout: Duration,
) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let value = own_metric(port, name, labels);
        if let Some(v) = value.filter(|&v| v >= at_least) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} stayed at {value:?} (< {at_least}) for {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An agent whose one logs pipeline runs the receiver `name` (configured by
/// `settings`, YAML lines at the receiver's indentation) into `rotel` over
/// OTLP/gRPC, checkpointed in a `file_storage` at `state`; with the port of
/// its own metrics. Waits until it is healthy.
pub fn start_checkpointed_logs_agent(
    rotel: &Rotel,
    name: &str,
    settings: &[&str],
    state: &Path,
    timeout: Duration,
) -> (Oomscope, u16) {
    let (health, metrics) = (free_port(), free_port());
    let settings: String = settings.iter().map(|s| format!("    {s}\n")).collect();
    let config = format!(
        r#"
receivers:
  {name}:
{settings}exporters:
  otlp:
    endpoint: "{endpoint}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [{name}], exporters: [otlp] }}
"#,
        endpoint = rotel.grpc_addr(),
        state = state.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, timeout);
    (agent, metrics)
}
