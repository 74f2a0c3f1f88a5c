//! Time conversions shared by the kernel-facing receivers, and the grid
//! periodic work is timed on.
//!
//! The kernel stamps its events with CLOCK_MONOTONIC (`bpf_ktime_get_ns`,
//! /dev/kmsg's microseconds); OTLP wants Unix time. Log text states civil
//! times without zone or year: [`text_time_context`] says how to read them.

use std::os::fd::OwnedFd;
use std::sync::OnceLock;
use std::time::Duration;

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

use crate::kernel_log::text::TimeContext;

/// The origin of the grid: the first time any component asked for it.
static GRID_ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The point of the process-wide grid of `period` nearest to `at`, but not
/// before now (then the first point after now): periodic work of the same
/// period (the memory scrape, the receivers' own counters) then runs at the
/// same instants, in one wake-up of the runtime, and reaches the `batch`
/// processor together, so an idle agent makes one export a period, not one
/// per component.
pub fn on_grid(at: Instant, period: Duration) -> Instant {
    let origin = grid_origin();
    let period_ns = period.as_nanos();
    if period_ns == 0 {
        return at;
    }
    let now = Instant::now();
    // Before the origin: its first point.
    let offset = at.saturating_duration_since(origin);
    let point = |n: u128| {
        u64::try_from(n.saturating_mul(period_ns))
            .ok()
            .and_then(|ns| origin.checked_add(Duration::from_nanos(ns)))
    };
    match point((offset.as_nanos() + period_ns / 2) / period_ns) {
        Some(p) if p >= now => p,
        _ => {
            let since = now.saturating_duration_since(origin).as_nanos();
            point(since.div_ceil(period_ns)).unwrap_or(now)
        }
    }
}

fn grid_origin() -> Instant {
    *GRID_ORIGIN.get_or_init(Instant::now)
}

/// Sleeps until an instant on a timer of the kernel's (a timerfd in the
/// runtime's reactor) instead of tokio's. tokio's timer wheel wakes its
/// driver at the start of each coarser slot a far timer sits in to move it
/// down a level: a timer 10 s away costs three wake-ups (at the start of
/// its 4 s slot, of its 64 ms slot, then its own), in each runtime that has
/// one. The kernel's timer wakes once. Where no timerfd can be had, tokio's
/// timer is used.
pub struct KernelTimer {
    fd: Option<AsyncFd<OwnedFd>>,
    /// The instant the timerfd is set to, until it fired.
    armed: Option<Instant>,
}

impl KernelTimer {
    /// Must be called inside the runtime that will poll it (the timerfd
    /// registers with its reactor); outside any, tokio's timer is used.
    pub fn new() -> Self {
        if tokio::runtime::Handle::try_current().is_err() {
            return Self {
                fd: None,
                armed: None,
            };
        }
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .map_err(std::io::Error::from)
        // SAFETY: the `AsyncFd` owns the fd, which so stays open for as
        // long as it is registered.
        .and_then(|fd| {
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map_err(std::io::Error::from)
        });
        let fd = match fd {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!(error = %e, "no timerfd; periodic work uses the runtime's timer");
                None
            }
        };
        Self { fd, armed: None }
    }

    /// Returns at `at` (at once when it passed). Cancel-safe: a sleep cut
    /// short leaves the timer set, and the next call for the same instant
    /// goes on waiting for it.
    pub async fn sleep_until(&mut self, at: Instant) {
        if self.fd.is_some() {
            match self.kernel_sleep_until(at).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "the timerfd failed; using the runtime's timer");
                    self.fd = None;
                    self.armed = None;
                }
            }
        }
        tokio::time::sleep_until(at).await;
    }

    /// [`Self::sleep_until`] on the timerfd; an error when it cannot be set,
    /// polled or read.
    async fn kernel_sleep_until(&mut self, at: Instant) -> std::io::Result<()> {
        let Some(fd) = &self.fd else {
            return Err(std::io::ErrorKind::Unsupported.into());
        };
        if self.armed != Some(at) {
            arm(fd.get_ref(), at)?;
            self.armed = Some(at);
        }
        loop {
            let mut ready = fd.readable().await?;
            let mut expirations = [0u8; 8];
            match rustix::io::read(fd.get_ref(), &mut expirations) {
                Ok(_) => {
                    // It fires once: nothing more to read until set again.
                    ready.clear_ready();
                    self.armed = None;
                    return Ok(());
                }
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Default for KernelTimer {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets the timerfd to fire once at `at`, as an absolute CLOCK_MONOTONIC
/// time (tokio's `Instant` is the same clock, read a moment apart).
fn arm(fd: &OwnedFd, at: Instant) -> rustix::io::Result<()> {
    let ahead = at.saturating_duration_since(Instant::now());
    let target = Duration::from_nanos(clock_ns(libc::CLOCK_MONOTONIC)).saturating_add(ahead);
    let value = Timespec {
        tv_sec: i64::try_from(target.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(target.subsec_nanos()),
    };
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // A zero value would disarm it; the monotonic clock is never at 0.
    timerfd_settime(
        fd,
        TimerfdTimerFlags::ABSTIME,
        &Itimerspec {
            it_interval: zero,
            it_value: value,
        },
    )
    .map(drop)
}

/// A ticker every `period` on the grid (see [`on_grid`]), on a
/// [`KernelTimer`]; first about one period from now, never at once. A point
/// missed by a busy runtime is skipped, so the ticks stay on the grid.
pub struct GridInterval {
    period: Duration,
    next: Instant,
    timer: KernelTimer,
}

/// A [`GridInterval`] of `period` (at least 1 ms). Inside the runtime that
/// polls it.
pub fn grid_interval(period: Duration) -> GridInterval {
    // The origin first: the first point is then never before it.
    grid_origin();
    let period = period.max(Duration::from_millis(1));
    GridInterval {
        period,
        next: on_grid(Instant::now() + period, period),
        timer: KernelTimer::new(),
    }
}

impl GridInterval {
    /// The next point, once reached. Cancel-safe.
    pub async fn tick(&mut self) -> Instant {
        let at = self.next;
        self.timer.sleep_until(at).await;
        self.next = on_grid(at + self.period, self.period);
        at
    }
}

/// A ticker whose first tick is at once, then every `period` on the grid
/// (see [`grid_interval`]): for work that must also run at start.
pub struct GridTicker {
    first: bool,
    interval: GridInterval,
}

impl GridTicker {
    pub fn starting_now(period: Duration) -> Self {
        Self {
            first: true,
            interval: grid_interval(period),
        }
    }

    /// The next tick. Cancel-safe: the first tick is taken only when it
    /// completes, on its first poll.
    pub async fn tick(&mut self) -> Instant {
        if std::mem::take(&mut self.first) {
            return Instant::now();
        }
        self.interval.tick().await
    }
}

/// Converts CLOCK_MONOTONIC times to Unix nanoseconds through the current
/// offset between the two clocks.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix time of boot (CLOCK_REALTIME - CLOCK_MONOTONIC), nanoseconds.
    pub boot_unix_nano: u64,
}

impl Clock {
    /// Boot time as of now; take it per batch or event so that a clock step
    /// (NTP) is followed.
    pub fn now() -> Clock {
        let monotonic = clock_ns(libc::CLOCK_MONOTONIC);
        let realtime = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            boot_unix_nano: realtime.saturating_sub(monotonic),
        }
    }

    /// A CLOCK_MONOTONIC time in microseconds (/dev/kmsg) as Unix nanoseconds.
    pub fn unix_nano(self, monotonic_us: u64) -> u64 {
        self.unix_nano_from_ns(monotonic_us.saturating_mul(1000))
    }

    /// A CLOCK_MONOTONIC time in nanoseconds (eBPF) as Unix nanoseconds.
    pub fn unix_nano_from_ns(self, monotonic_ns: u64) -> u64 {
        self.boot_unix_nano.saturating_add(monotonic_ns)
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall writing into a local.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Unix time of boot as CLOCK_REALTIME - CLOCK_BOOTTIME: the origin of
/// `/proc/PID/stat` start times and of the kernel's cumulative counters,
/// right across suspends (CLOCK_MONOTONIC stops while suspended).
pub fn boot_unix_nanos() -> u64 {
    let boottime = clock_ns(libc::CLOCK_BOOTTIME);
    unix_now_nanos().saturating_sub(boottime)
}

/// Now, as Unix nanoseconds.
pub fn unix_now_nanos() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// This host's UTC offset at `unix_seconds`, in seconds east of UTC (0 when
/// unknown).
pub fn local_utc_offset(unix_seconds: i64) -> i32 {
    // time_t is i64 on the 64-bit targets this agent is built for.
    let t: libc::time_t = unix_seconds;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call;
    // it is the thread-safe variant.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        i32::try_from(tm.tm_gmtoff).unwrap_or(0)
    } else {
        0
    }
}

/// How to read times that log text states without zone or year, for text
/// last written at `reference_unix_seconds` (a file's modification time, or
/// now): in this host's zone at that time, and no later than it.
pub fn text_time_context(reference_unix_seconds: i64) -> TimeContext {
    TimeContext::from_reference(
        reference_unix_seconds,
        local_utc_offset(reference_unix_seconds),
    )
}

/// Now, as Unix seconds.
pub fn unix_now_seconds() -> i64 {
    i64::try_from(unix_now_nanos() / 1_000_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_now_maps_to_unix_now() {
        let clock = Clock::now();
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let unix = clock.unix_nano_from_ns(mono);
        let now = unix_now_nanos();
        assert!(now.abs_diff(unix) < 5_000_000_000, "{unix} vs {now}");
        assert_eq!(clock.unix_nano(7), clock.unix_nano_from_ns(7000));
    }

    /// `t` is a point of the grid of `period` (whole periods from the
    /// shared origin), and was reached.
    fn assert_reached_grid_point(t: Instant, period: Duration) {
        assert!(is_grid_point(t, period));
        assert!(Instant::now() >= t, "a tick before its point");
    }

    fn is_grid_point(t: Instant, period: Duration) -> bool {
        let origin = *GRID_ORIGIN.get().expect("the grid has its origin");
        t.duration_since(origin)
            .as_nanos()
            .is_multiple_of(period.as_nanos())
    }

    // Real time (the ticks are the kernel's): no bound on how late a tick
    // may come, and skipped points are allowed; the points themselves are
    // exact.
    #[tokio::test]
    async fn periodic_work_started_apart_ticks_on_the_same_grid() {
        let period = Duration::from_millis(100);
        let started_a = Instant::now();
        let mut a = grid_interval(period);
        tokio::time::sleep(Duration::from_millis(37)).await;
        let started_b = Instant::now();
        let mut b = grid_interval(period);
        let mut last: Option<(Instant, Instant)> = None;
        for _ in 0..4 {
            let (ta, tb) = (a.tick().await, b.tick().await);
            assert_reached_grid_point(ta, period);
            assert_reached_grid_point(tb, period);
            match last {
                Some((la, lb)) => assert!(ta > la && tb > lb, "ticks move on"),
                // Each first tick is about a period after its start, never
                // at once.
                None => {
                    assert!(ta >= started_a + period / 2, "{:?}", ta - started_a);
                    assert!(tb >= started_b + period / 2, "{:?}", tb - started_b);
                }
            }
            last = Some((ta, tb));
        }
        // Another period's grid has the same origin: every 100 ms point is
        // a 10 ms point.
        assert_reached_grid_point(
            grid_interval(Duration::from_millis(10)).tick().await,
            Duration::from_millis(10),
        );
    }

    #[tokio::test]
    async fn a_ticker_starting_now_ticks_at_once_then_on_the_grid() {
        let period = Duration::from_millis(50);
        let started = Instant::now();
        let mut ticker = GridTicker::starting_now(period);
        let first = futures::FutureExt::now_or_never(ticker.tick()).expect("at once");
        assert!(first >= started);
        let second = ticker.tick().await;
        assert_reached_grid_point(second, period);
        let third = ticker.tick().await;
        assert_reached_grid_point(third, period);
        assert!(third > second);
    }

    #[tokio::test]
    async fn a_point_is_moved_to_the_nearest_grid_point_not_before_now() {
        let period = Duration::from_secs(10);
        let origin = on_grid(Instant::now() + period, period);
        assert_eq!(
            on_grid(origin + Duration::from_millis(4_900), period),
            origin
        );
        assert_eq!(
            on_grid(origin + Duration::from_millis(5_100), period),
            origin + period
        );
        assert_eq!(on_grid(origin - Duration::from_millis(300), period), origin);
        // Never in the past: the first point after now instead, however far
        // behind.
        let short = Duration::from_millis(20);
        let behind = on_grid(Instant::now(), short);
        tokio::time::sleep_until(behind + short * 3 + short / 2).await;
        let next = on_grid(behind, short);
        assert!(is_grid_point(next, short));
        assert!(next >= behind + short * 4, "not before now");
        assert!(next - short < Instant::now(), "the first point after now");
        // A zero period leaves the point as it is.
        let at = Instant::now() + Duration::from_millis(123);
        assert_eq!(on_grid(at, Duration::ZERO), at);
    }

    /// The timer is the kernel's here (Linux has timerfd since 2.6.25), it
    /// does not return early, and a sleep cut short goes on at the next call.
    #[tokio::test]
    async fn the_kernel_timer_fires_at_its_instant_and_survives_cancellation() {
        let mut timer = KernelTimer::new();
        assert!(timer.fd.is_some(), "a timerfd");
        let at = Instant::now() + Duration::from_millis(200);
        // Biased: both ready at the first poll (a descheduled test) is no
        // early firing.
        tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
            () = timer.sleep_until(at) => panic!("fired before its instant"),
        }
        timer.sleep_until(at).await;
        assert!(Instant::now() >= at);
        // Set again to another instant; one already passed returns at once.
        let later = Instant::now() + Duration::from_millis(20);
        timer.sleep_until(later).await;
        assert!(Instant::now() >= later);
        timer.sleep_until(later - Duration::from_millis(5)).await;
        assert!(timer.fd.is_some(), "still the kernel's timer");
    }

    #[test]
    fn text_time_context_uses_the_local_zone_of_the_reference_time() {
        // 2025-01-01T23:30:00Z.
        let reference = 1_735_774_200;
        let ctx = text_time_context(reference);
        assert_eq!(ctx.default_offset_seconds, local_utc_offset(reference));
        assert!(ctx.default_offset_seconds.abs() <= 14 * 3600);
        assert!((2025..=2026).contains(&ctx.default_year), "{ctx:?}");
    }
}
