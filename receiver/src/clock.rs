//! Time conversions shared by the kernel-facing receivers, and the grid
//! periodic work is timed on.
//!
//! The kernel stamps its events with CLOCK_MONOTONIC (`bpf_ktime_get_ns`,
//! /dev/kmsg's microseconds); OTLP wants Unix time. Log text states civil
//! times without zone or year: [`text_time_context`] says how to read them.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::kernel_log::text::TimeContext;

/// The origin of the grid: the first time any component asked for it.
static GRID_ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The point of the process-wide grid of `period` nearest to `at`, but not
/// before now: periodic work of the same period (the memory scrape, the
/// receivers' own counters) then runs at the same instants, in one wake-up
/// of the runtime, and reaches the `batch` processor together, so an idle
/// agent makes one export a period, not one per component.
pub fn on_grid(at: Instant, period: Duration) -> Instant {
    let origin = *GRID_ORIGIN.get_or_init(Instant::now);
    let period_ns = period.as_nanos();
    if period_ns == 0 {
        return at;
    }
    let Some(offset) = at.checked_duration_since(origin) else {
        return at.max(Instant::now());
    };
    let periods = (offset.as_nanos() + period_ns / 2) / period_ns;
    let step = |n: u128| {
        u64::try_from(n.saturating_mul(period_ns))
            .ok()
            .and_then(|ns| origin.checked_add(Duration::from_nanos(ns)))
    };
    let now = Instant::now();
    match step(periods) {
        Some(point) if point >= now => point,
        _ => match step(periods + 1) {
            Some(point) if point >= now => point,
            _ => at.max(now),
        },
    }
}

/// A ticker every `period` on the grid (see [`on_grid`]), first about one
/// period from now, never at once; a tick missed by a busy runtime is
/// skipped, so the ticks stay on the grid.
pub fn grid_interval(period: Duration) -> Interval {
    let period = period.max(Duration::from_millis(1));
    let mut interval = tokio::time::interval_at(on_grid(Instant::now() + period, period), period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    interval
}

/// A ticker whose first tick is at once, then every `period` on the grid
/// (see [`grid_interval`]): for work that must also run at start.
pub struct GridTicker {
    first: bool,
    interval: Interval,
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

    #[tokio::test(start_paused = true)]
    async fn periodic_work_started_apart_ticks_at_the_same_instants() {
        let period = Duration::from_secs(10);
        let started_a = Instant::now();
        let mut a = grid_interval(period);
        tokio::time::sleep(Duration::from_millis(3_700)).await;
        let started_b = Instant::now();
        let mut b = grid_interval(period);
        let mut ticks_a = Vec::new();
        let mut ticks_b = Vec::new();
        for _ in 0..4 {
            ticks_a.push(a.tick().await);
            ticks_b.push(b.tick().await);
        }
        // Each first tick is about a period after its start, never at once.
        for (first, started) in [(ticks_a[0], started_a), (ticks_b[0], started_b)] {
            let after = first.duration_since(started);
            assert!(after >= period / 2 && after <= period * 3 / 2, "{after:?}");
        }
        // From then on both tick at the same instants, a period apart.
        let shared: Vec<_> = ticks_a.iter().filter(|t| ticks_b.contains(t)).collect();
        assert!(shared.len() >= 3, "{ticks_a:?} {ticks_b:?}");
        for pair in ticks_a.windows(2) {
            assert_eq!(pair[1] - pair[0], period);
        }
        // The other period's grid is the same grid: every 10 s point is a
        // 1 s point.
        let fine = grid_interval(Duration::from_secs(1)).tick().await;
        let since = fine.duration_since(ticks_b[0]);
        assert_eq!(since.as_nanos() % 1_000_000_000, 0, "{since:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticker_starting_now_ticks_at_once_then_on_the_grid() {
        let period = Duration::from_secs(10);
        let started = Instant::now();
        let mut ticker = GridTicker::starting_now(period);
        assert_eq!(ticker.tick().await, started, "the first tick is at once");
        let mut grid = grid_interval(period);
        let second = ticker.tick().await;
        assert_eq!(second, grid.tick().await, "then on the grid");
        assert_eq!(ticker.tick().await, second + period);
    }

    #[tokio::test(start_paused = true)]
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
        // Never in the past: the next point after now instead.
        tokio::time::sleep_until(origin + Duration::from_millis(2_000)).await;
        assert_eq!(on_grid(origin, period), origin + period);
        // A zero period leaves the point as it is.
        let at = Instant::now() + Duration::from_millis(123);
        assert_eq!(on_grid(at, Duration::ZERO), at);
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
