//! `oomscope doctor --json` on this machine: the report has its keys, and
//! the facts this project's CI kernel is known to have are reported OK.

use std::process::Command;

use serde_json::Value;

const CHECKS: [&str; 14] = [
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
