//! `oomscope`: run the agent, validate or print a config, list the
//! components, follow live OOM kills (`events`), watch the host's memory and
//! incidents (`top`), check what the host allows (`doctor`), explain OOM
//! kills from log text (`analyze`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use oomscope::api::EventsEndpoint;
use oomscope::cli::analyze::{self, otlp::Endpoint, AnalyzeOptions};
use oomscope::cli::doctor;
use oomscope::cli::events::EventsOptions;
use oomscope::components::registry;
use oomscope::config::{self, Config, ConfigErrors, ConfigSource, LogEncoding, LogLevel, Node};
use tokio_util::sync::CancellationToken;

/// OTLP decoding and encoding allocate per record; mimalloc is markedly
/// cheaper than glibc malloc for that pattern (see bench/otlp_passthrough.sh).
/// Counted, for the `otelcol_process_runtime_*` own metrics.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: oomscope::heap_stats::CountingMiMalloc = oomscope::heap_stats::CountingMiMalloc;

/// Large blocks of glibc's malloc (which the C libraries use: zstd's
/// windows) are mapped and unmapped when freed. By default glibc raises its
/// mmap threshold after each large free and keeps later large blocks in its
/// per-thread heaps: after a burst of zstd-compressed requests an idle agent
/// held the windows it no longer used (tests/otlp_adversarial.rs). A fixed
/// threshold trades CPU for memory: each zstd window of 1 MiB or more is
/// mapped and unmapped per request (under a millisecond per 8 MiB request
/// here); for an agent that must not become the OOM victim, memory wins. On
/// the Rust side, large decompressed bodies live in mappings of their own
/// (`receivers::otlp::decode`), unmapped when freed.
fn return_freed_memory_promptly() {
    #[cfg(not(feature = "system-allocator"))]
    oomscope::heap_stats::set_purge_delay();
    #[cfg(target_env = "gnu")]
    // SAFETY: sets a tunable of glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The default pipeline, used when no `--config` is given.
const DEFAULT_CONFIG: &str = include_str!("../../config/default.yaml");

#[derive(Parser, Debug)]
#[command(
    name = "oomscope",
    version,
    about = "Catches out-of-memory trouble on Linux and ships it as OpenTelemetry data"
)]
struct Cli {
    /// Configuration: a file path or a `file:`, `env:` or `yaml:` URI, as
    /// the collector takes them; repeat to merge several in order (later
    /// ones win). Without one, the built-in default pipeline
    /// (config/default.yaml) runs.
    #[arg(long = "config", global = true, value_name = "URI")]
    config: Vec<ConfigSource>,

    /// Sets one value on top of every --config: `KEY::PATH=VALUE` (the value
    /// is YAML), e.g. `--set processors::batch::timeout=2s`.
    #[arg(long = "set", global = true, value_name = "KEY::PATH=VALUE")]
    set: Vec<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks the configuration without starting anything (exit 0 when valid).
    Validate,
    /// Prints the configuration as the agent reads it: merged, variables
    /// expanded, --set applied; secrets masked unless --mode unredacted.
    PrintConfig {
        #[arg(long, value_enum, default_value_t = PrintMode::Redacted)]
        mode: PrintMode,
    },
    /// Lists every component of this build by kind, with its stability.
    Components,
    /// Follows the agent's live stream of OOM kills (Ctrl-C to stop).
    Events {
        #[command(flatten)]
        api: AgentApi,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Only kills whose victim cgroup path starts with PREFIX.
        #[arg(long = "cgroup", value_name = "PREFIX", default_value = "")]
        cgroup_prefix: String,
    },
    /// A live terminal view of a running agent: memory, cgroups, incidents.
    ///
    /// System memory and pressure, the cgroups nearest their limits, the
    /// largest processes and the latest OOM incidents, refreshed every
    /// second. Keys: q quit, s sort the cgroups, Tab next table, arrows or
    /// j/k select, Enter open the selected incident, Esc back.
    Top {
        #[command(flatten)]
        api: AgentApi,
    },
    /// Reports what this host allows the agent to see. Exit 0: full data;
    /// 1: degraded; 2: OOM kills cannot be reported.
    Doctor {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Try loading the eBPF program (default when running as root).
        #[arg(long, overrides_with = "no_probe")]
        probe: bool,
        /// Do not try loading the eBPF program.
        #[arg(long, overrides_with = "probe")]
        no_probe: bool,
    },
    /// Explains the kernel's OOM kills found in log text: dmesg (also -T),
    /// kern.log / messages, journalctl -k, an sosreport, a paste; gzip'd and
    /// zstd'd files; every file below a directory. One block per kill, then
    /// a summary. Exit 0: every input read; 1: some input unreadable or the
    /// OTLP send failed; 2: nothing could be read.
    Analyze {
        /// Files or directories to read; `-` or none: standard input.
        #[arg(value_name = "FILE")]
        inputs: Vec<std::ffi::OsString>,
        /// One JSON object per line per report (kill or report without one).
        #[arg(long)]
        json: bool,
        /// Colours: when stdout is a terminal (auto), always or never.
        #[arg(long, value_enum, default_value_t = ColorMode::Auto)]
        color: ColorMode,
        /// Also send the records as OTLP logs over gRPC to ENDPOINT
        /// (`host:port` with TLS, `http://host:port` without).
        #[arg(long, value_name = "ENDPOINT", conflicts_with = "otlp_http")]
        otlp: Option<String>,
        /// Also send the records as OTLP logs over HTTP to URL (the base:
        /// `/v1/logs` is appended), e.g. `http://localhost:4318`.
        #[arg(long = "otlp-http", value_name = "URL")]
        otlp_http: Option<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ColorMode {
    Auto,
    Always,
    Never,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PrintMode {
    Redacted,
    Unredacted,
}

/// Every source of configuration: `--config` (or the built-in default), then
/// `--set`.
fn sources(cli: &Cli) -> Vec<ConfigSource> {
    let mut sources = cli.config.clone();
    if sources.is_empty() {
        sources.push(ConfigSource::Text {
            name: "config/default.yaml (built in)".to_string(),
            text: DEFAULT_CONFIG.to_string(),
        });
    }
    sources.extend(cli.set.iter().cloned().map(ConfigSource::Set));
    sources
}

fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load(cli: &Cli) -> Result<Config, ConfigErrors> {
    config::load(registry(), &sources(cli), &environment)
}

/// Writes a command's output. A reader that went away (`oomscope doctor |
/// head`) is not an error worth a panic, as `print!` would make it; the
/// command's exit code stays its own.
fn write_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("oomscope: cannot write to stdout: {e}");
        }
    }
}

/// `oomscope print-config`: the resolved tree, after checking that it loads.
fn print_config(cli: &Cli, mode: PrintMode) -> ExitCode {
    let resolved: Result<Node, ConfigErrors> = with_bootstrap_logging(|| {
        let node = config::resolve(&sources(cli), &environment)?;
        config::decode(registry(), &node)?;
        Ok(node)
    });
    match resolved {
        Ok(node) => {
            write_stdout(&config::to_yaml(&node, mode == PrintMode::Redacted));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!(
                "oomscope: invalid configuration:\n{}",
                oomscope::redact::redact_text(&errors.to_string())
            );
            ExitCode::from(1)
        }
    }
}

/// What is logged while the configuration loads (warnings such as an empty
/// environment variable) goes to stderr before the configured logging is
/// set up, so it is not lost.
fn with_bootstrap_logging<T>(f: impl FnOnce() -> T) -> T {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let bootstrap = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish();
    tracing::subscriber::with_default(bootstrap, f)
}

fn init_logging(level: LogLevel, encoding: LogEncoding) {
    // RUST_LOG wins over the config, for debugging a running setup.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let json = encoding == LogEncoding::Json;
    // Colours only for a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("oomscope: cannot set up logging: {e}");
    }
}

/// How `events` and `top` reach the agent's API.
#[derive(clap::Args, Debug)]
struct AgentApi {
    /// The agent's events API: IP:PORT, https://IP:PORT or unix:/path/to.sock.
    #[arg(long, default_value = oomscope::api::events::DEFAULT_ENDPOINT)]
    endpoint: String,
    /// TLS: the CA certificates (PEM) that verify the agent. Any --tls-*
    /// option, or an https:// endpoint, turns TLS on.
    #[arg(long, value_name = "FILE")]
    tls_ca_file: Option<std::path::PathBuf>,
    /// TLS: the client certificate (PEM) for an agent that requires one.
    #[arg(long, value_name = "FILE", requires = "tls_key_file")]
    tls_cert_file: Option<std::path::PathBuf>,
    /// TLS: the key of --tls-cert-file (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_key_file: Option<std::path::PathBuf>,
    /// TLS: the name to verify the agent's certificate against.
    #[arg(long, value_name = "NAME")]
    tls_server_name_override: Option<String>,
}

impl AgentApi {
    /// The endpoint and, when asked for, the TLS dialer; on error, the
    /// message to print (exit 2: bad arguments).
    fn resolve(
        self,
        command: &str,
    ) -> Result<(EventsEndpoint, Option<oomscope::tls::TlsDialer>), String> {
        let tls = oomscope::tls::TlsClientConfig {
            ca_file: self.tls_ca_file,
            cert_file: self.tls_cert_file,
            key_file: self.tls_key_file,
            server_name_override: self.tls_server_name_override,
            ..Default::default()
        };
        let (endpoint, https) = match self.endpoint.trim().strip_prefix("https://") {
            Some(rest) => (rest.trim_end_matches('/'), true),
            None => (self.endpoint.as_str(), false),
        };
        let use_tls = https || tls != oomscope::tls::TlsClientConfig::default();
        let tls = if use_tls {
            Some(
                tls.load()
                    .and_then(|tls| tls.dialer())
                    .map_err(|e| format!("oomscope {command}: {e:#}"))?,
            )
        } else {
            None
        };
        let endpoint: EventsEndpoint = endpoint
            .parse()
            .map_err(|e| format!("oomscope {command}: {e}"))?;
        if tls.is_some() && matches!(endpoint, EventsEndpoint::Unix(_)) {
            return Err(format!(
                "oomscope {command}: TLS applies to a TCP endpoint, not to {endpoint}"
            ));
        }
        Ok((endpoint, tls))
    }
}

fn main() -> ExitCode {
    #[cfg(not(feature = "system-allocator"))]
    GLOBAL.activate();
    return_freed_memory_promptly();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Events {
            api,
            json,
            cgroup_prefix,
        }) => return events(api, json, cgroup_prefix),
        Some(Command::Top { api }) => return top(api),
        Some(Command::Doctor {
            json,
            probe,
            no_probe,
        }) => return doctor(json, probe, no_probe),
        Some(Command::Components) => {
            write_stdout(&oomscope::cli::components::render(registry()));
            return ExitCode::SUCCESS;
        }
        Some(Command::PrintConfig { mode }) => return print_config(&cli, mode),
        Some(Command::Analyze {
            inputs,
            json,
            color,
            otlp,
            otlp_http,
        }) => {
            let color = match color {
                ColorMode::Always => true,
                ColorMode::Never => false,
                ColorMode::Auto => std::io::IsTerminal::is_terminal(&std::io::stdout()),
            };
            let options = AnalyzeOptions {
                inputs,
                json,
                color,
                otlp: otlp
                    .map(Endpoint::Grpc)
                    .or_else(|| otlp_http.map(Endpoint::Http)),
            };
            let code = analyze::run(
                &options,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            return ExitCode::from(code);
        }
        Some(Command::Validate) | None => {}
    }
    let config = match with_bootstrap_logging(|| load(&cli)) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!(
                "oomscope: invalid configuration:\n{}",
                oomscope::redact::redact_text(&errors.to_string())
            );
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Validate) = cli.command {
        write_stdout("configuration is valid\n");
        return ExitCode::SUCCESS;
    }
    let logs = &config.service.telemetry.logs;
    init_logging(logs.level, logs.encoding);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(oomscope::heap_stats::on_worker_park)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oomscope: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(oomscope::service::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An error may quote configuration (an endpoint with credentials).
            let message = format!("{e:#}");
            let message = oomscope::redact::redact_text(&message);
            tracing::error!("{message}");
            eprintln!("oomscope: {message}");
            ExitCode::from(1)
        }
    }
}

/// A runtime for a client subcommand, or the exit code after saying why not.
fn client_runtime(command: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("oomscope {command}: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// `oomscope events`: prints kills until Ctrl-C (exit 0).
fn events(api: AgentApi, json: bool, cgroup_prefix: String) -> ExitCode {
    let (endpoint, tls) = match api.resolve("events") {
        Ok(resolved) => resolved,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match client_runtime("events") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let options = EventsOptions {
        json,
        cgroup_prefix,
        tls,
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            on_signal.cancel();
        });
        let mut out = std::io::stdout();
        oomscope::cli::events::run(&endpoint, &options, &mut out, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oomscope events: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `oomscope top`: the terminal view until `q` (exit 0).
fn top(api: AgentApi) -> ExitCode {
    let shown = api.endpoint.trim().to_owned();
    let (endpoint, tls) = match api.resolve("top") {
        Ok(resolved) => resolved,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match client_runtime("top") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        // SIGTERM (and SIGINT from outside: in raw mode Ctrl-C is a key).
        tokio::spawn(async move {
            shutdown_signal().await;
            on_signal.cancel();
        });
        oomscope::cli::top::run(&endpoint, &shown, tls, stop).await
    });
    // The keyboard thread may sit in a read for a moment; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oomscope top: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `oomscope doctor`: prints the checks; the exit code is the verdict.
fn doctor(json: bool, probe: bool, no_probe: bool) -> ExitCode {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let run_probe = probe || (root && !no_probe);
    let why_not = if no_probe {
        "--no-probe"
    } else {
        "not root; --probe to try anyway"
    };
    let facts = doctor::gather(run_probe, why_not);
    let report = doctor::assess(&facts);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => write_stdout(&format!("{text}\n")),
            Err(e) => {
                eprintln!("oomscope doctor: cannot encode the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        write_stdout(&doctor::render_text(&report));
    }
    ExitCode::from(report.exit_code)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    /// The resident set of this process, in bytes.
    fn rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    const MIB: u64 = 1 << 20;

    /// A large block that C code frees leaves the resident set at once, also
    /// the second time (glibc kept it after a first large free had raised
    /// its mmap threshold).
    #[test]
    fn large_blocks_freed_by_c_code_go_back_to_the_os() {
        super::return_freed_memory_promptly();
        for round in 0..2 {
            let size = 16 << 20;
            // SAFETY: a plain malloc/memset/free of a block this test owns.
            let (held, freed) = unsafe {
                let p = libc::malloc(size);
                assert!(!p.is_null());
                libc::memset(p, 1, size);
                let held = rss();
                libc::free(p);
                (held, rss())
            };
            assert!(
                freed + 12 * MIB <= held,
                "glibc kept round {round}: {held} -> {freed}"
            );
        }
    }
}
