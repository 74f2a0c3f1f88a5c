//! What the OOM killer knows when it picks a victim, read in the kernel from
//! its `struct oom_control` at `oom_kill_process()`: the constraint, the
//! memory cgroup whose limit was hit with its usage and limit, the
//! allocation's gfp mask and order, and the task that triggered it. The
//! kernel log says the same, but rate-limited (10 report headers per 5 s)
//! and later; this hook says it at once.
//!
//! The programs attach as `fentry` (BTF-typed, cheapest) or, where that is
//! refused, as a `kprobe`; user space picks at load time. Field offsets come
//! from the kernel's BTF ([`OomControlLayout`], filled by user space); a
//! field whose offset is [`FIELD_ABSENT`] is left out with its flag clear.

use crate::oom::{FIELD_ABSENT, TASK_COMM_LEN};

/// Bits of [`OomScopeEvent::flags`]: which fields were read.
pub mod scope_flags {
    pub const VICTIM: u32 = 1 << 0;
    pub const CONSTRAINT: u32 = 1 << 1;
    pub const GFP_MASK: u32 = 1 << 2;
    pub const ORDER: u32 = 1 << 3;
    pub const TOTALPAGES: u32 = 1 << 4;
    pub const CHOSEN_POINTS: u32 = 1 << 5;
    /// `oc->memcg` was not NULL: a memory cgroup OOM.
    pub const MEMCG: u32 = 1 << 6;
    pub const MEMCG_USAGE: u32 = 1 << 7;
    pub const MEMCG_MAX: u32 = 1 << 8;
    pub const MEMCG_ID: u32 = 1 << 9;
}

/// [`OomScopeEvent::hook`]: how the program was attached.
pub mod scope_hook {
    pub const FENTRY: u32 = 1;
    pub const KPROBE: u32 = 2;
}

/// `enum oom_constraint` (include/linux/oom.h, unchanged since Linux 4.8).
pub const CONSTRAINT_NAMES: [&str; 4] = [
    "CONSTRAINT_NONE",
    "CONSTRAINT_CPUSET",
    "CONSTRAINT_MEMORY_POLICY",
    "CONSTRAINT_MEMCG",
];

/// One `oom_kill_process()` call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomScopeEvent {
    /// `bpf_ktime_get_ns()` at the call (CLOCK_MONOTONIC, ns).
    pub ktime_ns: u64,
    /// `oc->totalpages`: the memory the victim was measured against, pages.
    pub totalpages: u64,
    /// `oc->chosen_points`: the victim's badness.
    pub chosen_points: i64,
    /// The memcg's `memory.usage` (`page_counter`), pages.
    pub memcg_usage_pages: u64,
    /// The memcg's `memory.max`, pages.
    pub memcg_max_pages: u64,
    /// The memcg's cgroup's kernfs id: the inode number of its directory in
    /// cgroupfs (how user space finds its path).
    pub memcg_id: u64,
    /// `oc->chosen`'s tgid: the victim.
    pub victim_tgid: i32,
    /// The task in the OOM killer: the one whose allocation failed.
    pub trigger_tgid: i32,
    /// `oc->constraint`, an index in [`CONSTRAINT_NAMES`].
    pub constraint: u32,
    /// `oc->gfp_mask`.
    pub gfp_mask: u32,
    /// `oc->order`.
    pub order: i32,
    /// Bits from [`scope_flags`].
    pub flags: u32,
    /// From [`scope_hook`].
    pub hook: u32,
    /// Explicit padding; always zero.
    pub _pad0: u32,
    /// The triggering task's comm, NUL-padded.
    pub trigger_comm: [u8; TASK_COMM_LEN],
}

impl OomScopeEvent {
    /// Every field zero, no flag set.
    pub const ZERO: Self = Self {
        ktime_ns: 0,
        totalpages: 0,
        chosen_points: 0,
        memcg_usage_pages: 0,
        memcg_max_pages: 0,
        memcg_id: 0,
        victim_tgid: 0,
        trigger_tgid: 0,
        constraint: 0,
        gfp_mask: 0,
        order: 0,
        flags: 0,
        hook: 0,
        _pad0: 0,
        trigger_comm: [0; TASK_COMM_LEN],
    };

    /// Whether all bits of `flag` are set.
    #[must_use]
    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }
}

const _: () = assert!(core::mem::size_of::<OomScopeEvent>() == 96);
const _: () = assert!(core::mem::align_of::<OomScopeEvent>() == 8);

/// Byte offsets in kernel structures, from the running kernel's BTF, or
/// [`FIELD_ABSENT`]. Nested members are summed (e.g. `memcg_usage` is
/// `offsetof(struct mem_cgroup, memory) + offsetof(struct page_counter,
/// usage)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomControlLayout {
    /// `struct oom_control`: `memcg` (pointer).
    pub oc_memcg: u16,
    /// `gfp_mask` (4 bytes).
    pub oc_gfp_mask: u16,
    /// `order` (int).
    pub oc_order: u16,
    /// `totalpages` (unsigned long).
    pub oc_totalpages: u16,
    /// `chosen` (`struct task_struct *`).
    pub oc_chosen: u16,
    /// `chosen_points` (long).
    pub oc_chosen_points: u16,
    /// `constraint` (enum, 4 bytes).
    pub oc_constraint: u16,
    /// `struct task_struct`: `tgid`.
    pub task_tgid: u16,
    /// `struct mem_cgroup`: `memory.usage` (8 bytes).
    pub memcg_usage: u16,
    /// `memory.max` (8 bytes).
    pub memcg_max: u16,
    /// `css.cgroup` (pointer).
    pub memcg_cgroup: u16,
    /// `struct cgroup`: `kn` (pointer).
    pub cgroup_kn: u16,
    /// `struct kernfs_node`: `id` (8 bytes).
    pub kn_id: u16,
    /// Explicit padding; always zero.
    pub _pad0: u16,
}

impl OomControlLayout {
    /// Nothing known: the program sends only the trigger.
    pub const ABSENT: Self = Self {
        oc_memcg: FIELD_ABSENT,
        oc_gfp_mask: FIELD_ABSENT,
        oc_order: FIELD_ABSENT,
        oc_totalpages: FIELD_ABSENT,
        oc_chosen: FIELD_ABSENT,
        oc_chosen_points: FIELD_ABSENT,
        oc_constraint: FIELD_ABSENT,
        task_tgid: FIELD_ABSENT,
        memcg_usage: FIELD_ABSENT,
        memcg_max: FIELD_ABSENT,
        memcg_cgroup: FIELD_ABSENT,
        cgroup_kn: FIELD_ABSENT,
        kn_id: FIELD_ABSENT,
        _pad0: 0,
    };
}

impl Default for OomControlLayout {
    fn default() -> Self {
        Self::ABSENT
    }
}

const _: () = assert!(core::mem::size_of::<OomControlLayout>() == 28);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, integer fields and byte arrays only, no implicit
// padding (checked by the size assertions).
unsafe impl aya::Pod for OomScopeEvent {}

#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for OomControlLayout {}

/// The kernel function both programs attach to.
pub const OOM_KILL_FUNCTION: &str = "oom_kill_process";
/// The `fentry` program.
pub const SCOPE_FENTRY_PROGRAM: &str = "oom_scope_fentry";
/// The `kprobe` program.
pub const SCOPE_KPROBE_PROGRAM: &str = "oom_scope_kprobe";
/// Symbol of the programs' global holding the [`OomControlLayout`].
pub const OOM_CONTROL_LAYOUT_GLOBAL: &str = "OOM_CONTROL_LAYOUT";
/// Ring buffer of [`OomScopeEvent`]s.
pub const OOM_SCOPE_EVENTS_MAP: &str = "OOM_SCOPE_EVENTS";
/// Its size: OOM kills are rare; a storm of them fits many times over.
pub const OOM_SCOPE_EVENTS_BYTES: u32 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_distinct_bits() {
        use scope_flags::*;
        let all = [
            VICTIM,
            CONSTRAINT,
            GFP_MASK,
            ORDER,
            TOTALPAGES,
            CHOSEN_POINTS,
            MEMCG,
            MEMCG_USAGE,
            MEMCG_MAX,
            MEMCG_ID,
        ];
        let union = all.iter().fold(0, |acc, f| {
            assert_eq!(f.count_ones(), 1);
            assert_eq!(acc & f, 0);
            acc | f
        });
        assert_eq!(union.count_ones() as usize, all.len());
        assert_eq!(OomControlLayout::default(), OomControlLayout::ABSENT);
    }
}
