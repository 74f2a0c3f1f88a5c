//! The system constants the receivers scale kernel figures by.

/// The memory page size in bytes (4096 where sysconf cannot say).
#[must_use]
pub fn page_size() -> u64 {
    value(libc::_SC_PAGESIZE).unwrap_or(4096)
}

/// The clock ticks per second that /proc's times count in (`USER_HZ`; 100
/// where sysconf cannot say).
#[must_use]
pub fn clock_ticks_per_second() -> u64 {
    value(libc::_SC_CLK_TCK).unwrap_or(100)
}

fn value(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constants_are_the_kernels() {
        let page = page_size();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
        // USER_HZ is 100 on every architecture Linux exports to user space
        // except alpha and ia64.
        assert_eq!(clock_ticks_per_second(), 100);
    }
}
