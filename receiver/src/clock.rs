//! Time conversions shared by the kernel-facing receivers.
//!
//! The kernel stamps its events with CLOCK_MONOTONIC (`bpf_ktime_get_ns`,
//! /dev/kmsg's microseconds); OTLP wants Unix time.

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
}
