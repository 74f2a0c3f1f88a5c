//! System memory: `/proc/meminfo` (states, limit, available, swap) and
//! `/proc/vmstat` (page faults, swapping, OOM kills, allocation stalls,
//! reclaim).

use std::path::{Path, PathBuf};

use super::metrics as m;
use super::{read_file, Starts, WarnOnce};
use crate::metric_catalog::{int, MetricsBuilder};
use crate::pipeline::data::kv_str;

/// The /proc/meminfo figures used, in bytes; `None` when the kernel does not
/// print the line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemInfo {
    pub total: Option<u64>,
    pub free: Option<u64>,
    pub available: Option<u64>,
    pub buffers: Option<u64>,
    pub cached: Option<u64>,
    pub swap_total: Option<u64>,
    pub swap_free: Option<u64>,
    pub slab_reclaimable: Option<u64>,
    pub slab_unreclaimable: Option<u64>,
}

/// Parses /proc/meminfo (`Key:   value kB` lines; values without a unit
/// are counts and kept as they are).
///
/// Not procfs's `Meminfo`: it fails the whole file unless some 16 lines are
/// there (Inactive, Dirty, Mapped, Committed_AS, Vmalloc*, ...), none of
/// which is used here; gVisor's meminfo, for one, has no Slab or Vmalloc*
/// lines, so the host would lose every system memory metric. This reads the
/// nine lines used, whichever are there.
pub fn parse_meminfo(text: &[u8]) -> MemInfo {
    let mut info = MemInfo::default();
    for line in text.split(|b| *b == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (key, rest) = (&line[..colon], &line[colon + 1..]);
        let slot = match key {
            b"MemTotal" => &mut info.total,
            b"MemFree" => &mut info.free,
            b"MemAvailable" => &mut info.available,
            b"Buffers" => &mut info.buffers,
            b"Cached" => &mut info.cached,
            b"SwapTotal" => &mut info.swap_total,
            b"SwapFree" => &mut info.swap_free,
            b"SReclaimable" => &mut info.slab_reclaimable,
            b"SUnreclaim" => &mut info.slab_unreclaimable,
            _ => continue,
        };
        let mut fields = rest
            .split(|b| *b == b' ' || *b == b'\t')
            .filter(|f| !f.is_empty());
        let Some(value) = fields.next().and_then(parse_u64) else {
            continue;
        };
        *slot = Some(match fields.next() {
            Some(b"kB") => value.saturating_mul(1024),
            _ => value,
        });
    }
    info
}

/// A decimal number.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// A decimal number, maybe negative.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', rest)) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// `system.memory.state` values, in the order they are reported.
pub const STATES: [&str; 6] = [
    "used",
    "free",
    "buffers",
    "cached",
    "slab_reclaimable",
    "slab_unreclaimable",
];

/// MemTotal split into states that sum to it exactly (the hostmetrics
/// states: free, buffers, cached (page cache; includes shmem), slab
/// reclaimable and unreclaimable; used is the rest: anonymous memory, kernel
/// stacks, page tables, ...). The kernel samples these counters one after
/// another, so their sum can exceed MemTotal by a page or two while memory
/// moves; then the parts are clamped in the order listed so the sum stays
/// exact and `used` is 0.
pub fn memory_states(info: &MemInfo) -> Option<[u64; 6]> {
    let total = info.total?;
    let mut remaining = total;
    let mut take = |v: Option<u64>| {
        let v = v.unwrap_or(0).min(remaining);
        remaining -= v;
        v
    };
    let free = take(info.free);
    let buffers = take(info.buffers);
    let cached = take(info.cached);
    let slab_reclaimable = take(info.slab_reclaimable);
    let slab_unreclaimable = take(info.slab_unreclaimable);
    Some([
        remaining,
        free,
        buffers,
        cached,
        slab_reclaimable,
        slab_unreclaimable,
    ])
}

/// The /proc/vmstat counters used.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VmStat {
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
    pub pswpin: Option<u64>,
    pub pswpout: Option<u64>,
    pub oom_kill: Option<u64>,
    /// `allocstall_<zone>` summed (`allocstall` before 4.8).
    pub allocstall: Option<u64>,
    /// `pgscan_<reclaimer>` by reclaimer: kswapd, direct, khugepaged, proactive.
    pub pgscan: [Option<u64>; 4],
    /// `pgsteal_<reclaimer>`, same order.
    pub pgsteal: [Option<u64>; 4],
}

/// Reclaimers in /proc/vmstat's `pgscan_*` / `pgsteal_*` (the
/// `system.memory.linux.reclaimer` attribute).
pub const RECLAIMERS: [&str; 4] = ["kswapd", "direct", "khugepaged", "proactive"];

fn add(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.unwrap_or(0).saturating_add(v));
}

/// Parses /proc/vmstat (`name value` lines).
///
/// Not procfs's `VmStat` (a `HashMap<String, i64>` of every counter): it
/// fails the whole file on one line that is not `name integer`, where this
/// skips that line and keeps the other counters.
pub fn parse_vmstat(text: &[u8]) -> VmStat {
    let mut vm = VmStat::default();
    for line in text.split(|b| *b == b'\n') {
        let Some(space) = memchr::memchr(b' ', line) else {
            continue;
        };
        let (key, value) = (&line[..space], &line[space + 1..]);
        let Some(value) = parse_u64(value) else {
            continue;
        };
        match key {
            b"pgfault" => vm.pgfault = Some(value),
            b"pgmajfault" => vm.pgmajfault = Some(value),
            b"pswpin" => vm.pswpin = Some(value),
            b"pswpout" => vm.pswpout = Some(value),
            b"oom_kill" => vm.oom_kill = Some(value),
            b"allocstall" => add(&mut vm.allocstall, value),
            _ => {
                if key.starts_with(b"allocstall_") {
                    add(&mut vm.allocstall, value);
                } else if let Some(r) = key.strip_prefix(b"pgscan_") {
                    if let Some(i) = RECLAIMERS.iter().position(|n| n.as_bytes() == r) {
                        vm.pgscan[i] = Some(value);
                    }
                } else if let Some(r) = key.strip_prefix(b"pgsteal_") {
                    if let Some(i) = RECLAIMERS.iter().position(|n| n.as_bytes() == r) {
                        vm.pgsteal[i] = Some(value);
                    }
                }
            }
        }
    }
    vm
}

/// Bound on what is read of /proc/meminfo and /proc/vmstat (both are a few
/// KiB).
const MAX_FILE: usize = 64 * 1024;

/// Reads /proc/meminfo and /proc/vmstat each scrape.
pub struct SystemScraper {
    meminfo: PathBuf,
    vmstat: PathBuf,
    buf: Vec<u8>,
}

impl SystemScraper {
    pub fn new(proc_path: &Path) -> Self {
        SystemScraper {
            meminfo: proc_path.join("meminfo"),
            vmstat: proc_path.join("vmstat"),
            buf: Vec::with_capacity(8192),
        }
    }

    pub fn scrape(&mut self, b: &mut MetricsBuilder, starts: &Starts, warn: &mut WarnOnce) {
        match read_file(&self.meminfo, &mut self.buf, MAX_FILE) {
            Ok(()) => record_meminfo(b, &parse_meminfo(&self.buf), starts),
            Err(e) => warn.warn(
                &self.meminfo.to_string_lossy(),
                format_args!(
                    "memory receiver: cannot read {}: {e}; no system memory metrics",
                    self.meminfo.display()
                ),
            ),
        }
        match read_file(&self.vmstat, &mut self.buf, MAX_FILE) {
            Ok(()) => record_vmstat(b, &parse_vmstat(&self.buf), starts),
            Err(e) => warn.warn(
                &self.vmstat.to_string_lossy(),
                format_args!(
                    "memory receiver: cannot read {}: {e}; no paging, OOM kill or reclaim counters",
                    self.vmstat.display()
                ),
            ),
        }
    }
}

pub fn record_meminfo(b: &mut MetricsBuilder, info: &MemInfo, starts: &Starts) {
    let start = starts.receiver_unix_nano;
    if let (Some(states), Some(total)) = (memory_states(info), info.total) {
        for (state, value) in STATES.iter().zip(states) {
            let attrs = vec![kv_str("system.memory.state", state)];
            b.int(&m::SYSTEM_MEMORY_USAGE, start, int(value), attrs.clone());
            if total > 0 {
                b.double(
                    &m::SYSTEM_MEMORY_UTILIZATION,
                    start,
                    value as f64 / total as f64,
                    attrs,
                );
            }
        }
        b.int(&m::SYSTEM_MEMORY_LIMIT, start, int(total), Vec::new());
    }
    if let Some(available) = info.available {
        b.int(
            &m::SYSTEM_MEMORY_AVAILABLE,
            start,
            int(available),
            Vec::new(),
        );
    }
    if let (Some(total), Some(free)) = (info.swap_total, info.swap_free) {
        let free = free.min(total);
        for (state, value) in [("used", total - free), ("free", free)] {
            let attrs = vec![kv_str("system.paging.state", state)];
            b.int(&m::SYSTEM_PAGING_USAGE, start, int(value), attrs.clone());
            if total > 0 {
                b.double(
                    &m::SYSTEM_PAGING_UTILIZATION,
                    start,
                    value as f64 / total as f64,
                    attrs,
                );
            }
        }
    }
}

pub fn record_vmstat(b: &mut MetricsBuilder, vm: &VmStat, starts: &Starts) {
    let boot = starts.boot_unix_nano;
    if let (Some(all), Some(major)) = (vm.pgfault, vm.pgmajfault) {
        // pgfault counts every fault, major ones included.
        for (kind, value) in [("major", major), ("minor", all.saturating_sub(major))] {
            b.int(
                &m::SYSTEM_PAGING_FAULTS,
                boot,
                int(value),
                vec![kv_str("system.paging.fault.type", kind)],
            );
        }
    }
    for (direction, value) in [("in", vm.pswpin), ("out", vm.pswpout)] {
        if let Some(v) = value {
            b.int(
                &m::SYSTEM_PAGING_OPERATIONS,
                boot,
                int(v),
                vec![kv_str("system.paging.direction", direction)],
            );
        }
    }
    if let Some(v) = vm.oom_kill {
        b.int(&m::SYSTEM_OOM_KILLS, boot, int(v), Vec::new());
    }
    if let Some(v) = vm.allocstall {
        b.int(&m::SYSTEM_ALLOCATION_STALLS, boot, int(v), Vec::new());
    }
    for (def, values) in [
        (&m::SYSTEM_RECLAIM_SCANNED, &vm.pgscan),
        (&m::SYSTEM_RECLAIM_RECLAIMED, &vm.pgsteal),
    ] {
        for (reclaimer, value) in RECLAIMERS.iter().zip(values) {
            if let Some(v) = value {
                b.int(
                    def,
                    boot,
                    int(*v),
                    vec![kv_str("system.memory.linux.reclaimer", reclaimer)],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on a 6.18 machine (abridged).
    const MEMINFO: &str = "MemTotal:       24684084 kB
MemFree:        13458380 kB
MemAvailable:   24067608 kB
Buffers:           77408 kB
Cached:         10116824 kB
SwapCached:            0 kB
Active:          4320736 kB
SwapTotal:       2097148 kB
SwapFree:        2000000 kB
Shmem:              8872 kB
KReclaimable:     825148 kB
Slab:             918472 kB
SReclaimable:     825148 kB
SUnreclaim:        93324 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn meminfo_in_bytes() {
        let info = parse_meminfo(MEMINFO.as_bytes());
        assert_eq!(info.total, Some(24684084 * 1024));
        assert_eq!(info.free, Some(13458380 * 1024));
        assert_eq!(info.available, Some(24067608 * 1024));
        assert_eq!(info.buffers, Some(77408 * 1024));
        assert_eq!(info.cached, Some(10116824 * 1024));
        assert_eq!(info.slab_reclaimable, Some(825148 * 1024));
        assert_eq!(info.slab_unreclaimable, Some(93324 * 1024));
        assert_eq!(info.swap_total, Some(2097148 * 1024));
        assert_eq!(info.swap_free, Some(2000000 * 1024));
    }

    #[test]
    fn states_sum_to_total_exactly() {
        let info = parse_meminfo(MEMINFO.as_bytes());
        let states = memory_states(&info).expect("states");
        assert_eq!(states.iter().sum::<u64>(), info.total.expect("total"));
        let used = 24684084 - 13458380 - 77408 - 10116824 - 825148 - 93324;
        assert_eq!(states[0], used * 1024);
        // Counters sampled mid-change may add up to more than MemTotal.
        let over = MemInfo {
            total: Some(100),
            free: Some(60),
            buffers: Some(10),
            cached: Some(40),
            slab_reclaimable: Some(5),
            slab_unreclaimable: Some(5),
            ..MemInfo::default()
        };
        let states = memory_states(&over).expect("states");
        assert_eq!(states.iter().sum::<u64>(), 100);
        assert_eq!(states, [0, 60, 10, 30, 0, 0]);
        assert_eq!(memory_states(&MemInfo::default()), None);
    }

    #[test]
    fn the_live_meminfo_sums_too() {
        let text = std::fs::read("/proc/meminfo").expect("/proc/meminfo");
        let info = parse_meminfo(&text);
        let states = memory_states(&info).expect("states");
        // A live system is consistent: every state is its meminfo field
        // (nothing clamped), and used is what remains of MemTotal.
        let field = |name: &str| -> u64 {
            let text = String::from_utf8_lossy(&text);
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .expect(name)
                * 1024
        };
        let others = [
            field("MemFree:"),
            field("Buffers:"),
            field("Cached:"),
            field("SReclaimable:"),
            field("SUnreclaim:"),
        ];
        assert_eq!(states[1..], others);
        assert_eq!(states[0], field("MemTotal:") - others.iter().sum::<u64>());
        assert!(states[0] > 0, "something is used: {states:?}");
    }

    #[test]
    fn vmstat_counters() {
        let text = b"nr_free_pages 3364595
pgpgin 1000
pswpin 7
pswpout 9
pgfault 123456
pgmajfault 456
allocstall_dma 1
allocstall_dma32 2
allocstall_normal 30
allocstall_movable 4
allocstall_device 0
pgscan_kswapd 100
pgscan_direct 20
pgscan_khugepaged 0
pgscan_direct_throttle 99
pgsteal_kswapd 90
pgsteal_direct 15
oom_kill 3
garbage
";
        let vm = parse_vmstat(text);
        assert_eq!(vm.pgfault, Some(123456));
        assert_eq!(vm.pgmajfault, Some(456));
        assert_eq!(vm.pswpin, Some(7));
        assert_eq!(vm.pswpout, Some(9));
        assert_eq!(vm.oom_kill, Some(3));
        assert_eq!(vm.allocstall, Some(37));
        assert_eq!(vm.pgscan, [Some(100), Some(20), Some(0), None]);
        assert_eq!(vm.pgsteal, [Some(90), Some(15), None, None]);
        // Before 4.8: one allocstall counter.
        assert_eq!(parse_vmstat(b"allocstall 5\n").allocstall, Some(5));
        assert_eq!(parse_vmstat(b"").oom_kill, None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_i64(b"-1000"), Some(-1000));
        assert_eq!(parse_i64(b"12"), Some(12));
        assert_eq!(parse_i64(b"-"), None);
    }
}
