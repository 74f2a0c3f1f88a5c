//! `oom_kill_process(struct oom_control *oc, const char *message)`: called
//! once per OOM kill, after the victim was chosen and before it is marked,
//! in the context of the task whose allocation failed. Reads what the OOM
//! killer decided from `oc` (constraint, memcg with its usage and limit, gfp
//! mask, order, victim) at offsets user space took from the kernel's BTF
//! (`OOM_CONTROL_LAYOUT`).
//!
//! Two attach types of the same probe: `fentry` where the kernel allows it,
//! else `kprobe`; user space loads one of them.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use receiver_common::{
    oom::FIELD_ABSENT,
    oom_scope::{scope_flags, scope_hook, OomControlLayout, OomScopeEvent},
};

use crate::maps::{count_drop, OOM_SCOPE_EVENTS};

/// Set by user space before load; read-only for the program.
#[unsafe(no_mangle)]
static OOM_CONTROL_LAYOUT: OomControlLayout = OomControlLayout::ABSENT;

#[fentry(function = "oom_kill_process")]
pub fn oom_scope_fentry(ctx: FEntryContext) -> u32 {
    let oc: *const u8 = ctx.arg(0);
    send(oc, scope_hook::FENTRY);
    0
}

#[kprobe]
pub fn oom_scope_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(oc) = ctx.arg::<*const u8>(0) {
        send(oc, scope_hook::KPROBE);
    }
    0
}

#[inline(always)]
fn send(oc: *const u8, hook: u32) {
    let Some(mut entry) = OOM_SCOPE_EVENTS.reserve::<OomScopeEvent>(0) else {
        count_drop();
        return;
    };
    let mut event = OomScopeEvent::ZERO;
    fill(oc, hook, &mut event);
    entry.write(event);
    entry.submit(0);
}

#[inline(always)]
fn fill(oc: *const u8, hook: u32, event: &mut OomScopeEvent) {
    // Volatile: the loader overrides the default in .rodata.
    // SAFETY: reading a plain static.
    let layout = unsafe { core::ptr::read_volatile(&OOM_CONTROL_LAYOUT) };
    event.hook = hook;
    // SAFETY: this helper has no preconditions.
    event.ktime_ns = unsafe { bpf_ktime_get_ns() };
    event.trigger_tgid = (bpf_get_current_pid_tgid() >> 32) as u32 as i32;
    if let Ok(comm) = bpf_get_current_comm() {
        event.trigger_comm = comm;
    }
    if let Some(chosen) = read::<u64>(oc, layout.oc_chosen) {
        if let Some(tgid) = read::<i32>(chosen as *const u8, layout.task_tgid) {
            event.victim_tgid = tgid;
            event.flags |= scope_flags::VICTIM;
        }
    }
    if let Some(v) = read::<u32>(oc, layout.oc_constraint) {
        event.constraint = v;
        event.flags |= scope_flags::CONSTRAINT;
    }
    if let Some(v) = read::<u32>(oc, layout.oc_gfp_mask) {
        event.gfp_mask = v;
        event.flags |= scope_flags::GFP_MASK;
    }
    if let Some(v) = read::<i32>(oc, layout.oc_order) {
        event.order = v;
        event.flags |= scope_flags::ORDER;
    }
    if let Some(v) = read::<u64>(oc, layout.oc_totalpages) {
        event.totalpages = v;
        event.flags |= scope_flags::TOTALPAGES;
    }
    if let Some(v) = read::<i64>(oc, layout.oc_chosen_points) {
        event.chosen_points = v;
        event.flags |= scope_flags::CHOSEN_POINTS;
    }
    let Some(memcg) = read::<u64>(oc, layout.oc_memcg) else {
        return;
    };
    if memcg == 0 {
        return; // a system-wide OOM
    }
    let memcg = memcg as *const u8;
    event.flags |= scope_flags::MEMCG;
    if let Some(v) = read::<u64>(memcg, layout.memcg_usage) {
        event.memcg_usage_pages = v;
        event.flags |= scope_flags::MEMCG_USAGE;
    }
    if let Some(v) = read::<u64>(memcg, layout.memcg_max) {
        event.memcg_max_pages = v;
        event.flags |= scope_flags::MEMCG_MAX;
    }
    let id = read::<u64>(memcg, layout.memcg_cgroup)
        .and_then(|cgroup| read::<u64>(cgroup as *const u8, layout.cgroup_kn))
        .and_then(|kn| read::<u64>(kn as *const u8, layout.kn_id));
    if let Some(id) = id {
        event.memcg_id = id;
        event.flags |= scope_flags::MEMCG_ID;
    }
}

/// A `T` at `offset` from `base` in kernel memory; `None` when the offset
/// is unknown, the base is NULL or the read fails.
#[inline(always)]
fn read<T>(base: *const u8, offset: u16) -> Option<T> {
    if offset == FIELD_ABSENT || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one fails.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(usize::from(offset)).cast::<T>()) }.ok()
}
