//! `oomscope`: run the agent, validate a config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use oomscope::config::{self, Config, ConfigErrors, LogEncoding, LogLevel};

/// OTLP decoding and encoding allocate per record; mimalloc is markedly
/// cheaper than glibc malloc for that pattern (see bench/otlp_passthrough.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The default pipeline, used when no `--config` is given.
const DEFAULT_CONFIG: &str = include_str!("../../config/default.yaml");

#[derive(Parser, Debug)]
#[command(
    name = "oomscope",
    version,
    about = "Catches out-of-memory trouble on Linux and ships it as OpenTelemetry data"
)]
struct Cli {
    /// Configuration file; repeat to merge several in order (later files win).
    /// Without one, the built-in default pipeline (config/default.yaml) runs.
    #[arg(long = "config", global = true, value_name = "FILE")]
    config: Vec<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks the configuration without starting anything (exit 0 when valid).
    Validate,
}

fn load(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    if paths.is_empty() {
        config::load_str("config/default.yaml (built in)", DEFAULT_CONFIG)
    } else {
        config::load_files(paths)
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match with_bootstrap_logging(|| load(&cli.config)) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("oomscope: invalid configuration:\n{errors}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Validate) = cli.command {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let logs = &config.service.telemetry.logs;
    init_logging(logs.level, logs.encoding);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
            tracing::error!("{e:#}");
            eprintln!("oomscope: {e:#}");
            ExitCode::from(1)
        }
    }
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
