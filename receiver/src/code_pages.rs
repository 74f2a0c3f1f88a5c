//! Gives back the page mappings of the code and read-only data only
//! start-up used.
//!
//! Start-up runs code the agent never runs again (command line and YAML
//! parsing, config validation, eBPF object and BTF loading, regex and TLS
//! set-up), and the kernel maps the pages around each page it faults in
//! (fault-around, 64 KiB). Once everything is running, two thirds of the
//! binary's code was mapped (11.3 of 16.8 MiB, `/proc/PID/pagemap`), and
//! that counted in the agent's RSS for as long as it ran.
//!
//! `MADV_DONTNEED` on the binary's code mapping drops the process's page
//! table entries of it. The pages stay in the page cache: code that runs
//! again comes back with a minor fault (microseconds, no I/O while the
//! page is cached), and the resident code is then what the agent runs.
//! Under memory pressure the kernel reclaims code pages that are not
//! referenced whether they are mapped or not, so the OOM path is no worse
//! off than before.
//!
//! The same goes for the binary's read-only data (constant tables, unwind
//! information, symbol names: 1.8 of 3.9 MiB resident).
//!
//! Only the read-only mappings of the agent's own binary are touched, and
//! only those none of whose pages were ever written: a private page that
//! was written (the relocated read-only data, a debugger's breakpoint) is
//! anonymous memory, which `MADV_DONTNEED` would throw away; such a
//! mapping (seen in `/proc/self/pagemap`) is left as it is.
//!
//! The agent does this once everything has started and again a minute
//! later, when the code of the first scrapes, exports and reads (which
//! also run once) has run.

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

/// When the release is done again after start-up.
pub const RELEASE_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// What [`release_start_up_code`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Bytes of code mapping given up.
    pub mapped: u64,
    /// Resident bytes of those mappings before and after.
    pub resident_before: u64,
    pub resident_after: u64,
}

/// The read-only mappings (code and data) of the binary: start address and
/// length.
fn code_mappings(maps: &str, exe_inode: u64) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let _offset = fields.next()?;
            let _dev = fields.next()?;
            let inode: u64 = fields.next()?.parse().ok()?;
            if !matches!(perms, "r-xp" | "r--p") || inode != exe_inode || inode == 0 {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end - start))
        })
        .collect()
}

/// `/proc/self/pagemap`: the page is present; it is swapped out (or being
/// migrated); it is a file page (or shared anonymous memory).
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

/// Whether a pagemap entry of a private file mapping shows a page that was
/// written: a present anonymous page, or one swapped out (only anonymous
/// pages are; a written page under memory pressure is one). A swap-type
/// entry of a file page being migrated counts too: the mapping is left
/// alone that time.
fn written_entry(entry: u64) -> bool {
    entry & PM_SWAP != 0 || (entry & PM_PRESENT != 0 && entry & PM_FILE == 0)
}

/// The pages of the mapping at `start` (`len` bytes), from
/// `/proc/self/pagemap`: how many are resident, and whether one is
/// anonymous (a private page that was written). `None` when the pagemap
/// cannot be read.
fn pages(start: usize, len: usize) -> Option<(u64, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let page = usize::try_from(crate::sysconf::page_size()).ok()?;
    let mut entries = vec![0u8; len / page * 8];
    let mut f = std::fs::File::open("/proc/self/pagemap").ok()?;
    f.seek(SeekFrom::Start((start / page * 8) as u64)).ok()?;
    f.read_exact(&mut entries).ok()?;
    let mut resident = 0;
    let mut written = false;
    for e in entries.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(e);
        let entry = u64::from_ne_bytes(word);
        if entry & PM_PRESENT != 0 {
            resident += page as u64;
        }
        written |= written_entry(entry);
    }
    Some((resident, written))
}

/// Resident bytes of `mappings`.
fn resident(mappings: &[(usize, usize)]) -> u64 {
    mappings
        .iter()
        .filter_map(|&(start, len)| pages(start, len))
        .map(|(resident, _)| resident)
        .sum()
}

/// Drops this process's page mappings of its binary's code and read-only
/// data (see the module's comment); call once start-up is over.
pub fn release_start_up_code() -> std::io::Result<Released> {
    let exe_inode = std::fs::metadata("/proc/self/exe")?.ino();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    // An unreadable pagemap counts as written: nothing is dropped.
    let mut resident_before = 0;
    let mut mappings = Vec::new();
    for (start, len) in code_mappings(&maps, exe_inode) {
        if let Some((resident, false)) = pages(start, len) {
            resident_before += resident;
            mappings.push((start, len));
        }
    }
    if mappings.is_empty() {
        return Err(std::io::Error::other(
            "no read-only mapping of the binary that was never written in /proc/self/maps",
        ));
    }
    let mut mapped = 0;
    for &(start, len) in &mappings {
        // SAFETY: the range is a whole private, read-only file mapping of
        // this binary none of whose pages was written (nothing can write
        // it without mprotect); MADV_DONTNEED only drops page table
        // entries, and the next access to a page maps it again from the
        // file (the page cache).
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        mapped += len as u64;
    }
    Ok(Released {
        mapped,
        resident_before,
        resident_after: resident(&mappings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_binarys_executable_mappings_are_chosen() {
        let maps = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fe:00 1234 /usr/bin/oomscope
55d0c0b00000-55d0c1b00000 r-xp 00100000 fe:00 1234 /usr/bin/oomscope
55d0c1b00000-55d0c1c00000 r--p 01100000 fe:00 1234 /usr/bin/oomscope
55d0c1c00000-55d0c1d00000 rw-p 01200000 fe:00 1234 /usr/bin/oomscope
7f0000000000-7f0000100000 r-xp 00000000 fe:00 99 /usr/lib/libc.so.6
7f0000100000-7f0000200000 r-xp 00000000 00:00 0
";
        assert_eq!(
            code_mappings(maps, 1234),
            [
                (0x55d0c0a00000, 0x100000),
                (0x55d0c0b00000, 0x1000000),
                (0x55d0c1b00000, 0x100000)
            ]
        );
        assert!(
            code_mappings(maps, 0).is_empty(),
            "anonymous mappings never"
        );
        assert!(code_mappings("garbage\n\n1-2 r-xp", 1234).is_empty());
    }

    #[test]
    fn swapped_and_anonymous_pages_count_as_written() {
        assert!(!written_entry(0), "never touched");
        assert!(!written_entry(PM_PRESENT | PM_FILE | 0x1234), "a file page");
        assert!(written_entry(PM_PRESENT | 0x1234), "anonymous, present");
        assert!(written_entry(PM_SWAP | 0x42), "anonymous, swapped out");
        assert!(written_entry(PM_SWAP | PM_FILE), "migrating");
    }

    /// The test binary's code pages: dropped, and the code still runs (it
    /// faults back in); a mapping with a written page is left alone.
    #[test]
    fn the_code_mapping_is_released_and_runs_on() {
        let released = release_start_up_code().expect("released");
        assert!(released.mapped > 0);
        assert!(
            released.resident_after < released.resident_before,
            "{released:?}"
        );
        // Code runs on after the release (it faults back in).
        let text = format!("{:?}", (1..100).map(|i| i * 2).collect::<Vec<u64>>());
        assert!(text.starts_with("[2, 4"));

        // A private page that was written is anonymous: seen as written.
        let size = crate::sysconf::page_size() as usize;
        let mut page = vec![0u8; 4 * size];
        let start = (page.as_ptr() as usize).div_ceil(size) * size;
        let offset = start - page.as_ptr() as usize;
        page[offset] = 1;
        assert_eq!(pages(start, size), Some((size as u64, true)));
        std::hint::black_box(&page);
    }
}
