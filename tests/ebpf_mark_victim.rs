//! The `oom/mark_victim` eBPF program against the real kernel: load, attach,
//! cause one contained OOM kill (memory cgroup with a 50 MiB limit) and check
//! the event. Needs root; skips (with a message) when not root or when the
//! kernel lacks tracefs or the tracepoint.

mod common;

use std::time::Duration;

use common::oom::{MemoryCgroup, OOM_LIMIT_BYTES};
use common::{is_root, skip};
use oomscope::ebpf::{
    flags, load_mark_victim, load_mark_victim_with_layout, parse_mark_victim_format, LoadError,
    MarkVictimProbe, OomVictimEvent, FIELD_ABSENT,
};

/// Generous: only there so that a broken probe fails instead of hanging.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The record shape of kernels before 6.x, which only had `pid` (at the same
/// offset as today).
const PID_ONLY_FORMAT: &str = "name: mark_victim
ID: 412
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;

print fmt: \"pid=%d\", REC->pid
";

/// The probe, or `None` (after printing why) when this host cannot run it.
fn load_or_skip(
    test: &str,
    load: impl FnOnce() -> Result<MarkVictimProbe, LoadError>,
) -> Option<MarkVictimProbe> {
    if !is_root() {
        skip(test, format_args!("needs root to load eBPF programs"));
        return None;
    }
    match load() {
        Ok(probe) => Some(probe),
        Err(err) if err.is_unsupported() => {
            skip(
                test,
                format_args!("no tracepoint support on this kernel: {err}"),
            );
            None
        }
        Err(err) => panic!("{test}: loading the probe failed: {err:?}\n{err}"),
    }
}

/// Causes one OOM kill in a fresh limited cgroup and returns the probe's
/// event for that victim, or `None` (after printing why) without a memory
/// controller.
async fn oom_kill_and_catch(
    test: &str,
    probe: &mut MarkVictimProbe,
) -> Option<(i32, OomVictimEvent)> {
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        skip(
            test,
            format_args!("no memory cgroup controller to contain an OOM kill"),
        );
        return None;
    };
    let mut child = cgroup.spawn_allocator().expect("spawn python3");
    let victim = child.pid();
    let event = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            let event = probe.next_event().await.expect("read the ring buffer");
            // Other OOM kills (other tests, other processes) may be in flight.
            if event.pid == victim {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{test}: no mark_victim event for pid {victim} within {EVENT_TIMEOUT:?} (cgroup {:?} {})",
            cgroup.version(),
            cgroup.path().display()
        )
    });
    let status = child.wait().expect("wait for python3");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the victim must have been OOM-killed, got {status}"
    );
    drop(child);
    drop(cgroup);
    Some((victim, event))
}

fn comm_str(comm: &[u8; 16]) -> &str {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    std::str::from_utf8(&comm[..end]).expect("comm is UTF-8")
}

#[tokio::test]
async fn catches_a_contained_oom_kill_with_every_field() {
    const TEST: &str = "catches_a_contained_oom_kill_with_every_field";
    let Some(mut probe) = load_or_skip(TEST, load_mark_victim) else {
        return;
    };
    let layout = probe.layout();
    assert_ne!(layout.pid, FIELD_ABSENT);
    let Some((victim, event)) = oom_kill_and_catch(TEST, &mut probe).await else {
        return;
    };
    eprintln!("{TEST}: {event:?}");

    assert_eq!(event.pid, victim);
    assert!(event.has(flags::PID));
    assert!(event.ktime_ns > 0, "ktime_ns must be set");
    // The OOM kill happens in the context of the task that tried to allocate:
    // in a one-process cgroup, the victim itself.
    assert_eq!(event.trigger_tgid, victim);
    assert_eq!(comm_str(&event.trigger_comm), "python3");
    assert!(event.trigger_pid > 0);

    // This kernel's record (6.x) has every field; older kernels lack some.
    if layout.comm != FIELD_ABSENT {
        assert!(event.has(flags::COMM));
        assert_eq!(comm_str(&event.comm), "python3");
    }
    if layout.anon_rss != FIELD_ABSENT {
        assert!(event.has(flags::ANON_RSS));
        assert!(event.anon_rss_kb > 0, "anon_rss_kb must be > 0");
        // Bounded by the cgroup limit (plus a little slack for accounting).
        assert!(event.anon_rss_kb <= 2 * OOM_LIMIT_BYTES / 1024, "{event:?}");
    }
    if layout.total_vm != FIELD_ABSENT {
        assert!(event.total_vm_kb >= event.anon_rss_kb, "{event:?}");
    }
    if layout.uid != FIELD_ABSENT {
        assert!(event.has(flags::UID));
        // SAFETY: no preconditions.
        assert_eq!(event.uid, unsafe { libc::getuid() });
    }
    if layout.oom_score_adj != FIELD_ABSENT {
        assert!(event.has(flags::OOM_SCORE_ADJ));
        let inherited: i16 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .expect("read oom_score_adj")
            .trim()
            .parse()
            .expect("parse oom_score_adj");
        assert_eq!(event.oom_score_adj, inherited);
    }
    if layout.pgtables != FIELD_ABSENT {
        assert!(event.has(flags::PGTABLES));
        assert!(event.pgtables_kb > 0);
    }
    assert_eq!(probe.drops().expect("read DROPS"), 0);
}

#[tokio::test]
async fn pid_only_layout_flags_the_other_fields_absent() {
    const TEST: &str = "pid_only_layout_flags_the_other_fields_absent";
    let layout = parse_mark_victim_format(PID_ONLY_FORMAT).expect("parse the synthetic format");
    let Some(mut probe) = load_or_skip(TEST, || load_mark_victim_with_layout(layout)) else {
        return;
    };
    let Some((victim, event)) = oom_kill_and_catch(TEST, &mut probe).await else {
        return;
    };
    eprintln!("{TEST}: {event:?}");

    assert_eq!(event.pid, victim);
    assert_eq!(event.flags, flags::PID, "only pid may be flagged present");
    assert_eq!(event.comm, [0; 16]);
    assert_eq!(
        (
            event.total_vm_kb,
            event.anon_rss_kb,
            event.file_rss_kb,
            event.shmem_rss_kb,
            event.pgtables_kb,
            event.uid,
            event.oom_score_adj
        ),
        (0, 0, 0, 0, 0, 0, 0)
    );
    // The trigger fields come from helpers, not from the record.
    assert!(event.ktime_ns > 0);
    assert_eq!(event.trigger_tgid, victim);
    assert_eq!(comm_str(&event.trigger_comm), "python3");
}
