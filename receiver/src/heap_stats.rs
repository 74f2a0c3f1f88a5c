//! The agent's own heap, counted as it allocates, for the collector's
//! `otelcol_process_runtime_heap_alloc_bytes` and `_total_alloc_bytes`
//! (Go's `MemStats.HeapAlloc` and `TotalAlloc`): [`CountingMiMalloc`] is
//! mimalloc with two counters per thread.
//!
//! The counters sit on the hot path of every allocation, so each thread
//! writes only its own slot, with a plain load and store (no locked
//! instruction, no contention); readers sum the slots and may see a value a
//! few allocations old. A thread gets a slot at its first allocation; slots
//! are never given back (a thread's counts outlive it), and threads past
//! [`SLOTS`] share the last slot with atomic adds. mimalloc's own statistics
//! would do this, but only in its debug builds.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Per-thread slots; the agent runs a few dozen threads (tokio workers,
/// blocking pool, receivers' readers).
const SLOTS: usize = 256;
/// The slot shared, with atomic adds, by threads past the others.
const SHARED: usize = SLOTS - 1;

#[repr(align(64))]
struct Slot {
    allocated: AtomicU64,
    freed: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    allocated: AtomicU64::new(0),
    freed: AtomicU64::new(0),
};
static SLOTS_IN_USE: [Slot; SLOTS] = [EMPTY; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
/// Whether this allocator is the global one (the figures mean something).
static IN_USE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's slot + 1 (0: none yet). Const-initialised and without
    /// a destructor, so reading it never allocates.
    static MY_SLOT: Cell<usize> = const { Cell::new(0) };
}

/// mimalloc, counting bytes allocated and freed.
pub struct CountingMiMalloc;

#[inline]
fn slot() -> usize {
    MY_SLOT
        .try_with(|s| {
            let v = s.get();
            if v != 0 {
                return v - 1;
            }
            let taken = NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(SHARED);
            s.set(taken + 1);
            taken
        })
        // Thread-local storage already torn down (a thread's last frees).
        .unwrap_or(SHARED)
}

#[inline]
fn add(counter: &AtomicU64, index: usize, bytes: usize) {
    let bytes = bytes as u64;
    if index == SHARED {
        counter.fetch_add(bytes, Ordering::Relaxed);
    } else {
        // Only this thread writes this slot: no read-modify-write needed.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(bytes),
            Ordering::Relaxed,
        );
    }
}

#[inline]
fn count_alloc(bytes: usize) {
    let i = slot();
    add(&SLOTS_IN_USE[i].allocated, i, bytes);
}

#[inline]
fn count_free(bytes: usize) {
    let i = slot();
    add(&SLOTS_IN_USE[i].freed, i, bytes);
}

// SAFETY: every call is mimalloc's, with the same arguments; the counting
// beside it neither allocates nor touches the memory.
unsafe impl GlobalAlloc for CountingMiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        count_free(layout.size());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count_free(layout.size());
            count_alloc(new_size);
        }
        p
    }
}

impl CountingMiMalloc {
    /// Marks the figures as meaningful; called once at start by the binary
    /// whose global allocator this is.
    pub fn activate(&self) {
        IN_USE.store(true, Ordering::Relaxed);
    }
}

/// What the counting allocator saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes allocated and not yet freed.
    pub live: u64,
    /// Bytes allocated since start.
    pub total_allocated: u64,
}

/// The heap as counted so far, or `None` when [`CountingMiMalloc`] is not
/// the global allocator (tests, other binaries).
#[must_use]
pub fn heap_stats() -> Option<HeapStats> {
    if !IN_USE.load(Ordering::Relaxed) {
        return None;
    }
    let (mut allocated, mut freed) = (0u64, 0u64);
    for s in &SLOTS_IN_USE {
        allocated = allocated.wrapping_add(s.allocated.load(Ordering::Relaxed));
        freed = freed.wrapping_add(s.freed.load(Ordering::Relaxed));
    }
    Some(HeapStats {
        // Slots are read one after another while threads run on: a free
        // counted before its allocation was read can make this briefly
        // negative.
        live: allocated.saturating_sub(freed),
        total_allocated: allocated,
    })
}

/// Memory mimalloc has obtained from the OS and not given back (its
/// committed bytes; Go's `MemStats.Sys`), or `None` outside mimalloc.
#[must_use]
pub fn allocator_committed_bytes() -> Option<u64> {
    if !IN_USE.load(Ordering::Relaxed) {
        return None;
    }
    let (mut elapsed, mut user, mut system) = (0usize, 0usize, 0usize);
    let (mut rss, mut peak_rss, mut commit, mut peak_commit, mut faults) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    // SAFETY: mi_process_info writes each out-parameter it is given.
    unsafe {
        libmimalloc_sys::mi_process_info(
            &raw mut elapsed,
            &raw mut user,
            &raw mut system,
            &raw mut rss,
            &raw mut peak_rss,
            &raw mut commit,
            &raw mut peak_commit,
            &raw mut faults,
        );
    }
    Some(commit as u64)
}

/// Has mimalloc give the pages it holds free back to the OS now (it
/// otherwise does so later, and only when it allocates again). For the end
/// of a one-off burst such as parsing the kernel's BTF at start.
pub fn return_freed_pages() {
    // SAFETY: walks mimalloc's own free lists only.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// mimalloc's `mi_option_purge_delay` (its index in `mi_option_t`, the
/// same in mimalloc 2 and 3; the sys crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps a freed page's memory before giving it back to
/// the OS: 25 ms instead of mimalloc 3's 1 s.
///
/// Under the OTLP pass-through benchmark (1M records, 8 streams) the live
/// heap peaked at 15-29 MB while RSS reached 64-74 MiB at a 100 ms delay
/// (87 MiB at the default 1 s): requests are decoded, batched, encoded and
/// freed faster than freed pages are purged.
/// Each purge is a `madvise` and a later page fault, so a shorter delay
/// trades CPU for memory. The same benchmark, agent's CPU for the million
/// records and peak RSS, against rotel's peak in the same run (2026-12-06,
/// after the receive and encode paths lost a third of their cost): 100 ms
/// 1.27-1.31 s, 66.5-81.9 MiB (rotel 67.7-72.3, above it in 2 of 3 runs);
/// 50 ms 1.35-1.36 s, 54.0-73.1 MiB (1 of 2 above); 25 ms 1.35-1.55 s,
/// 57.0-67.2 MiB (rotel 73.9-80.3, never above in 5 runs); 10 ms 1.47-1.61
/// s, 46.1-54.2 MiB. 25 ms holds the peak under rotel's for about 8% more
/// CPU under full load, and nothing while idle.
pub const PURGE_DELAY_MS: i64 = 25;

/// Sets [`PURGE_DELAY_MS`], unless `MIMALLOC_PURGE_DELAY` is set (mimalloc
/// reads it; the user's choice stands). Call before other threads start.
pub fn set_purge_delay() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one of mimalloc's options; called from `main` before any
    // other thread exists (mimalloc's options are not thread-safe to set).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
}

/// Bytes freed, process-wide, after which an idle worker thread gives the
/// pages it holds free back to the OS (see [`on_worker_park`]).
pub const RETURN_AFTER_FREED_BYTES: u64 = 16 << 20;

thread_local! {
    /// Process-wide freed bytes when this thread last returned pages.
    static FREED_AT_LAST_RETURN: Cell<u64> = const { Cell::new(0) };
}

/// Bytes freed since start, by every thread.
fn freed_total() -> u64 {
    SLOTS_IN_USE.iter().fold(0u64, |sum, s| {
        sum.wrapping_add(s.freed.load(Ordering::Relaxed))
    })
}

/// For the async runtime's `on_thread_park`: a worker about to sleep gives
/// back the pages it holds free once [`RETURN_AFTER_FREED_BYTES`] have been
/// freed since it last did.
///
/// mimalloc frees a page's memory to the OS some milliseconds after the
/// page empties, but only when the thread that owns the page allocates or
/// collects again; a worker that goes idle after a burst would hold the
/// burst's pages for as long as it sleeps (25 MiB a minute after a 64,000
/// record burst, `tests/footprint.rs`). Purging every page as it empties
/// instead (`purge_delay` 0) cost 20% more CPU per record under load. Here
/// the cost is one ordinary collection per 16 MiB freed per worker, paid
/// when the worker has nothing else to do: it purges what has been free
/// for longer than the purge delay and leaves the rest for reuse. Frees
/// from any thread count: a block freed by another thread goes back to
/// the page's owner, which must collect it.
pub fn on_worker_park() {
    if !IN_USE.load(Ordering::Relaxed) {
        return;
    }
    let freed = freed_total();
    let _ = FREED_AT_LAST_RETURN.try_with(|last| {
        if freed.wrapping_sub(last.get()) >= RETURN_AFTER_FREED_BYTES {
            last.set(freed);
            // Not forced: pages freed within mimalloc's purge delay stay
            // for reuse (a forced collection here cost 15-20% more CPU
            // per record in the pass-through benchmark).
            // SAFETY: walks mimalloc's own free lists only.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Index 15 is the purge delay: its default, 1000 ms in mimalloc 3 (10
    /// ms in mimalloc 2), is no other option's.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("SKIP: MIMALLOC_PURGE_DELAY is set");
            return;
        }
        // SAFETY: reads an option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(delay == 1000 || delay == 10, "option 15 is {delay}");
    }

    /// The counters add up across threads, the shared slot included, and
    /// a thread's counts outlive it.
    #[test]
    fn slots_add_up() {
        let before: u64 = SLOTS_IN_USE
            .iter()
            .map(|s| s.allocated.load(Ordering::Relaxed))
            .sum();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1000 {
                        count_alloc(10);
                        count_free(4);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        add(&SLOTS_IN_USE[SHARED].allocated, SHARED, 7);
        let after: u64 = SLOTS_IN_USE
            .iter()
            .map(|s| s.allocated.load(Ordering::Relaxed))
            .sum();
        // Other tests' threads may count meanwhile only through the global
        // allocator, which is not this one in tests: exact.
        assert_eq!(after - before, 4 * 1000 * 10 + 7);
        assert_eq!(heap_stats(), None, "not the global allocator here");
    }
}
