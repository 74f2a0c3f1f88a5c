//! System memory: `/proc/meminfo` (states, limit, available, slab, shared,
//! swap), `/proc/swaps` (swap by device) and `/proc/vmstat` (page faults,
//! paging, OOM kills, allocation stalls, reclaim).

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
    pub shmem: Option<u64>,
}

/// Parses /proc/meminfo (`Key:   value kB` lines; values without a unit
/// are counts and kept as they are).
///
/// Not procfs's `Meminfo`: it fails the whole file unless some 16 lines are
/// there (Inactive, Dirty, Mapped, Committed_AS, Vmalloc*, ...), none of
/// which is used here; gVisor's meminfo, for one, has no Slab or Vmalloc*
/// lines, so the host would lose every system memory metric. This reads the
/// ten lines used, whichever are there.
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
            b"Shmem" => &mut info.shmem,
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

/// `system.memory.state` values, in the order they are reported (the
/// registry's members less the deprecated `shared`).
pub const STATES: [&str; 4] = ["used", "free", "buffers", "cached"];

/// The `system.memory.state` figures as the semantic-conventions registry
/// defines them (model/system/registry.yaml): `used` is MemTotal -
/// MemAvailable ("memory in active use by applications"), falling back to
/// MemTotal - MemFree - Buffers - Cached - SReclaimable on kernels without
/// MemAvailable (before 3.14), as the registry allows; `free`, `buffers` and
/// `cached` are MemFree, Buffers and Cached. They overlap (`used` already
/// leaves out the reclaimable cache), so they do not sum to MemTotal.
pub fn memory_states(info: &MemInfo) -> Option<[u64; 4]> {
    let total = info.total?;
    let free = info.free.unwrap_or(0);
    let buffers = info.buffers.unwrap_or(0);
    let cached = info.cached.unwrap_or(0);
    let used = match info.available {
        Some(available) => total.saturating_sub(available),
        None => total
            .saturating_sub(free)
            .saturating_sub(buffers)
            .saturating_sub(cached)
            .saturating_sub(info.slab_reclaimable.unwrap_or(0)),
    };
    Some([used, free.min(total), buffers.min(total), cached.min(total)])
}

/// One swap area of /proc/swaps, sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapDevice {
    /// The file or block device, as /proc/swaps names it (the
    /// `system.device` attribute).
    pub device: String,
    pub size: u64,
    pub used: u64,
}

/// Parses /proc/swaps (`Filename Type Size Used Priority`, sizes in KiB; the
/// kernel writes a space, tab, newline or backslash in a file name as an
/// octal escape such as `\040`). Lines that do not parse are skipped.
pub fn parse_swaps(text: &[u8]) -> Vec<SwapDevice> {
    let mut devices = Vec::new();
    for line in text.split(|b| *b == b'\n').skip(1) {
        let mut fields = line
            .split(|b| *b == b' ' || *b == b'\t')
            .filter(|f| !f.is_empty());
        let (Some(name), Some(_kind), Some(size), Some(used)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Some(size), Some(used)) = (parse_u64(size), parse_u64(used)) else {
            continue;
        };
        devices.push(SwapDevice {
            device: unescape_octal(name),
            size: size.saturating_mul(1024),
            used: used.min(size).saturating_mul(1024),
        });
        // A host has a handful of swap areas; the kernel allows at most 32.
        if devices.len() == 64 {
            break;
        }
    }
    devices
}

/// Undoes the kernel's `\ooo` escapes in /proc/swaps file names.
fn unescape_octal(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 3 < raw.len() {
            let digits = &raw[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u16, |acc, d| acc * 8 + u16::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The /proc/vmstat counters used.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VmStat {
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
    pub pswpin: Option<u64>,
    pub pswpout: Option<u64>,
    /// KiB read from and written to block devices (`pgpgin`, `pgpgout`).
    pub pgpgin_kib: Option<u64>,
    pub pgpgout_kib: Option<u64>,
    pub oom_kill: Option<u64>,
    /// `allocstall_<zone>` summed (`allocstall` before 4.8).
    pub allocstall: Option<u64>,
    /// `pgscan_<reclaimer>` by reclaimer: kswapd, direct, khugepaged, proactive.
    pub pgscan: [Option<u64>; 4],
    /// `pgsteal_<reclaimer>`, same order.
    pub pgsteal: [Option<u64>; 4],
}

/// Reclaimers in /proc/vmstat's `pgscan_*` / `pgsteal_*` (the
/// `oomscope.system.memory.reclaimer` attribute).
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
            b"pgpgin" => vm.pgpgin_kib = Some(value),
            b"pgpgout" => vm.pgpgout_kib = Some(value),
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

/// Reads /proc/meminfo, /proc/swaps and /proc/vmstat each scrape.
pub struct SystemScraper {
    meminfo: PathBuf,
    swaps: PathBuf,
    vmstat: PathBuf,
    page_size: u64,
    buf: Vec<u8>,
    /// `MemTotal` and `MemAvailable` of the last scrape (for incidents and
    /// the views).
    pub last: Option<(Option<u64>, Option<u64>)>,
}

impl SystemScraper {
    pub fn new(proc_path: &Path, page_size: u64) -> Self {
        SystemScraper {
            meminfo: proc_path.join("meminfo"),
            swaps: proc_path.join("swaps"),
            vmstat: proc_path.join("vmstat"),
            page_size: page_size.max(1),
            buf: Vec::with_capacity(8192),
            last: None,
        }
    }

    pub fn scrape(&mut self, b: &mut MetricsBuilder, starts: &Starts, warn: &mut WarnOnce) {
        // Swap by device; where /proc/swaps cannot be read (a sandbox's
        // procfs), the totals of /proc/meminfo without a device.
        let swaps = read_file(&self.swaps, &mut self.buf, MAX_FILE)
            .ok()
            .map(|()| parse_swaps(&self.buf));
        match read_file(&self.meminfo, &mut self.buf, MAX_FILE) {
            Ok(()) => {
                let info = parse_meminfo(&self.buf);
                self.last = Some((info.total, info.available));
                record_meminfo(b, &info, swaps.as_deref(), starts);
            }
            Err(e) => warn.warn(
                &self.meminfo.to_string_lossy(),
                format_args!(
                    "memory receiver: cannot read {}: {e}; no system memory metrics",
                    self.meminfo.display()
                ),
            ),
        }
        match read_file(&self.vmstat, &mut self.buf, MAX_FILE) {
            Ok(()) => record_vmstat(b, &parse_vmstat(&self.buf), self.page_size, starts),
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

/// `swaps`: the swap areas of /proc/swaps, or `None` when it could not be
/// read.
pub fn record_meminfo(
    b: &mut MetricsBuilder,
    info: &MemInfo,
    swaps: Option<&[SwapDevice]>,
    starts: &Starts,
) {
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
    for (state, value) in [
        ("reclaimable", info.slab_reclaimable),
        ("unreclaimable", info.slab_unreclaimable),
    ] {
        if let Some(v) = value {
            b.int(
                &m::SYSTEM_MEMORY_SLAB_USAGE,
                start,
                int(v),
                vec![kv_str("system.memory.linux.slab.state", state)],
            );
        }
    }
    if let Some(shmem) = info.shmem {
        b.int(&m::SYSTEM_MEMORY_SHARED, start, int(shmem), Vec::new());
    }
    match swaps {
        Some(devices) => {
            for d in devices {
                record_swap(b, start, d.size, d.used, Some(&d.device));
            }
        }
        None => {
            if let (Some(total), Some(free)) = (info.swap_total, info.swap_free) {
                if total > 0 {
                    record_swap(b, start, total, total - free.min(total), None);
                }
            }
        }
    }
}

/// `system.paging.usage` and `utilization` of one swap area (`device`), or
/// of all of them.
fn record_swap(b: &mut MetricsBuilder, start: u64, size: u64, used: u64, device: Option<&str>) {
    let used = used.min(size);
    for (state, value) in [("used", used), ("free", size - used)] {
        let mut attrs = vec![kv_str("system.paging.state", state)];
        if let Some(device) = device {
            attrs.push(kv_str("system.device", device));
        }
        b.int(&m::SYSTEM_PAGING_USAGE, start, int(value), attrs.clone());
        if size > 0 {
            b.double(
                &m::SYSTEM_PAGING_UTILIZATION,
                start,
                value as f64 / size as f64,
                attrs,
            );
        }
    }
}

pub fn record_vmstat(b: &mut MetricsBuilder, vm: &VmStat, page_size: u64, starts: &Starts) {
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
    // As the collector's hostmetrics receiver pairs them: `major` are pages
    // swapped in and out (pswpin, pswpout), `minor` pages read from and
    // written to block devices (pgpgin, pgpgout, which the kernel counts in
    // KiB; reported here in pages).
    let kib_to_pages = |kib: Option<u64>| kib.map(|k| k.saturating_mul(1024) / page_size.max(1));
    for (kind, direction, value) in [
        ("major", "in", vm.pswpin),
        ("major", "out", vm.pswpout),
        ("minor", "in", kib_to_pages(vm.pgpgin_kib)),
        ("minor", "out", kib_to_pages(vm.pgpgout_kib)),
    ] {
        if let Some(v) = value {
            b.int(
                &m::SYSTEM_PAGING_OPERATIONS,
                boot,
                int(v),
                vec![
                    kv_str("system.paging.fault.type", kind),
                    kv_str("system.paging.direction", direction),
                ],
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
                    vec![kv_str("oomscope.system.memory.reclaimer", reclaimer)],
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
    fn states_as_the_registry_defines_them() {
        let info = parse_meminfo(MEMINFO.as_bytes());
        let states = memory_states(&info).expect("states");
        // used = MemTotal - MemAvailable (model/system/registry.yaml).
        assert_eq!(
            states,
            [
                (24684084 - 24067608) * 1024,
                13458380 * 1024,
                77408 * 1024,
                10116824 * 1024
            ]
        );
        assert_eq!(info.shmem, Some(8872 * 1024));
        // Before 3.14 there is no MemAvailable: the older formula.
        let old = MemInfo {
            total: Some(100),
            free: Some(20),
            buffers: Some(10),
            cached: Some(30),
            slab_reclaimable: Some(5),
            ..MemInfo::default()
        };
        assert_eq!(memory_states(&old), Some([35, 20, 10, 30]));
        // Counters sampled mid-change never give a negative or oversized state.
        let odd = MemInfo {
            total: Some(100),
            available: Some(120),
            free: Some(130),
            ..MemInfo::default()
        };
        assert_eq!(memory_states(&odd), Some([0, 100, 0, 0]));
        assert_eq!(memory_states(&MemInfo::default()), None);
    }

    #[test]
    fn the_live_meminfo() {
        let text = std::fs::read("/proc/meminfo").expect("/proc/meminfo");
        let info = parse_meminfo(&text);
        let states = memory_states(&info).expect("states");
        let field = |name: &str| -> u64 {
            let text = String::from_utf8_lossy(&text);
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .expect(name)
                * 1024
        };
        assert_eq!(
            states,
            [
                field("MemTotal:") - field("MemAvailable:"),
                field("MemFree:"),
                field("Buffers:"),
                field("Cached:")
            ]
        );
        assert!(states[0] > 0, "something is used: {states:?}");
    }

    #[test]
    fn swaps_by_device() {
        let text = b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/dev/dm-1                               partition\t2097148\t\t1024\t\t-2
/var/swap\\040file                       file\t\t1048572\t\t0\t\t-3
garbage line
/dev/zram0 partition 100 200 5
";
        let devices = parse_swaps(text);
        assert_eq!(
            devices,
            vec![
                SwapDevice {
                    device: "/dev/dm-1".into(),
                    size: 2097148 * 1024,
                    used: 1024 * 1024
                },
                SwapDevice {
                    device: "/var/swap file".into(),
                    size: 1048572 * 1024,
                    used: 0
                },
                // Used above size (read mid-change) is clamped.
                SwapDevice {
                    device: "/dev/zram0".into(),
                    size: 100 * 1024,
                    used: 100 * 1024
                },
            ]
        );
        assert!(parse_swaps(b"Filename Type Size Used Priority\n").is_empty());
        assert_eq!(unescape_octal(b"a\\134b\\12"), "a\\b\\12");
    }

    #[test]
    fn vmstat_counters() {
        let text = b"nr_free_pages 3364595
pgpgin 1000
pgpgout 2000
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
        assert_eq!(vm.pgpgin_kib, Some(1000));
        assert_eq!(vm.pgpgout_kib, Some(2000));
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
