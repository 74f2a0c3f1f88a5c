//! `oomscope doctor --json` on this machine: the report has its keys, and
//! the facts this project's CI kernel is known to have are reported OK; in
//! private mount namespaces, a read-only tracefs (still enough for the
//! probe) and a tracefs that cannot be mounted (the fix named, the agent
//! on kmsg).

use std::process::Command;

use serde_json::Value;

const CHECKS: [&str; 16] = [
    "kernel",
    "btf",
    "tracefs",
    "tracepoint",
    "capabilities",
    "seccomp",
    "lockdown",
    "unprivileged_bpf_disabled",
    "cgroup",
    "psi",
    "kmsg",
    "vmstat_oom_kill",
    "ebpf_probe",
    "exec_hook",
    "scope_hook",
    "journal",
];

fn doctor(args: &[&str]) -> (Option<i32>, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .arg("doctor")
        .args(args)
        .output()
        .expect("run oomscope doctor");
    let text = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn json_report_has_every_check_and_a_consistent_verdict() {
    let (code, report) = doctor(&["--json", "--no-probe"]);
    for name in CHECKS {
        let entry = check(&report, name);
        assert!(
            ["OK", "MISSING", "LIMITED"].contains(&entry["status"].as_str().unwrap_or("")),
            "{entry}"
        );
        assert!(
            entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{entry}"
        );
    }
    assert_eq!(
        report["checks"].as_array().map(Vec::len),
        Some(CHECKS.len())
    );
    assert!(report["missing_for_full_data"].is_array(), "{report:#}");
    let exit_code = report["exit_code"].as_i64().expect("exit_code");
    assert_eq!(code, Some(exit_code as i32), "exit status is the verdict");
    match report["source"].as_str() {
        Some("none") => assert_eq!(exit_code, 2),
        Some("ebpf" | "kmsg") => assert!(exit_code < 2),
        other => panic!("source {other:?}"),
    }
    assert!(check(&report, "ebpf_probe")["reason"]
        .as_str()
        .is_some_and(|r| r.contains("--no-probe")));
}

/// As root on this project's kernel (Linux 6.18): the
/// tracepoint exists with every field, /dev/kmsg is readable and the eBPF
/// program loads, so the agent uses eBPF.
#[test]
fn as_root_the_tracepoint_kmsg_and_probe_are_ok() {
    if !is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let (_, report) = doctor(&["--json"]);
    for name in [
        "tracefs",
        "tracepoint",
        "kmsg",
        "ebpf_probe",
        "exec_hook",
        "btf",
        "vmstat_oom_kill",
    ] {
        assert_eq!(check(&report, name)["status"], "OK", "{name}: {report:#}");
    }
    assert_eq!(report["source"], "ebpf", "{report:#}");
    // The oom_kill_process hook: attached (fentry or kprobe), or the
    // reason for each; this kernel (lockdown=integrity, no CONFIG_KPROBES)
    // refuses both, Debian's allow fentry (tests/kernel_matrix.rs).
    let scope = check(&report, "scope_hook");
    let reason = scope["reason"].as_str().unwrap_or("");
    match scope["status"].as_str() {
        Some("OK") => assert!(
            reason.starts_with("fentry on oom_kill_process")
                || reason.starts_with("kprobe on oom_kill_process"),
            "{scope}"
        ),
        _ => assert!(
            reason.starts_with("no hook on oom_kill_process")
                && reason.contains("fentry")
                && reason.contains("kprobe"),
            "{scope}"
        ),
    }
}

/// A reader that has gone away (`oomscope doctor | head`) ends the output
/// quietly: no panic ("failed printing to stdout"), the command's own exit
/// code.
#[test]
fn output_into_a_closed_pipe_is_not_a_panic() {
    for args in [
        &["doctor", "--no-probe"][..],
        &["doctor", "--no-probe", "--json"][..],
        &["components"][..],
        &["print-config"][..],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        // Closed before oomscope writes: every write fails with EPIPE.
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_oomscope"))
            .args(args)
            .stdout(writer)
            .output()
            .expect("run oomscope");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            matches!(output.status.code(), Some(0..=2)),
            "{args:?}: {:?}\n{stderr}",
            output.status
        );
    }
}

/// Why a private mount namespace cannot be built here, if it cannot: the
/// tests below change mounts only inside one (`unshare --mount
/// --propagation private`), never the host's.
fn namespace_skip_reason() -> Option<String> {
    if !is_root() {
        return Some("needs root (CI runs as root)".into());
    }
    for tool in ["unshare", "setpriv", "mountpoint"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} (util-linux) is not installed"));
        }
    }
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Some("unshare --mount is refused here".into());
    }
    None
}

/// `script` run by sh in a private mount namespace, with the oomscope
/// binary as `$1` and `args` after it.
fn in_mount_namespace(script: &str, args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(script)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_oomscope"))
        .args(args);
    command
}

fn json_of(output: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// /sys/kernel/tracing made read-only (as a container's read-only hostPath
/// of it is: a read-only bind mount), in a namespace of its own.
const READ_ONLY_TRACEFS: &str = r#"set -e
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mount --bind /sys/kernel/tracing /sys/kernel/tracing
mount -o remount,bind,ro /sys/kernel/tracing
if (: > /sys/kernel/tracing/trace_marker) 2>/dev/null; then
    echo "/sys/kernel/tracing is still writable" >&2; exit 3
fi
bin=$1; shift
exec "$bin" "$@"
"#;

/// No tracefs at all (the namespace's copies of the mounts are removed),
/// and no CAP_SYS_ADMIN to mount one.
const NO_TRACEFS_NO_SYS_ADMIN: &str = r#"set -e
for dir in /sys/kernel/tracing /sys/kernel/debug/tracing /sys/kernel/debug; do
    while mountpoint -q "$dir"; do umount -l "$dir"; done
done
if grep -q ' tracefs ' /proc/self/mounts; then
    echo "a tracefs is still mounted" >&2; exit 3
fi
bin=$1; shift
exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin -- "$bin" "$@"
"#;

/// A read-only tracefs serves the agent: doctor says it is read-only and
/// enough, and really loads and attaches the program through it.
#[test]
fn read_only_tracefs_still_serves_the_probe() {
    if let Some(reason) = namespace_skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let output = in_mount_namespace(READ_ONLY_TRACEFS, &["doctor", "--json"])
        .output()
        .expect("run unshare");
    let report = json_of(&output);
    let tracefs = check(&report, "tracefs");
    assert_eq!(tracefs["status"], "OK", "{report:#}");
    assert!(
        tracefs["reason"]
            .as_str()
            .is_some_and(|r| r.contains("/sys/kernel/tracing (read-only): enough")),
        "{report:#}"
    );
    let mounts = report["tracefs"]["mounts"].as_array().expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["path"] == "/sys/kernel/tracing" && m["read_only"] == true),
        "{report:#}"
    );
    for name in ["tracepoint", "ebpf_probe", "exec_hook"] {
        assert_eq!(check(&report, name)["status"], "OK", "{name}: {report:#}");
    }
    assert_eq!(report["source"], "ebpf", "{report:#}");
    // The oom_kill_process hook: attached (fentry or kprobe), or the
    // reason for each; this kernel (lockdown=integrity, no CONFIG_KPROBES)
    // refuses both, Debian's allow fentry (tests/kernel_matrix.rs).
    let scope = check(&report, "scope_hook");
    let reason = scope["reason"].as_str().unwrap_or("");
    match scope["status"].as_str() {
        Some("OK") => assert!(
            reason.starts_with("fentry on oom_kill_process")
                || reason.starts_with("kprobe on oom_kill_process"),
            "{scope}"
        ),
        _ => assert!(
            reason.starts_with("no hook on oom_kill_process")
                && reason.contains("fentry")
                && reason.contains("kprobe"),
            "{scope}"
        ),
    }
}

/// No tracefs and no way to mount it: doctor says so with the errno and
/// the fix, and the agent falls back to the kernel log.
#[test]
fn tracefs_that_cannot_be_mounted_is_limited_with_the_fix() {
    if let Some(reason) = namespace_skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let output = in_mount_namespace(NO_TRACEFS_NO_SYS_ADMIN, &["doctor", "--json"])
        .output()
        .expect("run unshare");
    let report = json_of(&output);
    let tracefs = check(&report, "tracefs");
    assert_eq!(tracefs["status"], "LIMITED", "{report:#}");
    let reason = tracefs["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(
            "mounting it at /sys/kernel/tracing failed (EPERM: this process lacks CAP_SYS_ADMIN"
        ),
        "{report:#}"
    );
    let fix = tracefs["fix"].as_str().unwrap_or("");
    assert!(
        fix.contains("mount -t tracefs nodev /sys/kernel/tracing")
            && fix.contains("-v /sys/kernel/tracing:/sys/kernel/tracing:ro"),
        "{report:#}"
    );
    assert!(
        report["tracefs"]["mount_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("EPERM")),
        "{report:#}"
    );
    assert_eq!(check(&report, "ebpf_probe")["status"], "MISSING");
    assert_eq!(report["source"], "kmsg", "{report:#}");
    assert_eq!(output.status.code(), Some(1));
}

/// The agent where tracefs cannot be mounted: one warning naming the
/// failed mount, then it watches the kernel log (no crash).
#[test]
fn agent_without_tracefs_warns_once_and_uses_kmsg() {
    if let Some(reason) = namespace_skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "receivers:\n  oom: { mode: auto, events: null }\nexporters:\n  debug: {}\nservice:\n  \
         telemetry: { metrics: { address: \"\" } }\n  oom_score_adj: null\n  pipelines:\n    \
         logs: { receivers: [oom], exporters: [debug] }\n",
    )
    .expect("write config");
    let log = dir.path().join("agent.log");
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let config_arg = config.to_string_lossy().into_owned();
    let mut agent = in_mount_namespace(NO_TRACEFS_NO_SYS_ADMIN, &["--config", &config_arg])
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start the agent");
    // Killed on every exit of this test (also a failed assertion).
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let agent = Kill(&mut agent);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("watching for OOM kills") {
            break text;
        }
        if let Ok(Some(status)) = agent.0.try_wait() {
            panic!("the agent exited ({status}):\n{text}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not start watching:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    let tracefs_warnings: Vec<&&str> = warnings
        .iter()
        .filter(|l| {
            l.contains("tracefs is not mounted and mounting it at /sys/kernel/tracing failed")
        })
        .collect();
    assert_eq!(tracefs_warnings.len(), 1, "{text}");
    assert!(tracefs_warnings[0].contains("oom.source: kmsg"), "{text}");
    // The cause and the fix, in the one warning.
    assert!(
        tracefs_warnings[0].contains("EPERM: this process lacks CAP_SYS_ADMIN")
            && tracefs_warnings[0].contains("mount -t tracefs nodev /sys/kernel/tracing"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("watching for OOM kills")
            && l.contains("ebpf=false")
            && l.contains("kmsg=true")),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

/// The kernel's BTF hidden (an empty file bound over it, as on a kernel
/// built without `CONFIG_DEBUG_INFO_BTF`), in a namespace of its own.
const NO_BTF: &str = r#"set -e
empty=$(mktemp)
mount --bind "$empty" /sys/kernel/btf/vmlinux
if [ -s /sys/kernel/btf/vmlinux ]; then
    echo "/sys/kernel/btf/vmlinux still has BTF" >&2; exit 3
fi
bin=$1; shift
exec "$bin" "$@"
"#;

/// Without BTF the tracepoint program and the exec hook's command lines
/// still work; the hook on oom_kill_process and the exec hook's parent and
/// start time (offsets from BTF) are off, and doctor says why.
#[test]
fn without_btf_the_offset_based_parts_are_off_and_said_so() {
    if let Some(reason) = namespace_skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        println!("SKIPPED: this kernel has no BTF to hide");
        return;
    }
    let output = in_mount_namespace(NO_BTF, &["doctor", "--json"])
        .output()
        .expect("run unshare");
    let report = json_of(&output);
    for name in ["tracepoint", "ebpf_probe", "exec_hook"] {
        assert_eq!(check(&report, name)["status"], "OK", "{name}: {report:#}");
    }
    assert_eq!(report["source"], "ebpf", "{report:#}");
    let exec_hook = check(&report, "exec_hook")["reason"].as_str().unwrap_or("");
    assert!(
        !exec_hook.contains("parent and start"),
        "no BTF, no parent or start: {exec_hook}"
    );
    let scope = check(&report, "scope_hook");
    assert_eq!(scope["status"], "LIMITED", "{scope}");
    assert!(
        scope["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no kernel BTF")),
        "{scope}"
    );
}

/// Without CAP_PERFMON and CAP_SYS_ADMIN (dropped from every set by
/// setpriv, tracefs mounted beforehand): doctor names each missing
/// capability with the exact grant, says it is what blocks eBPF, and
/// chooses the kernel log.
#[test]
fn missing_capabilities_are_named_with_the_exact_grant() {
    if let Some(reason) = namespace_skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let output = in_mount_namespace(
        r#"set -e
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
bin=$1; shift
exec setpriv --inh-caps=-perfmon,-sys_admin --bounding-set=-perfmon,-sys_admin -- "$bin" "$@"
"#,
        &["doctor", "--json"],
    )
    .output()
    .expect("run unshare");
    let report = json_of(&output);
    let caps = check(&report, "capabilities");
    assert_eq!(caps["status"], "LIMITED", "{caps}");
    let reason = caps["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("CAP_PERFMON-") && reason.contains("CAP_SYS_ADMIN-"),
        "{caps}"
    );
    let fix = caps["fix"].as_str().unwrap_or("");
    assert!(
        fix.starts_with("grant CAP_PERFMON, CAP_SYS_ADMIN")
            && fix.contains("`--cap-add=PERFMON,SYS_ADMIN")
            && fix.contains("`securityContext.capabilities.add: [PERFMON, SYS_ADMIN")
            && fix.contains("`AmbientCapabilities=CAP_PERFMON CAP_SYS_ADMIN")
            && fix.contains("`setcap cap_perfmon,cap_sys_admin"),
        "{fix}"
    );
    // What blocks eBPF, with its own grant.
    let probe = check(&report, "ebpf_probe");
    assert_eq!(probe["status"], "MISSING", "{probe}");
    let why = probe["reason"].as_str().unwrap_or("");
    assert!(
        why.contains("eBPF is blocked: the capability CAP_PERFMON is missing")
            && why.contains("`--cap-add=PERFMON`"),
        "{probe}"
    );
    assert_eq!(report["source"], "kmsg", "{report:#}");
    assert_eq!(output.status.code(), Some(1));
}
