//! `oomscope analyze` end to end, the built binary on real text: every kill
//! of the real samples (tests/data/oom-reports, each with its public source)
//! in `--json`, the same from gzip'd copies, a directory and stdin; bad
//! input; `--otlp` and `--otlp-http` into a real receiver (the agent with an
//! `otlp` receiver and a file exporter); and three contained OOM kills on
//! this machine read back from `dmesg`, `dmesg -T` and a syslog-style file.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::oom::{oom_test_slot_blocking, MemoryCgroup, OomChild, OOM_LIMIT_BYTES};
use common::oomscope::Oomscope;
use common::otlp::{attr_str, json_attr, otlp_to_file_config, FileContents};
use common::{free_port, is_root, skip};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/oom-reports")
}

/// Runs `oomscope analyze ARGS`, with `stdin` piped in when given.
fn analyze(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .arg("analyze")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oomscope analyze");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        // Written from a thread: the child's stdout may fill meanwhile.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    child.wait_with_output().expect("wait for oomscope analyze")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON lines of a `--json` run (which must have succeeded).
fn json_records(output: &Output) -> Vec<Value> {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr:\n{}",
        text(&output.stderr)
    );
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// (victim pid, victim comm) of every kill, in order.
fn kills(records: &[Value]) -> Vec<(i64, String)> {
    records
        .iter()
        .filter(|r| r["kind"] == "kill")
        .map(|r| {
            let pid = r["attributes"]["process.pid"]
                .as_i64()
                .unwrap_or_else(|| panic!("process.pid is not an int: {r}"));
            let comm = r["attributes"]["oom.victim.comm"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (pid, comm)
        })
        .collect()
}

/// Every sample file with the kills its samples.json lists.
fn samples() -> Vec<(PathBuf, Vec<(i64, String)>)> {
    let mut out = Vec::new();
    for dir in ["old", "new"] {
        let dir = samples_dir().join(dir);
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(dir.join("samples.json")).expect("read samples.json"),
        )
        .expect("parse samples.json");
        for sample in manifest["samples"].as_array().expect("samples") {
            let file = dir.join(sample["file"].as_str().expect("file"));
            let want = sample["kills"]
                .as_array()
                .expect("kills")
                .iter()
                .map(|k| {
                    (
                        k["victim_pid"].as_i64().expect("victim_pid"),
                        k["victim_comm"].as_str().expect("victim_comm").to_owned(),
                    )
                })
                .collect();
            out.push((file, want));
        }
    }
    out
}

#[test]
fn every_kill_of_the_real_samples_is_in_the_json_output() {
    let samples = samples();
    assert!(samples.len() >= 20, "{} samples", samples.len());
    let mut total = 0;
    for (file, want) in &samples {
        let output = analyze(&["--json", &file.display().to_string()], None);
        let records = json_records(&output);
        assert_eq!(&kills(&records), want, "{}", file.display());
        for record in records.iter().filter(|r| r["kind"] == "kill") {
            assert_eq!(record["severity"], "ERROR");
            assert_eq!(record["file"], file.display().to_string());
            assert!(record["body"]
                .as_str()
                .is_some_and(|b| b.contains("Killed process")));
            let (first, last) = (record["first_line"].as_u64(), record["last_line"].as_u64());
            assert!(first.is_some() && first <= last, "{record}");
        }
        total += want.len();
    }
    assert!(total >= 50, "{total} kills");
}

/// Kills of a `--json` run keyed by file name (without `.gz`) and line
/// range: what does not depend on where the files were read from.
fn kills_by_place(records: &[Value]) -> Vec<(String, u64, u64, i64, String)> {
    let mut out: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "kill")
        .map(|r| {
            let file = Path::new(r["file"].as_str().unwrap_or_default())
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".gz").to_owned())
                .unwrap_or_default();
            (
                file,
                r["first_line"].as_u64().unwrap_or_default(),
                r["last_line"].as_u64().unwrap_or_default(),
                r["attributes"]["process.pid"].as_i64().unwrap_or_default(),
                r["attributes"]["oom.victim.comm"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn gzip_files_a_directory_and_stdin_give_the_same_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain, gz) = (dir.path().join("plain"), dir.path().join("gz"));
    std::fs::create_dir_all(plain.join("nested")).expect("mkdir");
    std::fs::create_dir(&gz).expect("mkdir");
    let samples = samples();
    let mut one_by_one = Vec::new();
    for (i, (file, _)) in samples.iter().enumerate() {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let data = std::fs::read(file).expect("read sample");
        // Half of them one level down: the walk goes into directories.
        let target = if i % 2 == 0 {
            plain.join(&name)
        } else {
            plain.join("nested").join(&name)
        };
        std::fs::write(target, &data).expect("copy sample");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&data).expect("gzip");
        std::fs::write(
            gz.join(format!("{name}.gz")),
            encoder.finish().expect("gzip"),
        )
        .expect("write gz");
        one_by_one.extend(json_records(&analyze(
            &["--json", &file.display().to_string()],
            None,
        )));
    }
    let want = kills_by_place(&one_by_one);
    let from_dir = json_records(&analyze(&["--json", &plain.display().to_string()], None));
    assert_eq!(
        kills_by_place(&from_dir),
        want,
        "a directory of the samples"
    );
    let from_gz = json_records(&analyze(&["--json", &gz.display().to_string()], None));
    assert_eq!(kills_by_place(&from_gz), want, "gzip'd samples");
    // A gzip'd file named on the command line, and stdin (`-` and nothing).
    let (file, expected) = &samples[0];
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let gz_file = gz.join(format!("{name}.gz"));
    assert_eq!(
        &kills(&json_records(&analyze(
            &["--json", &gz_file.display().to_string()],
            None
        ))),
        expected
    );
    let data = std::fs::read(file).expect("read sample");
    for args in [&["--json", "-"][..], &["--json"][..]] {
        let records = json_records(&analyze(args, Some(&data)));
        assert_eq!(&kills(&records), expected, "stdin with {args:?}");
        assert_eq!(records[0]["file"], "-");
    }
    let gz_data = std::fs::read(&gz_file).expect("read gz");
    assert_eq!(
        &kills(&json_records(&analyze(&["--json"], Some(&gz_data)))),
        expected,
        "gzip on stdin"
    );
}

#[test]
fn human_output_has_one_block_per_kill_and_a_summary() {
    let file = samples_dir().join("old/lkml-3.12-systemd-bash-sacrifice-child-sudo-dmesg.txt");
    let output = analyze(&["--color", "never", &file.display().to_string()], None);
    assert_eq!(output.status.code(), Some(0));
    let out = text(&output.stdout);
    // The child 27019 (sudo) was killed for bash, 26794, as the text states.
    assert!(
        out.contains("pid 27019 sudo  anon-rss 612.0 KiB  file-rss 1.9 MiB"),
        "{out}"
    );
    assert!(
        out.contains("selected   pid 26794 bash, score 0; the kernel killed its child 27019"),
        "{out}"
    );
    assert!(
        out.contains("trigger    systemd (pid 1) gfp_mask=0x200da order=0"),
        "{out}"
    );
    assert!(out.contains("tasks      largest by rss, 5 of 29:"), "{out}");
    assert!(
        out.contains("Summary: 1 OOM kill, 0 reports without a kill"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "no colour with --color never");
    let output = analyze(&["--color", "always", &file.display().to_string()], None);
    assert!(text(&output.stdout).contains("\x1b[1;31mOOM kill\x1b[0m"));
}

#[test]
fn bad_input_is_read_without_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Binary garbage (xorshift bytes: NULs, invalid UTF-8) with report words.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut garbage = Vec::new();
    while garbage.len() < 2 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        garbage.extend_from_slice(&state.to_le_bytes());
        if state.is_multiple_of(61) {
            garbage
                .extend_from_slice(b"\nMemory cgroup out of memory: Killed process \xff (\x00) \n");
        }
    }
    // A real report (of this machine's kernel) cut before its kill, then a
    // 10 MiB line.
    let kmsg = std::fs::read_to_string(samples_dir().join("../kmsg-memcg-oom.txt"))
        .expect("read kmsg sample");
    let cut: Vec<&str> = kmsg
        .lines()
        .take_while(|l| !l.contains("Killed process"))
        .collect();
    let mut truncated = cut.join("\n").into_bytes();
    truncated.push(b'\n');
    truncated.extend(std::iter::repeat_n(b'y', 10 << 20));
    truncated.push(b'\n');
    let (garbage_file, truncated_file) = (dir.path().join("garbage"), dir.path().join("cut.log"));
    std::fs::write(&garbage_file, &garbage).expect("write");
    std::fs::write(&truncated_file, &truncated).expect("write");
    let output = analyze(
        &[
            &garbage_file.display().to_string(),
            &truncated_file.display().to_string(),
        ],
        None,
    );
    let (out, err) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.contains("WARN OOM report without a kill"), "{out}");
    assert!(out.contains("the text ends first"), "{out}");
    assert!(out.contains("1 line cut at 1.0 MiB"), "{out}");
    // In a directory, the binary file is skipped and says why.
    let output = analyze(&[&dir.path().display().to_string()], None);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(
        err.contains("skipped") && err.contains("garbage: binary"),
        "{err}"
    );
    // A missing file is named; nothing read is exit 2.
    let output = analyze(&["/nonexistent/oomscope-analyze.log"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("/nonexistent/oomscope-analyze.log: No such file"));
}

/// A 5 GB file (sparse: a real report at its start, middle and end, NUL
/// bytes between, which are one 2.5 GB "line" each) is read to its end in
/// bounded memory: the three kills, and the child's peak RSS far below the
/// file.
#[test]
// Reaped with wait4, which gives this child's own rusage.
#[allow(clippy::zombie_processes)]
fn a_five_gigabyte_file_is_read_in_bounded_memory() {
    use std::io::{Seek as _, SeekFrom};
    const SIZE: u64 = 5_000_000_000;
    /// Far above what analyze holds (lines cut at 1 MiB, bodies at 256
    /// KiB, 64 held reports) and far below the file.
    const MAX_RSS_KIB: i64 = 256 * 1024;
    let (sample, want) = &samples()[0];
    let report = std::fs::read(sample).expect("read sample");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.log");
    let mut file = std::fs::File::create(&path).expect("create");
    for offset in [0, SIZE / 2, SIZE - report.len() as u64] {
        file.seek(SeekFrom::Start(offset)).expect("seek");
        file.write_all(b"\n").expect("write");
        file.write_all(&report).expect("write");
    }
    drop(file);
    assert!(std::fs::metadata(&path).expect("stat").len() >= SIZE);
    let child = Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .args(["analyze", "--json", &path.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oomscope analyze");
    let pid = i32::try_from(child.id()).expect("pid");
    let (mut stdout, mut stderr) = (child.stdout.expect("stdout"), child.stderr.expect("stderr"));
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut out).expect("read stdout");
    // wait4 for this child's own peak RSS (other tests' children run too).
    let mut status = 0;
    // SAFETY: plain syscall writing into locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let err = text(&err.join().expect("stderr reader"));
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}: {err}"
    );
    let records: Vec<Value> = text(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let mut three = want.clone();
    three.extend(want.iter().cloned());
    three.extend(want.iter().cloned());
    assert_eq!(kills(&records), three, "{err}");
    assert!(
        usage.ru_maxrss < MAX_RSS_KIB,
        "peak RSS {} KiB for a {SIZE}-byte file",
        usage.ru_maxrss
    );
}

/// No root needed: as `nobody` (uid 65534, no groups), analyze reads a
/// directory of gzip'd and plain samples and gives every kill; a file only
/// root may read is named with its error and the others are still read.
#[test]
fn analyze_runs_as_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = samples();
    let (first, want_first) = &samples[0];
    let (second, want_second) = &samples[1];
    let data = std::fs::read(first).expect("read sample");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&data).expect("gzip");
    std::fs::write(dir.path().join("a.log.gz"), encoder.finish().expect("gzip")).expect("write");
    std::fs::copy(second, dir.path().join("b.log")).expect("copy");
    let private = dir.path().join("private.log");
    std::fs::copy(first, &private).expect("copy");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut command = Command::new(env!("CARGO_BIN_EXE_oomscope"));
    command
        .args(["analyze", "--json", &dir.path().display().to_string()])
        .stdin(Stdio::null());
    if is_root() {
        // std drops the supplementary groups when it sets the uid as root.
        command.uid(NOBODY).gid(NOBODY);
    }
    let output = command.output().expect("run oomscope analyze");
    let err = text(&output.stderr);
    // 1: read in part (the private file), as documented.
    let code = if is_root() { 1 } else { 0 };
    assert_eq!(output.status.code(), Some(code), "{err}");
    let mut want = want_first.clone();
    want.extend(want_second.iter().cloned());
    let records: Vec<Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let mut got = kills(&records);
    got.sort();
    want.sort();
    assert_eq!(got, want, "{err}");
    if is_root() {
        assert!(
            err.contains("private.log") && err.contains("Permission denied"),
            "{err}"
        );
    }
}

/// Colour when stdout is a terminal (a pseudo-terminal here), none when it
/// is a pipe, with the default `--color auto`.
#[test]
fn colour_only_when_stdout_is_a_terminal() {
    use std::io::Read as _;
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let file = samples_dir().join("old/lkml-3.12-systemd-bash-sacrifice-child-sudo-dmesg.txt");
    let piped = analyze(&[&file.display().to_string()], None);
    assert_eq!(piped.status.code(), Some(0));
    assert!(text(&piped.stdout).contains("OOM kill"));
    assert!(
        !text(&piped.stdout).contains('\x1b'),
        "no colour into a pipe"
    );

    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes the two descriptors; the other arguments may
    // be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .args(["analyze", &file.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oomscope analyze");
    // The child holds the only slave descriptor: reading ends (EIO) when it
    // exits.
    let mut master = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let out = text(&out);
    assert!(out.contains("\x1b[1;31mOOM kill\x1b[0m"), "{out}");
}

/// The records `--otlp` (gRPC) and `--otlp-http` sent arrive at the agent's
/// OTLP receiver, with the report record's attribute types.
#[test]
fn otlp_and_otlp_http_deliver_the_records_to_a_real_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("received.jsonl");
    let (grpc, http) = (free_port(), free_port());
    let config = otlp_to_file_config(
        &[
            format!("grpc: {{ endpoint: \"127.0.0.1:{grpc}\" }}"),
            format!("http: {{ endpoint: \"127.0.0.1:{http}\" }}"),
        ],
        &out,
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(([127, 0, 0, 1], grpc).into(), TIMEOUT);
    agent.wait_ready(([127, 0, 0, 1], http).into(), TIMEOUT);

    // A syslog sample (its host is named) over gRPC, a dmesg one over HTTP.
    let syslog = samples_dir().join("new/aks-syslog-kubepods-cgroupv2-stress-ng.txt");
    let dmesg = samples_dir().join("old/lkml-3.12-systemd-bash-sacrifice-child-sudo-dmesg.txt");
    let sent = analyze(
        &[
            "--json",
            "--otlp",
            &format!("http://127.0.0.1:{grpc}"),
            &syslog.display().to_string(),
        ],
        None,
    );
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent.stderr));
    assert!(
        text(&sent.stderr).contains("sent 2 records over OTLP"),
        "{}",
        text(&sent.stderr)
    );
    let sent = analyze(
        &[
            "--otlp-http",
            &format!("http://127.0.0.1:{http}"),
            &dmesg.display().to_string(),
        ],
        None,
    );
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent.stderr));

    let got = FileContents::wait_for(&out, TIMEOUT, |c| {
        let pids: Vec<_> = c
            .logs
            .iter()
            .filter_map(|r| attr_str(r, "process.pid"))
            .collect();
        pids.contains(&"183960".to_owned()) && pids.contains(&"27019".to_owned())
    });
    let mut by_pid = BTreeMap::new();
    for (record, resource) in got.logs.iter().zip(&got.log_resources) {
        if let Some(pid) = json_attr(&record["attributes"], "process.pid") {
            // An int, as the oom receiver sends it (OTLP JSON writes int64
            // as a string in `intValue`).
            assert!(
                pid["intValue"].is_string(),
                "process.pid is not an int: {pid}"
            );
            by_pid.insert(
                attr_str(record, "process.pid").unwrap_or_default(),
                (record, resource),
            );
        }
    }
    let (record, resource) = by_pid.get("183960").unwrap_or_else(|| panic!("{got:#?}"));
    assert_eq!(
        attr_str(record, "oom.victim.comm").as_deref(),
        Some("stress-ng-vm")
    );
    assert_eq!(
        attr_str(record, "oom.memcg.limit").as_deref(),
        Some("104857600")
    );
    assert_eq!(record["severityText"], "ERROR");
    assert_eq!(
        attr_str(resource, "service.name").as_deref(),
        Some("oomscope-analyze")
    );
    assert_eq!(
        attr_str(resource, "host.name").as_deref(),
        Some("aks-nodepool1-24207654-vmss000001")
    );
    let (record, resource) = by_pid.get("27019").unwrap_or_else(|| panic!("{got:#?}"));
    assert_eq!(
        attr_str(record, "oom.selected.pid").as_deref(),
        Some("26794")
    );
    assert_eq!(attr_str(resource, "host.name"), None, "dmesg names no host");
    // The report without a kill of the syslog sample arrived too, as WARN.
    assert!(
        got.logs
            .iter()
            .any(|r| r["severityText"] == "WARN" && attr_str(r, "oom.report.incomplete").is_some()),
        "{got:#?}"
    );
    agent.stop(TIMEOUT);
}

#[test]
fn a_failed_otlp_send_exits_non_zero() {
    // A port nothing listens on (reserved for this test, never bound).
    let port = free_port();
    let file = samples_dir().join("old/lkml-3.12-systemd-bash-sacrifice-child-sudo-dmesg.txt");
    let output = analyze(
        &[
            "--otlp",
            &format!("http://127.0.0.1:{port}"),
            &file.display().to_string(),
        ],
        None,
    );
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("sending over OTLP failed"), "{err}");
}

/// Syslog's `Mon DD HH:MM:SS` of a Unix time in this host's zone.
fn syslog_stamp(unix_seconds: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t: libc::time_t = unix_seconds;
    // SAFETY: localtime_r writes only into `tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    assert!(!unsafe { libc::localtime_r(&t, &mut tm) }.is_null());
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[usize::try_from(tm.tm_mon).unwrap_or(0) % 12],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Unix time of boot (CLOCK_REALTIME - CLOCK_BOOTTIME, as `dmesg -T`).
fn boot_unix_seconds() -> f64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: plain syscall writing into a local.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    };
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_BOOTTIME)
}

/// `dmesg` output as rsyslog's imklog writes it to /var/log/kern.log:
/// `Mon DD HH:MM:SS host kernel: ` before each `[  uptime] message` line.
fn as_syslog(dmesg: &str, host: &str) -> String {
    let boot = boot_unix_seconds();
    let mut out = String::new();
    let mut stamp = syslog_stamp(boot as i64);
    for line in dmesg.lines() {
        let uptime = line
            .strip_prefix('[')
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(seconds, _)| seconds.trim().parse::<f64>().ok());
        if let Some(uptime) = uptime {
            stamp = syslog_stamp((boot + uptime) as i64);
        }
        out.push_str(&format!("{stamp} {host} kernel: {line}\n"));
    }
    out
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// THE "Done when" of issue 13: three contained OOM kills on this machine,
/// each in its own memory cgroup, read back from the kernel log as `dmesg`,
/// `dmesg -T` and a syslog file print it; `oomscope analyze` finds each with
/// its victim's pid, name and the cgroup whose limit was hit.
#[test]
fn three_contained_kills_are_found_in_dmesg_dmesg_t_and_syslog_text() {
    const TEST: &str = "three_contained_kills_are_found_in_dmesg_dmesg_t_and_syslog_text";
    if !is_root() {
        return skip(TEST, "needs root (memory cgroups to contain the OOM kills)");
    }
    // Held until the kernel log is read back: no other test's kill in
    // between, and nobody overruns the log.
    let _slot = oom_test_slot_blocking();
    let mut kills: Vec<(i32, String)> = Vec::new();
    let mut cgroups = Vec::new();
    for _ in 0..3 {
        let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
        else {
            return skip(TEST, "no memory cgroup controller to contain an OOM kill");
        };
        let mut child: OomChild = cgroup.spawn_allocator().expect("spawn the allocator");
        let status = child.wait().expect("wait for the allocator");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the allocator was not OOM-killed: {status}"
        );
        kills.push((child.pid(), cgroup.cgroup_path()));
        cgroups.push((cgroup, child));
    }
    let run = |args: &[&str]| {
        Command::new("dmesg")
            .args(args)
            .output()
            .map_err(|e| e.to_string())
            .and_then(|output| {
                if output.status.success() {
                    Ok(text(&output.stdout))
                } else {
                    Err(text(&output.stderr))
                }
            })
    };
    let dmesg = match run(&[]) {
        Ok(text) => text,
        Err(e) => return skip(TEST, format!("dmesg cannot be read here: {e}")),
    };
    let dmesg_t = match run(&["-T"]) {
        Ok(text) => text,
        Err(e) => return skip(TEST, format!("dmesg -T cannot be read here: {e}")),
    };
    // journald does not run on this machine kind (PID 1 is not systemd):
    // the syslog file is built the way rsyslog writes kern.log, from the
    // dmesg lines with their wall-clock times.
    let journald = Path::new("/run/systemd/journal/socket").exists();
    let syslog = if journald {
        let output = Command::new("journalctl")
            .args(["-k", "-o", "short", "--no-pager", "-b"])
            .output()
            .expect("run journalctl");
        text(&output.stdout)
    } else {
        // Straight to stderr (the harness does not capture it): every run
        // says how the file was made.
        let _ = writeln!(
            std::io::stderr(),
            "{TEST}: journald is not running here; the syslog file is `Mon DD HH:MM:SS host kernel: ` + each dmesg line"
        );
        as_syslog(&dmesg, &hostname())
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in [
        ("dmesg.txt", &dmesg),
        ("dmesg-T.txt", &dmesg_t),
        ("kern.log", &syslog),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write the kernel log text");
        let path = path.display().to_string();
        let records = json_records(&analyze(&["--json", &path], None));
        for (pid, cgroup) in &kills {
            // The last kill of that pid in the log is this test's (pids are
            // reused: pid_max may be 32768, and the log keeps older kills).
            let found: Vec<&Value> = records
                .iter()
                .filter(|r| r["kind"] == "kill" && r["attributes"]["process.pid"] == *pid)
                .collect();
            let Some(kill) = found.last() else {
                panic!("{name}: no kill of {pid} among {} records", records.len());
            };
            let attributes = &kill["attributes"];
            assert_eq!(
                attributes["oom.victim.comm"], "python3",
                "{name}: {attributes}"
            );
            assert_eq!(
                attributes["oom.memcg"],
                cgroup.as_str(),
                "{name}: {attributes}"
            );
            assert_eq!(attributes["oom.victim.cgroup"], cgroup.as_str(), "{name}");
            assert_eq!(
                attributes["oom.memcg.limit"], OOM_LIMIT_BYTES,
                "{name}: {attributes}"
            );
            if name != "dmesg.txt" {
                assert!(
                    kill["time"].is_string(),
                    "{name}: a wall-clock time: {kill}"
                );
            }
        }
        // The human blocks name each victim and its cgroup.
        let output = analyze(&["--color", "never", &path], None);
        let out = text(&output.stdout);
        for (pid, cgroup) in &kills {
            assert!(
                out.contains(&format!("pid {pid} python3")),
                "{name}:\n{out}"
            );
            assert!(
                out.contains(&format!("cgroup     {cgroup}: usage")),
                "{name}:\n{out}"
            );
        }
    }
    drop(cgroups);
}
