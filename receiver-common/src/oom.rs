//! The `oom/mark_victim` tracepoint: the event sent to user space and the
//! record layout user space passes to the program at load time.

/// Length of a task's `comm` (`TASK_COMM_LEN` in the kernel).
pub const TASK_COMM_LEN: usize = 16;

/// Offset value meaning "this field is not in the tracepoint record on this kernel".
pub const FIELD_ABSENT: u16 = u16::MAX;

/// Bits of [`OomVictimEvent::flags`]: set when the field was read from the
/// tracepoint record. A field whose bit is clear is 0 (older kernels only
/// record `pid`).
pub mod flags {
    /// `pid` is present.
    pub const PID: u32 = 1 << 0;
    /// `comm` is present.
    pub const COMM: u32 = 1 << 1;
    /// `total_vm_kb` is present.
    pub const TOTAL_VM: u32 = 1 << 2;
    /// `anon_rss_kb` is present.
    pub const ANON_RSS: u32 = 1 << 3;
    /// `file_rss_kb` is present.
    pub const FILE_RSS: u32 = 1 << 4;
    /// `shmem_rss_kb` is present.
    pub const SHMEM_RSS: u32 = 1 << 5;
    /// `uid` is present.
    pub const UID: u32 = 1 << 6;
    /// `pgtables_kb` is present.
    pub const PGTABLES: u32 = 1 << 7;
    /// `oom_score_adj` is present.
    pub const OOM_SCORE_ADJ: u32 = 1 << 8;
}

/// One OOM kill, as seen by the `oom/mark_victim` tracepoint.
///
/// Fields are ordered so that no implicit padding is needed; the only
/// padding is the explicit `_pad0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomVictimEvent {
    /// `bpf_ktime_get_ns()` when the tracepoint fired (CLOCK_MONOTONIC, ns).
    pub ktime_ns: u64,
    /// Victim's total virtual memory, kB.
    pub total_vm_kb: u64,
    /// Victim's anonymous resident memory, kB.
    pub anon_rss_kb: u64,
    /// Victim's file-backed resident memory, kB.
    pub file_rss_kb: u64,
    /// Victim's shared-memory resident memory, kB.
    pub shmem_rss_kb: u64,
    /// Victim's page tables, kB.
    pub pgtables_kb: u64,
    /// Victim's pid (thread-group id, as the kernel's OOM report shows it).
    pub pid: i32,
    /// Victim's uid.
    pub uid: u32,
    /// Thread id of the task that was running when the tracepoint fired: the
    /// one whose allocation triggered the OOM kill.
    pub trigger_pid: i32,
    /// Process id (tgid) of the triggering task.
    pub trigger_tgid: i32,
    /// Which optional fields are present: bits from [`flags`].
    pub flags: u32,
    /// Victim's `oom_score_adj`.
    pub oom_score_adj: i16,
    /// Explicit padding; always zero.
    pub _pad0: [u8; 2],
    /// Victim's command name, NUL-padded.
    pub comm: [u8; TASK_COMM_LEN],
    /// Triggering task's command name, NUL-padded.
    pub trigger_comm: [u8; TASK_COMM_LEN],
}

impl OomVictimEvent {
    /// An event with every field zero and no flag set.
    pub const ZERO: Self = Self {
        ktime_ns: 0,
        total_vm_kb: 0,
        anon_rss_kb: 0,
        file_rss_kb: 0,
        shmem_rss_kb: 0,
        pgtables_kb: 0,
        pid: 0,
        uid: 0,
        trigger_pid: 0,
        trigger_tgid: 0,
        flags: 0,
        oom_score_adj: 0,
        _pad0: [0; 2],
        comm: [0; TASK_COMM_LEN],
        trigger_comm: [0; TASK_COMM_LEN],
    };

    /// Whether all bits of `flag` (from [`flags`]) are set.
    #[must_use]
    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }
}

const _: () = assert!(core::mem::size_of::<OomVictimEvent>() == 104);
const _: () = assert!(core::mem::align_of::<OomVictimEvent>() == 8);

/// Where each field sits in the `oom/mark_victim` tracepoint record on the
/// running kernel: a byte offset from the start of the record, or
/// [`FIELD_ABSENT`]. User space fills it from the tracepoint's `format` file and
/// writes it into the program's global `MARK_VICTIM_LAYOUT` at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkVictimLayout {
    /// `int pid`.
    pub pid: u16,
    /// `__data_loc char[] comm`: a u32 whose low 16 bits are the string's
    /// offset in the record and high 16 bits its length (with the NUL).
    pub comm: u16,
    /// `unsigned long total_vm` (kB).
    pub total_vm: u16,
    /// `unsigned long anon_rss` (kB).
    pub anon_rss: u16,
    /// `unsigned long file_rss` (kB).
    pub file_rss: u16,
    /// `unsigned long shmem_rss` (kB).
    pub shmem_rss: u16,
    /// `uid_t uid`.
    pub uid: u16,
    /// `unsigned long pgtables` (kB).
    pub pgtables: u16,
    /// `short oom_score_adj`.
    pub oom_score_adj: u16,
    /// Explicit padding; always zero.
    pub _pad0: u16,
}

impl MarkVictimLayout {
    /// No field present. The program's default until user space sets the layout.
    pub const ABSENT: Self = Self {
        pid: FIELD_ABSENT,
        comm: FIELD_ABSENT,
        total_vm: FIELD_ABSENT,
        anon_rss: FIELD_ABSENT,
        file_rss: FIELD_ABSENT,
        shmem_rss: FIELD_ABSENT,
        uid: FIELD_ABSENT,
        pgtables: FIELD_ABSENT,
        oom_score_adj: FIELD_ABSENT,
        _pad0: 0,
    };
}

impl Default for MarkVictimLayout {
    fn default() -> Self {
        Self::ABSENT
    }
}

const _: () = assert!(core::mem::size_of::<MarkVictimLayout>() == 20);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, only integer fields, no implicit padding (checked by
// the size assertions above), so every bit pattern is a valid value.
unsafe impl aya::Pod for OomVictimEvent {}

#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for MarkVictimLayout {}

/// Symbol of the program's global holding the [`MarkVictimLayout`].
pub const MARK_VICTIM_LAYOUT_GLOBAL: &str = "MARK_VICTIM_LAYOUT";
/// Name of the `oom/mark_victim` tracepoint program.
pub const MARK_VICTIM_PROGRAM: &str = "mark_victim";
/// Name of the ring buffer map carrying [`OomVictimEvent`]s.
pub const OOM_EVENTS_MAP: &str = "OOM_EVENTS";
/// Name of the per-CPU array (one `u64` slot) counting events dropped because
/// the ring buffer was full.
pub const DROPS_MAP: &str = "DROPS";
/// Size of the ring buffer, bytes (a power of two and a multiple of the page size).
pub const OOM_EVENTS_BYTES: u32 = 256 * 1024;

// The ABI, pinned: both sides compile these, so a reordering fails the build.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(OomVictimEvent, ktime_ns) == 0);
    assert!(offset_of!(OomVictimEvent, pgtables_kb) == 40);
    assert!(offset_of!(OomVictimEvent, pid) == 48);
    assert!(offset_of!(OomVictimEvent, flags) == 64);
    assert!(offset_of!(OomVictimEvent, oom_score_adj) == 68);
    assert!(offset_of!(OomVictimEvent, comm) == 72);
    assert!(offset_of!(OomVictimEvent, trigger_comm) == 88);
    assert!(offset_of!(MarkVictimLayout, oom_score_adj) == 16);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_distinct_bits() {
        let all = [
            flags::PID,
            flags::COMM,
            flags::TOTAL_VM,
            flags::ANON_RSS,
            flags::FILE_RSS,
            flags::SHMEM_RSS,
            flags::UID,
            flags::PGTABLES,
            flags::OOM_SCORE_ADJ,
        ];
        let union = all.iter().fold(0, |acc, f| {
            assert_eq!(f.count_ones(), 1);
            assert_eq!(acc & f, 0, "flag {f:#x} reused");
            acc | f
        });
        assert_eq!(union, 0x1ff);
        let mut event = OomVictimEvent::ZERO;
        assert!(!event.has(flags::PID));
        event.flags = flags::PID | flags::COMM;
        assert!(event.has(flags::PID | flags::COMM));
        assert!(!event.has(flags::PID | flags::UID));
    }

    #[test]
    fn default_layout_has_every_field_absent() {
        let layout = MarkVictimLayout::default();
        assert_eq!(layout, MarkVictimLayout::ABSENT);
        assert_eq!(layout.pid, FIELD_ABSENT);
        assert_eq!(layout.oom_score_adj, FIELD_ABSENT);
    }
}
