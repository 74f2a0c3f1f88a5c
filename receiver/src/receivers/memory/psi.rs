//! Memory pressure (PSI): `/proc/pressure/memory` and cgroup v2
//! `memory.pressure`, and the kernel's PSI trigger that tells when pressure
//! crosses a threshold (Documentation/accounting/psi.rst).

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use rustix::fs::{Mode, OFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::metrics as m;
use super::{read_file, vanished, Starts, WarnOnce};
use crate::metric_catalog::{MetricDef, MetricsBuilder};
use crate::pipeline::data::kv_str;

/// One line of a pressure file: `some avg10=0.12 avg60=0.05 avg300=0.01 total=123456`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PsiLine {
    /// Percentages of wall time, as the kernel prints them.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time, microseconds.
    pub total_us: u64,
}

/// A pressure file: "some" (at least one task stalled) and "full" (all
/// non-idle tasks stalled at once).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    pub some: Option<PsiLine>,
    pub full: Option<PsiLine>,
}

/// Parses a pressure file; lines it does not understand are skipped. Each
/// line goes through procfs's record parser (one line at a time, not its
/// `MemoryPressure`, which fails the whole file when one of its two lines
/// does not parse: a kernel without a "full" line would lose "some" too).
pub fn parse_pressure(text: &[u8]) -> Pressure {
    let mut p = Pressure::default();
    for line in text.split(|b| *b == b'\n') {
        let slot = match line.get(..5) {
            Some(b"some ") => &mut p.some,
            Some(b"full ") => &mut p.full,
            _ => continue,
        };
        // procfs slices the line at byte 5: checked above (a shorter line
        // would make it panic), and the rest must be UTF-8.
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Ok(r) = procfs::parse_pressure_record(line) else {
            continue;
        };
        if let (Some(avg10), Some(avg60), Some(avg300)) =
            (percent(r.avg10), percent(r.avg60), percent(r.avg300))
        {
            *slot = Some(PsiLine {
                avg10,
                avg60,
                avg300,
                total_us: r.total,
            });
        }
    }
    p
}

/// procfs keeps the averages as f32; the kernel prints them with two
/// decimals (at most 100.00), so rounding to hundredths gives back exactly
/// the f64 the printed text parses to (`n / 100.0` is correctly rounded).
fn percent(v: f32) -> Option<f64> {
    let hundredths = (f64::from(v) * 100.0).round();
    hundredths.is_finite().then_some(hundredths / 100.0)
}

/// Adds the points of `p`: `avg_def` by `psi.type` and `psi.window` (the
/// kernel's percentage as a fraction), `stall_def` by `psi.type` (seconds).
pub fn record(
    b: &mut MetricsBuilder,
    avg_def: &MetricDef,
    stall_def: &MetricDef,
    p: &Pressure,
    start_unix_nano: u64,
    base: &[KeyValue],
) {
    for (kind, line) in [("some", &p.some), ("full", &p.full)] {
        let Some(line) = line else { continue };
        for (window, avg) in [
            ("10s", line.avg10),
            ("60s", line.avg60),
            ("300s", line.avg300),
        ] {
            let mut attrs = base.to_vec();
            attrs.push(kv_str("psi.type", kind));
            attrs.push(kv_str("psi.window", window));
            b.double(avg_def, start_unix_nano, avg / 100.0, attrs);
        }
        let mut attrs = base.to_vec();
        attrs.push(kv_str("psi.type", kind));
        b.double(
            stall_def,
            start_unix_nano,
            line.total_us as f64 / 1e6,
            attrs,
        );
    }
}

/// Reads /proc/pressure/memory each scrape.
pub struct PressureScraper {
    path: PathBuf,
    buf: Vec<u8>,
    /// The last scrape's pressure (for incidents and the views).
    pub last: Option<Pressure>,
}

impl PressureScraper {
    pub fn new(proc_path: &Path) -> Self {
        PressureScraper {
            path: proc_path.join("pressure/memory"),
            buf: Vec::with_capacity(256),
            last: None,
        }
    }

    pub fn scrape(&mut self, b: &mut MetricsBuilder, starts: &Starts, warn: &mut WarnOnce) {
        match read_file(&self.path, &mut self.buf, 4096) {
            Ok(()) => {
                let p = parse_pressure(&self.buf);
                self.last = Some(p);
                record(
                    b,
                    &m::SYSTEM_PSI_AVG,
                    &m::SYSTEM_PSI_STALL_TIME,
                    &p,
                    starts.boot_unix_nano,
                    &[],
                );
            }
            // No PSI in this kernel (CONFIG_PSI off: no file; `psi=0` on the
            // command line: EOPNOTSUPP).
            Err(e) if vanished(&e) || e.raw_os_error() == Some(libc::EOPNOTSUPP) => warn.warn(
                &self.path.to_string_lossy(),
                format_args!(
                    "memory receiver: no memory pressure (PSI) on this host ({}: {e}); no system.memory.psi.* metrics",
                    self.path.display()
                ),
            ),
            Err(e) => warn.warn(
                &self.path.to_string_lossy(),
                format_args!(
                    "memory receiver: cannot read {}: {e}; no system.memory.psi.* metrics",
                    self.path.display()
                ),
            ),
        }
    }
}

/// A registered PSI trigger: the kernel signals POLLPRI on the file when the
/// "some" stall within a window exceeds the threshold (at most once per
/// window). Dropping it closes the file, which removes the trigger.
///
/// Each firing is checked against the file's own "some" total: it counts
/// only if the total grew by at least the threshold since the previous
/// check (a real firing always did, its stall happened since). Kernels up to
/// at least 6.18 start an unprivileged trigger's window from the real-time
/// poller's total while updating it from the averager's, so its first
/// windows see the difference of two unrelated totals as growth and fire on
/// a quiet machine (seen here; a fix moving that `window_reset` was proposed
/// upstream).
pub struct PsiTrigger {
    fd: AsyncFd<OwnedFd>,
    /// The stall threshold in effect.
    pub stall: Duration,
    /// The window in effect.
    pub window: Duration,
    path: PathBuf,
    /// Recent (when, "some" total in µs) readings, oldest first: a firing
    /// is confirmed against the newest reading at least two windows before
    /// it.
    readings: Mutex<VecDeque<(Instant, u64)>>,
}

/// Without CAP_SYS_RESOURCE the kernel accepts only windows that are
/// multiples of this.
const UNPRIVILEGED_WINDOW: Duration = Duration::from_secs(2);

impl PsiTrigger {
    /// Registers "some `stall` within `window`" on `path`. Where the kernel
    /// refuses the window for want of CAP_SYS_RESOURCE (EINVAL unless it is a
    /// multiple of 2s), the window is rounded up to the next multiple of 2s
    /// and the stall scaled alike. Needs a tokio runtime.
    pub fn register(path: &Path, stall: Duration, window: Duration) -> io::Result<PsiTrigger> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Only a kernel pressure file takes a trigger: a regular file (a
        // recorded host under `root_path`) would be overwritten.
        if rustix::fs::fstatfs(&fd)?.f_type != rustix::fs::PROC_SUPER_MAGIC {
            return Err(io::Error::other(format!(
                "{} is not on procfs: no pressure trigger there",
                path.display()
            )));
        }
        let (stall, window) = match write_trigger(&fd, stall, window) {
            Ok(()) => (stall, window),
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    && !window
                        .as_micros()
                        .is_multiple_of(UNPRIVILEGED_WINDOW.as_micros()) =>
            {
                let factor = window.as_secs_f64() / UNPRIVILEGED_WINDOW.as_secs_f64();
                let rounded = UNPRIVILEGED_WINDOW * (factor.ceil() as u32).max(1);
                let scaled = stall.mul_f64(rounded.as_secs_f64() / window.as_secs_f64());
                write_trigger(&fd, scaled, rounded)?;
                (scaled, rounded)
            }
            Err(e) => return Err(e),
        };
        // SAFETY: the descriptor is valid and owned by the `AsyncFd` from here
        // on, so it stays open and the same for as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::PRIORITY) }?;
        Ok(PsiTrigger {
            fd,
            stall,
            window,
            path: path.to_path_buf(),
            readings: Mutex::new(
                some_total_us(path)
                    .map(|total| (Instant::now(), total))
                    .into_iter()
                    .collect(),
            ),
        })
    }

    fn readings(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, u64)>> {
        self.readings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a reading; those older than three windows (bar the newest of
    /// them, the reference for the next window) are dropped.
    fn record(&self, at: Instant, total_us: u64) {
        let mut r = self.readings();
        r.push_back((at, total_us));
        while r.len() > 2
            && r.get(1)
                .is_some_and(|(t, _)| at.duration_since(*t) >= self.window * 3)
        {
            r.pop_front();
        }
        while r.len() > MAX_READINGS {
            r.pop_front();
        }
    }

    fn reference(&self, at: Instant) -> Option<u64> {
        reference_total(&self.readings(), at, self.window * 2)
    }

    /// Waits for the next firing that the stall total confirms: the kernel
    /// on this machine kind sometimes fires unprivileged triggers on a quiet
    /// system in their first windows, so a firing counts only when the "some"
    /// total grew by `stall` since a reading at least two windows old. Two:
    /// the kernel holds a breach back until a window has passed since its
    /// previous event (one event per window), so an event can come up to a
    /// window after the stall that caused it; the span still covers it.
    pub async fn triggered(&self) -> io::Result<()> {
        // The caller comes back after every scrape and every firing: the
        // readings stay at most a collection interval apart. (Not a timer
        // racing the readiness here: with one, tokio missed firings.)
        self.refresh();
        loop {
            let mut guard = self.fd.ready(Interest::PRIORITY).await?;
            guard.clear_ready();
            let at = Instant::now();
            let Some(now) = some_total_us(&self.path) else {
                return Ok(());
            };
            let grew = self
                .reference(at)
                .map_or(u64::MAX, |r| now.saturating_sub(r));
            self.record(at, now);
            if u128::from(grew) >= self.stall.as_micros() {
                return Ok(());
            }
            tracing::debug!(
                stall_us = grew,
                "ignoring a PSI trigger firing the stall total does not confirm"
            );
        }
    }

    /// Takes a reading when the newest is a window old or more.
    fn refresh(&self) {
        let stale = self
            .readings()
            .back()
            .is_none_or(|(t, _)| t.elapsed() >= self.window);
        if stale {
            if let Some(total) = some_total_us(&self.path) {
                self.record(Instant::now(), total);
            }
        }
    }
}

/// The stall total at least `span` before `at` (the newest such reading),
/// else the oldest one known.
fn reference_total(
    readings: &VecDeque<(Instant, u64)>,
    at: Instant,
    span: Duration,
) -> Option<u64> {
    readings
        .iter()
        .rev()
        .find(|(t, _)| at.duration_since(*t) >= span)
        .or_else(|| readings.front())
        .map(|(_, total)| *total)
}

/// Readings kept at most (three windows' worth at the refresh rate, plus
/// firings in between).
const MAX_READINGS: usize = 64;

/// The "some" total stall (µs) of a pressure file (reading it brings the
/// total up to date). A procfs read: no I/O wait, so fine on a runtime
/// worker.
fn some_total_us(path: &Path) -> Option<u64> {
    let text = std::fs::read(path).ok()?;
    parse_pressure(&text).some.map(|l| l.total_us)
}

fn write_trigger(fd: &OwnedFd, stall: Duration, window: Duration) -> io::Result<()> {
    // The kernel reads at most 127 bytes and replaces the last byte it got
    // with NUL: send the terminating NUL.
    let text = format!("some {} {}\0", stall.as_micros(), window.as_micros());
    let n = rustix::io::write(fd, text.as_bytes())?;
    if n != text.len() {
        return Err(io::Error::other(format!(
            "short write of the PSI trigger ({n} of {} bytes)",
            text.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::metric;

    #[test]
    fn a_firing_is_confirmed_against_a_reading_at_least_a_span_old() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let readings: VecDeque<(Instant, u64)> =
            [(t0, 100), (t0 + s(2), 150), (t0 + s(4), 400)].into();
        let w = s(2);
        // At 5 s: the newest reading at least 2 s old is the one at 2 s.
        assert_eq!(reference_total(&readings, t0 + s(5), w), Some(150));
        assert_eq!(reference_total(&readings, t0 + s(6), w), Some(400));
        // Nothing old enough yet: the oldest.
        assert_eq!(reference_total(&readings, t0 + s(1), w), Some(100));
        assert_eq!(reference_total(&VecDeque::new(), t0, w), None);
    }

    #[test]
    fn parses_system_and_cgroup_pressure() {
        let text = b"some avg10=1.50 avg60=0.25 avg300=0.00 total=11873244
full avg10=0.75 avg60=0.10 avg300=0.00 total=6824315
";
        let p = parse_pressure(text);
        assert_eq!(
            p.some,
            Some(PsiLine {
                avg10: 1.5,
                avg60: 0.25,
                avg300: 0.0,
                total_us: 11873244
            })
        );
        assert_eq!(p.full.map(|l| l.total_us), Some(6824315));
        // Older kernels have no "full" line for cpu; a broken line is skipped.
        let p = parse_pressure(b"some avg10=0.00 avg60=0.00 avg300=0.00 total=5\nfull avg10=x\n");
        assert!(p.some.is_some());
        assert!(p.full.is_none());
        assert_eq!(parse_pressure(b""), Pressure::default());
    }

    /// Through procfs's f32 and back, every average the kernel can print
    /// (two decimals, 0.00 to 100.00) is the f64 its text parses to.
    #[test]
    fn averages_are_exactly_the_printed_text() {
        for n in 0..=10_000u32 {
            let text = format!("{}.{:02}", n / 100, n % 100);
            let line = format!("some avg10={text} avg60=0.00 avg300=0.00 total=1\n");
            let got = parse_pressure(line.as_bytes()).some.map(|l| l.avg10);
            assert_eq!(got, text.parse::<f64>().ok(), "{text}");
        }
        // procfs would panic on a bare "some"; such lines are skipped.
        assert_eq!(parse_pressure(b"some\nfull\nsome \n"), Pressure::default());
        assert!(parse_pressure(b"some avg10=inf avg60=0 avg300=0 total=1\n")
            .some
            .is_none());
    }

    #[test]
    fn points_are_fractions_and_seconds() {
        let p = parse_pressure(b"some avg10=50.00 avg60=0.25 avg300=0.00 total=2500000\n");
        let mut b = MetricsBuilder::new(1);
        record(
            &mut b,
            &m::SYSTEM_PSI_AVG,
            &m::SYSTEM_PSI_STALL_TIME,
            &p,
            0,
            &[],
        );
        let metrics = b.into_metrics();
        let Some(metric::Data::Gauge(g)) = &metrics[0].data else {
            panic!("gauge expected")
        };
        assert_eq!(g.data_points.len(), 3);
        assert_eq!(
            g.data_points[0].value,
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(0.5))
        );
        let Some(metric::Data::Sum(s)) = &metrics[1].data else {
            panic!("sum expected")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.data_points[0].value,
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(2.5))
        );
    }

    /// On this kernel: the 1s window is refused without CAP_SYS_RESOURCE
    /// and registered as 2s; with it, as asked. Either way it registers.
    #[tokio::test]
    async fn a_trigger_registers_on_this_kernel() {
        let path = Path::new("/proc/pressure/memory");
        if !path.exists() {
            eprintln!(
                "SKIPPED a_trigger_registers_on_this_kernel: no /proc/pressure/memory (no PSI)"
            );
            return;
        }
        let t = PsiTrigger::register(path, Duration::from_millis(150), Duration::from_secs(1))
            .expect("register");
        assert!(t.window == Duration::from_secs(1) || t.window == Duration::from_secs(2));
        assert_eq!(
            t.stall.as_micros() * 1_000_000 / t.window.as_micros(),
            150_000,
            "the stall keeps its share of the window"
        );
        // A regular file (a recorded root) is left alone.
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(
            file.path(),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
        )
        .expect("write");
        assert!(PsiTrigger::register(
            file.path(),
            Duration::from_millis(150),
            Duration::from_secs(2)
        )
        .is_err());
        assert_eq!(
            std::fs::read_to_string(file.path()).expect("read"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
        );
        // Nonsense is refused.
        assert!(
            PsiTrigger::register(path, Duration::from_secs(3), Duration::from_secs(2)).is_err()
        );
    }
}
