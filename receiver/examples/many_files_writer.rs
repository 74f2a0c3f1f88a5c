//! The writer of bench/many_files.sh: log lines appended to many files at a
//! steady rate, 1 in `--oom-every` of them an OOM line (kernel "Killed
//! process", Go "fatal error: runtime: out of memory", Java
//! "java.lang.OutOfMemoryError", in turn), the others syslog-style lines of
//! a few services.
//!
//! Usage:
//!   many_files_writer create DIR FILES LINES_PER_FILE [OOM_LAST]
//!     creates DIR/app-NNNNN.log, each with LINES_PER_FILE plain lines (the
//!     first one unique to the file, so fingerprints differ); with OOM_LAST=1
//!     the last line of each file is an OOM line.
//!   many_files_writer write DIR FILES LINES_PER_SECOND_PER_FILE SECONDS [OOM_EVERY]
//!     appends to those files (opened once, O_APPEND, one write(2) per line)
//!     for SECONDS, the lines spread evenly over time and files.
//! Both print one line of `key=value` pairs: lines, oom_lines, seconds.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lines are scheduled in ticks of this length.
const TICK: Duration = Duration::from_millis(10);

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// xorshift64: cheap, reproducible numbers for the lines' variable parts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A syslog timestamp ("Dec  6 03:30:00") for now, UTC.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[usize::try_from(month - 1).unwrap_or(0)],
        day,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// One line (with its `\n`) for file `file`; an OOM line of kind `oom`.
fn line(rng: &mut Rng, ts: &str, file: usize, oom: Option<u64>) -> String {
    let host = format!("node-{file:05}");
    let (p, a, b) = (1000 + rng.below(99_000), rng.below(256), rng.below(256));
    let text = match oom {
        Some(0) => format!(
            "kernel: Out of memory: Killed process {p} (java) total-vm:8388608kB, anon-rss:4194304kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:8192kB oom_score_adj:0"
        ),
        Some(1) => format!("app[{p}]: fatal error: runtime: out of memory"),
        Some(_) => format!(
            "app[{p}]: Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space"
        ),
        None => match rng.below(5) {
            0 => format!(
                "sshd[{p}]: Accepted publickey for deploy from 10.0.{a}.{b} port {p} ssh2: ED25519 SHA256:abcdef"
            ),
            1 => format!(
                "nginx[{p}]: 10.1.{a}.{b} - - \"GET /api/v1/items/{p} HTTP/1.1\" 200 {a}{b} \"-\" \"curl/8.5\""
            ),
            2 => format!("systemd[1]: Started session {p} of user deploy; unit session-{p}.scope ok"),
            3 => format!(
                "kubelet[{p}]: I1206 03:14:55.{p} 1234 reconciler.go:{a}] operationExecutor.VerifyControllerAttachedVolume ok"
            ),
            _ => format!("app[{p}]: request id={p} user={a} took {b}ms status=200 path=/checkout/{a}"),
        },
    };
    format!("{ts} {host} {text}\n")
}

fn path(dir: &Path, file: usize) -> PathBuf {
    dir.join(format!("app-{file:05}.log"))
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    match args.get(i).map(|s| s.parse()) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("many_files_writer: argument {i} ({what}) missing or invalid");
            std::process::exit(2);
        }
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode: String = arg(&args, 1, "mode");
    let dir = PathBuf::from(arg::<String>(&args, 2, "DIR"));
    let files: usize = arg(&args, 3, "FILES");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    match mode.as_str() {
        "create" => {
            let per_file: usize = arg(&args, 4, "LINES_PER_FILE");
            let oom_last = args.get(5).is_some_and(|s| s == "1");
            let ts = timestamp();
            let mut oom_lines = 0u64;
            for f in 0..files {
                let mut text = String::new();
                for n in 0..per_file {
                    let oom = (oom_last && n + 1 == per_file).then_some(f as u64 % 3);
                    oom_lines += u64::from(oom.is_some());
                    text.push_str(&line(&mut rng, &ts, f, oom));
                }
                std::fs::write(path(&dir, f), text)?;
            }
            println!("lines={} oom_lines={oom_lines} seconds=0", files * per_file);
        }
        "write" => {
            let rate: f64 = arg(&args, 4, "LINES_PER_SECOND_PER_FILE");
            let seconds: f64 = arg(&args, 5, "SECONDS");
            let oom_every: u64 = if args.len() > 6 {
                arg(&args, 6, "OOM_EVERY")
            } else {
                100
            };
            let mut handles: Vec<File> = (0..files)
                .map(|f| {
                    OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(path(&dir, f))
                })
                .collect::<Result<_, _>>()?;
            let total_rate = rate * files as f64;
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(seconds);
            let (mut written, mut oom_lines) = (0u64, 0u64);
            let mut ts = timestamp();
            let mut ts_at = start;
            let mut next_tick = start;
            loop {
                let now = Instant::now();
                if now.duration_since(ts_at) >= Duration::from_millis(500) {
                    ts = timestamp();
                    ts_at = now;
                }
                let elapsed = now.min(end).duration_since(start).as_secs_f64();
                let due = (elapsed * total_rate) as u64;
                while written < due {
                    let f = (written % files as u64) as usize;
                    // The k-th line of file f: every oom_every-th one per
                    // file, shifted by the file so the OOM lines of a round
                    // spread over the files.
                    let k = written / files as u64;
                    let oom = ((k + f as u64) % oom_every == oom_every - 1)
                        .then_some((k / oom_every + f as u64) % 3);
                    oom_lines += u64::from(oom.is_some());
                    handles[f].write_all(line(&mut rng, &ts, f, oom).as_bytes())?;
                    written += 1;
                }
                if now >= end {
                    break;
                }
                next_tick += TICK;
                if let Some(wait) = next_tick.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            handles.clear();
            println!(
                "lines={written} oom_lines={oom_lines} seconds={:.3}",
                start.elapsed().as_secs_f64()
            );
        }
        _ => {
            eprintln!("many_files_writer: mode is create or write");
            std::process::exit(2);
        }
    }
    Ok(())
}
