//! Time conversions shared by the kernel-facing receivers.
//!
//! The kernel stamps its events with CLOCK_MONOTONIC (`bpf_ktime_get_ns`,
//! /dev/kmsg's microseconds); OTLP wants Unix time. Log text states civil
//! times without zone or year: [`text_time_context`] says how to read them.

use crate::kernel_log::text::TimeContext;

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
