//! CPU per scrape of the `memory` receiver (bench/memory_vs_ps.sh): the
//! receiver's full scrape with its default config (system, pressure, the top
//! 20 processes, every memory cgroup), `--iterations` times in a row, CPU
//! (user + system) from getrusage(RUSAGE_SELF). With `--ps`, the same number
//! of `ps -eo pid,rss,vsz,comm` runs over the same processes, CPU from
//! getrusage(RUSAGE_CHILDREN), and the ratio.
//!
//! Usage: memory_scrape [--iterations K] [--ps]
//! Prints one line of `key=value` pairs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oomscope::receivers::memory::{MemoryReceiverConfig, Scraper};

// The agent's allocator, so the figures are the agent's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `who` is RUSAGE_SELF or RUSAGE_CHILDREN.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn processes() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0)
}

fn ms(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e3 / n.max(1) as f64
}

fn main() -> anyhow::Result<()> {
    let mut iterations = 20usize;
    let mut with_ps = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => {
                iterations = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| anyhow::anyhow!("--iterations needs a positive number"))?;
            }
            "--ps" => with_ps = true,
            other => anyhow::bail!(
                "unknown argument {other:?} (usage: memory_scrape [--iterations K] [--ps])"
            ),
        }
    }

    let mut scraper = Scraper::new(&MemoryReceiverConfig::default())
        .map_err(|e| anyhow::anyhow!("memory receiver config: {e}"))?;
    let procs = processes();
    // The first scrape fills buffers and the command-line cache.
    let cold_cpu = cpu(libc::RUSAGE_SELF);
    let first = scraper.scrape();
    let cold = cpu(libc::RUSAGE_SELF) - cold_cpu;
    let points: usize = oomscope::pipeline::Payload::Metrics(first).item_count();

    let cpu0 = cpu(libc::RUSAGE_SELF);
    let wall0 = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(scraper.scrape());
    }
    let ours = cpu(libc::RUSAGE_SELF) - cpu0;
    let ours_wall = wall0.elapsed();
    print!(
        "processes={procs} iterations={iterations} points={points} first_scrape_cpu_ms={:.2} ours_cpu_ms={:.3} ours_wall_ms={:.3} ours_cpu_us_per_process={:.3}",
        ms(cold, 1),
        ms(ours, iterations),
        ms(ours_wall, iterations),
        ms(ours, iterations) * 1e3 / procs.max(1) as f64,
    );
    if with_ps {
        let c0 = cpu(libc::RUSAGE_CHILDREN);
        let wall0 = Instant::now();
        for _ in 0..iterations {
            let status = Command::new("ps")
                .args(["-eo", "pid,rss,vsz,comm"])
                .stdout(Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "ps failed: {status}");
        }
        let ps = cpu(libc::RUSAGE_CHILDREN) - c0;
        print!(
            " ps_cpu_ms={:.3} ps_wall_ms={:.3} ours_over_ps={:.3}",
            ms(ps, iterations),
            ms(wall0.elapsed(), iterations),
            ours.as_secs_f64() / ps.as_secs_f64().max(1e-9),
        );
    }
    println!(" warnings={}", scraper.warnings());
    Ok(())
}
