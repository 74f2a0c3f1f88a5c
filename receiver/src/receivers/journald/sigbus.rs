//! A process-wide SIGBUS guard for reading memory-mapped journal files.
//!
//! libsystemd maps journal files; when a file is truncated while mapped (a
//! disk-full writer, an operator's `truncate`, a file replaced in place),
//! touching a page past the new end raises SIGBUS, which kills the process.
//! systemd's own tools install a handler that maps an anonymous zero page
//! over the faulting page (`sigbus.c`): the reader then sees zeros, which
//! libsystemd rejects as an invalid object, and goes on. This does the
//! same, and counts the faults so that the reader can warn and reopen.
//!
//! Only `BUS_ADRERR` (an address past the end of a mapped file) is
//! repaired; any other SIGBUS gets the previous disposition, as without the
//! guard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

static FAULTS: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The disposition before the guard (restored for a SIGBUS it does not repair).
static mut PREVIOUS: Option<libc::sigaction> = None;

/// Installs the guard once per process; later calls do nothing. Returns
/// false when it could not be installed (then a truncated file kills the
/// process, as it would without the guard).
pub fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a zeroed struct, a valid handler and an
        // empty mask; PREVIOUS is written only here, inside call_once,
        // before the handler can run.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
                std::ptr::addr_of_mut!(PREVIOUS).write(Some(previous));
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
    INSTALLED.load(Ordering::Acquire)
}

/// Faults repaired since the process started.
pub fn faults() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

extern "C" fn handler(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    // mmap, sysconf and sigaction are async-signal-safe.
    unsafe {
        if !info.is_null() && (*info).si_code == libc::BUS_ADRERR {
            let address = (*info).si_addr() as usize;
            let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE))
                .ok()
                .filter(|p| p.is_power_of_two())
                .unwrap_or(4096);
            let start = address & !(page - 1);
            let mapped = libc::mmap(
                start as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            );
            if mapped != libc::MAP_FAILED {
                FAULTS.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // Not ours to repair: the previous disposition, and the fault
        // happens again when the handler returns.
        let previous = std::ptr::addr_of!(PREVIOUS).read();
        let mut fallback: libc::sigaction = std::mem::zeroed();
        fallback.sa_sigaction = libc::SIG_DFL;
        let restore = previous.unwrap_or(fallback);
        libc::sigaction(signal, &restore, std::ptr::null_mut());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;

    /// A mapped file truncated under the reader: without the guard the read
    /// kills the process; with it the page reads as zeros and is counted.
    #[test]
    fn a_truncated_mapping_reads_zeros_instead_of_killing() {
        assert!(install());
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[0xAB; 8192]).unwrap();
        // SAFETY: a private read-only mapping of a file we own; unmapped below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        file.set_len(0).unwrap();
        let before = faults();
        // SAFETY: within the mapping; the guard turns the fault into zeros.
        let byte = unsafe { std::ptr::read_volatile((map as *const u8).add(4096)) };
        assert_eq!(byte, 0);
        assert!(faults() > before);
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(map, 8192) };
    }
}
