//! The kernel matrix: oomscope on other kernels than this host's, each booted
//! under qemu (TCG: KVM cannot run them here) from Debian's cloud kernel
//! packages (fetched with `apt-get download` into
//! `$OOMSCOPE_TOOLS_DIR/kernels`, unpacked with `dpkg-deb -x`, no install, no
//! modules) with an initramfs built here: busybox-static, the static
//! allocator (`common/alloc.c`), the oomscope binary under test (debug info
//! stripped) with the libraries `ldd` lists, and `/init`
//! (`data/kernel_matrix_init.sh`).
//!
//! One boot per kernel does every step: `oomscope doctor --json`; under
//! cgroup v2 a contained OOM kill with the agent in `mode: auto`, then one
//! with the agent in `mode: kmsg`; where the kernel has the v1 memory
//! controller (`CONFIG_MEMCG_V1`, gone from Debian's 6.12) a kill under v1
//! in each mode.
//! The guest prints the agent's records and the kernel log on the serial
//! console; here each record must equal the kernel's "Killed process" line
//! and carry the trigger, constraint, memcg, its limit and the victim's
//! command line, from eBPF in `auto` mode (where doctor says it loads) and
//! from the kernel log in `kmsg` mode, and its incident: an id, and the
//! cgroup's limit and counters (v2 `memory.events`, v1 `memory.failcnt`)
//! read right after the kill.
//!
//! This host's own kernel runs natively, in its own memory hierarchy (v1
//! here): a contained kill of the same allocator with an agent in `mode:
//! auto`, then in `mode: kmsg`, each checked like the guests' kills.
//!
//! Ignored by a plain `cargo test` (it takes minutes); `scripts/test.sh`
//! runs it (`--include-ignored`), and scripts/setup.sh installs qemu.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::otlp::attr_str;

/// One boot of a guest, to power-off: about 30 s under TCG on an idle
/// machine; generous for a loaded CI machine, and a hung guest fails the
/// test with its console rather than hanging CI.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The limit of the test cgroups (`LIMIT` in the guest's init script; the
/// host's kills use the same).
const GUEST_LIMIT_BYTES: u64 = 32 * 1024 * 1024;

/// A bound on the host's waits (agent ready, its record): only there so a
/// broken agent fails the test instead of hanging it.
const HOST_TIMEOUT: Duration = Duration::from_secs(120);

const INIT_SCRIPT: &str = include_str!("data/kernel_matrix_init.sh");

/// A Debian kernel series: the newest `linux-image-<prefix>*<suffix>` that
/// apt offers (or, without apt lists, the one in the cache).
struct Series {
    label: &'static str,
    prefix: &'static str,
    suffix: &'static str,
}

const SERIES: [Series; 2] = [
    Series {
        label: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64-unsigned",
    },
    Series {
        label: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "-cloud-amd64-unsigned",
    },
];

#[test]
#[ignore = "boots kernels under qemu (minutes); scripts/test.sh runs it"]
fn kernel_matrix() {
    const TEST: &str = "kernel_matrix";
    let started = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let alloc = work.path().join("alloc");
    common::alloc::build_static(&alloc);

    // This host first: it needs no qemu.
    let mut failures = String::new();
    let (mut rows, host_problems) = host_kills(&alloc);
    if !host_problems.is_empty() {
        let _ = writeln!(
            failures,
            "this host (native):\n  {}",
            host_problems.join("\n  ")
        );
    }
    let mut kernels = Vec::new();
    match qemu_available() {
        Err(why) => common::skip(TEST, why),
        Ok(()) => {
            for series in &SERIES {
                match fetch_kernel(series) {
                    Ok(kernel) => kernels.push(kernel),
                    Err(why) => common::skip(&format!("{TEST} ({})", series.label), why),
                }
            }
            if kernels.is_empty() {
                common::skip(TEST, "no kernel package could be had (see above)");
            }
        }
    }
    let initramfs = work.path().join("initramfs.cpio");
    if !kernels.is_empty() {
        build_initramfs(&initramfs, work.path(), &alloc);
    }
    for kernel in &kernels {
        let boot_started = Instant::now();
        let console = match boot(kernel, &initramfs) {
            Ok(console) => console,
            Err(e) => {
                let _ = writeln!(failures, "{}: {e}", kernel.release);
                rows.push(Row {
                    kernel: format!("{} (qemu)", kernel.release),
                    cgroup: "-".into(),
                    mode: "-".into(),
                    hooks: "-".into(),
                    doctor: "-".into(),
                    complete: "no: the boot failed (below)".into(),
                });
                continue;
            }
        };
        let seconds = boot_started.elapsed().as_secs_f64();
        // For a look at everything the guest printed.
        if let Some(dir) = std::env::var_os("OOMSCOPE_MATRIX_CONSOLE_DIR") {
            let path = Path::new(&dir).join(format!("{}.console", kernel.release));
            std::fs::write(&path, &console).expect("write the console");
            eprintln!("console of {}: {}", kernel.release, path.display());
        }
        let guest = Guest::parse(&console);
        let (kernel_rows, problems) = check_guest(kernel, &guest, seconds);
        rows.extend(kernel_rows);
        if !problems.is_empty() {
            let _ = writeln!(
                failures,
                "{}:\n  {}\nconsole:\n{console}",
                kernel.release,
                problems.join("\n  ")
            );
        }
    }
    print_table(&rows, started.elapsed());
    assert!(failures.is_empty(), "kernel matrix failures:\n{failures}");
}

// ---------------------------------------------------------------- kernels

struct Kernel {
    /// `6.1.0-57-cloud-amd64`
    release: String,
    vmlinuz: PathBuf,
    /// Whether its config has the v1 memory controller.
    memcg_v1: bool,
}

fn qemu_available() -> Result<(), String> {
    match Command::new("qemu-system-x86_64").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "qemu-system-x86_64 --version failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!(
            "qemu-system-x86_64 not found ({e}); scripts/setup.sh installs it (apt-get install qemu-system-x86)"
        )),
    }
}

fn kernels_dir() -> PathBuf {
    common::tools_dir().join("kernels")
}

/// The newest package of `series` that apt offers, by Debian version order
/// of the names' numbers.
fn newest_package(series: &Series) -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["pkgnames", series.prefix])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| name.ends_with(series.suffix))
        .max_by_key(|name| version_key(name))
        .map(str::to_owned)
}

/// The numbers in a package name, in order: `6.12.118+deb12` < `6.12.2`
/// is wrong as text, right as numbers.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The unpacked kernel of a package in the cache, if there.
fn cached_kernel(package_dir: &Path) -> Option<Kernel> {
    let boot = package_dir.join("boot");
    let mut vmlinuz = None;
    let mut config = None;
    for entry in std::fs::read_dir(&boot).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            vmlinuz = Some((release.to_owned(), entry.path()));
        } else if name.starts_with("config-") {
            config = std::fs::read_to_string(entry.path()).ok();
        }
    }
    let (release, vmlinuz) = vmlinuz?;
    let config = config?;
    // CONFIG_MEMCG_V1 exists from 6.12 on; before, v1 came with CONFIG_MEMCG.
    let memcg_v1 = config.lines().any(|l| l == "CONFIG_MEMCG_V1=y")
        || (config.lines().any(|l| l == "CONFIG_MEMCG=y") && !config.contains("CONFIG_MEMCG_V1"));
    Some(Kernel {
        release,
        vmlinuz,
        memcg_v1,
    })
}

/// The newest kernel of `series`: from the cache, or fetched with `apt-get
/// download` and unpacked with `dpkg-deb -x` (only `boot/` is kept). Older
/// packages of the series are removed from the cache.
fn fetch_kernel(series: &Series) -> Result<Kernel, String> {
    let dir = kernels_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut package = newest_package(series);
    if package.is_none() && common::is_root() {
        // No apt lists yet (a fresh machine): read them once.
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        package = newest_package(series);
    }
    let cached_of_series = || -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(series.prefix) && n.ends_with(series.suffix))
            })
            .collect()
    };
    let Some(package) = package else {
        // apt knows none: a kernel fetched before still serves.
        let mut cached = cached_of_series();
        cached.sort_by_key(|p| version_key(&p.to_string_lossy()));
        return cached
            .iter()
            .rev()
            .find_map(|p| cached_kernel(p))
            .ok_or_else(|| {
                format!(
                    "apt-cache offers no {}*{} package and none is in {}",
                    series.prefix,
                    series.suffix,
                    dir.display()
                )
            });
    };
    let package_dir = dir.join(&package);
    if let Some(kernel) = cached_kernel(&package_dir) {
        return Ok(kernel);
    }
    let download = tempfile::tempdir_in(&dir).map_err(|e| format!("tempdir: {e}"))?;
    let out = Command::new("apt-get")
        .args(["download", "-q", &package])
        .current_dir(download.path())
        .output()
        .map_err(|e| format!("apt-get download {package}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "apt-get download {package} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let deb = std::fs::read_dir(download.path())
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {package} left no .deb"))?;
    let unpacked = download.path().join("root");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .map_err(|e| format!("dpkg-deb: {e}"))?;
    if !status.success() {
        return Err(format!("dpkg-deb -x {} failed", deb.display()));
    }
    let staged = download.path().join("package");
    std::fs::create_dir(&staged).map_err(|e| e.to_string())?;
    std::fs::rename(unpacked.join("boot"), staged.join("boot")).map_err(|e| e.to_string())?;
    for old in cached_of_series() {
        let _ = std::fs::remove_dir_all(old);
    }
    // Another test run may have unpacked it meanwhile: then its copy serves.
    let moved = std::fs::rename(&staged, &package_dir);
    cached_kernel(&package_dir).ok_or_else(|| match moved {
        Err(e) => format!("move into {}: {e}", package_dir.display()),
        Ok(()) => format!("{package} has no boot/vmlinuz-* with its config"),
    })
}

// ---------------------------------------------------------------- initramfs

/// A newc cpio archive (what the kernel unpacks as an initramfs), written
/// entry by entry.
struct Cpio {
    out: std::io::BufWriter<std::fs::File>,
    inode: u32,
}

impl Cpio {
    fn create(path: &Path) -> Cpio {
        let file = std::fs::File::create(path).expect("create the initramfs");
        Cpio {
            out: std::io::BufWriter::new(file),
            inode: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let name_size = name.len() + 1;
        let fields = [
            self.inode,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            u32::try_from(data.len()).expect("a file under 4 GiB"),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name_size).expect("a short name"),
            0,
        ];
        self.inode += 1;
        let mut header = String::from("070701");
        for field in fields {
            let _ = write!(header, "{field:08X}");
        }
        let pad = |len: usize| vec![0u8; (4 - len % 4) % 4];
        self.out.write_all(header.as_bytes()).expect("write");
        self.out.write_all(name.as_bytes()).expect("write");
        self.out.write_all(&[0]).expect("write");
        self.out
            .write_all(&pad(header.len() + name_size))
            .expect("write");
        self.out.write_all(data).expect("write");
        self.out.write_all(&pad(data.len())).expect("write");
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), data);
    }

    fn finish(mut self) {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out.flush().expect("write the initramfs");
    }
}

/// The guest's initramfs: /init, busybox, /alloc, /bin/oomscope (debug info
/// stripped) and the libraries it links.
fn build_initramfs(path: &Path, work: &Path, alloc: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("busybox-static (scripts/setup.sh installs it)");
    let oomscope = work.join("oomscope");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(env!("CARGO_BIN_EXE_oomscope"))
        .arg(&oomscope)
        .status()
        .expect("run objcopy (binutils)");
    assert!(status.success(), "objcopy --strip-debug failed");

    let mut cpio = Cpio::create(path);
    let mut dirs: Vec<String> = ["bin", "dev", "proc", "sys", "tmp"]
        .map(String::from)
        .to_vec();
    let libraries = linked_libraries(&oomscope);
    for (guest_path, _) in &libraries {
        let mut parent = Path::new(guest_path.trim_start_matches('/'));
        let mut chain = Vec::new();
        while let Some(p) = parent.parent().filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_string_lossy().into_owned());
            parent = p;
        }
        for dir in chain.into_iter().rev() {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    for dir in &dirs {
        cpio.dir(dir);
    }
    cpio.entry("dev/console", 0o020600, (5, 1), &[]);
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    cpio.file("bin/busybox", 0o755, &read(Path::new(busybox)));
    cpio.file("alloc", 0o755, &read(alloc));
    cpio.file("bin/oomscope", 0o755, &read(&oomscope));
    for (guest_path, host_path) in &libraries {
        cpio.file(guest_path.trim_start_matches('/'), 0o755, &read(host_path));
    }
    cpio.finish();
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The libraries `ldd` lists for `binary`: (path the loader looks for, file
/// here). The vDSO has no file.
fn linked_libraries(binary: &Path) -> Vec<(String, PathBuf)> {
    let out = Command::new("ldd").arg(binary).output().expect("run ldd");
    assert!(out.status.success(), "ldd {} failed", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let line = line.trim();
            let path = match line.split_once(" => ") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/')
                .then(|| (path.to_owned(), PathBuf::from(path)))
        })
        .collect()
}

// ---------------------------------------------------------------- boot

/// Boots `kernel` with the initramfs to power-off; its serial console.
fn boot(kernel: &Kernel, initramfs: &Path) -> Result<String, String> {
    // Not niced: on a loaded machine a niced emulator starves and its guest
    // misses its timers; the boot's own time bound is what protects CI.
    let mut child = Command::new("qemu-system-x86_64")
        // One vCPU: with two, a guest once hung for good in a soft lockup
        // of both vCPUs as an agent attached its programs (fentry and the
        // tracepoints, right after a kprobe on the same function was
        // detached) under TCG (seen in a CI run; not on a second try).
        // Cross-CPU code patching has nothing to wait for on one CPU.
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "1024"])
        .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        // no_timer_check: on a loaded host the emulated guest's IO-APIC timer
        // check can miss its ticks and panic ("IO-APIC + timer doesn't
        // work!"): seen under stress-ng; the check proves nothing here.
        .args(["-append", "console=ttyS0 panic=-1 no_timer_check"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn qemu-system-x86_64: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut console = Vec::new();
        let _ = stdout.read_to_end(&mut console);
        console
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).replace('\r', "");
    let qemu_stderr = err_reader.join().unwrap_or_default();
    match status {
        None => Err(format!(
            "the guest did not power off within {BOOT_TIMEOUT:?} (qemu killed); console:\n{console}\nqemu stderr:\n{qemu_stderr}"
        )),
        Some(status) if !status.success() => Err(format!(
            "qemu exited with {status}; console:\n{console}\nqemu stderr:\n{qemu_stderr}"
        )),
        Some(_) if !console.lines().any(|l| l == "@@MATRIX done") => Err(format!(
            "the guest stopped before its last step; console:\n{console}\nqemu stderr:\n{qemu_stderr}"
        )),
        Some(_) => Ok(console),
    }
}

/// What the guest printed: `@@MATRIX ...` facts and named blocks.
struct Guest {
    facts: Vec<String>,
    blocks: HashMap<String, String>,
}

impl Guest {
    /// Reads the console. A kernel message that reaches the console (the
    /// guest sends all but emergencies to the log only) is left out of every
    /// block but the kernel log's own.
    fn parse(console: &str) -> Guest {
        let mut facts = Vec::new();
        let mut blocks = HashMap::new();
        let mut open: Option<(String, String)> = None;
        for line in console.lines() {
            if let Some((name, text)) = open.as_mut() {
                if line.strip_prefix("@@MATRIX-END ") == Some(name.as_str()) {
                    let (name, text) = open.take().expect("open block");
                    blocks.insert(name, text);
                } else if name != "dmesg" && is_kernel_message(line) {
                    continue;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            } else if let Some(name) = line.strip_prefix("@@MATRIX-BEGIN ") {
                open = Some((name.to_owned(), String::new()));
            } else if let Some(fact) = line.strip_prefix("@@MATRIX ") {
                facts.push(fact.to_owned());
            }
        }
        Guest { facts, blocks }
    }

    /// The rest of the first fact that starts with `prefix`.
    fn fact(&self, prefix: &str) -> Option<&str> {
        self.facts.iter().find_map(|f| f.strip_prefix(prefix))
    }

    fn block(&self, name: &str) -> &str {
        self.blocks.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A kernel console line: `[    7.157055] ...`.
fn is_kernel_message(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .is_some_and(|(stamp, _)| {
            let stamp = stamp.trim_start();
            !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
}

// ---------------------------------------------------------------- checks

/// One line of the table.
struct Row {
    kernel: String,
    cgroup: String,
    mode: String,
    hooks: String,
    doctor: String,
    complete: String,
}

/// The kernel's "Killed process" line for a pid, in kB as printed.
struct KilledLine {
    comm: String,
    figures: Vec<(&'static str, Option<u64>)>,
    line: String,
}

fn killed_line(dmesg: &str, pid: u32) -> Option<KilledLine> {
    let needle = format!("Killed process {pid} (");
    // The last: on a long-running host the pid may have been killed before.
    let line = dmesg.lines().rev().find(|l| l.contains(&needle))?;
    let after = &line[line.find(&needle)? + needle.len()..];
    let comm = after.split(')').next()?.to_owned();
    let field = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    Some(KilledLine {
        comm,
        figures: vec![
            ("oom.victim.total_vm", field("total-vm:")),
            ("oom.victim.anon_rss", field("anon-rss:")),
            ("oom.victim.file_rss", field("file-rss:")),
            ("oom.victim.shmem_rss", field("shmem-rss:")),
            ("oom.victim.pgtables", field("pgtables:")),
        ],
        line: line.to_owned(),
    })
}

/// Every `linux.oom.kill` record in a file exporter's output.
fn kill_records(jsonl: &str) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    for line in jsonl.lines() {
        let Ok(request) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a console line that is not the exporter's
        };
        for rl in request["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for lr in sl["logRecords"].as_array().into_iter().flatten() {
                    if lr["eventName"] == "linux.oom.kill" {
                        records.push(lr.clone());
                    }
                }
            }
        }
    }
    records
}

/// Doctor's verdict in short: the source it chose, its exit status, and
/// the checks that are not OK.
fn doctor_verdict(report: &serde_json::Value) -> String {
    let source = report["source"].as_str().unwrap_or("?");
    let exit = report["exit_code"].as_i64().unwrap_or(-1);
    let not_ok: Vec<String> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] != "OK")
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let mut verdict = format!("source {source}, exit {exit}");
    if !not_ok.is_empty() {
        let _ = write!(verdict, " ({})", not_ok.join(", "));
    }
    verdict
}

fn doctor_check_ok(report: &serde_json::Value, name: &str) -> bool {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name && c["status"] == "OK")
}

/// This host's own kernel, natively: doctor, then in its memory hierarchy
/// (v1 here, v2 elsewhere) a contained kill of `alloc` with an agent in
/// `mode: auto` and one in `mode: kmsg`, each record checked as a guest's.
/// The table's rows and the problems.
fn host_kills(alloc: &Path) -> (Vec<Row>, Vec<String>) {
    const TEST: &str = "kernel_matrix (this host)";
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let label = format!("{release} (this host, native)");
    let doctor = Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .args(["doctor", "--json"])
        .output()
        .ok()
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .unwrap_or(serde_json::Value::Null);
    let mut problems = Vec::new();
    if doctor.is_null() {
        problems.push("doctor --json printed no JSON".to_owned());
    }
    let skipped = |why: String| -> (Vec<Row>, Vec<String>) {
        common::skip(TEST, &why);
        let row = Row {
            kernel: label.clone(),
            cgroup: "-".into(),
            mode: "-".into(),
            hooks: "-".into(),
            doctor: doctor_verdict(&doctor),
            complete: format!("skipped: {why}"),
        };
        (vec![row], Vec::new())
    };
    if !common::is_root() {
        return skipped("needs root (eBPF, /dev/kmsg, memory cgroups)".into());
    }
    let Some((_, version)) = common::oom::find_memory_hierarchy() else {
        return skipped("no memory cgroup controller to contain an OOM kill".into());
    };
    let cgroup_version = match version {
        common::oom::CgroupVersion::V1 => "v1",
        common::oom::CgroupVersion::V2 => "v2",
    };
    // The hook a kill in `auto` mode must name: the richest doctor found.
    let scope = doctor["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "scope_hook");
    let auto_hook = match scope.and_then(|c| c["reason"].as_str()) {
        Some(r) if doctor_check_ok(&doctor, "scope_hook") && r.starts_with("fentry") => "fentry",
        Some(r) if doctor_check_ok(&doctor, "scope_hook") && r.starts_with("kprobe") => "kprobe",
        _ => "tracepoint",
    };
    let alloc = std::fs::canonicalize(alloc).expect("the allocator's path");
    let alloc = alloc.to_str().expect("a UTF-8 temp path");
    let dmesg = |pid: i32| {
        // Waits for the kill's line; the whole log as the guests print it.
        common::kernel_log::killed_line(pid, HOST_TIMEOUT);
        common::kernel_log::kernel_messages().join("\n")
    };
    let mut rows = Vec::new();
    for mode in ["auto", "kmsg"] {
        let name = format!("host-{cgroup_version}-{mode}");
        let _slot = common::oom::oom_test_slot_blocking();
        let cgroup = match common::oom::MemoryCgroup::create_at(
            &format!("oomscope-matrix-{}-{name}", std::process::id()),
            Some(GUEST_LIMIT_BYTES),
        ) {
            Ok(Some(cgroup)) => cgroup,
            other => {
                problems.push(format!("{name}: cannot create the test cgroup: {other:?}"));
                continue;
            }
        };
        let out_dir = tempfile::tempdir().expect("tempdir");
        let out = out_dir.path().join("records.jsonl");
        let health = common::free_port();
        let config = format!(
            r#"
receivers:
  oom: {{ mode: {mode}, events: null }}
processors:
  batch: {{ timeout: 100ms }}
exporters:
  file: {{ path: "{out}", flush_interval: 100ms }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [oom], processors: [batch], exporters: [file] }}
"#,
            out = out.display()
        );
        let mut agent = common::oomscope::Oomscope::start(&config, &[]);
        agent.wait_healthy(health, HOST_TIMEOUT);
        let mut facts = vec![format!("agent_ready {name}")];
        let procs = cgroup.path().join("cgroup.procs");
        // `set -e`: never exec the allocator outside its cgroup.
        let mut victim = Command::new("sh")
            .arg("-c")
            .arg(r#"set -e; echo $$ > "$1"; shift; exec "$@""#)
            .arg("sh")
            .arg(&procs)
            .arg(alloc)
            .arg(format!("--matrix-kill={name}"))
            .spawn()
            .expect("spawn the allocator");
        let pid = i32::try_from(victim.id()).expect("a pid");
        let status = victim.wait().expect("wait for the allocator");
        let status = std::os::unix::process::ExitStatusExt::signal(&status)
            .map_or_else(|| format!("exit {status}"), |sig| (128 + sig).to_string());
        facts.push(format!(
            "kill {name} pid={pid} status={status} cgroup={}",
            cgroup.cgroup_path()
        ));
        let needle = format!("\"intValue\":\"{pid}\"");
        let deadline = Instant::now() + HOST_TIMEOUT;
        let records = loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if (text.contains("\"linux.oom.kill\"") && text.contains(&needle))
                || Instant::now() >= deadline
            {
                break text;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let dmesg = dmesg(pid);
        let (_, clean) = agent.stop(HOST_TIMEOUT);
        if !clean {
            problems.push(format!("{name}: the agent did not stop cleanly"));
        }
        let host = Guest {
            facts,
            blocks: HashMap::from([
                (format!("records {name}"), records),
                (format!("agent_log {name}"), agent.output()),
            ]),
        };
        let mut missing = Vec::new();
        let victim = Victim {
            command: alloc,
            executable: alloc,
            auto_hook,
            ebpf_loads: doctor["source"] == "ebpf",
        };
        let source = check_kill(&host, &dmesg, &name, mode, &victim, &mut missing);
        rows.push(Row {
            kernel: label.clone(),
            cgroup: cgroup_version.into(),
            mode: mode.into(),
            hooks: source.as_ref().map_or_else(
                || "?".into(),
                |(s, hook)| hooks_of(&doctor, s, hook.as_deref(), true),
            ),
            doctor: doctor_verdict(&doctor),
            complete: if missing.is_empty() {
                "yes".into()
            } else {
                format!("no: {}", missing.join("; "))
            },
        });
        problems.extend(missing.into_iter().map(|m| format!("{name}: {m}")));
    }
    (rows, problems)
}

/// The hooks a kill was caught with, given the record's `oom.source`.
/// `hook`: the record's `oom.hook`; `kmsg`: whether the agent read the
/// kernel log.
fn hooks_of(doctor: &serde_json::Value, source: &str, hook: Option<&str>, kmsg: bool) -> String {
    if source != "ebpf" {
        // `process_tracking: auto` without the exec hook.
        return "/dev/kmsg; netlink process events".into();
    }
    let mut hooks = vec!["tracepoint oom/mark_victim".to_owned()];
    if let Some(hook @ ("fentry" | "kprobe")) = hook {
        hooks.push(format!("{hook} oom_kill_process"));
    }
    if doctor_check_ok(doctor, "exec_hook") {
        hooks.push("sys_enter_execve(at)".into());
    }
    if kmsg {
        hooks.push("/dev/kmsg".into());
    }
    hooks.join(", ")
}

/// Checks every kill the guest reported; the table rows and the problems.
fn check_guest(kernel: &Kernel, guest: &Guest, seconds: f64) -> (Vec<Row>, Vec<String>) {
    let mut problems = Vec::new();
    let release = guest.fact("kernel ").unwrap_or("?").to_owned();
    if release != kernel.release {
        problems.push(format!("booted {release}, expected {}", kernel.release));
    }
    // "... #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"
    let label = match guest
        .fact("version ")
        .and_then(|v| v.split(" Debian ").nth(1))
        .and_then(|v| v.split_whitespace().next())
    {
        Some(debian) => format!("{release} (Debian {debian}, qemu)"),
        None => format!("{release} (qemu)"),
    };
    let mut doctor_of = |cgroup: &str| -> serde_json::Value {
        let block = guest.block(&format!("doctor {cgroup}"));
        serde_json::from_str(block.trim()).unwrap_or_else(|e| {
            problems.push(format!(
                "doctor --json under cgroup {cgroup} printed no JSON ({e}); stderr:\n{}",
                guest.block(&format!("doctor_stderr {cgroup}"))
            ));
            serde_json::Value::Null
        })
    };
    let doctors: HashMap<&str, serde_json::Value> = if guest.fact("v1 ") == Some("mounted") {
        HashMap::from([("v2", doctor_of("v2")), ("v1", doctor_of("v1"))])
    } else {
        HashMap::from([("v2", doctor_of("v2"))])
    };
    let dmesg = guest.block("dmesg");
    let mut kills = vec![
        ("v2-auto", "v2"),
        ("v2-kmsg", "v2"),
        ("v2-live", "v2"),
        ("v2-fentry", "v2"),
        ("v2-kprobe", "v2"),
    ];
    match guest.fact("v1 ") {
        Some("mounted") => kills.extend([("v1-auto", "v1"), ("v1-kmsg", "v1")]),
        other if kernel.memcg_v1 => problems.push(format!(
            "the kernel has CONFIG_MEMCG_V1 but the guest could not mount it: {other:?}"
        )),
        _ => {}
    }
    let mut rows = Vec::new();
    for (name, cgroup) in kills {
        // v2-live: an agent in `auto` mode with the memory receiver, the
        // allocator throttled above memory.high first.
        let mode = match name {
            "v2-live" => "auto",
            _ => name.rsplit('-').next().unwrap_or(name),
        };
        let mode_label = match name {
            "v2-live" => "auto, above memory.high first",
            "v2-fentry" => "ebpf, fentry hook, no kernel log",
            "v2-kprobe" => "ebpf, kprobe hook, no kernel log",
            _ => mode,
        };
        let doctor = &doctors[cgroup];
        let ebpf_loads = doctor["source"] == "ebpf";
        let mut missing = Vec::new();
        // Agents that do not read the kernel log: the hook alone.
        let hook_only = matches!(name, "v2-fentry" | "v2-kprobe");
        // Debian's kernels have kprobes, which `auto` tries first (fentry
        // is forced in its own mode).
        let victim = Victim {
            command: "/alloc",
            executable: "/alloc",
            auto_hook: "kprobe",
            ebpf_loads,
        };
        let source = check_kill(guest, dmesg, name, mode, &victim, &mut missing);
        rows.push(Row {
            kernel: format!("{label}, {seconds:.0} s boot"),
            cgroup: cgroup.into(),
            mode: mode_label.into(),
            hooks: source.as_ref().map_or_else(
                || "?".into(),
                |(s, hook)| hooks_of(doctor, s, hook.as_deref(), !hook_only),
            ),
            doctor: doctor_verdict(doctor),
            complete: if missing.is_empty() {
                "yes".into()
            } else {
                format!("no: {}", missing.join("; "))
            },
        });
        problems.extend(missing.into_iter().map(|m| format!("{name}: {m}")));
    }
    let doctor = &doctors["v2"];
    rows.push(check_group_kill(
        guest,
        dmesg,
        &label,
        doctor,
        &mut problems,
    ));
    rows.push(check_live_samples(guest, &label, doctor, &mut problems));
    if kernel.memcg_v1 {
        // Named in the rows only where it ran; say so when it did not.
        if !rows.iter().any(|r| r.cgroup == "v1") {
            problems.push("no v1 kill ran".into());
        }
    } else {
        rows.push(Row {
            kernel: label.clone(),
            cgroup: "v1".into(),
            mode: "-".into(),
            hooks: "-".into(),
            doctor: "-".into(),
            complete: "n/a: no CONFIG_MEMCG_V1".into(),
        });
    }
    (rows, problems)
}

/// The guest's memory.oom.group kill (v2): three tasks killed as one group,
/// one record each, each equal to its "Killed process" line, all naming
/// the group and the one trigger; the kernel's second kill of the chosen
/// victim makes no record and no missed kill.
fn check_group_kill(
    guest: &Guest,
    dmesg: &str,
    label: &str,
    doctor: &serde_json::Value,
    problems: &mut Vec<String>,
) -> Row {
    let mut missing = Vec::new();
    let fact = guest.fact("group_kill ").unwrap_or("");
    // "pids=275,270,271 status=137,137,137 cgroup=/matrix-v2-group"
    let value = |key: &str| {
        fact.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .unwrap_or("")
            .to_owned()
    };
    let pids: Vec<u32> = value("pids=")
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    let group = value("cgroup=");
    if pids.len() != 3 {
        missing.push(format!("the group kill did not run: {fact:?}"));
    }
    if value("status=") != "137,137,137" {
        missing.push(format!("not every member was SIGKILLed: {fact}"));
    }
    let records = kill_records(guest.block("records v2-live"));
    for (i, pid) in pids.iter().enumerate() {
        let mine: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| attr_str(r, "process.pid") == Some(pid.to_string()))
            .collect();
        let [record] = mine.as_slice() else {
            missing.push(format!("{} records for group member {pid}", mine.len()));
            continue;
        };
        let mut expect = |key: &str, want: Option<String>| {
            let got = attr_str(record, key);
            if got != want {
                missing.push(format!("member {pid}: {key} is {got:?}, expected {want:?}"));
            }
        };
        expect("oom.group", Some(group.clone()));
        expect("oom.memcg", Some(group.clone()));
        expect("oom.trigger.pid", Some(pids[0].to_string()));
        expect("oom.constraint", Some("CONSTRAINT_MEMCG".into()));
        // The allocator was chosen; the kernel killed the sleepers with it.
        let command_line = if i == 0 {
            "/alloc --matrix-kill=v2-group"
        } else {
            "/bin/busybox sleep 1000"
        };
        expect("process.command_line", Some(command_line.into()));
        match killed_line(dmesg, *pid) {
            Some(line) => {
                expect("oom.victim.comm", Some(line.comm.clone()));
                for (key, kb) in &line.figures {
                    if key == &"oom.victim.pgtables" && kb.is_none() {
                        continue;
                    }
                    expect(key, kb.map(|kb| (kb * 1024).to_string()));
                }
            }
            None => missing.push(format!("no 'Killed process {pid}' line")),
        }
    }
    let points = metric_points(guest.block("records v2-live"));
    match points.last("linux.oom.kills.missed", "", "") {
        Some(0.0) => {}
        other => missing.push(format!("linux.oom.kills.missed is {other:?}, expected 0")),
    }
    let row = Row {
        kernel: label.to_owned(),
        cgroup: "v2".into(),
        mode: "auto, memory.oom.group kill of 3 tasks".into(),
        hooks: hooks_of(doctor, "ebpf", Some("fentry"), true),
        doctor: doctor_verdict(doctor),
        complete: if missing.is_empty() {
            "yes: one record per task, each with oom.group".into()
        } else {
            format!("no: {}", missing.join("; "))
        },
    };
    problems.extend(missing.into_iter().map(|m| format!("group kill: {m}")));
    row
}

/// The memory receiver's samples of the guest's v2 cgroups under real
/// pressure: the throttled allocator's cgroup (`memory.high`, then killed
/// at `memory.max`) and the group-killed one.
fn check_live_samples(
    guest: &Guest,
    label: &str,
    doctor: &serde_json::Value,
    problems: &mut Vec<String>,
) -> Row {
    const HIGH: f64 = 28.0 * 1024.0 * 1024.0; // HIGH in the init script
    let limit = GUEST_LIMIT_BYTES as f64;
    let live = "/matrix-v2-live";
    let group = "/matrix-v2-group";
    let points = metric_points(guest.block("records v2-live"));
    let mut missing = Vec::new();
    let series = |metric: &str, cgroup: &str| points.series(metric, cgroup, "");
    let usage = series("oomscope.cgroup.memory.usage", live);
    if usage.len() < 3 {
        missing.push(format!("{} usage samples of {live}", usage.len()));
    }
    if series("oomscope.cgroup.memory.limit", live)
        .iter()
        .any(|(_, v)| *v != limit)
    {
        missing.push("oomscope.cgroup.memory.limit is not memory.max".into());
    }
    let high = series("oomscope.cgroup.memory.high", live);
    if high.is_empty() || high.iter().any(|(_, v)| *v != HIGH) {
        missing.push(format!(
            "oomscope.cgroup.memory.high is not memory.high: {high:?}"
        ));
    }
    if !usage.iter().any(|(_, v)| *v > HIGH) {
        missing.push("no sample saw the usage above memory.high".into());
    }
    // Headroom is the limit less the usage (the root has no limit); the
    // working set is at most the usage.
    let headroom = series("oomscope.cgroup.memory.headroom", live);
    let working_set = series("oomscope.cgroup.memory.working_set", live);
    for (at, used) in usage {
        match headroom.iter().find(|(t, _)| t == at) {
            Some((_, h)) if *h == limit - used => {}
            other => missing.push(format!("headroom {other:?} at usage {used}")),
        }
        match working_set.iter().find(|(t, _)| t == at) {
            Some((_, w)) if w <= used => {}
            other => missing.push(format!("working set {other:?} at usage {used}")),
        }
    }
    if !series("oomscope.cgroup.memory.time_to_limit", live)
        .iter()
        .any(|(_, v)| *v > 0.0)
    {
        missing.push("no oomscope.cgroup.memory.time_to_limit while the usage grew".into());
    }
    let event =
        |cgroup: &str, name: &str| points.last("oomscope.cgroup.memory.events", cgroup, name);
    for (cgroup, name, want) in [
        (live, "oom_kill", Some(1.0)),
        (live, "oom_group_kill", Some(0.0)),
        (group, "oom_group_kill", Some(1.0)),
    ] {
        let got = event(cgroup, name);
        if got != want {
            missing.push(format!(
                "{cgroup} memory.events {name} is {got:?}, expected {want:?}"
            ));
        }
    }
    for (cgroup, name) in [
        (live, "high"),
        (live, "max"),
        (live, "oom"),
        (group, "oom_kill"),
    ] {
        if !event(cgroup, name).is_some_and(|v| v > 0.0) {
            missing.push(format!("{cgroup} memory.events {name} never counted"));
        }
    }
    if !points
        .last("oomscope.cgroup.memory.psi.stall_time", live, "some")
        .is_some_and(|v| v > 0.0)
    {
        missing.push(format!("no memory.pressure stall of {live}"));
    }
    let row = Row {
        kernel: label.to_owned(),
        cgroup: "v2".into(),
        mode: "memory receiver, 200 ms".into(),
        hooks: "memory.current, .max, .high, .events, .pressure, .stat".into(),
        doctor: doctor_verdict(doctor),
        complete: if missing.is_empty() {
            format!(
                "yes: {} samples; usage above high, headroom, time to limit, events, PSI",
                usage.len()
            )
        } else {
            format!("no: {}", missing.join("; "))
        },
    };
    problems.extend(missing.into_iter().map(|m| format!("live samples: {m}")));
    row
}

/// Metric points of a file exporter's output by (metric, `oomscope.cgroup.path`,
/// the other attributes' values in key order joined by `,`), in time order.
struct Points(HashMap<(String, String, String), Vec<(u64, f64)>>);

impl Points {
    fn series(&self, metric: &str, cgroup: &str, attrs: &str) -> &[(u64, f64)] {
        self.0
            .get(&(metric.to_owned(), cgroup.to_owned(), attrs.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    fn last(&self, metric: &str, cgroup: &str, attrs: &str) -> Option<f64> {
        self.series(metric, cgroup, attrs).last().map(|(_, v)| *v)
    }
}

fn metric_points(jsonl: &str) -> Points {
    let mut points: HashMap<(String, String, String), Vec<(u64, f64)>> = HashMap::new();
    for line in jsonl.lines() {
        let Ok(request) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for rm in request["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for metric in sm["metrics"].as_array().into_iter().flatten() {
                    let name = metric["name"].as_str().unwrap_or("").to_owned();
                    let data = if metric["sum"].is_object() {
                        &metric["sum"]
                    } else {
                        &metric["gauge"]
                    };
                    for point in data["dataPoints"].as_array().into_iter().flatten() {
                        let mut attrs: Vec<(String, String)> = point["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|kv| {
                                let value = &kv["value"];
                                let text = value["stringValue"]
                                    .as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| value.to_string());
                                (kv["key"].as_str().unwrap_or("").to_owned(), text)
                            })
                            .collect();
                        attrs.sort();
                        let cgroup = attrs
                            .iter()
                            .find(|(k, _)| k == "oomscope.cgroup.path")
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default();
                        let others = attrs
                            .iter()
                            .filter(|(k, _)| k != "oomscope.cgroup.path")
                            .map(|(_, v)| v.as_str())
                            .collect::<Vec<_>>()
                            .join(",");
                        // int64 as a JSON string, doubles as numbers.
                        let value = match (&point["asInt"], &point["asDouble"]) {
                            (serde_json::Value::String(s), _) => s.parse().ok(),
                            (serde_json::Value::Number(n), _) => n.as_f64(),
                            (_, d) => d.as_f64(),
                        };
                        let at = point["timeUnixNano"]
                            .as_str()
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(0);
                        if let Some(value) = value {
                            points
                                .entry((name.clone(), cgroup, others))
                                .or_default()
                                .push((at, value));
                        }
                    }
                }
            }
        }
    }
    for series in points.values_mut() {
        series.sort_by_key(|(at, _)| *at);
    }
    Points(points)
}

/// What a kill's record must name beyond the kernel's line.
struct Victim<'a> {
    /// The allocator's path as exec'd: the command line's first word.
    command: &'a str,
    /// Its executable as the process table reads it (`/proc/PID/exe`).
    executable: &'a str,
    /// The hook an eBPF record must name (`oom.hook`): the richest the
    /// kernel allows.
    auto_hook: &'a str,
    /// Whether doctor said eBPF loads (else every record is from kmsg).
    ebpf_loads: bool,
}

/// Checks the kill `name`: its record against the kernel's line and the
/// attributes every record must carry. Returns the record's `oom.source`.
fn check_kill(
    guest: &Guest,
    dmesg: &str,
    name: &str,
    mode: &str,
    victim: &Victim<'_>,
    missing: &mut Vec<String>,
) -> Option<(String, Option<String>)> {
    let Some(kill) = guest.fact(&format!("kill {name} ")) else {
        missing.push("the kill did not run".into());
        return None;
    };
    // "pid=123 status=137 cgroup=/matrix-v2-auto"
    let value = |key: &str| {
        kill.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .unwrap_or("")
            .to_owned()
    };
    let Ok(pid) = value("pid=").parse::<u32>() else {
        missing.push(format!("bad kill line {kill:?}"));
        return None;
    };
    if value("status=") != "137" {
        missing.push(format!("the victim was not SIGKILLed: {kill}"));
    }
    let cgroup = value("cgroup=");
    let memcg = cgroup.strip_prefix("/memory").unwrap_or(&cgroup).to_owned();
    if guest.fact(&format!("agent_ready {name}")).is_none() {
        missing.push(format!(
            "the agent was not ready; its log:\n{}",
            guest.block(&format!("agent_log {name}"))
        ));
    }
    let records = kill_records(guest.block(&format!("records {name}")));
    let mine: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| attr_str(r, "process.pid") == Some(pid.to_string()))
        .collect();
    let [record] = mine.as_slice() else {
        missing.push(format!(
            "{} records for pid {pid} (of {}); agent log:\n{}",
            mine.len(),
            records.len(),
            guest.block(&format!("agent_log {name}"))
        ));
        return None;
    };
    let source_and_hook = attr_str(record, "oom.source").map(|s| (s, attr_str(record, "oom.hook")));
    let Some(line) = killed_line(dmesg, pid) else {
        missing.push(format!("no 'Killed process {pid}' line in the kernel log"));
        return source_and_hook;
    };
    let mut expect = |key: &str, want: Option<String>| {
        let got = attr_str(record, key);
        if got != want {
            missing.push(format!("{key} is {got:?}, expected {want:?}"));
        }
    };
    for (key, kb) in &line.figures {
        if key == &"oom.victim.pgtables" && kb.is_none() {
            continue; // older kernels do not print it
        }
        expect(key, kb.map(|kb| (kb * 1024).to_string()));
    }
    expect("oom.victim.comm", Some(line.comm.clone()));
    expect("oom.trigger.pid", Some(pid.to_string()));
    expect("oom.trigger.comm", Some("alloc".into()));
    expect("oom.constraint", Some("CONSTRAINT_MEMCG".into()));
    expect("oom.memcg", Some(memcg));
    expect("oom.memcg.limit", Some(GUEST_LIMIT_BYTES.to_string()));
    // The victim is often gone from /proc by the time its kill is read:
    // the exec hook (eBPF) or the process table (kmsg mode) kept it.
    expect(
        "process.command_line",
        Some(format!("{} --matrix-kill={name}", victim.command)),
    );
    if mode == "kmsg" {
        // The process table also kept its executable.
        expect("process.executable.path", Some(victim.executable.into()));
    }
    let want_source = if mode == "kmsg" || !victim.ebpf_loads {
        "kmsg"
    } else {
        "ebpf"
    };
    expect("oom.source", Some(want_source.into()));
    // The hook `auto` picks on this kernel, or the one a mode forces.
    let want_hook = match (name, want_source) {
        (_, "kmsg") => None,
        ("v2-kprobe", _) => Some("kprobe"),
        ("v2-fentry", _) => Some("fentry"),
        _ => Some(victim.auto_hook),
    };
    expect("oom.hook", want_hook.map(str::to_owned));
    if matches!(name, "v2-fentry" | "v2-kprobe") {
        // No kernel log read: the gfp mask (as the hook has it, in hex)
        // and the memcg's usage come from the hook and agree with the log.
        expect("oom.gfp_mask", gfp_mask_before(dmesg, &line.line));
    }
    // The charge that failed was within a batch of the limit.
    let usage = attr_str(record, "oom.memcg.usage").and_then(|u| u.parse::<u64>().ok());
    let near_limit = GUEST_LIMIT_BYTES - (1 << 20)..=GUEST_LIMIT_BYTES;
    let usage_ok = usage.is_some_and(|u| near_limit.contains(&u));
    if mode == "kmsg" && attr_str(record, "process.creation.time").is_none() {
        missing.push("no process.creation.time".into());
    }
    if !usage_ok {
        missing.push(format!(
            "oom.memcg.usage is {usage:?}, expected within 1 MiB below the limit"
        ));
    }
    // Its incident, and the cgroup's limit and counters read right after
    // the kill (v2 `memory.events`, v1 `memory.failcnt`).
    if attr_str(record, "oom.incident.id").map(|id| id.len()) != Some(32) {
        missing.push("no 32-digit oom.incident.id".into());
    }
    let limit = attr_str(record, "oom.leadup.limit");
    if limit != Some(GUEST_LIMIT_BYTES.to_string()) {
        missing.push(format!(
            "oom.leadup.limit is {limit:?}, expected {GUEST_LIMIT_BYTES}"
        ));
    }
    let v2 = name.starts_with("v2-") || name.starts_with("host-v2-");
    let counter = if v2 {
        "oom.leadup.events.oom_kill"
    } else {
        "oom.leadup.failcnt"
    };
    let count = attr_str(record, counter).and_then(|n| n.parse::<u64>().ok());
    if count.is_none_or(|n| n < 1) {
        missing.push(format!("{counter} is {count:?}, expected at least 1"));
    }
    if !missing.is_empty() {
        missing.push(format!("kernel: {}", line.line));
    }
    source_and_hook
}

/// The hex gfp mask of the last "invoked oom-killer" line before `killed`
/// in the kernel log (`gfp_mask=0xcc0(GFP_KERNEL)` gives `0xcc0`).
fn gfp_mask_before(dmesg: &str, killed: &str) -> Option<String> {
    let end = dmesg.rfind(killed)?;
    let line = dmesg[..end]
        .lines()
        .rev()
        .find(|l| l.contains("invoked oom-killer: gfp_mask="))?;
    let rest = line.split("gfp_mask=").nth(1)?;
    Some(rest.split(['(', ',']).next()?.to_owned())
}

fn print_table(rows: &[Row], took: Duration) {
    let mut table = String::from(
        "\nkernel matrix:\n| kernel | cgroup | agent mode | hooks used | doctor verdict | record complete |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} |",
            r.kernel,
            r.cgroup,
            r.mode,
            r.hooks,
            r.doctor,
            r.complete.lines().next().unwrap_or("")
        );
    }
    let _ = writeln!(table, "matrix time: {:.0} s", took.as_secs_f64());
    // Straight to stderr: the harness does not capture it, so CI logs show it.
    let _ = std::io::stderr().write_all(table.as_bytes());
}
